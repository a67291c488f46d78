package lab

import (
	"context"
	"os/exec"
	"runtime"
	"strings"
	"time"
)

// DateFormat is how reports give the time of a run.
const DateFormat = "2006-01-02 15:04 UTC"

// Env describes where and how a bench program ran, for its report header:
// the numbers mean little without the machine, the versions and the exact
// command behind them.
type Env struct {
	Command   string
	Date      string // when the program started, in DateFormat
	NProc     string
	Redis     string
	HAProxy   string
	Revision  string
	GoVersion string
	Note      string // printed under the command line when set
}

// Environment reads the machine and build facts for a report. program is the
// command as a user types it (e.g. "go run ./bench/drill") and args its flags.
// A fact that cannot be read says why instead of failing the run.
func Environment(ctx context.Context, root, program string, args []string) Env {
	out := func(name string, arg ...string) string {
		cmd := exec.CommandContext(ctx, name, arg...)
		cmd.Dir = root
		b, err := cmd.CombinedOutput()
		if err != nil {
			return "unknown (" + name + ": " + err.Error() + ")"
		}
		s, _, _ := strings.Cut(strings.TrimSpace(string(b)), "\n")
		return s
	}
	rev := out("git", "rev-parse", "--short", "HEAD")
	if s := out("git", "status", "--porcelain", "--untracked-files=no"); s != "" && !strings.HasPrefix(s, "unknown") {
		rev += " + uncommitted changes"
	}
	if len(args) > 0 {
		program += " " + strings.Join(args, " ")
	}
	return Env{
		Command:   program,
		Date:      time.Now().UTC().Format(DateFormat),
		NProc:     out("nproc"),
		Redis:     out("redis-server", "--version"),
		HAProxy:   out("haproxy", "-v"),
		Revision:  rev,
		GoVersion: runtime.Version(),
	}
}
