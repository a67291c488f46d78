package notify

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"time"
)

// The <role> and <state> arguments of a client-reconfig-script. Sentinel
// passes "leader" from the Sentinel that ran the failover and "observer"
// from the others; sentproxy runs the script once per switch, as the one
// that acted on it, hence "leader". For <state>, the example sentinel.conf
// of older Redis versions and redis.io say "failover", but sentinel.c
// passes "start" (sentinelCallClientReconfScript, at both of its call
// sites; observed from redis-sentinel 7.0.15 too), and the sentinel.conf
// of current versions says "start". That is what existing scripts see.
const (
	ExecRole  = "leader"
	ExecState = "start"
)

// maxStderr bounds how much of the program's stderr is kept for the log.
const maxStderr = 2 << 10

// errExecTimeout is the cause of a run's context when its timeout fired.
var errExecTimeout = errors.New("timed out")

// ReconfigArgs returns the arguments Sentinel passes a
// client-reconfig-script for ev:
//
//	<master-name> leader start <from-ip> <from-port> <to-ip> <to-port>
//
// IPv6 addresses are passed without brackets, as Sentinel does. It fails
// when ev has no old or no new address, or one that is not host:port.
func ReconfigArgs(ev Event) ([]string, error) {
	fromHost, fromPort, err := net.SplitHostPort(ev.OldAddr)
	if err != nil {
		return nil, fmt.Errorf("notify: old master address %q: %w", ev.OldAddr, err)
	}
	toHost, toPort, err := net.SplitHostPort(ev.NewAddr)
	if err != nil {
		return nil, fmt.Errorf("notify: new master address %q: %w", ev.NewAddr, err)
	}
	return []string{ev.MasterName, ExecRole, ExecState, fromHost, fromPort, toHost, toPort}, nil
}

// execSink runs the client-reconfig-script.
type execSink struct {
	path    string
	env     []string
	timeout time.Duration
}

// skip reports the events Sentinel would not run a client-reconfig-script
// for: it runs one only when a master moved from one address to another,
// never for "no master" (a withdrawal), nor for the first master, nor for
// the same master verified again.
func (s *execSink) skip(ev Event) bool {
	return ev.NewAddr == "" || ev.OldAddr == "" || ev.OldAddr == ev.NewAddr
}

func (s *execSink) send(ctx context.Context, ev Event) error {
	args, err := ReconfigArgs(ev)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeoutCause(ctx, s.timeout, errExecTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, s.path, args...)
	cmd.Env = s.env
	stderr := &boundedBuffer{max: maxStderr}
	cmd.Stderr = stderr // stdin and stdout are /dev/null
	killProcessGroup(cmd)
	// A grandchild that outlives the kill may hold stderr open; do not
	// wait for it beyond this.
	cmd.WaitDelay = time.Second

	err = cmd.Run()
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		if context.Cause(ctx) == errExecTimeout {
			err = fmt.Errorf("killed after the %s timeout", s.timeout)
		} else {
			err = fmt.Errorf("cancelled: %w", context.Cause(ctx))
		}
	}
	if out := stderr.String(); out != "" {
		return fmt.Errorf("notify: exec %s: %w; stderr: %q", s.path, err, out)
	}
	return fmt.Errorf("notify: exec %s: %w", s.path, err)
}

// boundedBuffer keeps the first max bytes written to it and counts the rest.
type boundedBuffer struct {
	max     int
	b       []byte
	dropped int
}

func (b *boundedBuffer) Write(p []byte) (int, error) {
	n := min(len(p), b.max-len(b.b))
	b.b = append(b.b, p[:n]...)
	b.dropped += len(p) - n
	return len(p), nil
}

func (b *boundedBuffer) String() string {
	s := oneLine(string(b.b), b.max)
	if b.dropped > 0 {
		s += fmt.Sprintf(" [%d more bytes]", b.dropped)
	}
	return s
}
