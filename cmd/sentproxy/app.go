package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/sentproxy/sentproxy/discovery"
	"github.com/sentproxy/sentproxy/metrics"
	"github.com/sentproxy/sentproxy/notify"
	"github.com/sentproxy/sentproxy/proxy"
)

// The metrics type observes both halves without either importing it.
var (
	_ proxy.Observer     = (*metrics.Metrics)(nil)
	_ discovery.Observer = (*metrics.Metrics)(nil)
	_ notify.Observer    = (*metrics.Metrics)(nil)
)

// appConfig is everything the running proxy needs, already validated.
type appConfig struct {
	routes        []route
	discovery     discovery.Config // per-route fields (MasterName, Logger, Observer) are filled in
	proxy         proxy.Config     // likewise Name, Logger, Observer, OnDialError
	webAddr       string           // "" disables the HTTP endpoints
	telemetryPath string
	drainTimeout  time.Duration
	notify        notify.Config // Logger is filled in
	logger        *slog.Logger
	// onRoute, if set, is called after each change of a route's master has
	// taken effect (addr "" when withdrawn). Tests use it to know the
	// instant after which nothing may reach the old master.
	onRoute func(route, addr string)
	// followedFiles are the files read again as they change (passwords, the
	// TLS key pairs and CA files); Run gives them the logger.
	followedFiles []followedFile
	// clientPair is the certificate presented to the Sentinels and the
	// master (--tls.cert-file), servedPair the one presented to clients
	// (--proxy.tls-cert-file); nil when not given.
	clientPair, servedPair *keyPairFile
	// socketMode is the permissions of a unix:PATH listen address's file,
	// socketGroup its group id (nil leaves the process's).
	socketMode  os.FileMode
	socketGroup *int
}

// followedFile is a file sentproxy reads again while it runs.
type followedFile interface{ setLogger(*slog.Logger) }

// proxyConfig is the proxy configuration of the route: base, the shared
// one, with the route's name and mode.
func (r route) proxyConfig(base proxy.Config) proxy.Config {
	base.Name = r.name
	if r.mode != "" {
		base.Mode = r.mode
	}
	return base
}

// routeRunner is one master name: its watcher, its server and its listener.
type routeRunner struct {
	name    string
	watcher *discovery.Watcher
	server  *proxy.Server
	ln      net.Listener
	history switchHistory // the last changes of the routed master, for /status
}

// app wires discovery to proxy for each route and serves the HTTP
// endpoints. Data flows one way: watcher.Updates -> server.SetMaster.
type app struct {
	cfg      appConfig
	log      *slog.Logger
	metrics  *metrics.Metrics
	notifier *notify.Notifier
	routes   []*routeRunner
	webLn    net.Listener
	web      *http.Server
}

// newApp binds every listener, so that an address in use fails before
// anything runs, and builds the watchers and servers.
func newApp(cfg appConfig) (*app, error) {
	reg := metrics.NewRegistry()
	a := &app{cfg: cfg, log: cfg.logger, metrics: metrics.New(reg)}
	// Exported per route, 0 without a certificate, so that alerts and
	// dashboards name the route as for every other series.
	for _, r := range cfg.routes {
		metrics.RegisterTLSCertificateExpiry(reg, r.name, metrics.TLSClientCertificate, cfg.clientPair.expiry())
		metrics.RegisterTLSCertificateExpiry(reg, r.name, metrics.TLSServerCertificate, cfg.servedPair.expiry())
	}
	ncfg := cfg.notify
	ncfg.Logger = cfg.logger.With("component", "notify")
	ncfg.Observer = a.metrics
	a.notifier = notify.New(ncfg)
	ok := false
	defer func() {
		if !ok {
			a.closeListeners()
		}
	}()
	for _, r := range cfg.routes {
		dcfg := cfg.discovery
		dcfg.MasterName = r.name
		dcfg.Logger = cfg.logger.With("component", "discovery")
		dcfg.Observer = a.metrics
		w, err := discovery.New(dcfg)
		if err != nil {
			return nil, err
		}
		rr := &routeRunner{name: r.name, watcher: w}
		pcfg := r.proxyConfig(cfg.proxy)
		pcfg.Logger = cfg.logger.With("component", "proxy")
		pcfg.Observer = a.metrics
		pcfg.NoMasterReason = func() string {
			if st := w.Status(); st.Addr == "" {
				return st.Reason
			}
			return "" // a master is verified; its update is on its way
		}
		pcfg.OnDialError = func(addr string, err error) {
			w.Recheck(fmt.Sprintf("dial to %s failed", addr))
		}
		rr.server = proxy.New(pcfg)
		gid := -1
		if cfg.socketGroup != nil {
			gid = *cfg.socketGroup
		}
		ln, err := listenClients(r.listen, cfg.socketMode, gid)
		if err != nil {
			return nil, fmt.Errorf("listen for route %q: %w", r.name, err)
		}
		rr.ln = ln
		a.routes = append(a.routes, rr)
	}
	if cfg.webAddr != "" {
		ln, err := net.Listen("tcp", cfg.webAddr)
		if err != nil {
			return nil, fmt.Errorf("listen for HTTP endpoints: %w", err)
		}
		a.webLn = ln
		mux := http.NewServeMux()
		mux.Handle(cfg.telemetryPath, metrics.Handler(reg))
		mux.HandleFunc("/healthz", a.healthz)
		mux.HandleFunc("/readyz", a.readyz)
		mux.HandleFunc("/status", a.status)
		a.web = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	}
	ok = true
	return a, nil
}

