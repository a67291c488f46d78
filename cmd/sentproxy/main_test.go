package main

import (
	"os"
	"testing"

	"go.uber.org/goleak"
)

// TestMain checks that no test leaves a goroutine behind, and lets a test
// run this binary as sentproxy itself (SENTPROXY_TEST_AS_MAIN=1): what
// `sentproxy run` does to the process (GOMAXPROCS) is seen only in a
// process of its own.
func TestMain(m *testing.M) {
	if os.Getenv("SENTPROXY_TEST_AS_MAIN") == "1" {
		main()
	}
	goleak.VerifyTestMain(m)
}
