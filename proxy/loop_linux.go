//go:build linux

package proxy

import (
	"fmt"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// EngineEpollSupported reports whether EngineEpoll can run here.
const EngineEpollSupported = true

// DefaultEngine is the engine of a ModeTCP route whose Config.Engine is
// empty: EngineEpoll on Linux, where it costs about a third less CPU per
// request than EngineSplice and brings throughput close to HAProxy's
// (ahead with pipelining, 3–5 % behind without; bench/RESULTS.md);
// EngineSplice elsewhere.
const DefaultEngine = EngineEpoll

// The epoll engine moves tcp-mode bytes in event loops, one per Server by
// default (Config.EventLoops), instead of two goroutines per connection.
//
// Why it exists: with io.Copy each message costs three system calls
// (splice in, splice out, and the splice that returns EAGAIN before the
// goroutine parks, because Go's netpoller forgets readiness when it
// parks), plus a goroutine wake-up through the runtime. A level-triggered
// loop reads once per readiness event and writes at the batch's end: two
// calls per message, as HAProxy makes, and a batch of events per
// epoll_wait under load. bench/syscalls and bench/run.sh measure both; see
// bench/RESULTS.md.
//
// Ownership: the loop dups each connection's descriptor and closes the
// *net.TCPConn, which takes the socket out of Go's netpoller; from then on
// the session's loopPair owns both descriptors. Every use of them (the
// loop's reads and writes, and cut from another goroutine) holds the
// pair's mutex and checks closed, so a descriptor is never used after it
// was closed, even if its number is reused.

// loopBufSize is the loop's one read buffer, shared by all its
// connections: what a batch of events reads is written on before the next
// batch, so a connection holds memory only while its peer's socket is
// full.
const loopBufSize = 64 << 10

// minRead is the least room a read gets in the shared buffer; with less
// left, the batch's reads so far are written on first.
const minRead = 16 << 10

// wakeID is the epoll data of the loop's eventfd, timerID that of its
// idle-timeout timer; connection ends count up from 1.
const (
	wakeID  = 0
	timerID = ^uint64(0)
)

type eventLoop struct {
	s    *Server
	slot int // index in s.loops
	ep   int // the connections' descriptors and wake
	// park is a second epoll descriptor, watched by Go's netpoller, that
	// holds ep only while armed: the loop parks on it when ep has nothing.
	park   *os.File
	parkfd int             // park's; not park.Fd(), which makes it blocking
	rc     syscall.RawConn // park's
	armed  bool            // ep is in park
	busy   int             // waits in a row, while armed, that did not park
	// holding: the loop waits in hold, keeping its P, and counts in
	// holders; holds counts its waits there, to look at GOMAXPROCS again
	// now and then.
	holding bool
	holds   int
	wake    int // eventfd, to make the loop look at live again
	// With Config.IdleTimeout: timer is a periodic timerfd in ep that
	// makes the loop look for idle sessions, also while it is parked;
	// now is the time of the current batch, since the Server's epoch,
	// which stamps each pair's lastIO. timer is -1 without an idle
	// timeout.
	idle  time.Duration
	timer int
	now   time.Duration
	buf   []byte
	used  int               // bytes of buf holding this batch's reads
	reads []loopRead        // this batch's reads, written on by flush
	evs   []unix.EpollEvent // filled by poll

	// partFlushes counts batches written in parts because their reads
	// outgrew buf: rare, and the tests' proof that this path ran.
	partFlushes atomic.Int64

	// parkPoll is wait's poll inside rc.Read, made once: a closure made
	// per wait would cost allocations per wait.
	parkPoll func(uintptr) bool
	ready    int   // events parkPoll found
	pollErr  error // why parkPoll's epoll_wait failed
	polls    int   // parkPoll calls in the current wait

	mu     sync.Mutex // guards ends and nextID
	ends   map[uint64]*loopEnd
	nextID uint64

	live int // sessions attached; guarded by s.loopMu
}

// loopEnd is one leg of a loopPair, named by where its bytes come from:
// reading the client end feeds the master, and so on.
type loopEnd struct {
	pair    *loopPair
	peer    *loopEnd
	fd      int
	id      uint64
	dir     direction // direction of the bytes read from fd
	pending []byte    // read from peer, not yet written to fd (its socket was full)
	eof     bool      // nothing more is read from fd
	events  uint32    // interest registered with epoll; 0 means not registered
}

// loopRead is bytes read from e, in buf[off:off+n], not yet written to
// e.peer.
type loopRead struct {
	e      *loopEnd
	off, n int
}

type loopPair struct {
	ss     *session
	el     *eventLoop // set by attach
	mu     sync.Mutex
	closed bool
	// lastIO is when bytes last moved either way, since the Server's
	// epoch: set by attach before the loop can see the pair, then by the
	// loop alone.
	lastIO time.Duration
	client loopEnd
	up     loopEnd
	done   chan struct{}
}

// runLoop moves the session's bytes in the Server's event loop and returns
// when the session has ended. It reports false, having changed nothing,
// when the connections cannot be handed over (the session was cut first,
// or a descriptor could not be duplicated or watched); the caller then runs
// the goroutine copy, which finds cut connections closed.
func (ss *session) runLoop() bool {
	ss.loopMu.Lock()
	if ss.cutReason.Load() != nil {
		ss.loopMu.Unlock()
		return false
	}
	p, err := ss.server.handOver(ss)
	if err != nil {
		ss.loopMu.Unlock()
		ss.server.log.Warn("epoll engine: copying this connection with io.Copy instead", "err", err)
		return false
	}
	// Closing the Go connections takes the sockets out of Go's netpoller;
	// the duplicates, already watched by the loop, keep them open.
	ss.client.Close()
	ss.up.Close()
	ss.loop = p
	ss.loopMu.Unlock()

	<-p.done
	ss.setReason(clientToMaster)
	return true
}

// handOver duplicates the session's two descriptors and attaches them to
// the loop; on error nothing is left open or watched.
func (s *Server) handOver(ss *session) (*loopPair, error) {
	cfd, err := dupConn(ss.client)
	if err != nil {
		return nil, err
	}
	ufd, err := dupConn(ss.up)
	if err != nil {
		unix.Close(cfd)
		return nil, err
	}
	p := &loopPair{ss: ss, done: make(chan struct{})}
	p.client = loopEnd{pair: p, peer: &p.up, fd: cfd, dir: clientToMaster}
	p.up = loopEnd{pair: p, peer: &p.client, fd: ufd, dir: masterToClient}
	if err := s.attach(p); err != nil {
		unix.Close(cfd)
		unix.Close(ufd)
		return nil, err
	}
	return p, nil
}

// dupFD duplicates a descriptor, close-on-exec; a variable so that a test
// can make it fail.
var dupFD = func(fd uintptr) (int, error) { return unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0) }

