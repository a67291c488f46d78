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
