package testutil

import (
	"testing"
	"time"
)

// Eventually polls cond every 2 ms until it holds, and fails t if it does
// not within timeout. It is for waiting on state that has no event to wait
// for (a metric, a server's client count), never for a fixed delay.
func Eventually(t testing.TB, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}
