package tlsaddr

import (
	"crypto/tls"
	"net"
)

// For is cfg for a connection to addr (host:port): when cfg names no
// ServerName, a copy whose ServerName is addr's host, which Go checks
// against the certificate's DNS or IP names; else cfg itself. The copy
// shares cfg's ClientSessionCache, so sessions still resume.
func For(cfg *tls.Config, addr string) *tls.Config {
	if cfg.ServerName != "" {
		return cfg
	}
	c := cfg.Clone()
	if host, _, err := net.SplitHostPort(addr); err == nil {
		c.ServerName = host
	}
	return c
}
