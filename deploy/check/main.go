// Command check holds the checks of scripts/check-packaging.sh that need a real
// parser: the compose loader docker compose uses, the Dockerfile frontend and
// linter of BuildKit (what `docker build --check` runs), .dockerignore
// matching as docker does it, and the Kubernetes and Prometheus-operator API
// types. Where a file says how sentproxy is started, the check starts it the
// same way (as the same user where it can) on loopback ports and asks it.
//
//	checkpkg dockerfile REPO BINARY_OUT
//	checkpkg compose    REPO BINARY
//	checkpkg kube       REPO BINARY FILE...
//	checkpkg defaults   REPO BINARY
//	checkpkg lab        REPO BINARY
package main

import (
	"bytes"
	"context"
	"debug/elf"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
	"github.com/moby/buildkit/client/llb"
	"github.com/moby/buildkit/client/llb/sourceresolver"
	"github.com/moby/buildkit/frontend/dockerfile/dockerfile2llb"
	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/moby/patternmatcher"
	"github.com/moby/patternmatcher/ignorefile"
	digest "github.com/opencontainers/go-digest"
	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"gopkg.in/yaml.v3"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	sigsyaml "sigs.k8s.io/yaml"
)

var failures int

func fail(format string, a ...any) {
	failures++
	fmt.Printf("  FAIL: "+format+"\n", a...)
}

func ok(format string, a ...any) { fmt.Printf("  ok: "+format+"\n", a...) }

func note(format string, a ...any) { fmt.Printf("  note: "+format+"\n", a...) }

func must(err error, what string) {
	if err != nil {
		fmt.Printf("  FAIL: %s: %v\n", what, err)
		cleanup()
		os.Exit(1)
	}
}

var tempDirs []string

// tempDir makes a directory that cleanup removes.
func tempDir(pattern string) string {
	dir, err := os.MkdirTemp("", pattern)
	must(err, "temp dir")
	tempDirs = append(tempDirs, dir)
	return dir
}

func cleanup() {
	for _, d := range tempDirs {
		os.RemoveAll(d)
	}
}

func main() {
	if len(os.Args) < 3 {
		fmt.Fprintln(os.Stderr, "usage: checkpkg dockerfile|compose|kube|defaults REPO ...")
		os.Exit(2)
	}
	repo := os.Args[2]
	switch os.Args[1] {
	case "dockerfile":
		checkDockerfile(repo, os.Args[3])
	case "compose":
		checkCompose(repo, os.Args[3])
	case "kube":
		checkKube(repo, os.Args[3], os.Args[4:])
	case "defaults":
		checkDefaults(repo, os.Args[3])
	case "lab":
		checkLab(repo, os.Args[3])
	default:
		fmt.Fprintln(os.Stderr, "checkpkg: unknown check", os.Args[1])
		os.Exit(2)
	}
	cleanup()
	if failures > 0 {
		fmt.Printf("  %d check(s) failed\n", failures)
		os.Exit(1)
	}
}

// ---------------------------------------------------------------- Dockerfile

// imageConfig is what the final stage of the Dockerfile gives a container.
type imageConfig struct {
	User        string
	Env         map[string]string
	Entrypoint  []string
	Cmd         []string
	Healthcheck []string
	HealthTO    time.Duration
	Expose      []string
}

// offlineResolver answers BuildKit's questions about base images without a
// registry: an empty Linux image.
type offlineResolver struct{}

func (offlineResolver) ResolveImageConfig(_ context.Context, ref string, _ sourceresolver.Opt) (string, digest.Digest, []byte, error) {
	cfg := `{"architecture":"amd64","os":"linux","rootfs":{"type":"layers"},"config":{"Env":["PATH=/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]}}`
	return ref, digest.FromString(ref), []byte(cfg), nil
}

func parseDockerfile(repo string) ([]instructions.Stage, []byte) {
	file := filepath.Join(repo, "Dockerfile")
	dt, err := os.ReadFile(file)
	must(err, "read Dockerfile")

	// The BuildKit Dockerfile frontend, every lint rule on, as
	// `docker build --check` runs it.
	sm := llb.NewSourceMap(nil, "Dockerfile", "Dockerfile", dt)
	sm.Definition = &llb.Definition{}
	res, err := dockerfile2llb.DockerfileLint(context.Background(), dt, dockerfile2llb.ConvertOpt{
		MetaResolver: offlineResolver{},
		SourceMap:    sm,
	})
	must(err, "lint Dockerfile")
	if res.Error != nil {
		fail("Dockerfile does not build: %s", res.Error.Message)
	}
	for _, w := range res.Warnings {
		line := 0
		if w.Location != nil && len(w.Location.Ranges) > 0 {
			line = int(w.Location.Ranges[0].Start.Line)
		}
		fail("Dockerfile:%d: %s: %s", line, w.RuleName, w.Detail)
	}
	if res.Error == nil && len(res.Warnings) == 0 {
		ok("Dockerfile parses and passes BuildKit's checks (docker build --check rules)")
	}

	ast, err := parser.Parse(bytes.NewReader(dt))
	must(err, "parse Dockerfile")
	for _, w := range ast.Warnings {
		fail("Dockerfile: %s", w.Short)
	}
	stages, metaArgs, err := instructions.Parse(ast.AST, nil)
	must(err, "parse Dockerfile instructions")
	// FROM lines with the global ARGs' defaults in place.
	for i := range stages {
		for _, a := range metaArgs {
			for _, kv := range a.Args {
				if kv.Value != nil {
					stages[i].BaseName = strings.ReplaceAll(stages[i].BaseName, "${"+kv.Key+"}", *kv.Value)
					stages[i].BaseName = strings.ReplaceAll(stages[i].BaseName, "$"+kv.Key, *kv.Value)
				}
			}
		}
	}
	// The Go image is the go.mod's release.
	if gomod, err := os.ReadFile(filepath.Join(repo, "go.mod")); err == nil {
		if m := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindSubmatch(gomod); m != nil {
			for _, st := range stages {
				if strings.HasPrefix(st.BaseName, "golang:") && !strings.HasPrefix(st.BaseName, "golang:"+string(m[1])) {
					fail("build stage %s, but go.mod says go %s", st.BaseName, m[1])
				}
			}
		}
	}
	return stages, dt
}

