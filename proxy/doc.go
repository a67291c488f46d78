// Package proxy forwards Redis client connections to the current master and
// cuts them over when the master changes.
//
// A Server knows only an address: it is told the master with SetMaster and
// told there is none with ClearMaster. It never asks Sentinel, so it can be
// tested with nothing but a redis-server (or any TCP peer).
//
// Invariants:
//   - Every upstream connection is registered under the address it was
//     dialled to, checked against the current master under the same lock
//     that SetMaster takes. When SetMaster returns, every connection to
//     another address has been closed on both legs, the master leg with a
//     reset so that nothing still queued in its socket buffer is sent.
//     No byte is written through this server to a replaced master after
//     SetMaster returns.
//   - While there is no master, a new client is held (its connection is
//     accepted and nothing is read from it) for up to Config.HoldTimeout. It
//     then gets a RESP error naming the master and the reason, and the close.
//   - In ModeTCP with EngineEpoll (Linux, and the default there) the
//     sockets leave Go's netpoller and a level-triggered epoll loop
//     (Config.EventLoops per Server, one by default) reads each message
//     once and writes it on at the end of the batch, keeping bytes only
//     while the other side's socket is full. A busy loop waits in
//     epoll_wait itself, as HAProxy does, keeping its P; at least one P
//     is always left to the rest of the process. After 5 ms with nothing
//     to do, or when no P can be spared, it parks on Go's netpoller like
//     any goroutine, its epoll descriptor in the netpoller's watch only
//     while it may park. A cut closes both descriptors from the cutting
//     goroutine under the connection's lock, so the invariant above holds
//     for both engines; a loop's goroutine exits when it serves no
//     connection, and a loop that cannot wait cuts its own connections
//     rather than the process.
//   - In ModeTCP with EngineSplice (the default elsewhere, and
//     --proxy.engine=splice) bytes are copied with io.Copy between the raw
//     *net.TCPConns, which the runtime turns into splice(2); connections
//     are never wrapped. Byte counts come from io.Copy's return values when
//     a connection ends. It costs a third system call per message and a
//     goroutine wake-up, which is why it is not the default on Linux.
//   - With Config.TLS the master leg is TLS (the client leg stays plain).
//     ModeTCP then copies through crypto/tls with EngineSplice's two
//     goroutines, as neither epoll nor splice(2) can carry TLS in user
//     space; a cut resets the TCP connection under the TLS one before
//     closing it, so not even a close_notify alert reaches the old master.
//   - In ModeRESP commands and replies are framed (internal/resp) and
//     forwarded as read, never re-encoded; a malformed command gets the
//     error Redis itself gives, then the close.
//   - When the client half-closes, the master's remaining replies are still
//     delivered. When the master's side ends, both legs are closed.
//   - There is no idle timeout by default: BLPOP and SUBSCRIBE connections
//     are idle legitimately.
//
// Typical usage:
//
//	srv := proxy.New(proxy.Config{Name: "mymaster", Logger: logger, Observer: m})
//	go srv.Serve(ln)
//	for u := range watcher.Updates() {
//		if u.Addr == "" {
//			srv.ClearMaster(u.Reason)
//		} else {
//			srv.SetMaster(u.Addr)
//		}
//	}
//	srv.Shutdown(ctx) // stop accepting, drain until ctx ends, then close
package proxy