func (a *app) closeListeners() {
	for _, r := range a.routes {
		r.ln.Close()
	}
	if a.webLn != nil {
		a.webLn.Close()
	}
}

// run serves until ctx ends, then drains. It returns an error only when a
// listener failed or the drain timed out.
func (a *app) run(ctx context.Context) error {
	var wg sync.WaitGroup
	errc := make(chan error, len(a.routes)+1)
	watchCtx, stopWatchers := context.WithCancel(context.Background())
	defer stopWatchers()
	// Notifications outlive ctx: those of the last changes are delivered
	// during the drain, within the notifier's own bound (Close, below).
	go a.notifier.Run(context.Background())

	for _, r := range a.routes {
		wg.Add(3)
		go func() {
			defer wg.Done()
			r.watcher.Run(watchCtx)
		}()
		go func() {
			defer wg.Done()
			a.follow(r)
		}()
		go func() {
			defer wg.Done()
			if err := r.server.Serve(r.ln); err != nil && !errors.Is(err, proxy.ErrServerClosed) {
				errc <- fmt.Errorf("route %q: %w", r.name, err)
			}
		}()
		a.log.Info("listening", "route", r.name, "address", r.ln.Addr().String(), "mode", r.server.Mode(), "engine", r.server.Engine())
	}
	if a.web != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := a.web.Serve(a.webLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("HTTP endpoints: %w", err)
			}
		}()
		a.log.Info("serving HTTP endpoints", "address", a.webLn.Addr().String())
	}

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
	}
	a.log.Info("shutting down", "drain_timeout", a.cfg.drainTimeout.String())

	// Stop accepting everywhere first, then drain all routes together.
	drainCtx, cancel := context.WithTimeout(context.Background(), a.cfg.drainTimeout)
	defer cancel()
	var (
		dmu      sync.Mutex
		drainErr []error
		dwg      sync.WaitGroup
	)
	for _, r := range a.routes {
		dwg.Add(1)
		go func() {
			defer dwg.Done()
			if err := r.server.Shutdown(drainCtx); err != nil {
				dmu.Lock()
				drainErr = append(drainErr, fmt.Errorf("route %q: %w", r.name, err))
				dmu.Unlock()
			}
		}()
	}
	dwg.Wait()
	stopWatchers()
	if a.web != nil {
		webCtx, cancel := context.WithTimeout(context.Background(), time.Second)
		a.web.Shutdown(webCtx)
		cancel()
	}
	wg.Wait()
	a.notifier.Close()
	return errors.Join(append([]error{runErr}, drainErr...)...)
}