func checkDockerfile(repo, binOut string) {
	stages, _ := parseDockerfile(repo)
	if len(stages) < 2 {
		fail("Dockerfile: want a multi-stage build, got %d stage(s)", len(stages))
		return
	}
	ok("%d stages: %s", len(stages), stageNames(stages))
	final := stages[len(stages)-1]
	build := stages[0]
	for _, s := range stages[:len(stages)-1] {
		if strings.Contains(s.BaseName, "golang:") {
			build = s
		}
	}
	if !strings.HasPrefix(build.BaseName, "golang:") || !strings.Contains(build.BaseName, "bookworm") {
		fail("build stage base %q: want the official Go image on bookworm", build.BaseName)
	} else {
		ok("build stage %q from %s", build.Name, build.BaseName)
	}
	switch {
	case final.BaseName == "scratch", strings.Contains(final.BaseName, "distroless/static"):
		ok("final stage from %s", final.BaseName)
	default:
		fail("final stage base %q: want scratch or distroless static", final.BaseName)
	}

	// The build stage's RUN lines, as they will run.
	var goBuild string
	var argsBefore []string
	args := map[string]bool{}
	workdir := "/"
	for _, c := range build.Commands {
		switch c := c.(type) {
		case *instructions.ArgCommand:
			for _, a := range c.Args {
				args[a.Key] = true
			}
		case *instructions.WorkdirCommand:
			workdir = c.Path
		case *instructions.RunCommand:
			line := strings.Join(c.CmdLine, " ")
			if strings.Contains(line, "go build") {
				goBuild = line
				for k := range args {
					argsBefore = append(argsBefore, k)
				}
			}
		}
	}
	if goBuild == "" {
		fail("build stage has no RUN ... go build")
		return
	}
	for _, want := range []string{"CGO_ENABLED=0", "-trimpath", `-s -w`,
		"-X github.com/prometheus/common/version.Version=${VERSION}",
		"-X github.com/prometheus/common/version.Revision=${REVISION}"} {
		if !strings.Contains(goBuild, want) {
			fail("go build line lacks %q", want)
		}
	}
	for _, a := range []string{"VERSION", "REVISION"} {
		if !slices.Contains(argsBefore, a) {
			fail("ARG %s is not declared in the build stage before go build", a)
		}
	}

	// The binary the final stage takes from the build stage and runs.
	var copySrc string
	cfg := finalConfig(final)
	if len(cfg.Entrypoint) == 0 {
		fail("final stage has no ENTRYPOINT")
		return
	}
	for _, c := range final.Commands {
		if c, isCopy := c.(*instructions.CopyCommand); isCopy && c.From == build.Name && len(c.SourcePaths) == 1 && c.DestPath == cfg.Entrypoint[0] {
			copySrc = c.SourcePaths[0]
		}
	}
	if copySrc == "" {
		fail("ENTRYPOINT %s is not a file copied from stage %q", cfg.Entrypoint[0], build.Name)
		return
	}
	checkImageConfig(cfg)

	// The build context as .dockerignore makes it, and the build stage's
	// commands run in a copy of it: what `docker build` would compile.
	ctxDir := tempDir("checkpkg-context-")
	n, size := copyContext(repo, ctxDir)
	ok("build context per .dockerignore: %d files, %d KiB", n, size/1024)
	outDir := filepath.Join(ctxDir, ".out")
	script := strings.ReplaceAll(goBuild, path.Dir(copySrc)+"/", outDir+"/")
	if strings.HasPrefix(workdir, "/") {
		script = strings.ReplaceAll(script, " "+workdir+"/", " "+ctxDir+"/")
	}
	cmd := exec.Command("sh", "-ec", script)
	cmd.Dir = ctxDir
	cmd.Env = append(os.Environ(), "VERSION=checkpkg-1.2.3", "REVISION=checkpkg-rev",
		"TARGETOS=linux", "TARGETARCH="+goEnv("GOARCH"), "GOFLAGS=-buildvcs=false")
	out, err := cmd.CombinedOutput()
	if err != nil {
		fail("the build stage's go build fails in the .dockerignore'd context: %v\n%s", err, out)
		return
	}
	bin := filepath.Join(outDir, path.Base(copySrc))
	ok("the build stage's go build runs in that context")
	if f, err := elf.Open(bin); err != nil {
		fail("%s: %v", bin, err)
	} else {
		static := true
		for _, p := range f.Progs {
			if p.Type == elf.PT_INTERP {
				static = false
			}
		}
		libs, _ := f.ImportedLibraries()
		f.Close()
		if !static || len(libs) > 0 {
			fail("the binary is dynamically linked (%v): it cannot run on %s", libs, final.BaseName)
		} else {
			ok("the binary is static (runs on %s)", final.BaseName)
		}
	}
	vout, err := exec.Command(bin, "version").CombinedOutput()
	if err != nil || !strings.Contains(string(vout), "checkpkg-1.2.3") || !strings.Contains(string(vout), "checkpkg-rev") {
		fail("version of the image's binary: %v: %s", err, vout)
	} else {
		ok("the binary reports the build args: %s", strings.TrimSpace(string(vout)))
	}
	must(copyFile(bin, binOut, 0o755), "keep the binary")

	// The container as the image defines it.
	liveImage(bin, cfg)
}

func stageNames(stages []instructions.Stage) string {
	var s []string
	for _, st := range stages {
		name := st.Name
		if name == "" {
			name = "(unnamed)"
		}
		s = append(s, name+" <- "+st.BaseName)
	}
	return strings.Join(s, ", ")
}

func finalConfig(final instructions.Stage) imageConfig {
	cfg := imageConfig{Env: map[string]string{}}
	for _, c := range final.Commands {
		switch c := c.(type) {
		case *instructions.UserCommand:
			cfg.User = c.User
		case *instructions.EnvCommand:
			for _, kv := range c.Env {
				cfg.Env[kv.Key] = kv.Value
			}
		case *instructions.EntrypointCommand:
			if c.PrependShell {
				fail("ENTRYPOINT in shell form: there is no shell in the image")
			}
			cfg.Entrypoint = c.CmdLine
		case *instructions.CmdCommand:
			if c.PrependShell {
				fail("CMD in shell form: there is no shell in the image")
			}
			cfg.Cmd = c.CmdLine
		case *instructions.HealthCheckCommand:
			cfg.Healthcheck = c.Health.Test
			cfg.HealthTO = c.Health.Timeout
		case *instructions.ExposeCommand:
			cfg.Expose = append(cfg.Expose, c.Ports...)
		}
	}
	return cfg
}

func checkImageConfig(cfg imageConfig) {
	uid, gid, found := strings.Cut(cfg.User, ":")
	u, err := strconv.Atoi(uid)
	if err != nil || u == 0 || (found && gid == "0") {
		fail("USER %q: want a numeric non-root user", cfg.User)
	} else {
		ok("USER %s (numeric, non-root)", cfg.User)
	}
	for _, p := range []string{"6379", "9736"} {
		if !slices.Contains(cfg.Expose, p) && !slices.Contains(cfg.Expose, p+"/tcp") {
			fail("EXPOSE lacks %s", p)
		}
	}
	if !slices.Equal(cfg.Cmd, []string{"run"}) {
		fail("CMD %q: want [\"run\"]", cfg.Cmd)
	}
	if cfg.Env["SENTPROXY_PROXY_LISTEN_ADDRESS"] != "0.0.0.0:6379" || cfg.Env["SENTPROXY_WEB_LISTEN_ADDRESS"] != "0.0.0.0:9736" {
		fail("ENV: want SENTPROXY_PROXY_LISTEN_ADDRESS=0.0.0.0:6379 and SENTPROXY_WEB_LISTEN_ADDRESS=0.0.0.0:9736, got %v", cfg.Env)
	}
	if len(cfg.Healthcheck) < 2 || cfg.Healthcheck[0] != "CMD" {
		fail("HEALTHCHECK %q: want the exec form (CMD [...]): there is no shell", cfg.Healthcheck)
	} else {
		ok("EXPOSE %s, ENTRYPOINT %q, CMD %q, HEALTHCHECK %q", strings.Join(cfg.Expose, " "), cfg.Entrypoint, cfg.Cmd, cfg.Healthcheck[1:])
	}
}

// copyContext copies what .dockerignore lets into the build context.
func copyContext(repo, dst string) (files int, size int64) {
	var patterns []string
	if f, err := os.Open(filepath.Join(repo, ".dockerignore")); err == nil {
		patterns, err = ignorefile.ReadAll(f)
		f.Close()
		must(err, "read .dockerignore")
	}
	pm, err := patternmatcher.New(patterns)
	must(err, ".dockerignore patterns")
	for _, need := range []string{"go.mod", "go.sum", "cmd/sentproxy/main.go"} {
		if m, _ := pm.MatchesOrParentMatches(need); m {
			fail(".dockerignore excludes %s", need)
		}
	}
	err = filepath.WalkDir(repo, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(repo, p)
		if rel == "." {
			return nil
		}
		rel = filepath.ToSlash(rel)
		m, err := pm.MatchesOrParentMatches(rel)
		if err != nil {
			return err
		}
		if m {
			if d.IsDir() && !pm.Exclusions() {
				return filepath.SkipDir
			}
			return nil
		}
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		if !d.Type().IsRegular() {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if info.Size() > 2<<20 {
			fail("build context holds %s (%d KiB): a binary or data file .dockerignore should exclude", rel, info.Size()/1024)
		}
		if rel == ".git" || strings.HasPrefix(rel, ".git/") {
			fail("build context holds %s", rel)
		}
		files++
		size += info.Size()
		return copyFile(p, filepath.Join(dst, rel), info.Mode().Perm())
	})
	must(err, "walk the build context")
	return files, size
}

