// Package metrics exposes sentproxy's Prometheus metrics.
//
// The package exports:
//
//   - [Metrics], created with [New], which records the proxy's and the
//     Sentinel watcher's events. It satisfies proxy.Observer and
//     discovery.Observer structurally, so neither of those packages imports
//     this one and this one imports neither of them; main wires them
//     together. It also has [Metrics.Cutover], which main calls once the proxy
//     routes to a newly revealed master.
//   - [NewRegistry], a registry preloaded with the Go runtime, process and
//     sentproxy_build_info collectors.
//   - [Handler], the HTTP handler that serves a registry in the Prometheus
//     exposition format.
//
// Every method of [Metrics] is nil-safe: a nil *Metrics is a valid observer
// that records nothing, so metrics can be switched off without a separate
// no-op type and without nil checks at the call sites.
//
// Label values are route and master names and Sentinel addresses, all of which
// come from configuration or from Sentinel's own view of its peers, so the
// number of series stays bounded. Client addresses are never used as labels.
//
// Typical use:
//
//	reg := metrics.NewRegistry()
//	m := metrics.New(reg)
//	// pass m as the proxy's and the watcher's Observer, then:
//	mux := http.NewServeMux()
//	mux.Handle("/metrics", metrics.Handler(reg))
package metrics