// epollCtl (for the connections' descriptors) and armCtl (adding ep to and
// removing it from park) are variables so that tests can make them fail.
// They take the event by value: through a function variable a pointer
// would escape, and every epoll_ctl would allocate.
var (
	epollCtl = epollCtlValue
	armCtl   = epollCtlValue
)

func epollCtlValue(ep, op, fd int, ev unix.EpollEvent) error {
	return unix.EpollCtl(ep, op, fd, &ev)
}

// dupConn duplicates the descriptor of a TCP or unix-socket connection.
func dupConn(c net.Conn) (int, error) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return -1, fmt.Errorf("proxy: %T has no descriptor of its own", c)
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return -1, fmt.Errorf("proxy: raw connection: %w", err)
	}
	nfd := -1
	var derr error
	if err := rc.Control(func(fd uintptr) {
		nfd, derr = dupFD(fd)
	}); err != nil {
		return -1, fmt.Errorf("proxy: raw connection: %w", err)
	}
	if derr != nil {
		return -1, fmt.Errorf("proxy: dup: %w", derr)
	}
	return nfd, nil
}

// closeFDs closes both descriptors once; the caller holds p.mu. reset
// discards whatever is still queued for the master.
func (p *loopPair) closeFDs(reset bool) bool {
	if p.closed {
		return false
	}
	p.closed = true
	if reset {
		unix.SetsockoptLinger(p.up.fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0})
	}
	unix.Close(p.up.fd)
	unix.Close(p.client.fd)
	p.client.pending, p.up.pending = nil, nil
	return true
}

// abort is cut for a loop session: both legs closed before it returns.
func (p *loopPair) abort() {
	p.mu.Lock()
	closed := p.closeFDs(true)
	p.mu.Unlock()
	if closed {
		p.ss.server.detach(p)
	}
}

