// Package tlsaddr fits a TLS client configuration to the address it dials,
// for discovery (the Sentinels, the ROLE check) and proxy (the master) alike.
package tlsaddr
