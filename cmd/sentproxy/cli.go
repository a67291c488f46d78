package main

import (
	"crypto/tls"
	"errors"
	"fmt"
	"math"
	"net"
	"os"
	"os/exec"
	"os/user"
	"strconv"
	"strings"
	"time"

	"github.com/sentproxy/sentproxy/notify"
)

// CLI is sentproxy's command line. Every flag has an environment twin,
// SENTPROXY_ followed by the flag's name in upper case with dots and dashes
// as underscores (--sentinel.master-name: SENTPROXY_SENTINEL_MASTER_NAME).
type CLI struct {
	Log LogFlags `embed:"" prefix:"log."`

	Run         RunCmd         `cmd:"" help:"Proxy clients to the master the Sentinels elected."`
	Check       CheckCmd       `cmd:"" help:"Ask every Sentinel once, print each one's view and the verified master; exit 1 if there is none."`
	Status      StatusCmd      `cmd:"" help:"Show what a running sentproxy routes to, each Sentinel's view and the recent switches; exit 1 if it is unreachable or a route has no master."`
	Healthcheck HealthcheckCmd `cmd:"" help:"GET a running sentproxy's /readyz, for a Docker HEALTHCHECK (no shell needed); exit 0 on 200, 1 otherwise."`
	Demo        DemoCmd        `cmd:"" help:"Start a throwaway master, replica and three Sentinels, proxy a writer through sentproxy, kill the master and show the cutover."`
	Version     VersionCmd     `cmd:"" help:"Print the version."`
}

// LogFlags are shared by every command.
type LogFlags struct {
	Level  string `default:"info" enum:"debug,info,warn,error" help:"Log level: debug, info, warn, error."`
	Format string `default:"text" enum:"text,json" help:"Log format: text or json."`
}

// SentinelFlags say how to reach the Sentinels and the master.
type SentinelFlags struct {
	Addrs        []string      `name:"addrs" required:"" placeholder:"HOST:PORT,..." help:"Sentinel addresses (host:port; hostnames and [IPv6]:port allowed). The others are learnt from them."`
	MasterName   string        `name:"master-name" default:"mymaster" help:"Master name the Sentinels monitor (the single route's name)."`
	Username     string        `help:"Username for the Sentinels (ACL)."`
	Password     string        `xor:"sentinel-password" help:"Password for the Sentinels. Visible in ps; prefer the env twin or --sentinel.password-file."`
	PasswordFile string        `name:"password-file" xor:"sentinel-password" placeholder:"PATH" help:"File holding the Sentinels' password. sentproxy run reads it again at each new connection, so a rotated password applies without a restart."`
	PollInterval time.Duration `name:"poll-interval" default:"1s" help:"How often the Sentinels are re-checked besides +switch-master events."`
	Timeout      time.Duration `default:"1s" help:"Timeout of each request to a Sentinel or a master."`
	TLS          bool          `name:"tls" help:"Connect to the Sentinels with TLS (their tls-port), as --tls.* configures."`
}

// MasterFlags authenticate the ROLE check sentproxy runs on the master.
// Clients authenticate themselves through the proxy as usual.
type MasterFlags struct {
	Username     string `help:"Username for sentproxy's own requests to the master (ACL): the ROLE check, and resp mode's COMMAND table. Clients authenticate themselves."`
	Password     string `xor:"master-password" help:"Password for sentproxy's own requests to the master (the ROLE check; resp mode's COMMAND table). Visible in ps; prefer the env twin or --master.password-file."`
	PasswordFile string `name:"password-file" xor:"master-password" placeholder:"PATH" help:"File holding the master's password. sentproxy run reads it again at each new connection, so a rotated password applies without a restart."`
	TLS          bool   `name:"tls" help:"Connect to the master with TLS (the Sentinels then announce its tls-port: tls-replication yes), as --tls.* configures: the ROLE check and every client's connection (the app's side stays plain text unless --proxy.tls-cert-file). tcp mode then copies bytes through Go's TLS instead of the epoll engine."`
}

// TLSFlags configure TLS towards the Sentinels (--sentinel.tls) and the
// master (--master.tls). One set serves both, as Redis's own tls-replication
// uses one certificate set for all its links.
type TLSFlags struct {
	CAFile             string `name:"ca-file" placeholder:"PATH" help:"PEM file of the CA certificates that sign the servers' certificates (Redis's tls-ca-cert-file). Default: the system's. Read again when it changes, so a renewed CA bundle applies to new connections without a restart."`
	CertFile           string `name:"cert-file" placeholder:"PATH" help:"PEM client certificate, for servers that require one (Redis's default, tls-auth-clients yes). With --tls.key-file. Both are read again when they change, so a renewed certificate applies without a restart."`
	KeyFile            string `name:"key-file" placeholder:"PATH" help:"PEM private key of --tls.cert-file."`
	ServerName         string `name:"server-name" help:"Name the servers' certificates must carry. Default: the host of each address (an IP address must then be among the certificate's IP names)."`
	InsecureSkipVerify bool   `name:"insecure-skip-verify" help:"Do not verify the servers' certificates: encryption without authentication, for tests only."`
}