// attach hands a pair to the loop that serves the fewest sessions,
// starting it if it does not run. Counting sessions, not bytes, is crude,
// but connections to one master tend to look alike, and it needs no
// bookkeeping on the hot path.
func (s *Server) attach(p *loopPair) error {
	s.loopMu.Lock()
	defer s.loopMu.Unlock()
	slot, least := 0, -1
	for i, el := range s.loops {
		live := 0 // a loop not running serves none
		if el != nil {
			live = el.live
		}
		if least < 0 || live < least {
			slot, least = i, live
		}
	}
	el := s.loops[slot]
	if el == nil {
		var err error
		el, err = newEventLoop(s, slot)
		if err != nil {
			return err
		}
		s.loops[slot] = el
		s.wg.Add(1)
		go el.run()
	}
	p.el = el
	p.lastIO = time.Since(s.epoch)
	el.mu.Lock()
	for _, e := range []*loopEnd{&p.client, &p.up} {
		el.nextID++
		e.id = el.nextID
		el.ends[e.id] = e
	}
	el.mu.Unlock()
	el.live++
	p.mu.Lock()
	err := el.watch(&p.client)
	if err == nil {
		err = el.watch(&p.up)
	}
	if err != nil {
		// The loop may already hold an event for a watched end: closed
		// makes it leave the pair alone while the caller closes the
		// descriptors.
		p.closed = true
	}
	p.mu.Unlock()
	if err != nil {
		el.forget(p)
		el.live--
		if el.live == 0 {
			el.nudge()
		}
		return err
	}
	return nil
}

// nudge wakes the loop to look at live again.
func (el *eventLoop) nudge() {
	one := [8]byte{1}
	unix.Write(el.wake, one[:])
}

// detach removes a pair whose descriptors are closed and ends its session.
func (s *Server) detach(p *loopPair) {
	s.loopMu.Lock()
	el := p.el
	el.forget(p)
	el.live--
	if el.live == 0 {
		el.nudge()
	}
	s.loopMu.Unlock()
	close(p.done)
}

func newEventLoop(s *Server, slot int) (*eventLoop, error) {
	ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("proxy: epoll_create1: %w", err)
	}
	pk, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		unix.Close(ep)
		return nil, fmt.Errorf("proxy: epoll_create1: %w", err)
	}
	// Non-blocking, so that os.NewFile hands it to the netpoller.
	if err := unix.SetNonblock(pk, true); err != nil {
		unix.Close(ep)
		unix.Close(pk)
		return nil, fmt.Errorf("proxy: epoll descriptor: %w", err)
	}
	park := os.NewFile(uintptr(pk), "epoll")
	rc, err := park.SyscallConn()
	if err != nil {
		unix.Close(ep)
		park.Close()
		return nil, fmt.Errorf("proxy: epoll descriptor: %w", err)
	}
	wake, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		unix.Close(ep)
		park.Close()
		return nil, fmt.Errorf("proxy: eventfd: %w", err)
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN}
	setEventID(&ev, wakeID)
	if err := unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, wake, &ev); err != nil {
		unix.Close(wake)
		unix.Close(ep)
		park.Close()
		return nil, fmt.Errorf("proxy: epoll_ctl eventfd: %w", err)
	}
	el := &eventLoop{s: s, slot: slot, ep: ep, park: park, parkfd: pk, rc: rc, wake: wake, timer: -1,
		idle: s.cfg.IdleTimeout,
		buf:  make([]byte, loopBufSize), evs: make([]unix.EpollEvent, 128), ends: map[uint64]*loopEnd{}}
	if el.idle > 0 {
		if err := el.startTimer(); err != nil {
			unix.Close(wake)
			unix.Close(ep)
			park.Close()
			return nil, err
		}
	}
	el.parkPoll = func(uintptr) bool {
		el.polls++
		el.ready, el.pollErr = el.poll()
		return el.ready > 0 || el.pollErr != nil
	}
	return el, nil
}

// startTimer adds the periodic idle-timeout timer to ep.
func (el *eventLoop) startTimer() error {
	fd, err := unix.TimerfdCreate(unix.CLOCK_MONOTONIC, unix.TFD_CLOEXEC|unix.TFD_NONBLOCK)
	if err != nil {
		return fmt.Errorf("proxy: timerfd_create: %w", err)
	}
	every := unix.NsecToTimespec(sweepEvery(el.idle).Nanoseconds())
	if err := unix.TimerfdSettime(fd, 0, &unix.ItimerSpec{Interval: every, Value: every}, nil); err != nil {
		unix.Close(fd)
		return fmt.Errorf("proxy: timerfd_settime: %w", err)
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN}
	setEventID(&ev, timerID)
	if err := unix.EpollCtl(el.ep, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
		unix.Close(fd)
		return fmt.Errorf("proxy: epoll_ctl timerfd: %w", err)
	}
	el.timer = fd
	return nil
}

