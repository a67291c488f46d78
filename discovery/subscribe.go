package discovery

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// switchChannel is where a Sentinel announces a new master:
// "<master-name> <old-ip> <old-port> <new-ip> <new-port>".
const switchChannel = "+switch-master"

// failoverChannels announce a failover starting or giving up, as
// "master <master-name> <ip> <port> ..." (+try-failover comes from the
// Sentinel that starts one, before it promotes anything). Like
// +switch-master they only wake the check.
var failoverChannels = []string{"+try-failover", "-failover-abort-no-good-slave", "+failover-end"}

// subscribeLoop keeps a +switch-master subscription open on one Sentinel for
// as long as ctx lives. The message only wakes the check loop: the check,
// not the message, decides, so a forged or stale message cannot move traffic.
func (w *Watcher) subscribeLoop(ctx context.Context, s *sentinel) {
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		err := w.subscribeOnce(ctx, s)
		if ctx.Err() != nil {
			return
		}
		w.log.Warn("Sentinel subscription lost; resubscribing", "sentinel", s.addr, "err", err, "retry_in", backoff.String())
		// A missed +switch-master must not strand us: check now.
		w.Recheck("subscription to " + s.addr + " lost")
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 2*time.Second)
	}
}

func (w *Watcher) subscribeOnce(ctx context.Context, s *sentinel) error {
	ps := s.client.Subscribe(ctx)
	defer ps.Close()
	// Receive does not watch ctx; closing the subscription unblocks it.
	stop := context.AfterFunc(ctx, func() { ps.Close() })
	defer stop()

	if err := ps.Subscribe(ctx, append([]string{switchChannel}, failoverChannels...)...); err != nil {
		return fmt.Errorf("discovery: subscribe %s on %s: %w", switchChannel, s.addr, err)
	}
	// Heartbeat: a subscription can die without a reset (the Sentinel's
	// host vanished). Ping when quiet; give up when even pings go unanswered.
	quiet := max(w.cfg.PollInterval, time.Second)
	lastHeard := time.Now()
	for {
		msg, err := ps.ReceiveTimeout(ctx, quiet)
		if err != nil {
			var nerr net.Error
			if errors.As(err, &nerr) && nerr.Timeout() {
				if time.Since(lastHeard) > 3*quiet {
					return fmt.Errorf("discovery: subscription on %s silent for %s", s.addr, time.Since(lastHeard).Round(time.Millisecond))
				}
				if err := ps.Ping(ctx); err != nil {
					return fmt.Errorf("discovery: ping subscription on %s: %w", s.addr, err)
				}
				continue
			}
			return fmt.Errorf("discovery: receive on %s: %w", s.addr, err)
		}
		lastHeard = time.Now()
		switch m := msg.(type) {
		case *redis.Subscription:
			// Also seen after go-redis silently reconnects: whatever was
			// published while we were away is lost, so look now.
			if m.Kind == "subscribe" {
				w.log.Debug("subscribed", "sentinel", s.addr, "channel", m.Channel)
				w.trigger(trigger{reason: "subscribed to " + s.addr, at: lastHeard, urgent: true})
			}
		case *redis.Message:
			if eventMasterName(m.Channel, m.Payload) != w.cfg.MasterName || w.dropEvents {
				continue
			}
			if m.Channel != switchChannel {
				w.log.Debug("failover event", "sentinel", s.addr, "channel", m.Channel, "payload", m.Payload)
				w.trigger(trigger{reason: m.Channel + " from " + s.addr, at: lastHeard, urgent: true, event: true})
				continue
			}
			w.log.Debug("+switch-master received", "sentinel", s.addr, "payload", m.Payload)
			w.trigger(trigger{reason: "+switch-master from " + s.addr, at: lastHeard, urgent: true, event: true})
		}
	}
}

// eventMasterName extracts the master name from a Sentinel event's payload.
func eventMasterName(channel, payload string) string {
	f := strings.Fields(payload)
	if channel == switchChannel {
		if len(f) > 0 {
			return f[0]
		}
		return ""
	}
	// "<instance-type> <name> <ip> <port> [@ <master-name> <ip> <port>]"
	for i, x := range f {
		if x == "@" && i+1 < len(f) {
			return f[i+1]
		}
	}
	if len(f) > 1 && f[0] == "master" {
		return f[1]
	}
	return ""
}
