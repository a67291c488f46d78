// Command sentproxy is a sidecar that forwards Redis clients to the master
// elected by Redis Sentinel and cuts over when the Sentinels elect another.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/alecthomas/kong"
	"github.com/prometheus/common/version"
	"github.com/redis/go-redis/v9"

	"github.com/sentproxy/sentproxy/proxy"
)

// Exit statuses: 2 for a bad command line (before anything listens), 1 for
// a failure at run time.
const (
	exitFailure = 1
	exitUsage   = 2
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// globals are handed to every command's Run method.
type globals struct {
	logger *slog.Logger
	stdout io.Writer
}

func run(args []string, stdout, stderr io.Writer) int {
	var cli CLI
	exitCode := -1
	parser, err := newParser(&cli, stdout, stderr, func(code int) { exitCode = code })
	if err != nil {
		fmt.Fprintln(stderr, "sentproxy: internal error:", err)
		return exitFailure
	}
	kctx, err := parser.Parse(args)
	if exitCode >= 0 { // --help and friends
		return exitCode
	}
	if err != nil {
		fmt.Fprintf(stderr, "sentproxy: error: %v\n", err)
		return exitUsage
	}
	logger := newLogger(stderr, cli.Log)
	// go-redis reports reconnects on its own logger; keep them, at debug.
	redis.SetLogger(redisLogger{logger.With("component", "go-redis")})

	if err := kctx.Run(&globals{logger: logger, stdout: stdout}); err != nil {
		var ue usageError
		if errors.As(err, &ue) {
			fmt.Fprintf(stderr, "sentproxy: error: %v\n", err)
			return exitUsage
		}
		logger.Error("sentproxy failed", "err", err)
		return exitFailure
	}
	return 0
}

func newParser(cli *CLI, stdout, stderr io.Writer, exit func(int)) (*kong.Kong, error) {
	return kong.New(cli,
		kong.Name("sentproxy"),
		kong.Description("A sidecar that forwards Redis clients to the master elected by Redis Sentinel."),
		kong.DefaultEnvars("SENTPROXY"),
		kong.Vars{"version": version.Version, "default_engine": proxy.DefaultEngine},
		kong.Writers(stdout, stderr),
		kong.Exit(exit),
	)
}

// usageError is a bad value found after parsing (an unreadable password
// file, say): it exits with the usage status.
type usageError struct{ error }

func (e usageError) Unwrap() error { return e.error }

func newLogger(w io.Writer, f LogFlags) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(f.Level))
	opts := &slog.HandlerOptions{Level: level}
	if f.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

type redisLogger struct{ l *slog.Logger }

func (r redisLogger) Printf(ctx context.Context, format string, v ...any) {
	r.l.DebugContext(ctx, fmt.Sprintf(format, v...))
}

// signalContext is cancelled by SIGINT or SIGTERM.
func signalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}

// ignoreHangups logs each SIGHUP and carries on, as Redis does, until ctx
// ends. Nothing needs a reload (password, certificate and CA files are
// read again as they change), and Go's default for SIGHUP, exiting at once,
// would cut every client connection without the drain that SIGTERM gets:
// a `kill -HUP` sent out of habit must not be an outage. The handler is
// in place when it returns.
func ignoreHangups(ctx context.Context, log *slog.Logger) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	go func() {
		defer signal.Stop(hup)
		for {
			select {
			case <-hup:
				log.Info("SIGHUP ignored: nothing to reload (password, certificate and CA files are read again as they change); SIGTERM stops sentproxy")
			case <-ctx.Done():
				return
			}
		}
	}()
}
