package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"time"
)

// maxBackoff caps the pause between webhook attempts.
const maxBackoff = 30 * time.Second

// Payload is the JSON body POSTed to the webhook. NewAddress "" means the
// master was withdrawn. Text is a one-line summary, which Slack-style
// incoming webhooks display as the message.
type Payload struct {
	MasterName     string    `json:"master_name"`
	OldAddress     string    `json:"old_address"`
	NewAddress     string    `json:"new_address"`
	Reason         string    `json:"reason"`
	ObservedAt     time.Time `json:"observed_at"`
	SwitchedAt     time.Time `json:"switched_at"`
	CutoverSeconds float64   `json:"cutover_seconds"`
	Text           string    `json:"text"`
}

// NewPayload returns the webhook body for ev.
func NewPayload(ev Event) Payload {
	return Payload{
		MasterName:     ev.MasterName,
		OldAddress:     ev.OldAddr,
		NewAddress:     ev.NewAddr,
		Reason:         ev.Reason,
		ObservedAt:     ev.Observed.UTC(),
		SwitchedAt:     ev.Switched.UTC(),
		CutoverSeconds: ev.Cutover.Seconds(),
		Text:           Text(ev),
	}
}

// ValidateWebhookURL checks that raw is an absolute http or https URL. Its
// error never repeats raw, which may hold a token.
func ValidateWebhookURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return errors.New("notify: webhook URL does not parse")
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return errors.New("notify: webhook URL must start with http:// or https://")
	}
	if u.Host == "" {
		return errors.New("notify: webhook URL has no host")
	}
	return nil
}

// webhookSink POSTs events as JSON.
type webhookSink struct {
	url      string
	host     string // the only part of the URL ever logged
	urlErr   error
	client   *http.Client
	timeout  time.Duration
	attempts int
	backoff  time.Duration
	log      *slog.Logger
}

func newWebhookSink(cfg Config, log *slog.Logger) *webhookSink {
	s := &webhookSink{
		url:      cfg.Webhook,
		host:     "(invalid URL)",
		timeout:  cfg.WebhookTimeout,
		attempts: cfg.WebhookAttempts,
		backoff:  cfg.RetryBackoff,
		log:      log,
	}
	if s.urlErr = ValidateWebhookURL(cfg.Webhook); s.urlErr == nil {
		u, _ := url.Parse(cfg.Webhook)
		s.host = u.Host
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	s.client = &http.Client{
		Transport: transport,
		// A redirect would turn the POST into a GET that "succeeds"
		// without delivering anything: report it instead.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return s
}

func (s *webhookSink) send(ctx context.Context, ev Event) error {
	if s.urlErr != nil {
		return s.urlErr
	}
	body, err := json.Marshal(NewPayload(ev))
	if err != nil {
		return fmt.Errorf("notify: webhook: encode: %w", err)
	}
	backoff := s.backoff
	for attempt := 1; ; attempt++ {
		err := s.post(ctx, body)
		if err == nil {
			return nil
		}
		var se *statusError
		permanent := errors.As(err, &se) && !se.retryable()
		if attempt >= s.attempts || permanent || ctx.Err() != nil {
			return fmt.Errorf("notify: webhook to %s: %d attempt(s): %w", s.host, attempt, err)
		}
		s.log.Debug("webhook attempt failed; retrying", "host", s.host, "attempt", attempt, "retry_in", backoff.String(), "err", err)
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("notify: webhook to %s: %d attempt(s), then cancelled: %w", s.host, attempt, err)
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

// post makes one attempt. Its errors never contain the URL.
func (s *webhookSink) post(ctx context.Context, body []byte) error {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.url, bytes.NewReader(body))
	if err != nil {
		return errors.New("cannot build the request") // its error would quote the URL
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "sentproxy")
	resp, err := s.client.Do(req)
	if err != nil {
		// A *url.Error quotes the whole URL; keep only what went wrong.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() != nil {
			return fmt.Errorf("no answer within %s", s.timeout)
		}
		return err
	}
	defer resp.Body.Close()
	snippet, _ := io.ReadAll(io.LimitReader(resp.Body, 256))
	// Read a bounded remainder so that the connection can be reused.
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return nil
	}
	return &statusError{code: resp.StatusCode, status: resp.Status, body: oneLine(string(snippet), 256)}
}

// statusError is a webhook answer other than 2xx.
type statusError struct {
	code   int
	status string
	body   string
}

func (e *statusError) Error() string {
	if e.body == "" {
		return "answered " + e.status
	}
	return fmt.Sprintf("answered %s: %q", e.status, e.body)
}

// retryable reports whether another attempt may succeed: after a server
// error, a timeout or a rate limit; not after a redirect (not followed: it
// would turn the POST into a GET) nor a client error (a wrong URL, a revoked
// token), which the next attempt would meet again.
func (e *statusError) retryable() bool {
	return e.code >= 500 || e.code == http.StatusRequestTimeout || e.code == http.StatusTooManyRequests
}
