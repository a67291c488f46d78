// Package testredis starts real redis-server and redis-sentinel processes
// for tests, on loopback ports chosen at run time, and stops them when the
// test ends.
package testredis

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/sentproxy/sentproxy/internal/redisproc"
)

// Require skips the test when the Redis binaries are missing, except in CI
// (the CI variable is set), where it fails: a skipped failover test there
// would be a silent hole, and .ci/run installs the binaries.
func Require(t testing.TB) {
	t.Helper()
	if _, _, err := redisproc.FindBinaries(); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("CI is set and the Redis binaries are missing: %v", err)
		}
		t.Skipf("skipping: %v", err)
	}
}

// StartServer starts one redis-server in a temporary directory.
func StartServer(t testing.TB, opts redisproc.Options) *redisproc.Process {
	t.Helper()
	Require(t)
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p, err := redisproc.StartServer(ctx, opts)
	if err != nil {
		t.Fatalf("start redis-server: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("redis-server %s log tail:\n%s", p.Addr, p.LogTail(30))
		}
		p.Close()
	})
	return p
}

// StartTopology starts a master, replicas and Sentinels in a temporary
// directory and returns once they have converged.
func StartTopology(t testing.TB, opts redisproc.TopologyOptions) *redisproc.Topology {
	t.Helper()
	Require(t)
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	topo, err := redisproc.StartTopology(ctx, opts)
	if err != nil {
		t.Fatalf("start topology: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, p := range append(append([]*redisproc.Process{topo.Master}, topo.Replicas...), topo.Sentinels...) {
				t.Logf("%s log tail:\n%s", p.Addr, p.LogTail(30))
			}
		}
		topo.Close()
	})
	return topo
}