// sweep cuts the sessions in which no byte moved either way for the idle
// timeout. Bytes waiting for a peer that does not read are not movement:
// a client that stopped reading is idle, as with the buffered copy.
func (el *eventLoop) sweep() {
	now := time.Since(el.s.epoch)
	var idle []*loopPair
	el.mu.Lock()
	for _, e := range el.ends {
		if e.dir == clientToMaster && now-e.pair.lastIO >= el.idle {
			idle = append(idle, e.pair)
		}
	}
	el.mu.Unlock()
	for _, p := range idle {
		// cut closes and detaches the pair; the loop holds none of the
		// locks that takes, and flush has written the batch already.
		p.ss.cut(ReasonIdle)
	}
}

func (el *eventLoop) forget(p *loopPair) {
	el.mu.Lock()
	delete(el.ends, p.client.id)
	delete(el.ends, p.up.id)
	el.mu.Unlock()
}

func setEventID(ev *unix.EpollEvent, id uint64) {
	ev.Fd = int32(uint32(id))
	ev.Pad = int32(uint32(id >> 32))
}

func eventID(ev *unix.EpollEvent) uint64 {
	return uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32
}

// run serves events until no session is attached, then releases the loop.
func (el *eventLoop) run() {
	defer el.s.wg.Done()
	evs := el.evs
	for {
		n, err := el.wait()
		if err != nil {
			el.fail(err)
			return
		}
		sweep := false
		if el.idle > 0 {
			el.now = time.Since(el.s.epoch)
		}
		for i := range evs[:n] {
			id := eventID(&evs[i])
			if id == wakeID {
				var b [8]byte
				unix.Read(el.wake, b[:])
				continue
			}
			if id == timerID {
				var b [8]byte
				unix.Read(el.timer, b[:])
				sweep = true
				continue
			}
			el.mu.Lock()
			e := el.ends[id]
			el.mu.Unlock()
			if e != nil {
				el.serve(e, evs[i].Events)
			}
		}
		el.flush()
		if sweep {
			el.sweep()
		}
		if el.idleRelease() {
			return
		}
	}
}

// fail ends a loop that cannot wait. Only a bug gets here (epoll_wait fails
// on a bad descriptor or buffer), but one route's loop must not take the
// process and every other route with it: the loop's sessions are cut, with
// a reason that says so, and the next connection starts a new loop.
func (el *eventLoop) fail(err error) {
	el.s.loopMu.Lock()
	el.s.loops[el.slot] = nil // no session is attached to el from here on
	el.s.loopMu.Unlock()
	el.mu.Lock()
	pairs := make([]*loopPair, 0, len(el.ends)/2)
	for _, e := range el.ends {
		if e.dir == clientToMaster {
			pairs = append(pairs, e.pair)
		}
	}
	el.mu.Unlock()
	el.s.log.Error("epoll engine: event loop failed; closing its connections", "err", err, "connections", len(pairs))
	for _, p := range pairs {
		// cut returns once the pair is closed and detached, also when
		// another goroutine was cutting it first (sync.Once), so nothing
		// touches el's descriptors after they are closed below.
		p.ss.cut(ReasonInternalError)
	}
	el.release()
}

// disarmAfter is how many waits in a row must find events without parking
// before the loop takes ep out of park; a variable for tests.
var disarmAfter = 16

// holdIdleMS is how long, in milliseconds, a loop waits in hold before it
// gives its P back and parks; a variable for tests.
var holdIdleMS = 5

// holdAllowed is false in tests of the parking path alone.
var holdAllowed = true

// holders counts the loops, of every Server, waiting in hold: each keeps
// a P, and at least one P is always left to the rest of the process.
var holders atomic.Int32

