package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"sync"
)

// caFile is a PEM file of CA certificates given by flag: --tls.ca-file
// (the CAs that sign the Sentinels' and the master's certificates) or
// --proxy.tls-client-ca-file (those that sign the clients'). It follows
// its file (see followed), so that a CA bundle that cert-manager or an
// operator renews applies to the next connection without a restart; a file
// caught half written, or one with no certificate in it, keeps the last
// good pool.
//
// Connections already open are not checked again, and a TLS session
// resumed from before the change was verified against the pool of its
// time, as with any change of CA in Go's TLS; a CA withdrawn because it
// was compromised still calls for a restart.
type caFile struct {
	*followed[*x509.CertPool]
}

// loadCAFile reads the file once; an error here is a usage error.
func loadCAFile(path, flag string) (*caFile, error) {
	c := &caFile{&followed[*x509.CertPool]{
		files: []flagFile{{path, flag}},
		read: func() (*x509.CertPool, error) {
			pem, err := os.ReadFile(path)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", flag, err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("%s=%s: no PEM certificate in it", flag, path)
			}
			return pool, nil
		},
		failedMsg: "CA file not usable as it is now; keeping the CA certificates read last",
		readMsg:   "CA file read again; new connections are verified against it",
		attrs:     []any{"flag", flag, "file", path},
	}}
	if err := c.reload(); err != nil {
		return nil, err
	}
	return c, nil
}

// serverConfig is tls.Config.GetConfigForClient for the config clients
// connect with (base): base with the pool as it is now as its ClientCAs.
// The copy is made again only when the pool changes, not per handshake.
func (c *caFile) serverConfig(base *tls.Config) func(*tls.ClientHelloInfo) (*tls.Config, error) {
	var (
		mu   sync.Mutex
		made *tls.Config
	)
	return func(*tls.ClientHelloInfo) (*tls.Config, error) {
		pool := c.get()
		mu.Lock()
		defer mu.Unlock()
		if made == nil || made.ClientCAs != pool {
			made = base.Clone()
			made.GetConfigForClient = nil
			made.ClientCAs, made.ClientAuth = pool, tls.RequireAndVerifyClientCert
		}
		return made, nil
	}
}

// roots is c.get, and nil on a nil c (no CA file: the system's roots).
func (c *caFile) roots() func() *x509.CertPool {
	if c == nil {
		return nil
	}
	return c.get
}
