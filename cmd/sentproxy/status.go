package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"runtime"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/sentproxy/sentproxy/discovery"
)

// defaultWebAddress is --web.listen-address's default, which `status` and
// `healthcheck` ask by default. Struct tags cannot share a constant; a test
// checks that the three defaults agree.
const defaultWebAddress = "127.0.0.1:9736"

// maxSwitches is how many changes of the routed master /status keeps per route.
const maxSwitches = 20

// statusResponse is the JSON of /status, shared by the endpoint and the
// `status` command.
type statusResponse struct {
	Now time.Time `json:"now"` // the server's clock, so that readers can say "3m ago"
	// GOMAXPROCS is the process's, which --proxy.event-loops may have
	// raised by one (README: Event loops and GOMAXPROCS).
	GOMAXPROCS int           `json:"gomaxprocs"`
	Routes     []routeStatus `json:"routes"`
	Notify     *notifyStatus `json:"notify,omitempty"` // absent when no notification is configured
}

type routeStatus struct {
	Name          string `json:"name"`
	ListenAddress string `json:"listen_address"`
	Mode          string `json:"mode"`             // tcp or resp
	Engine        string `json:"engine,omitempty"` // tcp mode's: epoll or splice
	// EventLoops is how many epoll loops serve the route (epoll engine).
	EventLoops int `json:"event_loops,omitempty"`
	// Master is what clients are routed to now, "" when none.
	Master string `json:"master"`
	// Since is when the verified master last changed (to none, too).
	Since       time.Time `json:"since,omitzero"`
	ConfigEpoch int64     `json:"config_epoch"`
	// Reason says why Master is what it is.
	Reason    string    `json:"reason"`
	CheckedAt time.Time `json:"checked_at,omitzero"`
	// Sentinels are each known Sentinel's last answer, as `check --json` prints them.
	Sentinels []checkView `json:"sentinels"`
	// ActiveConnections counts open client connections, held ones included.
	ActiveConnections int64 `json:"active_connections"`
	// RecentSwitches are the last changes of the routed master, newest first.
	RecentSwitches []switchRecord `json:"recent_switches"`
}

// switchRecord is one change of a route's master.
type switchRecord struct {
	At time.Time `json:"at"`
	// Kind is "first" (the first master found), "switch", "withdrawn" (no
	// verified master) or "restored" (the same master verified again).
	Kind           string  `json:"kind"`
	OldAddress     string  `json:"old_address"`
	NewAddress     string  `json:"new_address"`
	ConfigEpoch    int64   `json:"config_epoch"`
	Reason         string  `json:"reason"`
	CutoverSeconds float64 `json:"cutover_seconds"`
}

type notifyStatus struct {
	Sinks    []string `json:"sinks"`
	Failures uint64   `json:"failures"` // failed or dropped deliveries
	Dropped  uint64   `json:"dropped"`  // of which never tried
}

// switchHistory keeps a route's last maxSwitches changes.
type switchHistory struct {
	mu   sync.Mutex
	recs []switchRecord // oldest first
}

func (h *switchHistory) add(u discovery.Update, at time.Time, cutover time.Duration) {
	kind := "switch"
	switch {
	case u.Addr == "":
		kind = "withdrawn"
	case u.Previous == "":
		kind = "first"
	case u.Previous == u.Addr:
		kind = "restored"
	}
	rec := switchRecord{At: at, Kind: kind, OldAddress: u.Previous, NewAddress: u.Addr,
		ConfigEpoch: u.Epoch, Reason: u.Reason, CutoverSeconds: cutover.Seconds()}
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.recs) == maxSwitches {
		h.recs = append(h.recs[:0], h.recs[1:]...)
	}
	h.recs = append(h.recs, rec)
}

// newestFirst returns a copy of the records, newest first.
func (h *switchHistory) newestFirst() []switchRecord {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]switchRecord, len(h.recs))
	for i, r := range h.recs {
		out[len(h.recs)-1-i] = r
	}
	return out
}

// status serves /status: what each route routes to and why, each
// Sentinel's view, open connections and recent switches, as JSON.
func (a *app) status(w http.ResponseWriter, _ *http.Request) {
	resp := statusResponse{Now: time.Now(), GOMAXPROCS: runtime.GOMAXPROCS(0)}
	for _, r := range a.routes {
		st := r.watcher.Status()
		resp.Routes = append(resp.Routes, routeStatus{
			Name:              r.name,
			ListenAddress:     r.ln.Addr().String(),
			Mode:              r.server.Mode(),
			Engine:            r.server.Engine(),
			EventLoops:        r.server.EventLoops(),
			Master:            r.server.Master(),
			Since:             st.Since,
			ConfigEpoch:       st.Epoch,
			Reason:            st.Reason,
			CheckedAt:         st.Checked,
			Sentinels:         toCheckResult(st).Sentinels,
			ActiveConnections: r.server.ActiveConnections(),
			RecentSwitches:    r.history.newestFirst(),
		})
	}
	if sinks := a.notifier.Sinks(); len(sinks) > 0 {
		resp.Notify = &notifyStatus{Sinks: sinks, Failures: a.notifier.Failures(), Dropped: a.notifier.Dropped()}
	}
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(resp)
}

