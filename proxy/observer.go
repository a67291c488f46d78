package proxy

import "time"

// Reasons a client connection was closed, as passed to Observer.ConnectionClosed.
// They are the values of the reason label of sentproxy_proxy_closed_connections_total.
const (
	ReasonClient         = "client"          // the client closed or reset its side
	ReasonUpstream       = "upstream"        // the master closed or reset its side
	ReasonMasterSwitch   = "master_switch"   // cut because the master changed or was withdrawn
	ReasonNoMaster       = "no_master"       // no verified master within the hold timeout
	ReasonDialError      = "dial_error"      // the master could not be dialled within the hold timeout
	ReasonShutdown       = "shutdown"        // force-closed when the drain timeout ran out, or refused (held, handshaking) once Shutdown began
	ReasonIdle           = "idle"            // idle longer than the idle timeout
	ReasonMaxConnections = "max_connections" // refused at the connection limit
	ReasonInternalError  = "internal_error"  // cut because the epoll engine's event loop failed (a bug)
	ReasonTLSHandshake   = "tls_handshake"   // the client's TLS handshake failed (Config.ClientTLS)
)

// Observer receives the proxy's events. Calls are made on the connection
// path, from many goroutines at once: implementations must be safe for
// concurrent use and must not block. Parameters are plain types so that an
// implementation (package metrics) needs no import of this package.
type Observer interface {
	// ConnectionAccepted is called once per accepted client connection.
	ConnectionAccepted(route string)
	// ConnectionClosed is called once per accepted client connection when it
	// is gone, with how long it lived and the bytes it moved each way.
	ConnectionClosed(route, reason string, lifetime time.Duration, clientToMaster, masterToClient int64)
	// UpstreamDialed is called after every dial to a master; err is nil on success.
	UpstreamDialed(route string, took time.Duration, err error)
}

type nopObserver struct{}

func (nopObserver) ConnectionAccepted(string)                                    {}
func (nopObserver) ConnectionClosed(string, string, time.Duration, int64, int64) {}
func (nopObserver) UpstreamDialed(string, time.Duration, error)                  {}