// tlsFiles are the files behind a tls.Config that follow their changes:
// its key pair (keyPairFile) and its CAs (caFile); nil where not given.
type tlsFiles struct {
	pair *keyPairFile
	ca   *caFile
}

// followed appends the files given to fs.
func (f tlsFiles) followed(fs []followedFile) []followedFile {
	if f.pair != nil {
		fs = append(fs, f.pair)
	}
	if f.ca != nil {
		fs = append(fs, f.ca)
	}
	return fs
}

// config builds the tls.Config that --sentinel.tls and --master.tls use;
// nil when neither is set. Every file is read and checked here, so that a
// bad one is a usage error before anything listens. The files are returned
// too: the client key pair and the CA file follow their changes, the CAs
// through discovery's and proxy's TLSRoots.
func (t TLSFlags) config(sentinel, master bool) (*tls.Config, tlsFiles, error) {
	var files tlsFiles
	if !sentinel && !master {
		if t != (TLSFlags{}) {
			return nil, files, errors.New("--tls.* given without --sentinel.tls or --master.tls: it would have no effect")
		}
		return nil, files, nil
	}
	cfg := &tls.Config{
		MinVersion: tls.VersionTLS12, ServerName: t.ServerName, InsecureSkipVerify: t.InsecureSkipVerify,
		// tcp and resp mode dial the master once per client connection:
		// resuming a session (Redis's tls-session-caching, on by default)
		// spares each of them a full handshake.
		ClientSessionCache: tls.NewLRUClientSessionCache(0),
	}
	if t.CAFile != "" {
		ca, err := loadCAFile(t.CAFile, "--tls.ca-file")
		if err != nil {
			return nil, files, err
		}
		cfg.RootCAs, files.ca = ca.get(), ca
	}
	switch {
	case t.CertFile != "" && t.KeyFile != "":
		pair, err := loadKeyPairFile(t.CertFile, t.KeyFile, "--tls.cert-file", "--tls.key-file")
		if err != nil {
			return nil, files, err
		}
		cfg.GetClientCertificate, files.pair = pair.getClient, pair
	case t.CertFile != "" || t.KeyFile != "":
		return nil, files, errors.New("--tls.cert-file and --tls.key-file go together")
	}
	return cfg, files, nil
}

