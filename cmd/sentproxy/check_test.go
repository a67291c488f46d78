package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/sentproxy/sentproxy/discovery"
)

// During a failover, `sentproxy check` shows the replica the leading
// Sentinel has promoted next to the old master it still reports, in the
// table and in the JSON.
func TestCheckShowsTheLeadersPromotedReplica(t *testing.T) {
	st := discovery.Status{MasterName: "mymaster", Addr: "10.0.0.2:6379", Epoch: 5, Reason: "2 of 3 Sentinels agree",
		Views: []discovery.View{
			{Sentinel: "10.0.1.1:26379", Addr: "10.0.0.1:6379", Promoted: "10.0.0.2:6379", Epoch: 5, Flags: []string{"master", "failover_in_progress"}},
			{Sentinel: "10.0.1.2:26379", Addr: "10.0.0.2:6379", Epoch: 5, Flags: []string{"master"}},
		}}
	r := toCheckResult(st)
	var out bytes.Buffer
	printCheck(&globals{stdout: &out}, []checkResult{r})
	if !strings.Contains(out.String(), "10.0.0.1:6379 -> 10.0.0.2:6379") {
		t.Fatalf("table does not show the promoted replica:\n%s", out.String())
	}
	js, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(js), `"promoted":"10.0.0.2:6379"`) || strings.Count(string(js), `"promoted"`) != 1 {
		t.Fatalf("JSON gives promoted for the wrong views: %s", js)
	}
}
