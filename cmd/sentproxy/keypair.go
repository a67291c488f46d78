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

// keyPairFile is the client certificate and key given as --tls.cert-file
// and --tls.key-file. They are read again when either file changes (checked
// at each TLS handshake, by modification time and size), so that a renewed
// certificate (cert-manager, an ACME client) is presented on the next
// connection without a restart. A renewal caught half written, or one that
// does not parse, keeps the last good pair; the failure is logged once.
type keyPairFile struct {
	cert, key string
	log       atomic.Pointer[slog.Logger]

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
func loadKeyPairFile(cert, key string) (*keyPairFile, error) {
	k := &keyPairFile{cert: cert, key: key}
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
		return fmt.Errorf("--tls.cert-file: %w", err)
	}
	ks, err := stampOf(k.key)
	if err != nil {
		return fmt.Errorf("--tls.key-file: %w", err)
	}
	pair, err := tls.LoadX509KeyPair(k.cert, k.key)
	if err != nil {
		return fmt.Errorf("--tls.cert-file, --tls.key-file: %w", err)
	}
	k.pair, k.stamp = &pair, [2]fileStamp{cs, ks}
	return nil
}

// get is tls.Config.GetClientCertificate: the pair as the files are now.
func (k *keyPairFile) get(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	cs, cerr := stampOf(k.cert)
	ks, kerr := stampOf(k.key)
	if cerr == nil && kerr == nil && [2]fileStamp{cs, ks} == k.stamp {
		return k.pair, nil
	}
	log := k.log.Load()
	err := k.reload()
	switch {
	case err != nil:
		if !k.failing && log != nil {
			log.Warn("TLS certificate and key not usable as they are now; keeping the pair read last", "err", err)
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
	return k.pair, nil
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
