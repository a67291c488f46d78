// Package discovery learns which server is the master of a Redis master name
// from its Sentinels, and publishes every change.
//
// A Watcher starts from one or more Sentinel addresses and learns the others
// with SENTINEL SENTINELS. It decides by agreement, not by whoever answers
// first: it asks every known Sentinel SENTINEL MASTER, takes the address that
// a strict majority of the answering Sentinels report at the newest
// config-epoch any of them reports, and verifies it with ROLE. Only a
// verified address is published.
//
// Invariants:
//   - A Sentinel's +switch-master message only wakes the check; it never
//     moves traffic by itself. A subscription that is lost, silent or
//     re-established also triggers a check, and checks run on a timer, so a
//     missed message cannot strand consumers on a demoted master.
//   - A newer config-epoch seen without a majority withdraws the current
//     master (Update.Addr == ""): a failover is being propagated, and the
//     old master is doomed even if it still answers.
//   - A placeholder address (0.0.0.0, ::) or an announced hostname that does
//     not resolve means "not ready yet", never a switch.
//   - With no Sentinel reachable, the last verified master is kept while it
//     answers ROLE as master, and withdrawn once it does not. Sentinels that
//     answer with an error (a master name they do not monitor, a refused
//     password, a refused TLS handshake) count as no answer, but the reason
//     names what they said rather than "unreachable".
//   - Every connection the package opens is guarded: a reply whose headers
//     announce more than a few MiB is refused before go-redis allocates for
//     it, so a broken Sentinel cannot exhaust memory. Under TLS the guard
//     reads the plaintext. Passwords are asked for at each new connection
//     (Config.*PasswordFunc), so a rotated one applies without a restart.
//   - The package imports neither proxy nor metrics; it reports to an
//     Observer declared here and publishes on a channel.
//
// Typical usage:
//
//	w, err := discovery.New(discovery.Config{
//		MasterName: "mymaster",
//		Sentinels:  []string{"10.0.0.1:26379", "10.0.0.2:26379"},
//		Logger:     logger,
//	})
//	go w.Run(ctx)
//	for u := range w.Updates() { // closed when Run returns
//		route(u.Addr) // "" means: hold clients, no verified master
//	}
package discovery
