package discovery

import "testing"

// The Sentinel leading a failover flags the old master before it promotes
// anything; from then on nothing may be routed to it.
func TestDecideFailoverInProgress(t *testing.T) {
	views := []View{
		{Sentinel: "s1", Addr: "10.0.0.1:6379", Epoch: 4, Flags: []string{"master", "failover_in_progress"}},
		{Sentinel: "s2", Addr: "10.0.0.1:6379", Epoch: 4, Flags: []string{"master"}},
		{Sentinel: "s3", Addr: "10.0.0.1:6379", Epoch: 4, Flags: []string{"master"}},
	}
	v := decide(views)
	if !v.ok || v.failingOver != "s1" {
		t.Fatalf("verdict %+v; want the majority candidate with failingOver = s1", v)
	}
	w := &Watcher{}
	if addr, _, why := w.judge(t.Context(), v, "10.0.0.1:6379", 4); addr != "" {
		t.Fatalf("judge routes to %q (%s); want no master while the failover is under way", addr, why)
	}
	views[0].Flags = []string{"master"}
	if v := decide(views); v.failingOver != "" {
		t.Fatalf("failingOver = %q without the flag", v.failingOver)
	}
}

// Once the leader has promoted a replica, it backs that replica at the new
// config-epoch (Promoted), though its SENTINEL MASTER still shows the old
// master with failover_in_progress. With one follower switched and the
// other not yet reached by the leader's hello, that is a majority for the
// new master; the leader's flag is about the old one and does not hold it.
func TestDecideCountsTheLeadersPromotedReplica(t *testing.T) {
	const old, promoted = "10.0.0.1:6379", "10.0.0.2:6379"
	views := []View{
		{Sentinel: "leader", Addr: old, Promoted: promoted, Epoch: 5, Flags: []string{"master", "s_down", "o_down", "failover_in_progress"}},
		{Sentinel: "f1", Addr: promoted, Epoch: 5, Flags: []string{"master"}},
		{Sentinel: "f2", Addr: old, Epoch: 4, Flags: []string{"master", "s_down", "o_down"}},
	}
	v := decide(views)
	if !v.ok || v.addr != promoted || v.epoch != 5 || v.support != 2 || v.failingOver != "" || v.downHint {
		t.Fatalf("verdict %+v; want %s@5 backed by 2, not failing over, no down hint", v, promoted)
	}

	// Before any follower switched, the leader alone is no majority.
	views[1] = View{Sentinel: "f1", Addr: old, Epoch: 4, Flags: []string{"master", "s_down", "o_down"}}
	if v := decide(views); v.ok {
		t.Fatalf("verdict %+v; want none while only the leader backs %s", v, promoted)
	}

	// Before the promotion the leader gives the old address (Promoted
	// empty): the old master has the majority but is being failed over.
	views[0].Promoted, views[0].Epoch = "", 4
	if v := decide(views); !v.ok || v.addr != old || v.failingOver != "leader" {
		t.Fatalf("verdict %+v; want %s with failingOver = leader", v, old)
	}
}