// ProxyFlags shape the client side.
type ProxyFlags struct {
	ListenAddress   string        `name:"listen-address" default:"127.0.0.1:6379" help:"Address clients connect to (the single route): HOST:PORT, or unix:PATH for a unix socket."`
	Routes          []string      `name:"route" placeholder:"NAME=HOST:PORT[/MODE]" help:"Serve several masters: each NAME=LISTEN_ADDRESS is a route (HOST:PORT or unix:PATH), optionally with its own mode (cache=127.0.0.1:6380/resp, queue=unix:/run/sentproxy/queue.sock/resp). Replaces --sentinel.master-name and --proxy.listen-address."`
	SocketMode      string        `name:"socket-mode" default:"0666" placeholder:"OCTAL" help:"Permissions of the socket file of a unix:PATH listen address. The default lets every local user connect, as to 127.0.0.1; 0660 limits it to the owner and group."`
	SocketGroup     string        `name:"socket-group" placeholder:"GROUP" help:"Group of the socket file of a unix:PATH listen address, by name or number; sentproxy must be a member (with the systemd unit: SupplementaryGroups=). With --proxy.socket-mode=0660, only that group's users (the app's) may connect. Default: sentproxy's own group."`
	Mode            string        `name:"mode" default:"tcp" enum:"tcp,resp" help:"tcp: forward bytes untouched; resp: parse commands and replies (see README: What a client sees during a failover)."`
	Engine          string        `name:"engine" default:"${default_engine}" enum:"epoll,splice" help:"tcp mode: how bytes are moved. epoll (the default on Linux; Linux only): event loops, two system calls per message, as HAProxy makes. splice (the default elsewhere): io.Copy between the sockets (splice(2)), two goroutines per connection, a third system call per message. See bench/RESULTS.md."`
	EventLoops      string        `name:"event-loops" default:"auto" help:"epoll engine: event loops per route, each using at most one CPU; a new connection goes to the loop with the fewest. auto: 2 on a single tcp route where both can hold a P, else 1. 0 means one per CPU. sentproxy raises GOMAXPROCS by one where that lets every loop hold, unless GOMAXPROCS is set or a cgroup CPU limit stands below it (see README: Event loops and GOMAXPROCS)."`
	MaxClientBuffer int64         `name:"max-client-buffer" default:"16777216" placeholder:"BYTES" help:"resp mode: most bytes of one client's commands awaiting replies (kept to resend after a failover); past it the client is not read until replies drain. A single held command longer than this (or 64 MiB) gets an error and does not run."`
	MaxBuffer       int64         `name:"max-buffer" default:"536870912" placeholder:"BYTES" help:"resp mode: most bytes of commands awaiting replies for all clients of a route; past it new commands get an error and do not run."`
	DialTimeout     time.Duration `name:"dial-timeout" default:"2s" help:"Timeout of one dial to the master."`
	HoldTimeout     time.Duration `name:"hold-timeout" default:"35s" help:"How long a new client waits for a verified master before it gets an error. 0 refuses at once."`
	KeepAlive       time.Duration `name:"keepalive" default:"15s" help:"TCP keep-alive period on both legs. 0 disables."`
	IdleTimeout     time.Duration `name:"idle-timeout" default:"0s" help:"Close connections in which no byte moved either way for this long. 0 (default) never does: in tcp mode BLPOP and SUBSCRIBE connections would be closed too; resp mode, as Redis's own timeout, never counts a client awaiting a reply, subscribed or in MONITOR as idle. The epoll engine watches it in its loop; the splice engine then copies through a buffer instead of splicing."`
	MaxConnections  int           `name:"max-connections" default:"10000" help:"Most concurrent client connections per route (held ones included). 0 means no limit."`
	DrainTimeout    time.Duration `name:"drain-timeout" default:"10s" help:"On SIGTERM/SIGINT, how long open connections may finish before they are closed."`
	TLSCertFile     string        `name:"tls-cert-file" placeholder:"PATH" help:"Serve clients in TLS, with this PEM certificate (and --proxy.tls-key-file): for clients that reach sentproxy over a network rather than loopback. Read again when it changes, so a renewed certificate applies without a restart. tcp mode then copies bytes through Go's TLS instead of the epoll engine."`
	TLSKeyFile      string        `name:"tls-key-file" placeholder:"PATH" help:"PEM private key of --proxy.tls-cert-file."`
	TLSClientCAFile string        `name:"tls-client-ca-file" placeholder:"PATH" help:"Require every client to present a certificate signed by a CA in this PEM file (mutual TLS, as Redis's tls-auth-clients yes). Needs --proxy.tls-cert-file. Read again when it changes, as --tls.ca-file is."`
}

// serverTLS builds the tls.Config clients connect with, nil without
// --proxy.tls-cert-file; its key pair and client CA file follow their
// changes, as the client side's do.
func (p ProxyFlags) serverTLS() (*tls.Config, tlsFiles, error) {
	var files tlsFiles
	switch {
	case p.TLSCertFile == "" && p.TLSKeyFile == "" && p.TLSClientCAFile == "":
		return nil, files, nil
	case p.TLSCertFile == "" || p.TLSKeyFile == "":
		return nil, files, errors.New("--proxy.tls-cert-file and --proxy.tls-key-file go together (and --proxy.tls-client-ca-file needs them)")
	}
	pair, err := loadKeyPairFile(p.TLSCertFile, p.TLSKeyFile, "--proxy.tls-cert-file", "--proxy.tls-key-file")
	if err != nil {
		return nil, files, err
	}
	files.pair = pair
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: pair.getServer}
	if p.TLSClientCAFile != "" {
		ca, err := loadCAFile(p.TLSClientCAFile, "--proxy.tls-client-ca-file")
		if err != nil {
			return nil, files, err
		}
		files.ca = ca
		cfg.ClientCAs, cfg.ClientAuth = ca.get(), tls.RequireAndVerifyClientCert
		cfg.GetConfigForClient = ca.serverConfig(cfg.Clone())
	}
	return cfg, files, nil
}

// WebFlags configure the HTTP endpoints.
type WebFlags struct {
	ListenAddress string `name:"listen-address" default:"127.0.0.1:9736" help:"Address of /metrics, /healthz, /readyz and /status. Empty disables."`
	TelemetryPath string `name:"telemetry-path" default:"/metrics" help:"Path of the metrics."`
}

