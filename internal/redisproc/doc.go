// Package redisproc starts and controls real redis-server and Sentinel
// processes on the loopback interface. It backs the integration tests
// (through internal/testredis) and the `sentproxy demo` subcommand, so it
// must stay free of any dependency on package testing.
//
// Everything it starts is an ordinary child process found on PATH; nothing
// is mocked. Ports are picked at run time, so many topologies can run side by
// side on one machine.
//
// Invariants:
//
//   - Only its own children are ever signalled. Signals go through the
//     os.Process handle returned by exec (a pidfd on Linux), never through a
//     bare PID or a process name, so a reused PID can never be hit.
//   - Every process it starts has its own directory and a log file in it
//     (LogPath). The child's stdout and stderr go to the same file, so even
//     errors printed before Redis opens its log (a bad config line) are kept,
//     and failures report the tail of that file.
//   - Every started process is reaped: Close kills it if needed and waits, and
//     is idempotent.
//   - Waiting for readiness or convergence is always a poll with a deadline,
//     never a fixed sleep.
//
// Children run in their own process group, so a Ctrl-C in the terminal
// reaches only the parent (the demo), which then shuts the children down in
// order. If the parent itself is SIGKILLed the children are left running;
// their directories hold the logs and configs to find them.
package redisproc