func copyFile(src, dst string, mode fs.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

func goEnv(name string) string {
	out, err := exec.Command("go", "env", name).Output()
	must(err, "go env "+name)
	return strings.TrimSpace(string(out))
}

// liveImage runs the binary with the image's entrypoint, command, env and
// user, relocated to loopback ports, then runs the HEALTHCHECK against it.
func liveImage(bin string, cfg imageConfig) {
	argv := append(slices.Clone(cfg.Entrypoint[1:]), cfg.Cmd...)
	// The image needs --sentinel.addrs from the user; give it an unused port.
	argv = append(argv, "--sentinel.addrs=127.0.0.1:"+strconv.Itoa(closedPort()))
	uid, gid := userIDs(cfg.User)
	inst, err := start(bin, argv, cfg.Env, uid, gid, true)
	if err != nil {
		fail("the image's command %q does not start: %v", argv, err)
		return
	}
	defer inst.stop()
	ok("the image's command starts as uid %d with the image's ENV (relocated to %s)", uid, inst.web)
	checkHealthcheck(bin, cfg, inst, uid, gid)
	checkHangup(inst)
	if err := inst.stop(); err != nil {
		fail("stop: %v", err)
	} else {
		ok("SIGTERM stops it cleanly (exit 0) in %s", inst.stopTook.Round(time.Millisecond))
	}
}

func checkHealthcheck(bin string, cfg imageConfig, inst *instance, uid, gid int) {
	if len(cfg.Healthcheck) < 2 {
		return
	}
	hc := cfg.Healthcheck[1:]
	if hc[0] != cfg.Entrypoint[0] {
		fail("HEALTHCHECK runs %s, not the image's binary %s", hc[0], cfg.Entrypoint[0])
		return
	}
	if err := exec.Command(bin, append(slices.Clone(hc[1:]), "--help")...).Run(); err != nil {
		fail("HEALTHCHECK %q: this binary has no such subcommand", hc)
		return
	}
	timeout := cfg.HealthTO
	if timeout == 0 {
		timeout = 30 * time.Second
	}
	// The healthcheck's default URL is the image's web address. Point it at
	// the relocated instance with --url, as the image's settings would.
	url := func(p string) string { return "--url=http://" + inst.web + p }
	cases := []struct {
		what string
		args []string
		want int
	}{
		{"/readyz without a verified master", []string{url("/readyz")}, 1},
		{"an endpoint that answers 200", []string{url("/healthz")}, 0},
		{"nothing listening", []string{"--url=http://127.0.0.1:" + strconv.Itoa(closedPort()) + "/readyz"}, 1},
	}
	for _, c := range cases {
		args := append(slices.Clone(hc[1:]), c.args...)
		t0 := time.Now()
		code, out := runAs(bin, args, cfg.Env, uid, gid, timeout+time.Second)
		took := time.Since(t0)
		if code != c.want {
			fail("HEALTHCHECK on %s: exit %d, want %d: %s", c.what, code, c.want, out)
		} else if took > timeout {
			fail("HEALTHCHECK on %s took %s, over its --timeout %s", c.what, took, timeout)
		} else {
			ok("HEALTHCHECK on %s: exit %d in %s", c.what, code, took.Round(time.Millisecond))
		}
	}
	// And with no --url at all, where 127.0.0.1:9736 is free to use.
	if web := cfg.Env["SENTPROXY_WEB_LISTEN_ADDRESS"]; strings.HasSuffix(web, ":9736") && portFree(9736) {
		env := copyEnv(cfg.Env)
		env["SENTPROXY_WEB_LISTEN_ADDRESS"] = "127.0.0.1:9736"
		argv := append(slices.Clone(cfg.Entrypoint[1:]), cfg.Cmd...)
		argv = append(argv, "--sentinel.addrs=127.0.0.1:"+strconv.Itoa(closedPort()))
		i2, err := startAt(bin, argv, env, uid, gid)
		if err != nil {
			fail("start on 127.0.0.1:9736: %v", err)
			return
		}
		code, out := runAs(bin, hc[1:], cfg.Env, uid, gid, timeout+time.Second)
		i2.stop()
		if code != 1 || !strings.Contains(out, "mymaster") {
			fail("HEALTHCHECK %q as written, against /readyz on 9736 without a master: exit %d, want 1 and the body: %s", hc, code, out)
		} else {
			ok("HEALTHCHECK %q as written reaches /readyz on 127.0.0.1:9736 (exit 1 without a master, body printed)", hc)
		}
	} else {
		note("127.0.0.1:9736 is busy: the HEALTHCHECK's default URL was not tried")
	}
}

func userIDs(user string) (int, int) {
	u, g, found := strings.Cut(user, ":")
	uid, err := strconv.Atoi(u)
	if err != nil {
		return -1, -1
	}
	gid := uid
	if found {
		if gid, err = strconv.Atoi(g); err != nil {
			gid = uid
		}
	}
	return uid, gid
}

// ---------------------------------------------------------------- live runs

type instance struct {
	cmd      *exec.Cmd
	web      string
	proxy    string
	out      *lockedBuffer // the process's stdout and stderr, read while it runs
	done     chan struct{}
	err      error
	stopped  bool
	stopTook time.Duration
}

// lockedBuffer is a bytes.Buffer that the process's output is copied into
// while the check reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func closedPort() int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	must(err, "listen")
	p := l.Addr().(*net.TCPAddr).Port
	l.Close()
	return p
}

func portFree(p int) bool {
	l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
	if err != nil {
		return false
	}
	l.Close()
	return true
}

func copyEnv(m map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range m {
		out[k] = v
	}
	return out
}

// runnable returns a copy of bin that another user can execute.
var runnableCache = map[string]string{}

func runnable(bin string) string {
	if p, found := runnableCache[bin]; found {
		return p
	}
	dir := tempDir("checkpkg-bin-")
	must(os.Chmod(dir, 0o755), "chmod")
	p := filepath.Join(dir, filepath.Base(bin))
	must(copyFile(bin, p, 0o755), "copy binary")
	runnableCache[bin] = p
	return p
}

func command(bin string, args []string, env map[string]string, uid, gid int) *exec.Cmd {
	cmd := exec.Command(bin, args...)
	cmd.Env = []string{"PATH=/usr/bin:/bin"}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	// Killed with the checker, whatever happens to it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if uid > 0 && os.Geteuid() == 0 {
		cmd.Path = runnable(bin)
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	}
	return cmd
}

func runAs(bin string, args []string, env map[string]string, uid, gid int, timeout time.Duration) (int, string) {
	cmd := command(bin, args, env, uid, gid)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		return -1, err.Error()
	}
	timer := time.AfterFunc(timeout, func() { cmd.Process.Kill() })
	defer timer.Stop()
	err := cmd.Wait()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode(), strings.TrimSpace(out.String())
	}
	if err != nil {
		return -1, err.Error()
	}
	return 0, strings.TrimSpace(out.String())
}

// start runs sentproxy with env, its proxy and web listeners moved to free
// loopback ports and its Sentinels to a closed one (nothing leaves this
// machine), and waits for /healthz.
func start(bin string, args []string, env map[string]string, uid, gid int, relocate bool) (*instance, error) {
	env = copyEnv(env)
	if relocate {
		for _, a := range args {
			for _, f := range []string{"--proxy.listen-address", "--web.listen-address"} {
				if strings.HasPrefix(a, f) {
					return nil, fmt.Errorf("%s is set on the command line: cannot move it to a free port", f)
				}
			}
		}
		env["SENTPROXY_PROXY_LISTEN_ADDRESS"] = "127.0.0.1:" + strconv.Itoa(closedPort())
		env["SENTPROXY_WEB_LISTEN_ADDRESS"] = "127.0.0.1:" + strconv.Itoa(closedPort())
		if _, set := env["SENTPROXY_SENTINEL_ADDRS"]; set {
			env["SENTPROXY_SENTINEL_ADDRS"] = "127.0.0.1:" + strconv.Itoa(closedPort())
		}
	}
	return startAt(bin, args, env, uid, gid)
}

func startAt(bin string, args []string, env map[string]string, uid, gid int) (*instance, error) {
	inst := &instance{web: env["SENTPROXY_WEB_LISTEN_ADDRESS"], proxy: env["SENTPROXY_PROXY_LISTEN_ADDRESS"], out: &lockedBuffer{}, done: make(chan struct{})}
	inst.cmd = command(bin, args, env, uid, gid)
	inst.cmd.Stdout, inst.cmd.Stderr = inst.out, inst.out
	if err := inst.cmd.Start(); err != nil {
		return nil, err
	}
	go func() { inst.err = inst.cmd.Wait(); close(inst.done) }()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-inst.done:
			return nil, fmt.Errorf("exited (%v): %s", inst.err, lastLines(inst.out.String(), 5))
		default:
		}
		if code, _, err := inst.get("/healthz"); err == nil && code == 200 {
			return inst, nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	inst.stop()
	return nil, fmt.Errorf("/healthz on %s did not answer 200 within 10s: %s", inst.web, lastLines(inst.out.String(), 5))
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}

// checkHangup: SIGHUP (sent out of habit, or by a closing terminal) is
// logged and ignored; the process keeps serving.
func checkHangup(inst *instance) {
	if err := inst.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		fail("SIGHUP: %v", err)
		return
	}
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(inst.out.String(), "SIGHUP ignored") {
		select {
		case <-inst.done:
			fail("SIGHUP ended sentproxy: %v: %s", inst.err, lastLines(inst.out.String(), 3))
			return
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			fail("SIGHUP: no \"SIGHUP ignored\" line in the log within 10s")
			return
		}
	}
	if code, _, err := inst.get("/healthz"); err != nil || code != http.StatusOK {
		fail("after SIGHUP, /healthz: %d, %v", code, err)
		return
	}
	ok("SIGHUP is logged and ignored; /healthz still answers")
}

