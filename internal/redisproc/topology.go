package redisproc

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"
)

// DefaultWaitTimeout bounds the waits of a Topology when the caller's
// context has no deadline of its own.
const DefaultWaitTimeout = 30 * time.Second

// TopologyOptions configures StartTopology. Zero values mean the defaults.
type TopologyOptions struct {
	Dir             string        // parent directory of all process directories; required
	MasterName      string        // default "mymaster"
	Replicas        int           // default 1; negative means none
	Sentinels       int           // default 3
	Quorum          int           // default 2
	DownAfter       time.Duration // default 1000ms
	FailoverTimeout time.Duration // default 5000ms
	// Password, when set, is requirepass and masterauth of every data node
	// and auth-pass of every Sentinel.
	Password string
}

// Topology is a master with replicas, watched by Sentinels.
//
// Master and Replicas record the roles at start. After a failover they are
// stale by design; ask CurrentMaster for the live master and ByAddr for its
// Process.
type Topology struct {
	Master     *Process
	Replicas   []*Process
	Sentinels  []*Process
	MasterName string

	password string
}

// StartTopology starts a master, its replicas and the Sentinels, and returns
// once replication is up and every Sentinel knows every other Sentinel and
// every replica. Without that wait a failover right after start fails: a
// Sentinel that does not yet know a replica has nothing to promote.
//
// On error everything started so far is closed.
func StartTopology(ctx context.Context, opts TopologyOptions) (_ *Topology, err error) {
	if opts.MasterName == "" {
		opts.MasterName = "mymaster"
	}
	switch {
	case opts.Replicas == 0:
		opts.Replicas = 1
	case opts.Replicas < 0:
		opts.Replicas = 0
	}
	if opts.Sentinels <= 0 {
		opts.Sentinels = 3
	}
	if opts.Quorum <= 0 {
		opts.Quorum = 2
	}
	if opts.DownAfter <= 0 {
		opts.DownAfter = time.Second
	}
	if opts.FailoverTimeout <= 0 {
		opts.FailoverTimeout = 5 * time.Second
	}
	t := &Topology{MasterName: opts.MasterName, password: opts.Password}
	defer func() {
		if err != nil {
			err = errors.Join(err, t.Close())
		}
	}()

	t.Master, err = StartServer(ctx, Options{Dir: opts.Dir, Name: "master", Password: opts.Password})
	if err != nil {
		return nil, err
	}
	for i := range opts.Replicas {
		r, err := StartServer(ctx, Options{
			Dir:         opts.Dir,
			Name:        fmt.Sprintf("replica%d", i+1),
			Password:    opts.Password,
			ExtraConfig: []string{fmt.Sprintf("replicaof 127.0.0.1 %d", t.Master.Port)},
		})
		if err != nil {
			return nil, err
		}
		t.Replicas = append(t.Replicas, r)
	}
	// Sentinels learn replicas from the master's INFO, which they fetch on
	// connect and then only every 10 s. Starting them after the replicas
	// are attached lets the first INFO list them all.
	if err := t.pollUntil(ctx, "replicas to attach", t.replicationUp); err != nil {
		return nil, err
	}
	for i := range opts.Sentinels {
		s, err := StartSentinel(ctx, SentinelOptions{
			Dir:             opts.Dir,
			Name:            fmt.Sprintf("sentinel%d", i+1),
			MasterName:      opts.MasterName,
			MasterPort:      t.Master.Port,
			Quorum:          opts.Quorum,
			DownAfter:       opts.DownAfter,
			FailoverTimeout: opts.FailoverTimeout,
			AuthPass:        opts.Password,
		})
		if err != nil {
			return nil, err
		}
		t.Sentinels = append(t.Sentinels, s)
	}
	if err := t.WaitConverged(ctx); err != nil {
		return nil, err
	}
	return t, nil
}

