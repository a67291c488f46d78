package tlsaddr

import (
	"crypto/tls"
	"testing"
)

// An empty ServerName is taken from the address (IPv6 too) on a copy that
// keeps the session cache; a given one is kept, and so is cfg.
func TestFor(t *testing.T) {
	cache := tls.NewLRUClientSessionCache(0)
	base := &tls.Config{ClientSessionCache: cache}
	for addr, want := range map[string]string{"127.0.0.1:6379": "127.0.0.1", "[::1]:6379": "::1", "redis.internal:6380": "redis.internal"} {
		got := For(base, addr)
		if got.ServerName != want || got.ClientSessionCache != cache {
			t.Errorf("For(%s): ServerName %q, shared cache %v; want %q, true", addr, got.ServerName, got.ClientSessionCache == cache, want)
		}
	}
	if base.ServerName != "" {
		t.Errorf("For changed its argument: ServerName %q", base.ServerName)
	}
	named := &tls.Config{ServerName: "redis.example"}
	if got := For(named, "127.0.0.1:6379"); got != named {
		t.Errorf("For with a ServerName returned a copy (%q); want cfg itself", got.ServerName)
	}
}