func (i *instance) get(p string) (int, string, error) {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get("http://" + i.web + p)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, string(b), nil
}

// stop sends SIGTERM and wants a clean exit within 15 s.
func (i *instance) stop() error {
	if i.stopped {
		return nil
	}
	i.stopped = true
	t0 := time.Now()
	i.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-i.done:
	case <-time.After(15 * time.Second):
		i.cmd.Process.Kill()
		<-i.done
		return errors.New("still running 15s after SIGTERM")
	}
	i.stopTook = time.Since(t0)
	if i.err != nil {
		return fmt.Errorf("exit after SIGTERM: %v: %s", i.err, lastLines(i.out.String(), 3))
	}
	return nil
}

// ---------------------------------------------------------------- compose

func checkCompose(repo, bin string) {
	file := filepath.Join(repo, "docker-compose.yml")
	raw, err := os.ReadFile(file)
	must(err, "read docker-compose.yml")

	// Every variable has a default: the lab runs with no .env file.
	varRef := regexp.MustCompile(`\$(\$|\{[^}]*\}|[A-Za-z_][A-Za-z0-9_]*)`)
	for _, m := range varRef.FindAllStringSubmatch(string(raw), -1) {
		if m[1] == "$" {
			continue
		}
		if !strings.HasPrefix(m[1], "{") || !strings.Contains(m[1], ":-") {
			fail("docker-compose.yml: %s has no default (want ${NAME:-default}, or $$ for the container's shell)", m[0])
		}
	}

	// The loader of docker compose: schema, interpolation, merge keys,
	// consistency (depends_on, volumes, networks), with an empty
	// environment so that the defaults are what is checked.
	opts, err := cli.NewProjectOptions([]string{file},
		cli.WithWorkingDirectory(repo),
		cli.WithEnv(nil),
		cli.WithName("sentproxy-lab"),
	)
	must(err, "compose options")
	project, err := opts.LoadProject(context.Background())
	if err != nil {
		fail("docker-compose.yml does not load: %v", err)
		return
	}
	names := slices.Sorted(mapsKeys(project.Services))
	ok("docker-compose.yml loads (compose-spec loader, schema and consistency): project %q, services %s", project.Name, strings.Join(names, ", "))

	for _, want := range []string{"redis-1", "redis-2", "sentinel-1", "sentinel-2", "sentinel-3", "sentproxy", "app", "prometheus", "grafana"} {
		if _, found := project.Services[want]; !found {
			fail("no service %s", want)
		}
	}

	// Bind mounts: every source exists in the repository.
	mounts := map[string]map[string]string{} // service -> target -> host path
	for name, s := range project.Services {
		mounts[name] = map[string]string{}
		for _, v := range s.Volumes {
			if v.Type != types.VolumeTypeBind {
				continue
			}
			if _, err := os.Stat(v.Source); err != nil {
				fail("%s mounts %s, which does not exist", name, v.Source)
				continue
			}
			if !v.ReadOnly {
				fail("%s mounts %s writable: mount repository files read-only", name, v.Source)
			}
			mounts[name][v.Target] = v.Source
		}
	}

	checkComposeData(project)
	checkComposeSentinels(project, mounts)
	checkComposeSentproxy(repo, bin, project)
	checkComposeApp(project)
	checkComposePrometheus(repo, project, mounts)
	checkComposeGrafana(project, mounts)
}

func mapsKeys[M ~map[string]V, V any](m M) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

func argValue(args []string, flag string) (string, bool) {
	for i, a := range args {
		if v, found := strings.CutPrefix(a, flag+"="); found {
			return v, true
		}
		if a == flag && i+1 < len(args) {
			return args[i+1], true
		}
	}
	return "", false
}

func checkComposeData(p *types.Project) {
	for _, name := range []string{"redis-1", "redis-2"} {
		s := p.Services[name]
		if v, _ := argValue(s.Command, "--replica-announce-ip"); v != name {
			fail("%s: --replica-announce-ip %q, want its service name %q", name, v, name)
		}
		if s.HealthCheck == nil || len(s.HealthCheck.Test) == 0 {
			fail("%s has no healthcheck", name)
		}
	}
	r2 := p.Services["redis-2"].Command
	i := slices.Index(r2, "--replicaof")
	if i < 0 || i+2 >= len(r2) || r2[i+1] != "redis-1" || r2[i+2] != "6379" {
		fail("redis-2 is not a replica of redis-1 6379: %q", r2)
	} else {
		ok("redis-1 master, redis-2 its replica, both announcing their service names")
	}
}

func checkComposeSentinels(p *types.Project, mounts map[string]map[string]string) {
	for _, name := range []string{"sentinel-1", "sentinel-2", "sentinel-3"} {
		s := p.Services[name]
		script := strings.Join(s.Command, " ")
		// The template the command copies, as mounted.
		var tmpl string
		for target, src := range mounts[name] {
			if strings.Contains(script, target) {
				tmpl = src
			}
		}
		if tmpl == "" {
			fail("%s: its command copies no mounted template", name)
			continue
		}
		b, err := os.ReadFile(tmpl)
		must(err, "read "+tmpl)
		conf := string(b)
		host := ""
		if v := s.Environment["ANNOUNCE_HOSTNAME"]; v != nil {
			host = *v
		}
		if host != name {
			fail("%s: ANNOUNCE_HOSTNAME %q, want %q", name, host, name)
		}
		if !strings.Contains(script, "$ANNOUNCE_HOSTNAME") || !strings.Contains(conf, "@ANNOUNCE_HOSTNAME@") {
			fail("%s: the command does not put ANNOUNCE_HOSTNAME into the template", name)
		}
		if !strings.Contains(script, "--sentinel") || !strings.Contains(script, "/data/sentinel.conf") {
			fail("%s: does not run redis-server --sentinel on the writable copy", name)
		}
		if s.HealthCheck == nil {
			fail("%s has no healthcheck", name)
		}
		rendered := strings.ReplaceAll(conf, "@ANNOUNCE_HOSTNAME@", host)
		checkSentinelConf(name, rendered, p)
	}
	ok("3 Sentinels: a writable config rendered from %s, announcing hostnames", "deploy/compose/sentinel.conf")
}

func checkSentinelConf(name, conf string, p *types.Project) {
	var lines []string
	for _, l := range strings.Split(conf, "\n") {
		l = strings.TrimSpace(l)
		if l != "" && !strings.HasPrefix(l, "#") {
			lines = append(lines, l)
		}
	}
	idx := func(prefix string) int {
		return slices.IndexFunc(lines, func(l string) bool { return strings.HasPrefix(l, prefix) })
	}
	for _, want := range []string{"port 26379", "sentinel resolve-hostnames yes", "sentinel announce-hostnames yes", "sentinel announce-ip " + name, "protected-mode no"} {
		if !slices.Contains(lines, want) {
			fail("%s: sentinel config lacks %q", name, want)
		}
	}
	mon := idx("sentinel monitor ")
	if mon < 0 {
		fail("%s: no sentinel monitor line", name)
		return
	}
	if r := idx("sentinel resolve-hostnames"); r > mon {
		fail("%s: resolve-hostnames must come before the monitor line", name)
	}
	f := strings.Fields(lines[mon])
	if len(f) != 6 || f[2] != "mymaster" || f[4] != "6379" {
		fail("%s: monitor line %q: want sentinel monitor mymaster HOST 6379 QUORUM", name, lines[mon])
		return
	}
	if _, found := p.Services[f[3]]; !found {
		fail("%s monitors %s, which is no service", name, f[3])
	}
	if q, err := strconv.Atoi(f[5]); err != nil || q != 2 {
		fail("%s: quorum %s, want 2 of 3", name, f[5])
	}
}