// NotifyFlags configure the notifications of master changes.
type NotifyFlags struct {
	Exec           string        `name:"exec" placeholder:"PATH" help:"After each master switch, run this program (no shell) with a Sentinel client-reconfig-script's arguments: MASTER-NAME leader start FROM-IP FROM-PORT TO-IP TO-PORT. Not run when the master is withdrawn."`
	ExecTimeout    time.Duration `name:"exec-timeout" default:"10s" help:"Kill the --notify.exec program (and what it started) after this long."`
	Webhook        string        `name:"webhook" placeholder:"URL" help:"POST JSON about each master switch or withdrawal to this URL (Slack-style: it has a text field). It may hold a token: prefer the env twin."`
	WebhookTimeout time.Duration `name:"webhook-timeout" default:"5s" help:"Timeout of one webhook attempt."`
	WebhookRetries int           `name:"webhook-retries" default:"3" help:"Webhook attempts per notification, the first included (1: no retry); 2xx is success."`
}

// Validate checks the notification flags. The webhook URL is never echoed:
// it may hold a token.
func (f *NotifyFlags) Validate() error {
	if f.Exec != "" {
		if _, err := exec.LookPath(f.Exec); err != nil {
			return fmt.Errorf("--notify.exec: %w", err)
		}
	}
	if f.Webhook != "" {
		if err := notify.ValidateWebhookURL(f.Webhook); err != nil {
			return fmt.Errorf("--notify.webhook: %w", err)
		}
	}
	switch {
	case f.ExecTimeout <= 0:
		return errors.New("--notify.exec-timeout must be positive")
	case f.WebhookTimeout <= 0:
		return errors.New("--notify.webhook-timeout must be positive")
	case f.WebhookRetries < 1:
		return errors.New("--notify.webhook-retries must be at least 1")
	}
	return nil
}

// route is one master name served on one listen address.
type route struct {
	name   string
	listen string
	mode   string // "" means --proxy.mode
}

func (f *ProxyFlags) routes(masterName string) ([]route, error) {
	if len(f.Routes) == 0 {
		return []route{{name: masterName, listen: f.ListenAddress}}, nil
	}
	var rs []route
	names, addrs := map[string]bool{}, map[string]bool{}
	for _, r := range f.Routes {
		name, addr, ok := strings.Cut(r, "=")
		if !ok || name == "" || addr == "" {
			return nil, fmt.Errorf("--proxy.route %q: want NAME=HOST:PORT[/MODE]", r)
		}
		addr, mode := splitMode(addr)
		if mode != "" && mode != "tcp" && mode != "resp" {
			return nil, fmt.Errorf("--proxy.route %q: mode must be tcp or resp", r)
		}
		if names[name] {
			return nil, fmt.Errorf("--proxy.route: master name %q given twice", name)
		}
		if addrs[addr] {
			return nil, fmt.Errorf("--proxy.route: listen address %q given twice", addr)
		}
		names[name], addrs[addr] = true, true
		rs = append(rs, route{name: name, listen: addr, mode: mode})
	}
	return rs, nil
}

// unixPrefix marks a listen address that is a unix socket's path.
const unixPrefix = "unix:"

// splitMode splits a route's LISTEN_ADDRESS[/MODE]. A unix socket's path
// has slashes of its own, so there only a last "/tcp" or "/resp" is a mode.
func splitMode(addr string) (listen, mode string) {
	if strings.HasPrefix(addr, unixPrefix) {
		for _, m := range []string{"tcp", "resp"} {
			if p, ok := strings.CutSuffix(addr, "/"+m); ok {
				return p, m
			}
		}
		return addr, ""
	}
	listen, mode, _ = strings.Cut(addr, "/")
	return listen, mode
}

// checkListen checks a listen address: HOST:PORT, or unix:PATH.
func checkListen(flag, addr string) error {
	if path, ok := strings.CutPrefix(addr, unixPrefix); ok {
		if path == "" {
			return fmt.Errorf("%s %q: unix: needs a socket path", flag, addr)
		}
		// sun_path holds 108 bytes, its terminating NUL included; bind
		// would refuse a longer path only once the flags were accepted.
		if len(path) > 107 {
			return fmt.Errorf("%s %q: a unix socket path may have at most 107 bytes", flag, addr)
		}
		return nil
	}
	return checkHostPort(flag, addr)
}

