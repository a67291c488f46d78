package discovery

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"syscall"

	"github.com/redis/go-redis/v9"
)

// View is one Sentinel's answer to SENTINEL MASTER <name>.
type View struct {
	Sentinel string   // the Sentinel's host:port
	Addr     string   // the master's host:port as announced; "" when unusable
	Epoch    int64    // config-epoch of the master's configuration
	Flags    []string // the master's flags as this Sentinel sees them (master, s_down, o_down, ...)
	Err      error    // why this Sentinel gave no usable view; nil when it did
	NotReady string   // set when the Sentinel answered but its address is a placeholder or does not resolve
}

// answered reports whether the Sentinel gave a usable reply (a not-ready
// address is one; an error reply is not).
func (v View) answered() bool { return v.Err == nil }

// errBadReply marks a reply this package could not use (a field missing or
// malformed), as opposed to no reply.
var errBadReply = errors.New("unusable reply")

// cause says in a few words why the view is unusable: the Sentinel's own
// error reply (a wrong master name, a refused password), an unusable reply,
// or no reply. Operators act differently on each, so "unreachable" must not
// stand for all three.
func (v View) cause() string {
	var (
		re redis.Error
		te tlsError
	)
	switch {
	case v.Err == nil:
		return ""
	case errors.Is(v.Err, redis.Nil):
		return "unusable reply"
	case errors.As(v.Err, &re):
		return re.Error()
	case noReply(v.Err):
		return "unreachable"
	case errors.As(v.Err, &te):
		// A handshake refused for a reason worth reading: a certificate.
		return te.Error()
	default:
		// Ours (errBadReply, errGuard) or go-redis's parser's.
		return "unusable reply"
	}
}

// noReply reports whether err means the Sentinel gave no reply at all: a
// failed dial or name lookup, a timeout, a reset or closed connection.
func noReply(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, redis.ErrClosed) || errors.Is(err, redis.ErrPoolTimeout) || errors.Is(err, redis.ErrPoolExhausted)
}

// noUsableAnswer is why no Sentinel backs any master when none gave a
// usable reply: "no Sentinel reachable" only when that is what happened.
func noUsableAnswer(views []View) string {
	var replied []string
	for _, sv := range views {
		if c := sv.cause(); c != "" && c != "unreachable" {
			replied = append(replied, fmt.Sprintf("%s answered %q", sv.Sentinel, c))
		}
	}
	if len(replied) == 0 {
		return "no Sentinel reachable"
	}
	return "no Sentinel gave a usable answer: " + strings.Join(replied, ", ")
}

func (v View) hasFlag(f string) bool { return slices.Contains(v.Flags, f) }

// verdict is what a set of views says about the master, before any ROLE check.
type verdict struct {
	addr     string // the candidate, valid when ok
	epoch    int64  // its config-epoch
	support  int    // Sentinels that report exactly (addr, epoch)
	answered int    // Sentinels that replied
	maxEpoch int64  // the newest config-epoch any Sentinel reported
	ok       bool   // a majority of the answering Sentinels back the newest configuration
	downHint bool   // a supporter flags the candidate s_down or o_down
	// failingOver names a Sentinel that reports a failover of the candidate
	// under way: it is about to be replaced, so nothing may be routed to it.
	failingOver string
	why         string // when !ok: why no candidate stands
}

// decide picks the master by agreement. get-master-addr-by-name answers
// even from a Sentinel cut off from its peers, so no single answer is
// trusted: a candidate needs a strict majority of the Sentinels that
// answered, and it must carry the newest config-epoch any of them reported.
// A newer epoch without a majority means a failover is being propagated
// (the leader and its followers switch at different moments) or the
// Sentinels disagree; either way the older configuration is doomed and
// nobody is chosen until they converge.
func decide(views []View) verdict {
	var v verdict
	type key struct {
		addr  string
		epoch int64
	}
	support := map[key]int{}
	first := true
	for _, sv := range views {
		if !sv.answered() {
			continue
		}
		v.answered++
		if first || sv.Epoch > v.maxEpoch {
			v.maxEpoch = sv.Epoch
			first = false
		}
		if sv.Addr != "" && sv.NotReady == "" {
			support[key{sv.Addr, sv.Epoch}]++
		}
	}
	if v.answered == 0 {
		v.why = noUsableAnswer(views)
		return v
	}
	var best key
	bestN := 0
	for k, n := range support {
		if n > bestN || (n == bestN && k.epoch > best.epoch) {
			best, bestN = k, n
		}
	}
	if bestN*2 <= v.answered {
		v.why = fmt.Sprintf("no address has a majority of the %d Sentinels that answered (%s)", v.answered, summarize(views))
		return v
	}
	v.addr, v.epoch, v.support = best.addr, best.epoch, bestN
	if best.epoch < v.maxEpoch {
		v.why = fmt.Sprintf("majority view %s at config-epoch %d is older than config-epoch %d reported by another Sentinel (%s)",
			best.addr, best.epoch, v.maxEpoch, summarize(views))
		return v
	}
	v.ok = true
	for _, sv := range views {
		// Only the Sentinel leading a failover flags it, at the start,
		// before it promotes a replica; the others follow later.
		if sv.answered() && sv.Addr == best.addr && sv.hasFlag("failover_in_progress") && v.failingOver == "" {
			v.failingOver = sv.Sentinel
		}
	}
	for _, sv := range views {
		if sv.answered() && sv.Addr == best.addr && sv.Epoch == best.epoch && (sv.hasFlag("s_down") || sv.hasFlag("o_down")) {
			v.downHint = true
		}
	}
	return v
}

// summarize renders the views for logs and errors: "s1=a@3 s2=b@4 s3=error".
func summarize(views []View) string {
	parts := make([]string, 0, len(views))
	for _, sv := range views {
		switch {
		case sv.Err != nil:
			parts = append(parts, fmt.Sprintf("%s=%q", sv.Sentinel, sv.cause()))
		case sv.NotReady != "":
			parts = append(parts, fmt.Sprintf("%s=not-ready@%d", sv.Sentinel, sv.Epoch))
		default:
			parts = append(parts, fmt.Sprintf("%s=%s@%d", sv.Sentinel, sv.Addr, sv.Epoch))
		}
	}
	return strings.Join(parts, " ")
}