// StatusCmd is `sentproxy status`: /status of a running sentproxy, for people.
type StatusCmd struct {
	URL  string `name:"url" env:"SENTPROXY_STATUS_URL" default:"http://127.0.0.1:9736" placeholder:"URL" help:"Where the running sentproxy serves its HTTP endpoints (its --web.listen-address); /status is added when the URL has no path."`
	JSON bool   `name:"json" env:"SENTPROXY_STATUS_JSON" help:"Print the JSON of /status as it came."`
}

// statusTimeout bounds the whole request of `status`.
const statusTimeout = 5 * time.Second

// Run prints the status. It fails when sentproxy cannot be asked or when a
// route has no master.
func (c *StatusCmd) Run(g *globals) error {
	u, err := statusURL(c.URL)
	if err != nil {
		return usageError{err}
	}
	client := &http.Client{Timeout: statusTimeout}
	resp, err := client.Get(u)
	if err != nil {
		return fmt.Errorf("status: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return fmt.Errorf("status: GET %s: %w", u, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status: GET %s: %s", u, resp.Status)
	}
	var st statusResponse
	if err := json.Unmarshal(body, &st); err != nil {
		return fmt.Errorf("status: GET %s: not a sentproxy status: %w", u, err)
	}
	if c.JSON {
		g.stdout.Write(body)
	} else {
		printStatus(g.stdout, st)
	}
	var none []string
	for _, r := range st.Routes {
		if r.Master == "" {
			none = append(none, r.Name)
		}
	}
	if len(none) > 0 {
		return fmt.Errorf("status: no master for %s", strings.Join(none, ", "))
	}
	return nil
}

// statusURL accepts a base URL, a URL with a path, or a bare host:port.
func statusURL(raw string) (string, error) {
	if !strings.Contains(raw, "://") {
		raw = "http://" + raw
	}
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return "", fmt.Errorf("--url %q: want http://HOST:PORT", raw)
	}
	if u.Path == "" || u.Path == "/" {
		u.Path = "/status"
	}
	return u.String(), nil
}

func printStatus(w io.Writer, st statusResponse) {
	ago := func(t time.Time) string {
		if t.IsZero() {
			return "never"
		}
		return fmt.Sprintf("%s (%s ago)", t.Local().Format("2006-01-02 15:04:05 MST"), roughly(st.Now.Sub(t)))
	}
	for i, r := range st.Routes {
		if i > 0 {
			fmt.Fprintln(w)
		}
		fmt.Fprintf(w, "%s on %s\n", r.Name, r.ListenAddress)
		if r.Master != "" {
			fmt.Fprintf(w, "  master       %s since %s, config-epoch %d\n", r.Master, ago(r.Since), r.ConfigEpoch)
		} else {
			fmt.Fprintf(w, "  master       NONE since %s; new clients are held\n", ago(r.Since))
		}
		fmt.Fprintf(w, "  why          %s\n", r.Reason)
		fmt.Fprintf(w, "  connections  %d open\n", r.ActiveConnections)
		switch {
		case r.EventLoops > 0:
			fmt.Fprintf(w, "  mode         %s, %s engine, %d event loop(s), GOMAXPROCS %d\n", r.Mode, r.Engine, r.EventLoops, st.GOMAXPROCS)
		case r.Engine != "":
			fmt.Fprintf(w, "  mode         %s, %s engine\n", r.Mode, r.Engine)
		case r.Mode != "":
			fmt.Fprintf(w, "  mode         %s\n", r.Mode)
		}

		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintf(tw, "  SENTINEL\tMASTER\tCONFIG-EPOCH\tFLAGS\n")
		for _, v := range r.Sentinels {
			if v.Error != "" {
				fmt.Fprintf(tw, "  %s\t-\t-\t%s\n", v.Sentinel, v.Error)
				continue
			}
			fmt.Fprintf(tw, "  %s\t%s\t%d\t%s\n", v.Sentinel, v.Master, v.Epoch, strings.Join(v.Flags, ","))
		}
		tw.Flush()

		if len(r.RecentSwitches) == 0 {
			fmt.Fprintln(w, "  no switch yet")
			continue
		}
		tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintf(tw, "  RECENT SWITCHES\tKIND\tFROM\tTO\tCUTOVER\tREASON\n")
		for _, s := range r.RecentSwitches {
			cutover := "-"
			if s.Kind == "switch" || s.Kind == "restored" {
				cutover = roughly(time.Duration(s.CutoverSeconds * float64(time.Second)))
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\n", s.At.Local().Format("2006-01-02 15:04:05.000"), s.Kind,
				orDash(s.OldAddress), orDash(s.NewAddress), cutover, clip(s.Reason, 100))
		}
		tw.Flush()
	}
	if n := st.Notify; n != nil {
		fmt.Fprintf(w, "\nnotifications  %s; %d failed (%d dropped)\n", strings.Join(n.Sinks, ", "), n.Failures, n.Dropped)
	}
}

// roughly rounds d for people: milliseconds below a second, seconds below
// an hour, minutes beyond.
func roughly(d time.Duration) string {
	switch {
	case d < time.Second:
		return d.Round(10 * time.Microsecond).String()
	case d < time.Hour:
		return d.Round(time.Second).String()
	default:
		return d.Round(time.Minute).String()
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func clip(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}
