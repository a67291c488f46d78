package main

import (
	"fmt"
	"os"
	"testing"
	"time"

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
	code := m.Run()
	if code == 0 {
		if err := noGoroutinesLeft(5 * time.Second); err != nil {
			fmt.Fprintf(os.Stderr, "goroutines left behind after the tests passed: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

// noGoroutinesLeft polls goleak until the deadline. go-redis's pool ends
// a failed dial's retry goroutine only after a 1 s sleep, even once the
// client is closed; goleak.VerifyTestMain gives up after about 0.4 s.
// What is still there after the deadline is a leak.
func noGoroutinesLeft(within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		err := goleak.Find()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
}
