package main

import (
	"crypto/tls"
	"fmt"
	"time"
)

// keyPairFile is a certificate and key given by file: the client pair
// (--tls.cert-file, --tls.key-file) or the one served to clients
// (--proxy.tls-cert-file, --proxy.tls-key-file). It follows its files (see
// followed), so that a renewed certificate (cert-manager, an ACME client)
// is presented on the next connection without a restart; a renewal caught
// half written, or one that does not parse, keeps the last good pair.
type keyPairFile struct {
	*followed[*tls.Certificate]
}

// loadKeyPairFile reads the pair once; an error here is a usage error.
// certFlag and keyFlag name the flags that gave the files.
func loadKeyPairFile(cert, key, certFlag, keyFlag string) (*keyPairFile, error) {
	k := &keyPairFile{&followed[*tls.Certificate]{
		files: []flagFile{{cert, certFlag}, {key, keyFlag}},
		read: func() (*tls.Certificate, error) {
			pair, err := tls.LoadX509KeyPair(cert, key)
			if err != nil {
				return nil, fmt.Errorf("%s, %s: %w", certFlag, keyFlag, err)
			}
			return &pair, nil
		},
		failedMsg: "TLS certificate and key not usable as they are now; keeping the pair read last",
		readMsg:   "TLS certificate and key read again; new connections present them",
		attrs:     []any{"cert_file", cert},
		readAttrs: func(p *tls.Certificate) []any {
			if p.Leaf == nil {
				return nil
			}
			return []any{"not_after", p.Leaf.NotAfter}
		},
	}}
	if err := k.reload(); err != nil {
		return nil, err
	}
	return k, nil
}

// getClient is tls.Config.GetClientCertificate, and getServer
// tls.Config.GetCertificate: the pair as the files are now.
func (k *keyPairFile) getClient(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	return k.get(), nil
}

func (k *keyPairFile) getServer(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return k.get(), nil
}

// notAfter is when the pair in use expires; zero when unknown.
func (k *keyPairFile) notAfter() time.Time {
	if p := k.held(); p != nil && p.Leaf != nil {
		return p.Leaf.NotAfter
	}
	return time.Time{}
}

// expiry is notAfter for a metric, also on a nil pair (none given).
func (k *keyPairFile) expiry() func() time.Time {
	if k == nil {
		return func() time.Time { return time.Time{} }
	}
	return k.notAfter
}