// Close closes every process of the topology and reports all failures.
// It is idempotent.
func (t *Topology) Close() error {
	var errs []error
	// Sentinels first, so none of them reacts to the data nodes going away.
	for _, p := range t.Sentinels {
		errs = append(errs, p.Close())
	}
	for _, p := range t.dataNodes() {
		errs = append(errs, p.Close())
	}
	return errors.Join(errs...)
}

// SentinelAddrs returns the addresses of the Sentinels, in start order.
func (t *Topology) SentinelAddrs() []string {
	addrs := make([]string, len(t.Sentinels))
	for i, s := range t.Sentinels {
		addrs[i] = s.Addr
	}
	return addrs
}

// ByAddr returns the data node (master or replica) listening on addr, or nil.
func (t *Topology) ByAddr(addr string) *Process {
	for _, p := range t.dataNodes() {
		if p.Addr == addr {
			return p
		}
	}
	return nil
}

func (t *Topology) dataNodes() []*Process {
	var nodes []*Process
	if t.Master != nil {
		nodes = append(nodes, t.Master)
	}
	return append(nodes, t.Replicas...)
}

// sentinelAnswer is one Sentinel's reply to GET-MASTER-ADDR-BY-NAME.
type sentinelAnswer struct {
	sentinel string
	addr     string
	err      error
}

