//go:build !unix

package notify

import "os/exec"

// killProcessGroup leaves exec's default in place: cancellation kills the
// program itself, not what it started.
func killProcessGroup(*exec.Cmd) {}
