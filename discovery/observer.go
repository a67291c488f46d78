package discovery

import "time"

// Observer receives the watcher's events. Implementations must be safe for
// concurrent use and must not block. Parameters are plain types so that an
// implementation (package metrics) needs no import of this package.
type Observer interface {
	// SentinelRequest is called after each SENTINEL MASTER query to one
	// Sentinel; err is nil when the Sentinel gave a usable answer.
	SentinelRequest(master, sentinel string, took time.Duration, err error)
	// SentinelsChecked is called after each check with how many Sentinels are
	// known, how many answered, and how many of those support the verified
	// master (0 when there is none).
	SentinelsChecked(master string, known, answered, agreeing int)
	// MasterChanged is called once per real change of the routed master.
	// newAddr is "" when the master was withdrawn (none verified).
	MasterChanged(master, oldAddr, newAddr, reason string)
	// SentinelForgotten is called when a learnt Sentinel is no longer
	// watched (down, and no longer named by its peers).
	SentinelForgotten(master, sentinel string)
}

type nopObserver struct{}

func (nopObserver) SentinelRequest(string, string, time.Duration, error) {}
func (nopObserver) SentinelsChecked(string, int, int, int)               {}
func (nopObserver) MasterChanged(string, string, string, string)         {}
func (nopObserver) SentinelForgotten(string, string)                     {}
