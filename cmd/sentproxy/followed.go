package main

import (
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// followed is a value read from files given by flags, read again when any
// of them changes (checked at each use, by modification time and size), so
// that a renewal applies to the next connection without a restart. A
// change that cannot be read (a file caught half written, a certificate
// that does not match its key) keeps the value read last; that failure is
// logged once, and each change that reads is logged too. keyPairFile and
// caFile are its two uses.
type followed[T any] struct {
	files []flagFile
	read  func() (T, error) // reads the files; its errors name the flags
	// failedMsg (a warning) and readMsg (info) are the log lines, with
	// attrs and, for readMsg, readAttrs of the new value.
	failedMsg, readMsg string
	attrs              []any
	readAttrs          func(T) []any
	log                atomic.Pointer[slog.Logger]

	mu      sync.Mutex
	val     T
	stamps  []fileStamp // of files when val was read
	failing bool
}

// flagFile is a file and the flag that named it, for errors.
type flagFile struct{ path, flag string }

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

func (f *followed[T]) setLogger(l *slog.Logger) { f.log.Store(l) }

// reload reads the files; the caller holds f.mu, or f is not shared yet.
// The stamps are taken first, so that a change during the read shows at
// the next check.
func (f *followed[T]) reload() error {
	stamps := make([]fileStamp, len(f.files))
	for i, ff := range f.files {
		st, err := stampOf(ff.path)
		if err != nil {
			return fmt.Errorf("%s: %w", ff.flag, err)
		}
		stamps[i] = st
	}
	v, err := f.read()
	if err != nil {
		return err
	}
	f.val, f.stamps = v, stamps
	return nil
}

// unchanged reports whether every file still has the stamp it had when
// val was read; the caller holds f.mu.
func (f *followed[T]) unchanged() bool {
	for i, ff := range f.files {
		if st, err := stampOf(ff.path); err != nil || st != f.stamps[i] {
			return false
		}
	}
	return true
}

// get is the value as the files are now.
func (f *followed[T]) get() T {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.unchanged() {
		return f.val
	}
	log := f.log.Load()
	// attrs[:n:n], so that append copies rather than writing into the
	// array f.attrs keeps for every later call.
	n := len(f.attrs)
	if err := f.reload(); err != nil {
		if !f.failing && log != nil {
			log.Warn(f.failedMsg, append(f.attrs[:n:n], "err", err)...)
		}
		f.failing = true
		return f.val
	}
	if log != nil {
		attrs := f.attrs[:n:n]
		if f.readAttrs != nil {
			attrs = append(attrs, f.readAttrs(f.val)...)
		}
		log.Info(f.readMsg, attrs...)
	}
	f.failing = false
	return f.val
}

// held is the value read last, without looking at the files.
func (f *followed[T]) held() T {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.val
}
