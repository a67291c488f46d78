package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
)

// caFile is a PEM file of CA certificates given by flag: --tls.ca-file
// (the CAs that sign the Sentinels' and the master's certificates) or
// --proxy.tls-client-ca-file (those that sign the clients'). Like
// keyPairFile, it is read again when it changes (checked at each TLS
// handshake, by modification time and size), so that a CA bundle that
// cert-manager or an operator renews applies to the next connection
// without a restart. A file caught half written, or one with no
// certificate in it, keeps the last good pool; the failure is logged once.
//
// Connections already open are not checked again, and a TLS session
// resumed from before the change was verified against the pool of its
// time, as with any change of CA in Go's TLS; a CA withdrawn because it
// was compromised still calls for a restart.
type caFile struct {
	path, flag string // flag named path, for errors
	log        atomic.Pointer[slog.Logger]

	mu      sync.Mutex
	pool    *x509.CertPool
	stamp   fileStamp
	failing bool
}

// loadCAFile reads the file once; an error here is a usage error.
func loadCAFile(path, flag string) (*caFile, error) {
	c := &caFile{path: path, flag: flag}
	if err := c.reload(); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *caFile) setLogger(l *slog.Logger) { c.log.Store(l) }

// reload reads the file; the caller holds c.mu, or c is not shared yet.
func (c *caFile) reload() error {
	st, err := stampOf(c.path)
	if err != nil {
		return fmt.Errorf("%s: %w", c.flag, err)
	}
	pem, err := os.ReadFile(c.path)
	if err != nil {
		return fmt.Errorf("%s: %w", c.flag, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return fmt.Errorf("%s=%s: no PEM certificate in it", c.flag, c.path)
	}
	c.pool, c.stamp = pool, st
	return nil
}

// get is the pool as the file is now.
func (c *caFile) get() *x509.CertPool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.current()
}

// current is get's work; the caller holds c.mu.
func (c *caFile) current() *x509.CertPool {
	if st, err := stampOf(c.path); err == nil && st == c.stamp {
		return c.pool
	}
	log := c.log.Load()
	if err := c.reload(); err != nil {
		if !c.failing && log != nil {
			log.Warn("CA file not usable as it is now; keeping the CA certificates read last", "flag", c.flag, "file", c.path, "err", err)
		}
		c.failing = true
		return c.pool
	}
	if log != nil {
		log.Info("CA file read again; new connections are verified against it", "flag", c.flag, "file", c.path)
	}
	c.failing = false
	return c.pool
}

// serverConfig is tls.Config.GetConfigForClient for the config clients
// connect with (base): base with the pool as it is now as its ClientCAs.
// The copy is made again only when the pool changes, not per handshake.
func (c *caFile) serverConfig(base *tls.Config) func(*tls.ClientHelloInfo) (*tls.Config, error) {
	var made *tls.Config // guarded by c.mu
	return func(*tls.ClientHelloInfo) (*tls.Config, error) {
		c.mu.Lock()
		defer c.mu.Unlock()
		if pool := c.current(); made == nil || made.ClientCAs != pool {
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
