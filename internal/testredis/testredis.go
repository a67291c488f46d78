// Package testredis adapts internal/redisproc to tests: processes live in
// t.TempDir(), are closed by t.Cleanup, and a failing test prints the end
// of every process log, which is usually where a failed failover explains
// itself.
package testredis

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/sentproxy/sentproxy/internal/redisproc"
)

// startTimeout bounds a whole start, topology convergence included.
const startTimeout = 30 * time.Second

// logLines is how much of each log a failed test prints.
const logLines = 30

// Require skips the test when redis-server is not installed, except in CI
// (CI set to anything), where it fails: there a skipped failover test would
// be a hole nobody notices.
func Require(t testing.TB) {
	t.Helper()
	if _, _, err := redisproc.FindBinaries(); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("testredis: CI is set, so Redis is required: %v", err)
		}
		t.Skipf("testredis: skipping: %v", err)
	}
}

// StartServer starts a redis-server for the test and closes it when the
// test ends. opts.Dir defaults to a new t.TempDir().
func StartServer(t testing.TB, opts redisproc.Options) *redisproc.Process {
	t.Helper()
	return startProcess(t, &opts.Dir, func(ctx context.Context) (*redisproc.Process, error) {
		return redisproc.StartServer(ctx, opts)
	})
}

// StartSentinel starts a redis-sentinel for the test and closes it when the
// test ends. opts.Dir defaults to a new t.TempDir().
func StartSentinel(t testing.TB, opts redisproc.SentinelOptions) *redisproc.Process {
	t.Helper()
	return startProcess(t, &opts.Dir, func(ctx context.Context) (*redisproc.Process, error) {
		return redisproc.StartSentinel(ctx, opts)
	})
}

// startProcess defaults *dir to a new t.TempDir(), then starts one process
// with start and registers its closing.
func startProcess(t testing.TB, dir *string, start func(context.Context) (*redisproc.Process, error)) *redisproc.Process {
	t.Helper()
	Require(t)
	if *dir == "" {
		*dir = t.TempDir()
	}
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	p, err := start(ctx)
	if err != nil {
		t.Fatalf("testredis: %v", err)
	}
	cleanup(t, p.Close, p)
	return p
}

// StartTopology starts a master, replicas and Sentinels for the test, and
// closes them all when the test ends. opts.Dir defaults to a new
// t.TempDir().
func StartTopology(t testing.TB, opts redisproc.TopologyOptions) *redisproc.Topology {
	t.Helper()
	Require(t)
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
	}
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	topo, err := redisproc.StartTopology(ctx, opts)
	if err != nil {
		t.Fatalf("testredis: %v", err)
	}
	procs := append([]*redisproc.Process{topo.Master}, topo.Replicas...)
	cleanup(t, topo.Close, append(procs, topo.Sentinels...)...)
	return topo
}

// cleanup registers closing, preceded by a log dump if the test failed.
// t.TempDir registered its removal earlier, so it runs after this and the
// logs are still there.
func cleanup(t testing.TB, closeFn func() error, procs ...*redisproc.Process) {
	t.Cleanup(func() {
		err := closeFn()
		if t.Failed() {
			for _, p := range procs {
				t.Logf("testredis: last %d lines of %s (%s):\n%s", logLines, p.Addr, p.LogPath(), p.LogTail(logLines))
			}
		}
		if err != nil {
			t.Errorf("testredis: %v", err)
		}
	})
}
