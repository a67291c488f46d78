package main

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// keyPairFile is a certificate and key given by file: the client pair
// (--tls.cert-file, --tls.key-file) or the one served to clients
// (--proxy.tls-cert-file, --proxy.tls-key-file). They are read again when
// either file changes (checked at each TLS handshake, by modification time
// and size), so that a renewed certificate (cert-manager, an ACME client)
// is presented on the next connection without a restart. A renewal caught
// half written, or one that does not parse, keeps the last good pair; the
// failure is logged once.
type keyPairFile struct {
	cert, key         string
	certFlag, keyFlag string // the flags that named them, for errors
	log               atomic.Pointer[slog.Logger]

	mu      sync.Mutex
	pair    *tls.Certificate
	stamp   [2]fileStamp // of cert and key when pair was read
	failing bool
}

type fileStamp struct {
	mod  time.Time
	size int64
}

func stampOf(path string) (fileStamp, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return fileStamp{}, err
	}
	return fileStamp{fi.ModTime(), fi.Size()}, nil
}

// loadKeyPairFile reads the pair once; an error here is a usage error.
// certFlag and keyFlag name the flags that gave the files.
func loadKeyPairFile(cert, key, certFlag, keyFlag string) (*keyPairFile, error) {
	k := &keyPairFile{cert: cert, key: key, certFlag: certFlag, keyFlag: keyFlag}
	if err := k.reload(); err != nil {
		return nil, err
	}
	return k, nil
}

func (k *keyPairFile) setLogger(l *slog.Logger) { k.log.Store(l) }

// reload reads both files; the caller holds k.mu, or k is not shared yet.
func (k *keyPairFile) reload() error {
	cs, err := stampOf(k.cert)
	if err != nil {
		return fmt.Errorf("%s: %w", k.certFlag, err)
	}
	ks, err := stampOf(k.key)
	if err != nil {
		return fmt.Errorf("%s: %w", k.keyFlag, err)
	}
	pair, err := tls.LoadX509KeyPair(k.cert, k.key)
	if err != nil {
		return fmt.Errorf("%s, %s: %w", k.certFlag, k.keyFlag, err)
	}
	k.pair, k.stamp = &pair, [2]fileStamp{cs, ks}
	return nil
}

// getClient is tls.Config.GetClientCertificate, and getServer
// tls.Config.GetCertificate: the pair as the files are now.
func (k *keyPairFile) getClient(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	return k.get(), nil
}

func (k *keyPairFile) getServer(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return k.get(), nil
}

func (k *keyPairFile) get() *tls.Certificate {
	k.mu.Lock()
	defer k.mu.Unlock()
	cs, cerr := stampOf(k.cert)
	ks, kerr := stampOf(k.key)
	if cerr == nil && kerr == nil && [2]fileStamp{cs, ks} == k.stamp {
		return k.pair
	}
	log := k.log.Load()
	err := k.reload()
	switch {
	case err != nil:
		if !k.failing && log != nil {
			log.Warn("TLS certificate and key not usable as they are now; keeping the pair read last", "cert_file", k.cert, "err", err)
		}
		k.failing = true
	default:
		if log != nil {
			attrs := []any{"cert_file", k.cert}
			if k.pair.Leaf != nil {
				attrs = append(attrs, "not_after", k.pair.Leaf.NotAfter)
			}
			log.Info("TLS certificate and key read again; new connections present them", attrs...)
		}
		k.failing = false
	}
	return k.pair
}

// notAfter is when the pair in use expires; zero when unknown.
func (k *keyPairFile) notAfter() time.Time {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.pair == nil || k.pair.Leaf == nil {
		return time.Time{}
	}
	return k.pair.Leaf.NotAfter
}

// expiry is notAfter for a metric, also on a nil pair (none given).
func (k *keyPairFile) expiry() func() time.Time {
	if k == nil {
		return func() time.Time { return time.Time{} }
	}
	return k.notAfter
}