// askMaster asks every Sentinel at once, so a stopped one costs one call
// timeout rather than one per Sentinel.
func (t *Topology) askMaster(ctx context.Context) []sentinelAnswer {
	answers := make([]sentinelAnswer, len(t.Sentinels))
	var wg sync.WaitGroup
	for i, s := range t.Sentinels {
		wg.Add(1)
		go func() {
			defer wg.Done()
			answers[i] = sentinelAnswer{sentinel: s.Addr}
			v, err := do(ctx, s.Addr, s.password, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", t.MasterName)
			if err != nil {
				answers[i].err = err
				return
			}
			arr, ok := v.([]any)
			if !ok || len(arr) != 2 {
				answers[i].err = fmt.Errorf("unexpected reply %v", v)
				return
			}
			host, _ := arr[0].(string)
			port, _ := arr[1].(string)
			answers[i].addr = net.JoinHostPort(host, port)
		}()
	}
	wg.Wait()
	return answers
}

// majority returns the address more than half of all Sentinels (not just
// of those that answered) report, and a summary of the answers for errors.
func (t *Topology) majority(answers []sentinelAnswer) (string, bool, string) {
	count := map[string]int{}
	var parts []string
	for _, a := range answers {
		if a.err != nil {
			parts = append(parts, fmt.Sprintf("%s: %v", a.sentinel, a.err))
			continue
		}
		count[a.addr]++
		parts = append(parts, fmt.Sprintf("%s: %s", a.sentinel, a.addr))
	}
	summary := strings.Join(parts, "; ")
	for addr, n := range count {
		if n > len(t.Sentinels)/2 {
			return addr, true, summary
		}
	}
	return "", false, summary
}

// CurrentMaster returns the master address a majority of the Sentinels
// agree on.
func (t *Topology) CurrentMaster(ctx context.Context) (string, error) {
	addr, ok, summary := t.majority(t.askMaster(ctx))
	if !ok {
		return "", fmt.Errorf("redisproc: no majority of %d Sentinels agrees on master %q (%s)", len(t.Sentinels), t.MasterName, summary)
	}
	return addr, nil
}

// WaitMaster polls until a majority of the Sentinels agree on a master
// other than notAddr and that server itself answers ROLE with "master".
// The Sentinels switch one by one (the failover leader first, the others
// when its hello message reaches them), so one answer is not enough; and a
// majority only reports configuration, so ROLE confirms the server really
// took over. The deadline is ctx's, or DefaultWaitTimeout.
func (t *Topology) WaitMaster(ctx context.Context, notAddr string) (string, error) {
	var found string
	err := t.pollUntil(ctx, "a new master", func(ctx context.Context) error {
		addr, ok, summary := t.majority(t.askMaster(ctx))
		if !ok {
			return fmt.Errorf("no majority (%s)", summary)
		}
		if addr == notAddr {
			return fmt.Errorf("majority still on %s (%s)", addr, summary)
		}
		role, err := t.role(ctx, addr)
		if err != nil {
			return fmt.Errorf("majority on %s, but ROLE failed: %w", addr, err)
		}
		if role != "master" {
			return fmt.Errorf("majority on %s, but it says ROLE %s", addr, role)
		}
		found = addr
		return nil
	})
	return found, err
}

// Failover sends SENTINEL FAILOVER to the first Sentinel that can be
// reached. It returns when the Sentinel has accepted the request, long
// before the failover is done; use WaitMaster for that. A refusal (e.g.
// -INPROG, -NOGOODSLAVE) is returned as is, not retried elsewhere: another
// Sentinel would refuse for the same reason.
func (t *Topology) Failover(ctx context.Context) error {
	var errs []error
	for _, s := range t.Sentinels {
		_, err := do(ctx, s.Addr, s.password, "SENTINEL", "FAILOVER", t.MasterName)
		if err == nil {
			return nil
		}
		var re replyError
		if errors.As(err, &re) {
			return fmt.Errorf("redisproc: SENTINEL FAILOVER %s on %s: %w", t.MasterName, s.Addr, err)
		}
		errs = append(errs, fmt.Errorf("%s: %w", s.Addr, err))
	}
	return fmt.Errorf("redisproc: SENTINEL FAILOVER %s: no Sentinel reachable: %w", t.MasterName, errors.Join(errs...))
}

// WaitConverged polls until the topology is settled around one master:
// every running Sentinel names the same master, that server answers ROLE
// with "master", every other running data node replicates from it with
// the link up, and every running Sentinel lists every other running
// Sentinel and every running replica as healthy. Processes that were
// killed are left out. The deadline is ctx's, or DefaultWaitTimeout.
//
// After a failover this is the wait before the next one: Sentinel turns
// a demoted master that is still alive into a replica only about 10 s
// after the switch (it re-reads a replica's INFO every 10 s and waits 8 s
// after a role change), and until then a second failover may find nobody
// to promote. It checks a state, not a change: right after Failover the
// old state still passes, so call WaitMaster first.
func (t *Topology) WaitConverged(ctx context.Context) error {
	return t.pollUntil(ctx, "the topology to converge", t.converged)
}

func (t *Topology) converged(ctx context.Context) error {
	var master string
	for _, a := range t.askMaster(ctx) {
		if s := t.sentinelByAddr(a.sentinel); s == nil || !s.running() {
			continue
		}
		if a.err != nil {
			return fmt.Errorf("redisproc: Sentinel %s: %w", a.sentinel, a.err)
		}
		if master != "" && a.addr != master {
			return fmt.Errorf("redisproc: Sentinels disagree: %s vs %s", master, a.addr)
		}
		master = a.addr
	}
	if master == "" {
		return errors.New("no Sentinel is running")
	}
	role, err := t.role(ctx, master)
	if err != nil {
		return fmt.Errorf("master %s: ROLE: %w", master, err)
	}
	if role != "master" {
		return fmt.Errorf("master %s says ROLE %s", master, role)
	}
	var replicas []string
	for _, p := range t.dataNodes() {
		if p.Addr == master || !p.running() {
			continue
		}
		if err := t.replicating(ctx, p, master); err != nil {
			return err
		}
		replicas = append(replicas, p.Addr)
	}
	for _, s := range t.Sentinels {
		if !s.running() {
			continue
		}
		var peers []string
		for _, o := range t.Sentinels {
			if o != s && o.running() {
				peers = append(peers, o.Addr)
			}
		}
		if err := t.sentinelKnows(ctx, s, "SENTINELS", peers); err != nil {
			return err
		}
		if err := t.sentinelKnows(ctx, s, "REPLICAS", replicas); err != nil {
			return err
		}
	}
	return nil
}

// replicationUp reports whether every running replica started as one has
// its link to the master up. Only used before the Sentinels exist.
func (t *Topology) replicationUp(ctx context.Context) error {
	for _, p := range t.Replicas {
		if err := t.replicating(ctx, p, t.Master.Addr); err != nil {
			return err
		}
	}
	return nil
}

// replicating checks INFO replication of p: a replica of master with the
// link up.
func (t *Topology) replicating(ctx context.Context, p *Process, master string) error {
	v, err := do(ctx, p.Addr, p.password, "INFO", "replication")
	if err != nil {
		return fmt.Errorf("replica %s: INFO: %w", p.Addr, err)
	}
	info, _ := v.(string)
	at := net.JoinHostPort(infoField(info, "master_host"), infoField(info, "master_port"))
	switch {
	case infoField(info, "role") != "slave":
		return fmt.Errorf("%s is not a replica yet (role:%s)", p.Addr, infoField(info, "role"))
	case at != master:
		return fmt.Errorf("replica %s follows %s, not %s", p.Addr, at, master)
	case infoField(info, "master_link_status") != "up":
		return fmt.Errorf("replica %s: master_link_status:%s", p.Addr, infoField(info, "master_link_status"))
	}
	return nil
}

// sentinelKnows checks that SENTINEL <what> lists every address in want
// without a down or disconnected flag.
func (t *Topology) sentinelKnows(ctx context.Context, s *Process, what string, want []string) error {
	v, err := do(ctx, s.Addr, s.password, "SENTINEL", what, t.MasterName)
	if err != nil {
		return fmt.Errorf("redisproc: Sentinel %s: SENTINEL %s: %w", s.Addr, what, err)
	}
	entries, _ := v.([]any)
	flags := map[string]string{}
	for _, e := range entries {
		f := fields(e)
		flags[net.JoinHostPort(f["ip"], f["port"])] = f["flags"]
	}
	for _, addr := range want {
		fl, ok := flags[addr]
		if !ok {
			return fmt.Errorf("redisproc: Sentinel %s does not list %s in SENTINEL %s yet (has %s)", s.Addr, addr, what, sortedKeys(flags))
		}
		for _, bad := range []string{"s_down", "o_down", "disconnected"} {
			if slices.Contains(strings.Split(fl, ","), bad) {
				return fmt.Errorf("redisproc: Sentinel %s sees %s as %s", s.Addr, addr, fl)
			}
		}
	}
	return nil
}

func (t *Topology) role(ctx context.Context, addr string) (string, error) {
	pw := ""
	if p := t.ByAddr(addr); p != nil {
		pw = p.password
	}
	v, err := do(ctx, addr, pw, "ROLE")
	if err != nil {
		return "", err
	}
	arr, ok := v.([]any)
	if !ok || len(arr) == 0 {
		return "", fmt.Errorf("unexpected ROLE reply %v", v)
	}
	role, _ := arr[0].(string)
	return role, nil
}

func (t *Topology) sentinelByAddr(addr string) *Process {
	for _, s := range t.Sentinels {
		if s.Addr == addr {
			return s
		}
	}
	return nil
}

// pollUntil calls check until it returns nil, pacing attempts by
// pollInterval. It fails with check's last error once the deadline (ctx's,
// or DefaultWaitTimeout) passes.
func (t *Topology) pollUntil(ctx context.Context, what string, check func(context.Context) error) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultWaitTimeout)
		defer cancel()
	}
	start := time.Now()
	for {
		err := check(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("redisproc: waited %v for %s of %q: %w (last: %v)",
				time.Since(start).Round(time.Millisecond), what, t.MasterName, ctx.Err(), err)
		case <-time.After(pollInterval):
		}
	}
}

// fields turns a Sentinel entry, a flat list of names and values, into a map.
func fields(v any) map[string]string {
	arr, _ := v.([]any)
	m := make(map[string]string, len(arr)/2)
	for i := 0; i+1 < len(arr); i += 2 {
		k, _ := arr[i].(string)
		val, _ := arr[i+1].(string)
		m[k] = val
	}
	return m
}

func sortedKeys(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return "[" + strings.Join(keys, " ") + "]"
}
