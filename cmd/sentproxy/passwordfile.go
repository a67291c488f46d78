package main

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
)

// passwordFile is a password given as --*.password-file. It is read again
// each time a new connection needs it, so that a rotated password (a
// Kubernetes Secret or a systemd credential updated in place) applies to the
// next connection without a restart, which would cut every client
// connection. Connections are pooled and kept, so this is a read now and
// then, not one per request.
//
// A re-read that fails, or finds the file empty while a password was in
// use (a file caught half rewritten), keeps the last password; the failure
// is logged once, and its end once.
type passwordFile struct {
	path string
	what string // "Sentinel" or "master", for the log
	log  atomic.Pointer[slog.Logger]

	mu      sync.Mutex
	last    string
	failing bool
}

// newPasswordFile wraps a password file whose first read gave initial.
func newPasswordFile(path, what, initial string) *passwordFile {
	return &passwordFile{path: path, what: what, last: initial}
}

func (p *passwordFile) setLogger(l *slog.Logger) { p.log.Store(l) }

// get returns the file's password as it is now, or the last one read.
func (p *passwordFile) get() string {
	pw, err := readPassword(p.path)
	p.mu.Lock()
	defer p.mu.Unlock()
	if err == nil && pw == "" && p.last != "" {
		err = errors.New("the file is empty")
	}
	log := p.log.Load()
	if err != nil {
		if !p.failing && log != nil {
			log.Warn("password file not readable; keeping the password read last",
				"password_of", p.what, "file", p.path, "err", err)
		}
		p.failing = true
		return p.last
	}
	if p.failing && log != nil {
		log.Info("password file readable again", "password_of", p.what, "file", p.path)
	}
	p.failing = false
	if pw != p.last && log != nil {
		log.Info("password file changed; new connections use the new password", "password_of", p.what, "file", p.path)
	}
	p.last = pw
	return pw
}

// readPassword reads a password file; a trailing newline is not part of the
// password.
func readPassword(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("read password file: %w", err)
	}
	return strings.TrimRight(string(b), "\r\n"), nil
}
