//go:build !linux

package proxy

// EngineEpollSupported reports whether EngineEpoll can run here.
const EngineEpollSupported = false

// DefaultEngine is the engine of a ModeTCP route whose Config.Engine is
// empty: EngineSplice here, EngineEpoll on Linux.
const DefaultEngine = EngineSplice

// loopPair exists on Linux only; a session never holds one elsewhere.
type loopPair struct{}

func (*loopPair) abort() {}

type eventLoop struct{}

func (ss *session) runLoop() bool { return false }
