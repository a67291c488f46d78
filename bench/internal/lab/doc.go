// Package lab starts the processes a benchmark measures, on loopback ports
// chosen at run time: sentproxy from this checkout and HAProxy from the
// system, next to a topology from internal/redisproc. It also reads a
// process's CPU time and resident memory from /proc, which is how the bench
// programs report proxy cost per request and per connection.
//
// Every process is started by PID and stopped by that PID only.
package lab