// socketMode parses --proxy.socket-mode.
func (f *ProxyFlags) socketMode() (os.FileMode, error) {
	m, err := strconv.ParseUint(f.SocketMode, 8, 32)
	if err != nil || m > 0o777 {
		return 0, fmt.Errorf("--proxy.socket-mode %q: want octal permissions, 0000-0777", f.SocketMode)
	}
	return os.FileMode(m), nil
}

// socketGroup resolves --proxy.socket-group to a group id; -1 when it is
// not given (the file keeps sentproxy's group).
func (f *ProxyFlags) socketGroup() (int, error) {
	if f.SocketGroup == "" {
		return -1, nil
	}
	id := f.SocketGroup
	if _, err := strconv.ParseUint(id, 10, 32); err != nil {
		g, err := user.LookupGroup(f.SocketGroup)
		if err != nil {
			return 0, fmt.Errorf("--proxy.socket-group %q: %w", f.SocketGroup, err)
		}
		id = g.Gid
	}
	// 4294967295 is (gid_t)-1, which chown takes for "leave it as it is".
	gid, err := strconv.ParseUint(id, 10, 32)
	if err != nil || gid == math.MaxUint32 {
		return 0, fmt.Errorf("--proxy.socket-group %q: not a group id", f.SocketGroup)
	}
	return int(gid), nil
}

// Validate checks cross-field rules; kong calls it before any command runs.
func (f *SentinelFlags) Validate() error {
	if len(f.Addrs) == 0 {
		return errors.New("--sentinel.addrs: at least one Sentinel address is required")
	}
	for _, a := range f.Addrs {
		if err := checkHostPort("--sentinel.addrs", a); err != nil {
			return err
		}
	}
	if f.MasterName == "" {
		return errors.New("--sentinel.master-name must not be empty")
	}
	if strings.ContainsAny(f.MasterName, " \r\n") {
		return fmt.Errorf("--sentinel.master-name %q must not contain spaces or newlines", f.MasterName)
	}
	if f.PollInterval <= 0 {
		return errors.New("--sentinel.poll-interval must be positive")
	}
	if f.Timeout <= 0 {
		return errors.New("--sentinel.timeout must be positive")
	}
	return nil
}

// Validate checks the proxy flags.
func (f *ProxyFlags) Validate() error {
	rs, err := f.routes("x")
	if err != nil {
		return err
	}
	unixSocket := false
	for _, r := range rs {
		if err := checkListen("--proxy.listen-address", r.listen); err != nil {
			return err
		}
		if strings.ContainsAny(r.name, " \r\n") {
			return fmt.Errorf("--proxy.route: master name %q must not contain spaces or newlines", r.name)
		}
		unixSocket = unixSocket || strings.HasPrefix(r.listen, unixPrefix)
	}
	if _, err := f.socketMode(); err != nil {
		return err
	}
	if _, err := f.socketGroup(); err != nil {
		return err
	}
	if f.SocketGroup != "" && !unixSocket {
		return errors.New("--proxy.socket-group given without a unix:PATH listen address: it would have no effect")
	}
	switch {
	case f.DialTimeout <= 0:
		return errors.New("--proxy.dial-timeout must be positive")
	case f.HoldTimeout < 0, f.KeepAlive < 0, f.IdleTimeout < 0, f.DrainTimeout < 0:
		return errors.New("--proxy timeouts must not be negative")
	case f.MaxConnections < 0:
		return errors.New("--proxy.max-connections must not be negative")
	case f.MaxClientBuffer < 1024 || f.MaxBuffer < f.MaxClientBuffer:
		return errors.New("--proxy.max-client-buffer must be at least 1024 and --proxy.max-buffer at least --proxy.max-client-buffer")
	}
	return nil
}

// Validate checks the web flags.
func (f *WebFlags) Validate() error {
	if f.ListenAddress != "" {
		if err := checkHostPort("--web.listen-address", f.ListenAddress); err != nil {
			return err
		}
	}
	switch f.TelemetryPath {
	case "/healthz", "/readyz", "/status":
		return fmt.Errorf("--web.telemetry-path %q must not be /healthz, /readyz or /status", f.TelemetryPath)
	}
	if !strings.HasPrefix(f.TelemetryPath, "/") {
		return fmt.Errorf("--web.telemetry-path %q must start with /", f.TelemetryPath)
	}
	return nil
}

func checkHostPort(flag, addr string) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%s %q: %w", flag, addr, err)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
		return fmt.Errorf("%s %q: port must be a number 0-65535", flag, addr)
	}
	return nil
}

// secret returns the value of a password flag or the contents of its file.
// A trailing newline in the file is not part of the password.
func secret(value, file string) (string, error) {
	if file == "" {
		return value, nil
	}
	return readPassword(file)
}
