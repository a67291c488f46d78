package lab

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
)

// UsageError is a bad flag or argument: Main exits with status 2 for it,
// as package flag does.
type UsageError struct{ Msg string }

func (e UsageError) Error() string { return e.Msg }

// Main runs a bench program: run gets a context cancelled on SIGINT or
// SIGTERM (so that its deferred clean-up stops every process it started),
// the arguments, and a logger on stderr. Main exits 2 for a UsageError, 0
// for -help, 1 for any other error.
func Main(program string, run func(ctx context.Context, args []string, log *slog.Logger) error) {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], log)
	stop()
	var ue UsageError
	switch {
	case errors.As(err, &ue):
		fmt.Fprintln(os.Stderr, program+":", err)
		os.Exit(2)
	case errors.Is(err, flag.ErrHelp):
		os.Exit(0)
	case err != nil:
		log.Error(program+" failed", "err", err)
		os.Exit(1)
	}
}