// wait returns at least one event, or why it cannot wait. A busy loop
// waits in hold, as HAProxy waits: in epoll_wait on ep, its thread woken
// by the kernel. After holdIdleMS with nothing, or when no P can be
// spared for it, it polls ep without blocking and, when that finds
// nothing, parks on Go's netpoller like any goroutine, through park,
// which holds ep. It blocks in a system call the runtime knows of only
// when ep cannot be added to park (block).
//
// Why hold: a parked loop is woken through the runtime: the netpoller's
// thread wakes, takes a P and runs the loop, which polls ep again. With
// one client that cost 59–63 µs of CPU per request against HAProxy's
// 47–48, and 7.7 epoll_wait calls per request against HAProxy's 2. Held,
// the loop makes 2 calls and spends 48–49 µs (bench/perfstat.sh;
// bench/RESULTS.md).
//
// Why two descriptors for parking: a loop blocked in epoll_wait through
// a system call the runtime knows of has its P taken and handed back,
// with sysmon waking every 20 µs to do it (16 % of the proxy's CPU
// samples under redis-benchmark -c 50 GET). But while ep is watched by
// the netpoller, every new event in it also wakes the runtime's idle
// thread blocked in the netpoller's own epoll_wait, though the loop,
// busy, will read the event itself: at 1,000 clients that was 0.6
// context switches and 0.8 epoll_pwait calls per request. So ep is in
// park only while the loop may park: it is added before the loop parks
// and taken out once disarmAfter waits in a row found events without
// parking, or when the loop starts to hold.
func (el *eventLoop) wait() (int, error) {
	if el.holding || el.claimHold() {
		n, err := el.hold()
		if n == 0 && err == nil {
			el.dropHold() // idle: give the P back and park
		} else if el.holds++; el.holds%1024 == 0 && !holdFits() {
			el.dropHold() // GOMAXPROCS was lowered
		}
		if n > 0 || err != nil {
			return n, err
		}
	}
	if !el.armed {
		if n, err := el.poll(); n > 0 || err != nil {
			return n, err
		}
		ev := unix.EpollEvent{Events: unix.EPOLLIN}
		if err := armCtl(el.parkfd, unix.EPOLL_CTL_ADD, el.ep, ev); err != nil {
			return el.block()
		}
		el.armed = true // and poll again below: an event may have come first
	}
	el.polls = 0
	if err := el.rc.Read(el.parkPoll); err != nil {
		return 0, fmt.Errorf("proxy: waiting on the epoll descriptor: %w", err)
	}
	if el.pollErr != nil {
		return 0, el.pollErr
	}
	if el.polls > 1 {
		el.busy = 0 // it parked
	} else if el.busy++; el.busy >= disarmAfter {
		if armCtl(el.parkfd, unix.EPOLL_CTL_DEL, el.ep, unix.EpollEvent{}) == nil {
			el.armed, el.busy = false, 0
		}
	}
	return el.ready, nil
}

// claimHold makes the loop wait in hold from now on, if a P can be spared
// for it: holders, this loop among them, must stay below GOMAXPROCS.
func (el *eventLoop) claimHold() bool {
	if !holdAllowed {
		return false
	}
	holders.Add(1)
	if !holdFits() {
		holders.Add(-1)
		return false
	}
	el.holding, el.holds = true, 0
	// Events now reach the loop alone, not the netpoller too.
	if el.armed && armCtl(el.parkfd, unix.EPOLL_CTL_DEL, el.ep, unix.EpollEvent{}) == nil {
		el.armed, el.busy = false, 0
	}
	return true
}

func holdFits() bool { return int(holders.Load()) < runtime.GOMAXPROCS(0) }

func (el *eventLoop) dropHold() {
	if el.holding {
		el.holding = false
		holders.Add(-1)
	}
}

// hold waits up to holdIdleMS in epoll_wait on ep, in a raw system call:
// the runtime takes the loop for a running goroutine, so it neither hands
// its P to another thread nor gives it back through the scheduler, and
// the kernel wakes this thread itself. It returns 0 when nothing came.
//
// The P stays with the loop while it waits; the rest of the process runs
// on the others (holders). When the runtime needs this one (a GC stop,
// sysmon after 10 ms), it signals the thread: epoll_wait returns EINTR and
// the loop yields. With asynchronous preemption turned off
// (GODEBUG=asyncpreemptoff=1) no signal comes, and such a stop waits for
// the next event or for holdIdleMS.
func (el *eventLoop) hold() (int, error) {
	for {
		n, errno := holdWait(el.ep, el.evs, holdIdleMS)
		switch errno {
		case 0:
			return n, nil
		case unix.EINTR:
			runtime.Gosched()
		default:
			return 0, fmt.Errorf("proxy: epoll_wait: %w", errno)
		}
	}
}