func checkComposeSentproxy(repo, bin string, p *types.Project) {
	s := p.Services["sentproxy"]
	if s.Build == nil || filepath.Clean(s.Build.Context) != filepath.Clean(repo) {
		fail("sentproxy is not built from the repository's Dockerfile")
	} else if df := s.Build.Dockerfile; df != "" && df != "Dockerfile" {
		fail("sentproxy builds %s, not Dockerfile", df)
	}
	for _, a := range []string{"VERSION", "REVISION"} {
		if _, found := s.Build.Args[a]; !found {
			fail("sentproxy's build passes no %s", a)
		}
	}
	addrs, found := argValue(s.Command, "--sentinel.addrs")
	if !found {
		fail("sentproxy: no --sentinel.addrs")
	} else {
		var sentinels []string
		for _, a := range strings.Split(addrs, ",") {
			host, port, err := net.SplitHostPort(a)
			if err != nil || port != "26379" {
				fail("sentproxy: Sentinel address %q: want SERVICE:26379", a)
				continue
			}
			if _, found := p.Services[host]; !found {
				fail("sentproxy: Sentinel %s is no service", host)
			}
			if _, dep := s.DependsOn[host]; !dep {
				fail("sentproxy does not depend on %s", host)
			}
			sentinels = append(sentinels, host)
		}
		ok("sentproxy built from Dockerfile, pointed at Sentinels %s", strings.Join(sentinels, ", "))
	}
	published := map[uint32]bool{}
	for _, port := range s.Ports {
		published[port.Target] = true
		if port.HostIP != "127.0.0.1" {
			fail("sentproxy publishes %d on %q: publish on 127.0.0.1 only", port.Target, port.HostIP)
		}
	}
	if !published[6379] || !published[9736] {
		fail("sentproxy does not publish 6379 and 9736")
	}

	// The command as compose runs it, on the image's ENV, against this
	// binary: Sentinels moved to a closed loopback port.
	stages, _ := parseDockerfileQuiet(repo)
	cfg := finalConfig(stages[len(stages)-1])
	env := copyEnv(cfg.Env)
	for k, v := range s.Environment {
		if v != nil {
			env[k] = *v
		}
	}
	args := slices.Clone([]string(s.Command))
	for i, a := range args {
		if strings.HasPrefix(a, "--sentinel.addrs=") {
			args[i] = "--sentinel.addrs=127.0.0.1:" + strconv.Itoa(closedPort())
		}
	}
	uid, gid := userIDs(cfg.User)
	inst, err := start(bin, args, env, uid, gid, true)
	if err != nil {
		fail("sentproxy's compose command does not start: %v", err)
		return
	}
	code, body, _ := inst.get("/readyz")
	mcode, metrics, _ := inst.get("/metrics")
	if err := inst.stop(); err != nil {
		fail("sentproxy (compose command): %v", err)
	}
	if code != http.StatusServiceUnavailable || mcode != 200 || !strings.Contains(metrics, "sentproxy_build_info") {
		fail("sentproxy (compose command): /readyz %d %q, /metrics %d", code, body, mcode)
	} else {
		ok("sentproxy's compose command runs on the image's ENV as uid %d: /healthz 200, /readyz 503 without a master, /metrics serves sentproxy_build_info", uid)
	}
}

func parseDockerfileQuiet(repo string) ([]instructions.Stage, error) {
	dt, err := os.ReadFile(filepath.Join(repo, "Dockerfile"))
	must(err, "read Dockerfile")
	ast, err := parser.Parse(bytes.NewReader(dt))
	must(err, "parse Dockerfile")
	stages, _, err := instructions.Parse(ast.AST, nil)
	must(err, "parse Dockerfile")
	return stages, nil
}

func checkComposeApp(p *types.Project) {
	s := p.Services["app"]
	host := s.Environment["REDIS_HOST"]
	if host == nil || *host != "sentproxy" {
		fail("app: REDIS_HOST is not sentproxy")
	}
	script := strings.Join(s.Command, " ")
	for _, want := range []string{"redis-cli", "$REDIS_HOST", "INCR counter", "sleep 0.1"} {
		if !strings.Contains(script, want) {
			fail("app: its loop lacks %q", want)
		}
	}
	if _, dep := s.DependsOn["sentproxy"]; !dep {
		fail("app does not depend on sentproxy")
	}
	// The loop itself, in a shell, with redis-cli stubbed: it must parse and
	// tell an answer from an error.
	sh := exec.Command("sh", "-n", "-c", s.Command[len(s.Command)-1])
	if out, err := sh.CombinedOutput(); err != nil {
		fail("app: its loop is not valid sh: %v %s", err, out)
	} else {
		ok("app writes INCR counter through REDIS_HOST=sentproxy every 100 ms (loop parses as sh)")
	}
}

func checkComposePrometheus(repo string, p *types.Project, mounts map[string]map[string]string) {
	m := mounts["prometheus"]
	cfgPath := m["/etc/prometheus/prometheus.yml"]
	if cfgPath == "" {
		fail("prometheus: no /etc/prometheus/prometheus.yml mounted")
		return
	}
	var cfg struct {
		RuleFiles     []string `yaml:"rule_files"`
		ScrapeConfigs []struct {
			JobName       string `yaml:"job_name"`
			MetricsPath   string `yaml:"metrics_path"`
			StaticConfigs []struct {
				Targets []string `yaml:"targets"`
			} `yaml:"static_configs"`
		} `yaml:"scrape_configs"`
	}
	raw, err := os.ReadFile(cfgPath)
	must(err, "read "+cfgPath)
	if err := yaml.Unmarshal(raw, &cfg); err != nil {
		fail("%s: %v", cfgPath, err)
		return
	}
	found := false
	for _, sc := range cfg.ScrapeConfigs {
		for _, st := range sc.StaticConfigs {
			if slices.Contains(st.Targets, "sentproxy:9736") {
				found = true
				if sc.JobName != "sentproxy" {
					fail("prometheus: the job scraping sentproxy is %q; the alert rules want \"sentproxy\"", sc.JobName)
				}
				if sc.MetricsPath != "" && sc.MetricsPath != "/metrics" {
					fail("prometheus: metrics_path %q", sc.MetricsPath)
				}
			}
		}
	}
	if !found {
		fail("prometheus does not scrape sentproxy:9736")
	}
	// Rule files, resolved through the mounts to the repository.
	tmp := os.Getenv("CHECKPKG_OUT")
	if tmp == "" {
		tmp = tempDir("checkpkg-prom-")
	}
	var hostRules []string
	for _, rf := range cfg.RuleFiles {
		host := ""
		for target, src := range m {
			if rel, err := filepath.Rel(target, rf); err == nil && !strings.HasPrefix(rel, "..") {
				host = filepath.Join(src, rel)
			}
		}
		if host == "" {
			fail("prometheus: rule file %s is in no mounted directory", rf)
			continue
		}
		if _, err := os.Stat(host); err != nil {
			fail("prometheus: rule file %s (%s) does not exist", rf, host)
			continue
		}
		hostRules = append(hostRules, host)
	}
	if want := filepath.Join(repo, "deploy/prometheus/alerts.yml"); !slices.Contains(hostRules, want) {
		fail("prometheus does not load deploy/prometheus/alerts.yml")
	} else {
		ok("prometheus scrapes sentproxy:9736 as job \"sentproxy\" and loads deploy/prometheus/alerts.yml")
	}
	// A copy of the configuration with the rule files at their host paths,
	// for promtool (check-packaging.sh runs it on this file).
	var doc map[string]any
	must(yaml.Unmarshal(raw, &doc), "parse prometheus.yml")
	doc["rule_files"] = hostRules
	out, err := yaml.Marshal(doc)
	must(err, "marshal")
	must(os.WriteFile(filepath.Join(tmp, "prometheus.yml"), out, 0o644), "write")
	fmt.Printf("PROMTOOL_CONFIG=%s\n", filepath.Join(tmp, "prometheus.yml"))
}

