package tlsaddr

import (
	"crypto/tls"
	"crypto/x509"
	"net"
)

// For is cfg for a connection to addr (host:port). When cfg names no
// ServerName, a copy whose ServerName is addr's host, which Go checks
// against the certificate's DNS or IP names. When roots is set, a copy
// whose RootCAs is what roots returns now: the CAs of a file that is
// followed, so that a renewed CA bundle applies to the next dial. Else cfg
// itself. A copy shares cfg's ClientSessionCache, so sessions still resume.
func For(cfg *tls.Config, addr string, roots func() *x509.CertPool) *tls.Config {
	if cfg.ServerName != "" && roots == nil {
		return cfg
	}
	c := cfg.Clone()
	if c.ServerName == "" {
		if host, _, err := net.SplitHostPort(addr); err == nil {
			c.ServerName = host
		}
	}
	if roots != nil {
		c.RootCAs = roots()
	}
	return c
}
