package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"strconv"
	"sync"
	"time"
)

// schedule is one connection's send times in the open loop: slot k is due
// at start + phase + k·interval, whatever happened to the earlier requests.
type schedule struct {
	start    time.Time
	phase    time.Duration // random, in [0, interval), so connections do not send in step
	interval time.Duration
}

// at is when slot k is due.
func (s schedule) at(k int64) time.Time {
	return s.start.Add(s.phase + time.Duration(k)*s.interval)
}

// next returns the slot to send after slot k when it is now: k+1 if it is
// not yet past, otherwise the first slot not yet past, along with how many
// slots were skipped because a reply came late.
func (s schedule) next(k int64, now time.Time) (slot, skipped int64) {
	slot = max(k+1, s.slotsBefore(now))
	return slot, slot - k - 1
}

// slotsBefore is how many slots are due before t.
func (s schedule) slotsBefore(t time.Time) int64 {
	d := t.Sub(s.start) - s.phase
	if d <= 0 {
		return 0
	}
	return int64((d + s.interval - 1) / s.interval)
}

// newSchedule spreads rate requests/s over conns connections: each sends
// every conns/rate seconds, from a random phase within its first interval.
func newSchedule(start time.Time, rate, conns int, rng *rand.Rand) schedule {
	interval := time.Duration(float64(time.Second) * float64(conns) / float64(rate))
	interval = max(interval, time.Microsecond)
	return schedule{start: start, phase: time.Duration(rng.Int64N(int64(interval))), interval: interval}
}

// client is a minimal raw RESP client: its commands are encoded once, and
// reading a reply allocates nothing, so that the generator's own cost stays
// small next to what it measures.
type client struct {
	c   net.Conn
	r   *bufio.Reader
	set []byte
	get []byte
}

// value is what SET stores and GET reads back: 3 bytes, like
// redis-benchmark's default -d.
const value = "xxx"

func newClient(c net.Conn, id int) *client {
	key := "key:" + strconv.Itoa(id)
	return &client{
		c:   c,
		r:   bufio.NewReaderSize(c, 4096),
		set: respCommand("SET", key, value),
		get: respCommand("GET", key),
	}
}

func respCommand(args ...string) []byte {
	var b []byte
	b = fmt.Appendf(b, "*%d\r\n", len(args))
	for _, a := range args {
		b = fmt.Appendf(b, "$%d\r\n%s\r\n", len(a), a)
	}
	return b
}

// do sends SET (even n) or GET (odd n) and reads the whole reply, checking
// it: +OK for SET, the stored value for GET.
func (c *client) do(n int64) error {
	cmd, isGet := c.set, n%2 == 1
	if isGet {
		cmd = c.get
	}
	if _, err := c.c.Write(cmd); err != nil {
		return err
	}
	line, err := c.readLine()
	if err != nil {
		return err
	}
	if !isGet {
		if !bytes.Equal(line, []byte("+OK")) {
			return fmt.Errorf("SET answered %q", line)
		}
		return nil
	}
	if !bytes.Equal(line, []byte("$3")) {
		return fmt.Errorf("GET answered %q", line)
	}
	b, err := c.r.Peek(len(value) + 2)
	if err != nil {
		return err
	}
	if string(b) != value+"\r\n" {
		return fmt.Errorf("GET returned %q", b)
	}
	_, err = c.r.Discard(len(b))
	return err
}

// readLine reads one CRLF-terminated line and returns it without the CRLF;
// the slice is valid until the next read.
func (c *client) readLine() ([]byte, error) {
	line, err := c.r.ReadSlice('\n')
	if err != nil {
		return nil, err
	}
	if len(line) < 3 || line[len(line)-2] != '\r' {
		return nil, fmt.Errorf("malformed RESP line %q", line)
	}
	return line[:len(line)-2], nil
}

// loadResult is what one connection recorded.
type loadResult struct {
	samples []time.Duration // latency of each recorded request
	lags    []time.Duration // how late each recorded request was written after its slot
	skipped int64           // slots skipped in the recorded window
}

// loadWindow is the recorded part of a load run: requests sent from from
// on are recorded, and none is sent at or after to.
type loadWindow struct {
	from, to time.Time
}

// runLoad opens conns connections to addr and drives rate requests/s over
// them for warm + dur, recording requests sent in the last dur. mark is
// called once when the recording starts, from its own goroutine. It returns
// every connection's samples merged.
func runLoad(ctx context.Context, addr string, rate, conns int, warm, dur time.Duration, mark func()) (loadResult, error) {
	clients := make([]*client, 0, conns)
	defer func() {
		for _, c := range clients {
			c.c.Close()
		}
	}()
	for i := range conns {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			return loadResult{}, fmt.Errorf("dial %s: %w", addr, err)
		}
		clients = append(clients, newClient(c, i))
	}
	start := time.Now().Add(10 * time.Millisecond)
	w := loadWindow{from: start.Add(warm), to: start.Add(warm + dur)}
	// Unblock every read and write on Ctrl-C, and bound a stuck target.
	for _, c := range clients {
		if err := c.c.SetDeadline(w.to.Add(10 * time.Second)); err != nil {
			return loadResult{}, err
		}
	}
	stop := context.AfterFunc(ctx, func() {
		for _, c := range clients {
			_ = c.c.SetDeadline(time.Unix(1, 0))
		}
	})
	defer stop()

	markTimer := time.AfterFunc(time.Until(w.from), mark)
	defer markTimer.Stop()

	rng := rand.New(rand.NewPCG(uint64(start.UnixNano()), uint64(rate)))
	results := make([]loadResult, conns)
	errs := make([]error, conns)
	var wg sync.WaitGroup
	for i, c := range clients {
		s := newSchedule(start, rate, conns, rng)
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], errs[i] = drive(ctx, c, s, w)
			if errs[i] != nil {
				errs[i] = fmt.Errorf("connection %d to %s: %w", i, addr, errs[i])
			}
		}()
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return loadResult{}, err
	}
	if err := errors.Join(errs...); err != nil {
		return loadResult{}, err
	}
	var all loadResult
	for _, r := range results {
		all.samples = append(all.samples, r.samples...)
		all.lags = append(all.lags, r.lags...)
		all.skipped += r.skipped
	}
	return all, nil
}

// drive runs one connection's schedule until w.to: wait for the slot, send,
// read the reply, and record the latency when the send fell in w.
func drive(ctx context.Context, c *client, s schedule, w loadWindow) (loadResult, error) {
	// Allocate up front: a GC during the measurement would land in it.
	n := int(w.to.Sub(w.from)/s.interval) + 2
	res := loadResult{samples: make([]time.Duration, 0, n), lags: make([]time.Duration, 0, n)}
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	var k, sent int64
	for {
		due := s.at(k)
		if !due.Before(w.to) {
			return res, nil
		}
		if d := time.Until(due); d > 0 {
			timer.Reset(d)
			select {
			case <-timer.C:
			case <-ctx.Done():
				return res, ctx.Err()
			}
		}
		t0 := time.Now()
		if err := c.do(sent); err != nil {
			return res, err
		}
		t1 := time.Now()
		sent++
		recording := !t0.Before(w.from)
		if recording {
			res.samples = append(res.samples, t1.Sub(t0))
			res.lags = append(res.lags, t0.Sub(due))
		}
		next, skipped := s.next(k, t1)
		if recording {
			// Only slots due before the end of the window count.
			res.skipped += max(0, min(skipped, s.slotsBefore(w.to)-k-1))
		}
		k = next
	}
}