func checkComposeGrafana(p *types.Project, mounts map[string]map[string]string) {
	m := mounts["grafana"]
	prov := m["/etc/grafana/provisioning"]
	if prov == "" {
		fail("grafana: /etc/grafana/provisioning is not mounted")
		return
	}
	var ds struct {
		APIVersion  int `yaml:"apiVersion"`
		Datasources []struct {
			Name, UID, Type, URL, Access string
			OrgID                        int  `yaml:"orgId"`
			IsDefault                    bool `yaml:"isDefault"`
			Editable                     bool `yaml:"editable"`
			Version                      int  `yaml:"version"`
			BasicAuth                    bool `yaml:"basicAuth"`
			User, Database               string
			WithCredentials              bool           `yaml:"withCredentials"`
			JSONData                     map[string]any `yaml:"jsonData"`
			SecureJSONData               map[string]any `yaml:"secureJsonData"`
		} `yaml:"datasources"`
	}
	strictYAML(filepath.Join(prov, "datasources/prometheus.yml"), &ds)
	if ds.APIVersion != 1 || len(ds.Datasources) != 1 {
		fail("grafana datasources: want apiVersion 1 and one data source")
	} else {
		d := ds.Datasources[0]
		u := strings.TrimPrefix(d.URL, "http://")
		host, port, _ := net.SplitHostPort(u)
		if d.Type != "prometheus" || !d.IsDefault || d.Access != "proxy" {
			fail("grafana data source: want the default, type prometheus, access proxy")
		}
		if _, found := p.Services[host]; !found || host != "prometheus" || port != "9090" {
			fail("grafana data source URL %s is not the prometheus service", d.URL)
		} else {
			ok("grafana data source %q (uid %s) -> %s, the default", d.Name, d.UID, d.URL)
		}
	}
	var dp struct {
		APIVersion int `yaml:"apiVersion"`
		Providers  []struct {
			Name                  string
			OrgID                 int `yaml:"orgId"`
			Folder                string
			Type                  string
			DisableDeletion       bool `yaml:"disableDeletion"`
			AllowUIUpdates        bool `yaml:"allowUiUpdates"`
			UpdateIntervalSeconds int  `yaml:"updateIntervalSeconds"`
			Options               struct {
				Path                      string
				FoldersFromFilesStructure bool `yaml:"foldersFromFilesStructure"`
			}
		}
	}
	strictYAML(filepath.Join(prov, "dashboards/sentproxy.yml"), &dp)
	if dp.APIVersion != 1 || len(dp.Providers) != 1 || dp.Providers[0].Type != "file" {
		fail("grafana dashboards: want apiVersion 1 and one file provider")
		return
	}
	dir := dp.Providers[0].Options.Path
	host := m[dir]
	if host == "" {
		fail("grafana: the provider's path %s is not mounted", dir)
		return
	}
	dashboards, _ := filepath.Glob(filepath.Join(host, "*.json"))
	if len(dashboards) == 0 {
		fail("grafana: no dashboard in %s", host)
		return
	}
	for _, d := range dashboards {
		var dash struct {
			UID   string
			Title string
		}
		b, err := os.ReadFile(d)
		must(err, "read "+d)
		if err := json.Unmarshal(b, &dash); err != nil || dash.UID == "" {
			fail("%s: not a dashboard (%v)", d, err)
			continue
		}
		ok("grafana provisions %s (%q) from %s", filepath.Base(d), dash.Title, dir)
	}
	for _, s := range p.Services["grafana"].Environment {
		if s != nil && strings.HasSuffix(*s, ".json") && strings.HasPrefix(*s, dir+"/") {
			if _, err := os.Stat(filepath.Join(host, strings.TrimPrefix(*s, dir+"/"))); err != nil {
				fail("grafana: %s does not exist", *s)
			}
		}
	}
}

// strictYAML decodes a file into v, refusing keys v does not know.
func strictYAML(file string, v any) {
	f, err := os.Open(file)
	if err != nil {
		fail("%v", err)
		return
	}
	defer f.Close()
	dec := yaml.NewDecoder(f)
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil {
		fail("%s: %v", file, err)
	}
}

// ---------------------------------------------------------------- Kubernetes

func checkKube(repo, bin string, files []string) {
	var deployments []*appsv1.Deployment
	var podMonitors []*monitoringv1.PodMonitor
	for _, file := range files {
		raw, err := os.ReadFile(file)
		must(err, "read "+file)
		dec := yaml.NewDecoder(bytes.NewReader(raw))
		for n := 1; ; n++ {
			var node yaml.Node
			err := dec.Decode(&node)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				fail("%s: document %d: %v", file, n, err)
				break
			}
			doc, err := yaml.Marshal(&node)
			must(err, "re-marshal")
			var meta struct {
				APIVersion string `json:"apiVersion"`
				Kind       string `json:"kind"`
			}
			if err := sigsyaml.Unmarshal(doc, &meta); err != nil {
				fail("%s: document %d: %v", file, n, err)
				continue
			}
			where := fmt.Sprintf("%s: %s %s", filepath.Base(file), meta.APIVersion, meta.Kind)
			var obj any
			switch meta.APIVersion + " " + meta.Kind {
			case "apps/v1 Deployment":
				d := &appsv1.Deployment{}
				deployments = append(deployments, d)
				obj = d
			case "monitoring.coreos.com/v1 PodMonitor":
				pm := &monitoringv1.PodMonitor{}
				podMonitors = append(podMonitors, pm)
				obj = pm
			default:
				fail("%s: unexpected kind", where)
				continue
			}
			// Strict: an unknown or misspelt field is an error, as with
			// kubectl's server-side field validation.
			if err := sigsyaml.UnmarshalStrict(doc, obj); err != nil {
				fail("%s: %v", where, err)
				continue
			}
			ok("%s decodes strictly into the API types", where)
		}
	}
	if len(deployments) != 1 || len(podMonitors) != 1 {
		fail("want one Deployment and one PodMonitor, got %d and %d", len(deployments), len(podMonitors))
		return
	}
	d, pm := deployments[0], podMonitors[0]
	spec := d.Spec.Template.Spec
	if d.Spec.Selector == nil || !selects(d.Spec.Selector.MatchLabels, d.Spec.Template.Labels) {
		fail("Deployment: its selector does not match its pod template")
	}

	var sidecar, app *corev1.Container
	for i := range spec.InitContainers {
		if spec.InitContainers[i].Name == "sentproxy" {
			sidecar = &spec.InitContainers[i]
			if p := sidecar.RestartPolicy; p == nil || *p != corev1.ContainerRestartPolicyAlways {
				fail("sentproxy is an init container without restartPolicy: Always (a native sidecar needs it)")
			}
		}
	}
	for i := range spec.Containers {
		switch spec.Containers[i].Name {
		case "sentproxy":
			sidecar = &spec.Containers[i]
		default:
			app = &spec.Containers[i]
		}
	}
	if sidecar == nil || app == nil {
		fail("want a sentproxy sidecar and an app container")
		return
	}
	env := map[string]string{}
	for _, e := range sidecar.Env {
		if e.ValueFrom == nil {
			env[e.Name] = e.Value
		}
	}
	appEnv := map[string]string{}
	for _, e := range app.Env {
		appEnv[e.Name] = e.Value
	}
	if appEnv["REDIS_HOST"] != "127.0.0.1" {
		fail("app: REDIS_HOST %q, want 127.0.0.1", appEnv["REDIS_HOST"])
	}
	if env["SENTPROXY_PROXY_LISTEN_ADDRESS"] != "127.0.0.1:"+appEnvPort(appEnv) {
		fail("sentproxy listens on %q, the app connects to 127.0.0.1:%s", env["SENTPROXY_PROXY_LISTEN_ADDRESS"], appEnvPort(appEnv))
	} else {
		ok("app -> REDIS_HOST=127.0.0.1:%s, where the sidecar listens (loopback only)", appEnvPort(appEnv))
	}
	sa := env["SENTPROXY_SENTINEL_ADDRS"]
	if sa == "" {
		fail("sentproxy: SENTPROXY_SENTINEL_ADDRS is not set")
	} else {
		for _, a := range strings.Split(sa, ",") {
			host, port, err := net.SplitHostPort(a)
			if err != nil || port != "26379" || !strings.Contains(host, ".svc") {
				fail("SENTPROXY_SENTINEL_ADDRS %q: want SERVICE.NAMESPACE.svc...:26379", a)
			}
		}
		ok("Sentinels from %s", sa)
	}
	_, webPortS, err := net.SplitHostPort(env["SENTPROXY_WEB_LISTEN_ADDRESS"])
	webHost, _, _ := net.SplitHostPort(env["SENTPROXY_WEB_LISTEN_ADDRESS"])
	if err != nil || (webHost != "" && webHost != "0.0.0.0" && webHost != "::") {
		fail("SENTPROXY_WEB_LISTEN_ADDRESS %q: want all addresses (probes and scrapes come from outside the pod)", env["SENTPROXY_WEB_LISTEN_ADDRESS"])
		return
	}
	webPort, _ := strconv.Atoi(webPortS)
	portNames := map[string]int32{}
	for _, p := range sidecar.Ports {
		portNames[p.Name] = p.ContainerPort
	}
	if !slices.Contains(mapsValues(portNames), int32(webPort)) {
		fail("sentproxy declares no containerPort %d", webPort)
	}

	// Probes: each on the web port, each path served by the binary.
	probes := map[string]*corev1.Probe{"startupProbe": sidecar.StartupProbe, "readinessProbe": sidecar.ReadinessProbe, "livenessProbe": sidecar.LivenessProbe}
	wantPath := map[string]string{"readinessProbe": "/readyz", "livenessProbe": "/healthz", "startupProbe": "/healthz"}
	paths := map[string]string{}
	for _, name := range slices.Sorted(mapsKeys(probes)) {
		p := probes[name]
		if p == nil {
			if name != "startupProbe" {
				fail("sentproxy has no %s", name)
			}
			continue
		}
		if p.HTTPGet == nil {
			fail("%s is not an httpGet probe", name)
			continue
		}
		port := resolvePort(p.HTTPGet.Port, portNames)
		if port != int32(webPort) {
			fail("%s on port %s (%d), sentproxy's web port is %d", name, p.HTTPGet.Port.String(), port, webPort)
		}
		if p.HTTPGet.Path != wantPath[name] {
			fail("%s GETs %s, want %s", name, p.HTTPGet.Path, wantPath[name])
		}
		paths[name] = p.HTTPGet.Path
	}
	// Scrapes: the annotations and the PodMonitor.
	ann := d.Spec.Template.Annotations
	if ann["prometheus.io/scrape"] != "true" || ann["prometheus.io/port"] != webPortS {
		fail("pod annotations: want prometheus.io/scrape \"true\" and prometheus.io/port %q, got %v", webPortS, ann)
	}
	metricsPath := "/metrics"
	if v := env["SENTPROXY_WEB_TELEMETRY_PATH"]; v != "" {
		metricsPath = v
	}
	if p := ann["prometheus.io/path"]; p != "" && p != metricsPath {
		fail("prometheus.io/path %s, sentproxy serves %s", p, metricsPath)
	}
	if !selects(pm.Spec.Selector.MatchLabels, d.Spec.Template.Labels) || len(pm.Spec.Selector.MatchLabels) == 0 {
		fail("PodMonitor: its selector %v does not select the pods %v", pm.Spec.Selector.MatchLabels, d.Spec.Template.Labels)
	}
	if len(pm.Spec.PodMetricsEndpoints) != 1 {
		fail("PodMonitor: want one endpoint")
	} else {
		ep := pm.Spec.PodMetricsEndpoints[0]
		if ep.Port == nil || portNames[*ep.Port] != int32(webPort) {
			fail("PodMonitor: port %v is not sentproxy's named web port", ep.Port)
		}
		if ep.Path != "" && ep.Path != metricsPath {
			fail("PodMonitor: path %s, sentproxy serves %s", ep.Path, metricsPath)
		}
		job := ""
		for _, r := range ep.RelabelConfigs {
			if r.TargetLabel == "job" && r.Replacement != nil {
				job = *r.Replacement
			}
		}
		if job != "sentproxy" {
			fail("PodMonitor: the alert rules want job=\"sentproxy\"; relabel job to it")
		}
		ok("PodMonitor selects the pods and scrapes port %q%s as job sentproxy", *ep.Port, metricsPath)
	}

	// Security and resources, pod and containers.
	psc := spec.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot {
		fail("pod: securityContext.runAsNonRoot is not true")
	}
	for _, c := range []*corev1.Container{sidecar, app} {
		sc := c.SecurityContext
		switch {
		case sc == nil:
			fail("%s: no securityContext", c.Name)
		case sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem:
			fail("%s: readOnlyRootFilesystem is not true", c.Name)
		case sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation:
			fail("%s: allowPrivilegeEscalation is not false", c.Name)
		case sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") || len(sc.Capabilities.Add) > 0:
			fail("%s: capabilities do not drop ALL", c.Name)
		}
		if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
			fail("%s: want cpu and memory requests and a memory limit", c.Name)
		}
	}
	ok("runAsNonRoot, readOnlyRootFilesystem, no privilege escalation, capabilities dropped, requests and limits: both containers")

	// The sidecar as the manifest starts it, against this binary: the
	// probes' paths and the scrape path must be served on the web port.
	uid := int64(-1)
	if psc != nil && psc.RunAsUser != nil {
		uid = *psc.RunAsUser
	}
	if sidecar.SecurityContext != nil && sidecar.SecurityContext.RunAsUser != nil {
		uid = *sidecar.SecurityContext.RunAsUser
	}
	args := append(slices.Clone(sidecar.Command[min(1, len(sidecar.Command)):]), sidecar.Args...)
	if len(sidecar.Command) == 0 && len(args) == 0 {
		args = []string{"run"}
	}
	inst, err := start(bin, args, env, int(uid), int(uid), true)
	if err != nil {
		fail("the sidecar's args and env do not start sentproxy: %v", err)
		return
	}
	defer inst.stop()
	for _, name := range slices.Sorted(mapsKeys(paths)) {
		p := paths[name]
		code, body, err := inst.get(p)
		switch {
		case err != nil:
			fail("%s %s: %v", name, p, err)
		case name == "readinessProbe" && code != http.StatusServiceUnavailable:
			fail("%s %s without a master: %d, want 503", name, p, code)
		case name != "readinessProbe" && code != http.StatusOK:
			fail("%s %s: %d %q", name, p, code, body)
		default:
			ok("%s GET %s on the web port: %d", name, p, code)
		}
	}
	code, body, _ := inst.get(metricsPath)
	if code != 200 || !strings.Contains(body, "sentproxy_build_info") {
		fail("scrape %s: %d", metricsPath, code)
	} else {
		ok("scrape GET %s: 200 with sentproxy metrics (sidecar env, uid %d)", metricsPath, uid)
	}
	if err := inst.stop(); err != nil {
		fail("sidecar stop: %v", err)
	}
	if g := spec.TerminationGracePeriodSeconds; g != nil {
		drain := 10 * time.Second
		if v := env["SENTPROXY_PROXY_DRAIN_TIMEOUT"]; v != "" {
			drain, _ = time.ParseDuration(v)
		}
		if time.Duration(*g)*time.Second <= drain {
			fail("terminationGracePeriodSeconds %d is not above the drain timeout %s", *g, drain)
		}
	}
}

