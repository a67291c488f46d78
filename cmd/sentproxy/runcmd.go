package main

import (
	"crypto/tls"
	"fmt"
	"os"
	"strings"

	"github.com/sentproxy/sentproxy/discovery"
	"github.com/sentproxy/sentproxy/notify"
	"github.com/sentproxy/sentproxy/proxy"
)

// RunCmd is `sentproxy run`.
type RunCmd struct {
	Sentinel SentinelFlags `embed:"" prefix:"sentinel."`
	Master   MasterFlags   `embed:"" prefix:"master."`
	TLS      TLSFlags      `embed:"" prefix:"tls."`
	Proxy    ProxyFlags    `embed:"" prefix:"proxy."`
	Web      WebFlags      `embed:"" prefix:"web."`
	Notify   NotifyFlags   `embed:"" prefix:"notify."`

	cfg   appConfig
	procs procsPlan
}

// Validate builds the configuration, reading password files, so that every
// bad value is reported with exit status 2 before anything listens.
func (c *RunCmd) Validate() error {
	routes, err := c.Proxy.routes(c.Sentinel.MasterName)
	if err != nil {
		return err
	}
	if c.Proxy.Engine == proxy.EngineEpoll && !proxy.EngineEpollSupported {
		return fmt.Errorf("--proxy.engine=epoll: needs Linux; use --proxy.engine=splice here")
	}
	dcfg, clientFiles, err := discoveryConfig(c.Sentinel, c.Master, c.TLS)
	if err != nil {
		return err
	}
	serverTLS, servedFiles, err := c.Proxy.serverTLS()
	if err != nil {
		return err
	}
	// Passwords given by file follow the file (see passwordFile), and so
	// do the TLS key pairs and CA files (keyPairFile, caFile); they log
	// through run's logger.
	files := servedFiles.followed(clientFiles.followed(nil))
	if path := c.Sentinel.PasswordFile; path != "" {
		pf := newPasswordFile(path, "Sentinel", dcfg.SentinelPassword)
		dcfg.SentinelPasswordFunc = pf.get
		files = append(files, pf)
	}
	if path := c.Master.PasswordFile; path != "" {
		pf := newPasswordFile(path, "master", dcfg.MasterPassword)
		dcfg.MasterPasswordFunc = pf.get
		files = append(files, pf)
	}
	socketMode, err := c.Proxy.socketMode()
	if err != nil {
		return err
	}
	var socketGroup *int
	gid, err := c.Proxy.socketGroup()
	if err != nil {
		return err
	}
	if gid >= 0 {
		socketGroup = &gid
	}
	c.cfg = appConfig{
		socketMode:    socketMode,
		socketGroup:   socketGroup,
		followedFiles: files,
		clientPair:    clientFiles.pair,
		servedPair:    servedFiles.pair,
		routes:        routes,
		discovery:     dcfg,
		proxy: proxy.Config{
			Mode:               c.Proxy.Mode,
			Engine:             c.Proxy.Engine,
			MaxClientBuffer:    c.Proxy.MaxClientBuffer,
			MaxBuffer:          c.Proxy.MaxBuffer,
			DialTimeout:        c.Proxy.DialTimeout,
			HoldTimeout:        negIfZero(c.Proxy.HoldTimeout),
			KeepAlive:          negIfZero(c.Proxy.KeepAlive),
			IdleTimeout:        c.Proxy.IdleTimeout,
			MaxConnections:     c.Proxy.MaxConnections,
			MasterUsername:     dcfg.MasterUsername,
			MasterPassword:     dcfg.MasterPassword,
			MasterPasswordFunc: dcfg.MasterPasswordFunc,
			TLS:                dcfg.MasterTLS,
			TLSRoots:           dcfg.TLSRoots,
			ClientTLS:          serverTLS,
		},
		webAddr:       c.Web.ListenAddress,
		telemetryPath: c.Web.TelemetryPath,
		drainTimeout:  c.Proxy.DrainTimeout,
		notify: notify.Config{
			Exec:            c.Notify.Exec,
			ExecEnv:         scriptEnv(os.Environ()),
			ExecTimeout:     c.Notify.ExecTimeout,
			Webhook:         c.Notify.Webhook,
			WebhookTimeout:  c.Notify.WebhookTimeout,
			WebhookAttempts: c.Notify.WebhookRetries,
		},
	}
	// Which routes run event loops depends on their mode and on TLS, so
	// the plan comes once the proxy's configuration is whole.
	epollRoutes := 0
	for _, r := range routes {
		if r.proxyConfig(c.cfg.proxy).Loops() > 0 {
			epollRoutes++
		}
	}
	plan, err := planProcs(c.Proxy.EventLoops, epollRoutes, startProcs, envPinsProcs(), cpuQuota())
	if err != nil {
		return err
	}
	c.cfg.proxy.EventLoops = plan.loops
	c.procs = plan
	return nil
}

// scriptEnv is the environment of the --notify.exec program: ours without
// the SENTPROXY_* variables, which may hold passwords and the webhook's
// token, and which a script written for Sentinel does not expect anyway.
func scriptEnv(env []string) []string {
	out := make([]string, 0, len(env))
	for _, kv := range env {
		if !strings.HasPrefix(kv, "SENTPROXY_") {
			out = append(out, kv)
		}
	}
	return out
}

// Run serves until SIGINT or SIGTERM.
func (c *RunCmd) Run(g *globals) error {
	c.cfg.logger = g.logger
	// Only here, not in Validate: GOMAXPROCS is the process's, and tests
	// build apps from a validated RunCmd in their own process.
	c.procs.apply(g.logger)
	for _, f := range c.cfg.followedFiles {
		f.setLogger(g.logger)
	}
	a, err := newApp(c.cfg)
	if err != nil {
		return err
	}
	ctx, stop := signalContext()
	defer stop()
	ignoreHangups(ctx, g.logger)
	return a.run(ctx)
}

// negIfZero maps the CLI's "0 disables" onto the library's "negative
// disables, zero means default".
func negIfZero[T ~int64](d T) T {
	if d == 0 {
		return -1
	}
	return d
}

// discoveryConfig also returns the TLS files that follow their changes (the
// client key pair, the CA file), so that run can give them the logger.
func discoveryConfig(s SentinelFlags, m MasterFlags, t TLSFlags) (discovery.Config, tlsFiles, error) {
	tlsCfg, files, err := t.config(s.TLS, m.TLS)
	if err != nil {
		return discovery.Config{}, tlsFiles{}, usageError{err}
	}
	var sentinelTLS, masterTLS *tls.Config
	if s.TLS {
		sentinelTLS = tlsCfg
	}
	if m.TLS {
		masterTLS = tlsCfg
	}
	spw, err := secret(s.Password, s.PasswordFile)
	if err != nil {
		return discovery.Config{}, tlsFiles{}, usageError{err}
	}
	mpw, err := secret(m.Password, m.PasswordFile)
	if err != nil {
		return discovery.Config{}, tlsFiles{}, usageError{err}
	}
	return discovery.Config{
		Sentinels:        s.Addrs,
		SentinelUsername: s.Username,
		SentinelPassword: spw,
		MasterUsername:   m.Username,
		MasterPassword:   mpw,
		PollInterval:     s.PollInterval,
		Timeout:          s.Timeout,
		SentinelTLS:      sentinelTLS,
		MasterTLS:        masterTLS,
		TLSRoots:         files.ca.roots(),
	}, files, nil
}