// holdWait is hold's epoll_wait; a variable so that a test can make the
// loop fail there.
var holdWait = rawEpollWait

func rawEpollWait(ep int, evs []unix.EpollEvent, msec int) (int, syscall.Errno) {
	r, _, errno := syscall.RawSyscall6(unix.SYS_EPOLL_PWAIT, uintptr(ep),
		uintptr(unsafe.Pointer(&evs[0])), uintptr(len(evs)), uintptr(msec), 0, 0)
	return int(r), errno
}

// poll is epoll_pwait on ep into evs with a zero timeout.
func (el *eventLoop) poll() (int, error) {
	n, errno := rawEpollWait(el.ep, el.evs, 0)
	switch errno {
	case 0:
		return n, nil
	case unix.EINTR:
		return 0, nil
	default:
		return 0, fmt.Errorf("proxy: epoll_wait: %w", errno)
	}
}

// block waits in epoll_wait, in a system call the runtime knows may block:
// the way to wait when ep cannot be added to park (epoll_ctl failed, as at
// fs.epoll.max_user_watches). Slower, never wrong.
func (el *eventLoop) block() (int, error) {
	for {
		n, err := epollWait(el.ep, el.evs, -1)
		switch {
		case n > 0:
			return n, nil
		case err != nil && err != unix.EINTR:
			return 0, fmt.Errorf("proxy: epoll_wait: %w", err)
		}
	}
}

// epollWait is block's epoll_wait; a variable so that a test can make the
// loop fail.
var epollWait = unix.EpollWait

// idleRelease releases the loop when nothing is attached; attach starts
// another.
func (el *eventLoop) idleRelease() bool {
	el.s.loopMu.Lock()
	defer el.s.loopMu.Unlock()
	if el.live > 0 {
		return false
	}
	el.s.loops[el.slot] = nil
	el.release()
	return true
}

// release closes the loop's own descriptors, once it serves no session.
func (el *eventLoop) release() {
	el.dropHold()
	if el.timer >= 0 {
		unix.Close(el.timer)
	}
	unix.Close(el.wake)
	el.park.Close()
	unix.Close(el.ep)
}

// serve handles one readiness event on e. Bytes it reads are written on by
// flush, after every event of the batch has been read, as HAProxy sends at
// the end of its batch: the writes then leave in one burst, so the master
// (and the clients) may find several connections ready per wake-up. Two
// A/B runs against writing each message as it is read (bench/perfstat.sh
// with B_BIN, 50 clients, 7 rounds each) gave +1.6 % and +11 %
// throughput, and 2 % and 7 % less CPU per request.
func (el *eventLoop) serve(e *loopEnd, events uint32) {
	if loopBufSize-el.used < minRead {
		el.partFlushes.Add(1)
		el.flush()
	}
	p := e.pair
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	end, n := el.move(e, events)
	if n > 0 {
		p.lastIO = el.now
		// flush writes it and brings the interest of both ends in line.
		el.reads = append(el.reads, loopRead{e: e, off: el.used, n: n})
		el.used += n
		p.mu.Unlock()
		return
	}
	el.settle(p, e, end)
}

// settle finishes an event on e, p.mu held (and released here): it brings
// both ends' epoll interest in line with their state, or ends the session.
func (el *eventLoop) settle(p *loopPair, e *loopEnd, end bool) {
	if !end {
		err := el.watch(e)
		if err == nil {
			err = el.watch(e.peer)
		}
		if err != nil {
			el.s.log.Warn("epoll engine: closing connection", "err", err)
			p.ss.markEnded(clientToMaster)
			end = true
		}
	}
	if end {
		p.closeFDs(false)
	}
	p.mu.Unlock()
	if end {
		el.s.detach(p)
	}
}

// flush writes the batch's reads on to their peers, in the order they were
// read. A session closed since (cut, or ended by another event of the
// batch) has its bytes dropped: closed is checked under the pair's lock,
// as everywhere, so a closed descriptor is never written.
func (el *eventLoop) flush() {
	for i := range el.reads {
		r := el.reads[i]
		el.reads[i] = loopRead{}
		p := r.e.pair
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			continue
		}
		el.settle(p, r.e, el.forward(r.e, el.buf[r.off:r.off+r.n]))
	}
	el.reads = el.reads[:0]
	el.used = 0
}