func appEnvPort(env map[string]string) string {
	if p := env["REDIS_PORT"]; p != "" {
		return p
	}
	return "6379"
}

func mapsValues(m map[string]int32) []int32 {
	var out []int32
	for _, v := range m {
		out = append(out, v)
	}
	return out
}

func resolvePort(p intstr.IntOrString, names map[string]int32) int32 {
	if p.Type == intstr.Int {
		return p.IntVal
	}
	return names[p.StrVal]
}

func selects(selector, labels map[string]string) bool {
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// ---------------------------------------------------------------- defaults

// checkDefaults: deploy/debian/sentproxy.default lists every environment
// variable of `sentproxy run --help`, with the default the help shows.
func checkDefaults(repo, bin string) {
	help, err := exec.Command(bin, "run", "--help").Output()
	must(err, "sentproxy run --help")
	// A flag's entry is indented a little; its help's wrapped lines, which
	// may start with another flag's name, much more.
	entry := regexp.MustCompile(`^ {1,12}(?:-\w, )?--([a-z0-9.-]+)(?:=(\S+))?`)
	envRef := regexp.MustCompile(`\(\$(SENTPROXY_[A-Z0-9_]+)\)`)
	placeholder := regexp.MustCompile(`^[A-Z][A-Z0-9:=.,_/\[\]-]*$`)
	type flag struct{ name, def, env string }
	var flags []*flag
	var cur *flag
	for _, line := range strings.Split(string(help), "\n") {
		if m := entry.FindStringSubmatch(line); m != nil {
			cur = &flag{name: m[1], def: m[2]}
			if cur.name != "help" {
				flags = append(flags, cur)
			}
		}
		if m := envRef.FindStringSubmatch(line); m != nil && cur != nil {
			cur.env = m[1]
		}
	}
	raw, err := os.ReadFile(filepath.Join(repo, "deploy/debian/sentproxy.default"))
	must(err, "read sentproxy.default")
	listed := map[string]string{}
	assign := regexp.MustCompile(`^#?(SENTPROXY_[A-Z0-9_]+)=(.*)$`)
	for _, line := range strings.Split(string(raw), "\n") {
		if m := assign.FindStringSubmatch(strings.TrimSpace(line)); m != nil {
			listed[m[1]] = m[2]
			if !strings.HasPrefix(strings.TrimSpace(line), "#") {
				fail("sentproxy.default sets %s: ship every setting commented out", m[1])
			}
		}
	}
	n, before := 0, failures
	for _, f := range flags {
		if f.env == "" {
			fail("run --help: --%s has no environment twin", f.name)
			continue
		}
		v, found := listed[f.env]
		if !found {
			fail("sentproxy.default does not list %s (--%s)", f.env, f.name)
			continue
		}
		n++
		def := strings.Trim(f.def, `"`)
		if f.def == "" || placeholder.MatchString(f.def) {
			continue // no default: the file may show an example
		}
		if v != def {
			fail("sentproxy.default: %s=%s, but the default is %s", f.env, v, def)
		}
	}
	for env := range listed {
		if !slices.ContainsFunc(flags, func(f *flag) bool { return f.env == env }) {
			fail("sentproxy.default lists %s, which `sentproxy run` does not know", env)
		}
	}
	if failures == before {
		ok("sentproxy.default lists all %d SENTPROXY_* variables of `sentproxy run`, with their defaults", n)
	}
}

// ---------------------------------------------------------------- lab

// checkLab runs the failover lab in miniature with the local redis-server
// and redis-sentinel: a master announcing a hostname, one Sentinel on
// deploy/compose/sentinel.conf (hostnames and ports moved to loopback), and
// sentproxy as the compose file and the image start it. The Sentinel must
// accept the template, announce the master by name, and sentproxy must
// route to it, be ready, pass its HEALTHCHECK and carry an INCR.
func checkLab(repo, bin string) {
	redisServer, err1 := exec.LookPath("redis-server")
	redisSentinel, err2 := exec.LookPath("redis-sentinel")
	if err1 != nil || err2 != nil {
		note("redis-server or redis-sentinel missing (scripts/deps.sh installs them): the lab in miniature was not run")
		return
	}
	dir := tempDir("checkpkg-lab-")
	masterPort, sentinelPort := closedPort(), closedPort()
	procs := []*exec.Cmd{}
	defer func() {
		for _, p := range procs {
			p.Process.Kill()
			p.Wait()
		}
	}()
	run := func(name string, args ...string) {
		cmd := exec.Command(name, args...)
		cmd.Dir = dir
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		log, err := os.Create(filepath.Join(dir, fmt.Sprintf("%s-%d.log", filepath.Base(name), len(procs))))
		must(err, "log")
		cmd.Stdout, cmd.Stderr = log, log
		must(cmd.Start(), name)
		procs = append(procs, cmd)
	}
	p, err := cli.NewProjectOptions([]string{filepath.Join(repo, "docker-compose.yml")}, cli.WithWorkingDirectory(repo), cli.WithEnv(nil))
	must(err, "compose options")
	project, err := p.LoadProject(context.Background())
	must(err, "load docker-compose.yml")

	// The data nodes with their compose commands, names and ports moved to
	// loopback.
	replicaPort := closedPort()
	ports := map[string]int{"redis-1": masterPort, "redis-2": replicaPort}
	for _, name := range []string{"redis-1", "redis-2"} {
		args := slices.Clone([]string(project.Services[name].Command))
		if len(args) == 0 || args[0] != "redis-server" {
			fail("lab: %s does not run redis-server", name)
			return
		}
		args = args[1:]
		for i := 0; i < len(args); i++ {
			switch args[i] {
			case "--replica-announce-ip":
				args[i+1] = "localhost"
			case "--replica-announce-port":
				args[i+1] = strconv.Itoa(ports[name])
			case "--replicaof":
				args[i+2] = strconv.Itoa(ports[args[i+1]])
				args[i+1] = "localhost"
			}
		}
		sub := filepath.Join(dir, name)
		must(os.MkdirAll(sub, 0o755), "mkdir")
		args = append(args, "--port", strconv.Itoa(ports[name]), "--bind", "127.0.0.1", "--dir", sub, "--save", "")
		run(redisServer, args...)
	}

	// The master sees its replica under the name the replica announces.
	announced := fmt.Sprintf("ip=localhost,port=%d,", replicaPort)
	attached := false
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline) && !attached; time.Sleep(100 * time.Millisecond) {
		info, _ := redisCommand("127.0.0.1:"+strconv.Itoa(masterPort), "INFO", "replication")
		attached = strings.Contains(info, announced)
	}
	if !attached {
		fail("lab: redis-1 does not list redis-2 as %s", announced)
		return
	}

	tmpl, err := os.ReadFile(filepath.Join(repo, "deploy/compose/sentinel.conf"))
	must(err, "read sentinel.conf")
	var conf []string
	for _, l := range strings.Split(string(tmpl), "\n") {
		f := strings.Fields(l)
		switch {
		case len(f) == 2 && f[0] == "port":
			l = "port " + strconv.Itoa(sentinelPort)
		case len(f) == 2 && f[0] == "dir":
			l = "dir " + dir
		case len(f) == 3 && f[0] == "sentinel" && f[1] == "announce-port":
			l = "sentinel announce-port " + strconv.Itoa(sentinelPort)
		case len(f) == 6 && f[0] == "sentinel" && f[1] == "monitor":
			l = strings.Join([]string{"sentinel monitor", f[2], "localhost", strconv.Itoa(masterPort), f[5]}, " ")
		}
		conf = append(conf, strings.ReplaceAll(l, "@ANNOUNCE_HOSTNAME@", "localhost"))
	}
	conf = append(conf, "bind 127.0.0.1")
	confPath := filepath.Join(dir, "sentinel.conf")
	must(os.WriteFile(confPath, []byte(strings.Join(conf, "\n")), 0o644), "write sentinel.conf")
	run(redisSentinel, confPath)

	// sentproxy as compose starts it, its Sentinels moved to loopback.
	svc := project.Services["sentproxy"]
	stages, _ := parseDockerfileQuiet(repo)
	cfg := finalConfig(stages[len(stages)-1])
	env := copyEnv(cfg.Env)
	for k, v := range svc.Environment {
		if v != nil {
			env[k] = *v
		}
	}
	args := slices.Clone([]string(svc.Command))
	for i, a := range args {
		if strings.HasPrefix(a, "--sentinel.addrs=") {
			args[i] = "--sentinel.addrs=localhost:" + strconv.Itoa(sentinelPort)
		}
	}
	uid, gid := userIDs(cfg.User)
	inst, err := start(bin, args, env, uid, gid, true)
	if err != nil {
		fail("lab: sentproxy does not start: %v", err)
		return
	}
	defer inst.stop()
	var body string
	ready := false
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		code, b, _ := inst.get("/readyz")
		body = b
		if code == 200 {
			ready = true
			break
		}
	}
	if !ready {
		sl, _ := os.ReadFile(filepath.Join(dir, "redis-sentinel-2.log"))
		fail("lab: /readyz not 200 within 15s: %q; sentinel log: %s", strings.TrimSpace(body), lastLines(string(sl), 5))
		return
	}
	want := "localhost:" + strconv.Itoa(masterPort)
	if !strings.Contains(body, want) {
		fail("lab: /readyz %q: want the master by the name it announces, %s", strings.TrimSpace(body), want)
	} else {
		ok("lab: redis-server and redis-sentinel on deploy/compose/sentinel.conf; sentproxy ready: %s", strings.TrimSpace(body))
	}
	// The Sentinel learnt the replica under the name it announces.
	replica := "localhost:" + strconv.Itoa(replicaPort)
	seen := false
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline) && !seen; time.Sleep(200 * time.Millisecond) {
		reply, _ := redisCommand("127.0.0.1:"+strconv.Itoa(sentinelPort), "SENTINEL", "REPLICAS", "mymaster")
		seen = strings.Contains(reply, "\r\nname\r\n") && strings.Contains(reply, replica)
	}
	if !seen {
		fail("lab: the Sentinel does not list the replica as %s", replica)
	} else {
		ok("lab: redis-1 and redis-2 on their compose commands; the Sentinel knows the replica as %s", replica)
	}
	if len(cfg.Healthcheck) > 1 {
		hc := append(slices.Clone(cfg.Healthcheck[2:]), "--url=http://"+inst.web+"/readyz")
		if code, out := runAs(bin, hc, cfg.Env, uid, gid, 5*time.Second); code != 0 {
			fail("lab: HEALTHCHECK with a verified master: exit %d: %s", code, out)
		} else {
			ok("lab: HEALTHCHECK with a verified master: exit 0")
		}
	}
	// One INCR through the proxy.
	conn, err := net.DialTimeout("tcp", inst.proxy, 2*time.Second)
	if err == nil {
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		_, err = conn.Write([]byte("*2\r\n$4\r\nINCR\r\n$7\r\ncounter\r\n"))
		if err == nil {
			buf := make([]byte, 64)
			n, rerr := conn.Read(buf)
			if rerr != nil || !bytes.HasPrefix(buf[:n], []byte(":1\r\n")) {
				err = fmt.Errorf("reply %q, %v", buf[:n], rerr)
			}
		}
		conn.Close()
	}
	if err != nil {
		fail("lab: INCR through sentproxy: %v", err)
	} else {
		ok("lab: INCR counter through sentproxy: 1")
	}
}

// redisCommand sends one command and returns the raw reply (enough of it).
func redisCommand(addr string, args ...string) (string, error) {
	conn, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(2 * time.Second))
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := conn.Write([]byte(b.String())); err != nil {
		return "", err
	}
	buf := make([]byte, 64<<10)
	n, err := conn.Read(buf)
	return string(buf[:n]), err
}
