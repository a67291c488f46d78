package main

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"time"
)

// healthcheckTimeout bounds the whole request: a Docker HEALTHCHECK that
// hangs is worse than one that fails.
const healthcheckTimeout = 2 * time.Second

// HealthcheckCmd is `sentproxy healthcheck`, the probe of a Docker
// HEALTHCHECK in an image without a shell or curl:
//
//	HEALTHCHECK CMD ["/sentproxy", "healthcheck"]
type HealthcheckCmd struct {
	URL string `name:"url" env:"SENTPROXY_HEALTHCHECK_URL" default:"http://127.0.0.1:9736/readyz" placeholder:"URL" help:"What to GET; healthy means it answers 200 within 2s."`
}

// Run GETs the URL, prints the body and fails unless the answer is 200.
func (c *HealthcheckCmd) Run(g *globals) error {
	client := &http.Client{Timeout: healthcheckTimeout}
	resp, err := client.Get(c.URL)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	g.stdout.Write(body)
	if len(body) > 0 && !bytes.HasSuffix(body, []byte("\n")) {
		fmt.Fprintln(g.stdout)
	}
	if err != nil {
		return fmt.Errorf("healthcheck: GET %s: %w", c.URL, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("healthcheck: GET %s: %s", c.URL, resp.Status)
	}
	return nil
}