// move does the I/O one event allows and reports whether the session is
// over, and how many bytes it read into el.buf at el.used for flush to
// write on. What the peer's socket does not take then waits in the peer's
// pending, and reading stops until it has been written.
func (el *eventLoop) move(e *loopEnd, events uint32) (end bool, read int) {
	ss := e.pair.ss
	if events&(unix.EPOLLOUT|unix.EPOLLERR|unix.EPOLLHUP) != 0 && len(e.pending) > 0 {
		w, err := rawWrite(e.fd, e.pending)
		if err != nil && err != unix.EAGAIN {
			ss.markEnded(e.dir)
			return true, 0
		}
		e.pending = e.pending[max(w, 0):]
		el.count(e, max(w, 0))
		if w > 0 {
			e.pair.lastIO = el.now
		}
		if len(e.pending) == 0 {
			e.pending = nil
			if e.peer.eof {
				if e.dir == masterToClient {
					unix.Shutdown(e.fd, unix.SHUT_WR)
				} else {
					return true, 0 // the master's side ended and all its bytes are out
				}
			}
		}
	}
	if events&(unix.EPOLLIN|unix.EPOLLERR|unix.EPOLLHUP) == 0 || e.eof || len(e.peer.pending) > 0 {
		return false, 0
	}
	n, err := rawRead(e.fd, el.buf[el.used:])
	switch {
	case n > 0:
		return false, n
	case err == unix.EAGAIN:
		return false, 0
	default: // end of stream, or the socket failed
		e.eof = true
		ss.markEnded(e.dir)
		if e.dir == masterToClient {
			// Redis never half-closes: the session is over once what the
			// master sent has reached the client.
			return len(e.peer.pending) == 0, 0
		}
		if len(e.peer.pending) == 0 {
			unix.Shutdown(e.peer.fd, unix.SHUT_WR)
		}
		return false, 0
	}
}

// forward writes b, read from e, to e.peer; what its socket does not take
// waits in e.peer.pending. It reports whether the session is over.
func (el *eventLoop) forward(e *loopEnd, b []byte) bool {
	w, err := rawWrite(e.peer.fd, b)
	if err != nil && err != unix.EAGAIN {
		e.pair.ss.markEnded(e.peer.dir)
		return true
	}
	w = max(w, 0)
	el.count(e.peer, w)
	if w < len(b) {
		e.peer.pending = append([]byte(nil), b[w:]...)
	}
	return false
}

// count adds n bytes written to e.fd to the session's byte counts.
func (el *eventLoop) count(e *loopEnd, n int) {
	if e.dir == clientToMaster {
		e.pair.ss.m2c += int64(n)
	} else {
		e.pair.ss.c2m += int64(n)
	}
}

// watch brings e's epoll interest in line with its state: read while its
// peer has nothing pending, write while it has. A descriptor with no
// interest is taken out of epoll, because epoll reports hang-ups and
// errors whatever the interest, and level-triggered, they would repeat.
func (el *eventLoop) watch(e *loopEnd) error {
	var want uint32
	if !e.eof && len(e.peer.pending) == 0 {
		want |= unix.EPOLLIN
	}
	if len(e.pending) > 0 {
		want |= unix.EPOLLOUT
	}
	if want == e.events {
		return nil
	}
	op := unix.EPOLL_CTL_MOD
	switch {
	case e.events == 0:
		op = unix.EPOLL_CTL_ADD
	case want == 0:
		op = unix.EPOLL_CTL_DEL
	}
	ev := unix.EpollEvent{Events: want}
	setEventID(&ev, e.id)
	if err := epollCtl(el.ep, op, e.fd, ev); err != nil {
		return fmt.Errorf("proxy: epoll_ctl: %w", err)
	}
	e.events = want
	return nil
}

// rawRead and rawWrite skip the runtime's system-call bookkeeping: the
// sockets are non-blocking, so the calls never block.
func rawRead(fd int, b []byte) (int, error) {
	r, _, errno := syscall.RawSyscall(unix.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
	if errno != 0 {
		return -1, errno
	}
	return int(r), nil
}

func rawWrite(fd int, b []byte) (int, error) {
	r, _, errno := syscall.RawSyscall(unix.SYS_WRITE, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
	if errno != 0 {
		return -1, errno
	}
	return int(r), nil
}
