// Package notify tells the outside world that the routed master changed: it
// runs a Sentinel-style client-reconfig-script and POSTs a JSON webhook.
//
// It imports only the standard library and knows nothing of Sentinel or of
// the proxy: callers hand it an [Event] after a switch or a withdrawal has
// taken effect.
//
// Invariants:
//
//   - [Notifier.Notify] never blocks on a sink. Each sink has its own
//     bounded queue and its own goroutine, so a webhook that hangs does not
//     hold up the script, and neither holds up the caller. When a queue is
//     full the oldest event in it is dropped (the newest describes the
//     current master, which is what a late notification should say), and
//     the drop counts as a failure.
//   - Events reach each sink one at a time, in the order they were
//     notified.
//   - The exec sink receives exactly the arguments Sentinel gives a
//     client-reconfig-script, "<master-name> leader start <from-ip>
//     <from-port> <to-ip> <to-port>", so existing scripts work unchanged.
//     Like Sentinel, it is not run when there is no new master (a
//     withdrawal) nor when the new master is the old one.
//   - The program runs without a shell, with a timeout; on timeout its
//     whole process group is killed.
//   - Webhook URLs may carry tokens: only their host is ever logged or put
//     into an error.
//   - [Notifier.Close] delivers what is queued, for at most
//     Config.DrainTimeout, then cancels what is still running.
//
// Typical usage:
//
//	n := notify.New(notify.Config{
//		Exec:    "/usr/local/bin/reconfig.sh",
//		Webhook: "https://hooks.example.com/services/T0/B0/XXXX",
//		Logger:  logger,
//	})
//	go n.Run(ctx)
//	defer n.Close()
//	...
//	// after the proxy switched to newAddr:
//	n.Notify(notify.Event{MasterName: "mymaster", OldAddr: oldAddr, NewAddr: newAddr, ...})
package notify