// follow applies the watcher's updates to the server. It is the only path
// from discovery to proxy. Notifications go out after a change took effect
// and never delay it: Notify only queues.
func (a *app) follow(r *routeRunner) {
	for u := range r.watcher.Updates() {
		if u.Addr == "" {
			r.server.ClearMaster(u.Reason)
			now := time.Now()
			if a.cfg.onRoute != nil {
				a.cfg.onRoute(r.name, "")
			}
			r.history.add(u, now, 0)
			a.notifier.Notify(notify.Event{MasterName: r.name, OldAddr: u.Previous, Reason: u.Reason, Observed: u.Observed, Switched: now})
			a.log.Warn("no verified master; holding new clients", "route", r.name, "previous", u.Previous, "reason", u.Reason)
			continue
		}
		r.server.SetMaster(u.Addr)
		switched := time.Now()
		took := switched.Sub(u.Observed)
		if a.cfg.onRoute != nil {
			a.cfg.onRoute(r.name, u.Addr)
		}
		r.history.add(u, switched, took)
		// The first master found at start is no failover: nobody is told.
		if u.Previous != "" {
			a.notifier.Notify(notify.Event{MasterName: r.name, OldAddr: u.Previous, NewAddr: u.Addr, Reason: u.Reason,
				Observed: u.Observed, Switched: switched, Cutover: took})
		}
		a.metrics.Cutover(r.name, took)
		a.log.Info("master switch", "route", r.name, "previous", u.Previous, "master", u.Addr,
			"config_epoch", u.Epoch, "reason", u.Reason, "cutover_seconds", took.Seconds())
	}
}

func (a *app) healthz(w http.ResponseWriter, _ *http.Request) {
	fmt.Fprintln(w, "ok")
}

// readyz answers 200 only when every route routes to a verified master, so
// that a load balancer sends no client to a proxy that would hold it.
func (a *app) readyz(w http.ResponseWriter, _ *http.Request) {
	ready := true
	var body []byte
	for _, r := range a.routes {
		why := r.watcher.Status().Reason
		if m := r.server.Master(); m != "" {
			// Ready, but say why: "no Sentinel reachable; keeping the last
			// verified master" is ready and worth an operator's eye.
			body = fmt.Appendf(body, "%s: master %s: %s\n", r.name, m, why)
			continue
		}
		ready = false
		body = fmt.Appendf(body, "%s: no verified master: %s\n", r.name, why)
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if !ready {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	w.Write(body)
}

// listenClients listens on addr: HOST:PORT, or unix:PATH for a unix socket
// whose file gets mode and, unless gid is -1, group gid. A socket file left
// by a process that is gone (a crash, a SIGKILL) is replaced; one that a
// live process still accepts on is an error, as a port in use is.
func listenClients(addr string, mode os.FileMode, gid int) (net.Listener, error) {
	path, ok := strings.CutPrefix(addr, unixPrefix)
	if !ok {
		return net.Listen("tcp", addr)
	}
	if fi, err := os.Lstat(path); err == nil && fi.Mode()&os.ModeSocket != 0 {
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("listen unix %s: another process accepts on this socket", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("listen unix %s: removing the stale socket: %w", path, err)
		}
	}
	ln, err := listenUnixPrivate(path)
	if err != nil {
		return nil, err
	}
	if unixListened != nil {
		unixListened(path)
	}
	// The group before the mode, so that a mode open to the group never
	// applies to the wrong one.
	if gid >= 0 {
		if err := os.Chown(path, -1, gid); err != nil {
			ln.Close()
			return nil, fmt.Errorf("listen unix %s: giving the socket file to group %d (sentproxy must be a member of it): %w", path, gid, err)
		}
	}
	// After the listen, so the umask cannot narrow it: connecting takes
	// write permission on the file.
	if err := os.Chmod(path, mode); err != nil {
		ln.Close()
		return nil, fmt.Errorf("listen unix %s: %w", path, err)
	}
	return ln, nil
}

// umaskMu serializes listenUnixPrivate's umask change, which is the whole
// process's.
var umaskMu sync.Mutex

// unixListened, when set (by a test), runs between the bind and setting
// the socket file's group and mode.
var unixListened func(path string)

// listenUnixPrivate binds path under a umask that leaves the socket file
// to its owner alone. The file exists, and takes connections, from the
// bind on; with the process's umask (0 in many containers) any local user
// could connect in the moment before the chown and chmod that
// --proxy.socket-group and --proxy.socket-mode ask for, and a connection
// made then stays open after them, because permission is checked at
// connect only.
func listenUnixPrivate(path string) (net.Listener, error) {
	umaskMu.Lock()
	defer umaskMu.Unlock()
	old := syscall.Umask(0o177)
	defer syscall.Umask(old)
	return net.Listen("unix", path)
}
