//go:build !linux

package proxy

// EngineEpollSupported reports whether EngineEpoll can run here.
const EngineEpollSupported = false

// loopPair exists on Linux only; a session never holds one elsewhere.
type loopPair struct{}

func (*loopPair) abort() {}

type eventLoop struct{}

func (ss *session) runLoop() bool { return false }
