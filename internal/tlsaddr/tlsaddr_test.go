package tlsaddr

import (
	"cmp"
	"crypto/tls"
	"crypto/x509"
	"testing"
)

// An empty ServerName is taken from the address (IPv6 too) on a copy that
// keeps the session cache; a given one is kept, and so is cfg.
func TestFor(t *testing.T) {
	cache := tls.NewLRUClientSessionCache(0)
	base := &tls.Config{ClientSessionCache: cache}
	for addr, want := range map[string]string{"127.0.0.1:6379": "127.0.0.1", "[::1]:6379": "::1", "redis.internal:6380": "redis.internal"} {
		got := For(base, addr, nil)
		if got.ServerName != want || got.ClientSessionCache != cache {
			t.Errorf("For(%s): ServerName %q, shared cache %v; want %q, true", addr, got.ServerName, got.ClientSessionCache == cache, want)
		}
	}
	if base.ServerName != "" {
		t.Errorf("For changed its argument: ServerName %q", base.ServerName)
	}
	named := &tls.Config{ServerName: "redis.example"}
	if got := For(named, "127.0.0.1:6379", nil); got != named {
		t.Errorf("For with a ServerName returned a copy (%q); want cfg itself", got.ServerName)
	}

	// With roots, each call takes the pool roots returns at that moment,
	// also when cfg names its ServerName, and cfg keeps its own.
	first, second := x509.NewCertPool(), x509.NewCertPool()
	pool := first
	roots := func() *x509.CertPool { return pool }
	for _, cfg := range []*tls.Config{base, named} {
		pool = first
		a := For(cfg, "127.0.0.1:6379", roots)
		pool = second
		b := For(cfg, "127.0.0.1:6379", roots)
		if a.RootCAs != first || b.RootCAs != second || cfg.RootCAs != nil {
			t.Errorf("For with roots (ServerName %q): RootCAs first %v, second %v, cfg's %v; want the pool of each call, cfg's untouched",
				cfg.ServerName, a.RootCAs == first, b.RootCAs == second, cfg.RootCAs)
		}
		if want := cmp.Or(cfg.ServerName, "127.0.0.1"); a.ServerName != want || a.ClientSessionCache != cfg.ClientSessionCache {
			t.Errorf("For with roots: ServerName %q, shared cache %v; want %q, true", a.ServerName, a.ClientSessionCache == cfg.ClientSessionCache, want)
		}
	}
}
