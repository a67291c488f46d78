package discovery

import (
	"strconv"
	"strings"
	"testing"
)

// leaderMasterReply is what the Sentinel leading a failover of old says
// in SENTINEL MASTER once it has promoted a replica: the old address, the
// new config-epoch, and the flag.
func leaderMasterReply(old *fakeServer, epoch int) fakeReply {
	kv := masterFields("mymaster", old.host(), strconv.Itoa(old.port()), strconv.Itoa(epoch))
	return fakeReply{raw: respFields(withField(kv, "flags", "master,s_down,o_down,failover_in_progress"))}
}

// A Sentinel leading a failover is asked which address it gives for the
// master, and its promoted replica counts with a follower that has
// switched: the new master is verified before the second follower hears
// of the failover, and before the leader ends it.
func TestCheckOnceCountsTheLeadersPromotedReplica(t *testing.T) {
	oldMaster, newMaster := newFakeMaster(t), newFakeMaster(t)
	leader, f1, f2 := newFakeSentinel(t), newFakeSentinel(t), newFakeSentinel(t)
	leader.always("SENTINEL MASTER", leaderMasterReply(oldMaster, 2))
	leader.always("SENTINEL GET-MASTER-ADDR-BY-NAME", fakeReply{raw: respArray(bulk(newMaster.host()), bulk(strconv.Itoa(newMaster.port())))})
	f1.always("SENTINEL MASTER", goodMasterReply(newMaster, 2))
	f2.always("SENTINEL MASTER", goodMasterReply(oldMaster, 1))

	w, err := New(badConfig(leader.addr, f1.addr, f2.addr))
	if err != nil {
		t.Fatal(err)
	}
	st, _, err := checkOnceBounded(t, w)
	if err != nil {
		t.Fatal(err)
	}
	if st.Addr != newMaster.addr || st.Epoch != 2 {
		t.Fatalf("verified %s@%d; want the promoted %s@2 (%s)", st.Addr, st.Epoch, newMaster.addr, st.Reason)
	}
	if n := f1.count("SENTINEL GET-MASTER-ADDR-BY-NAME"); n != 0 {
		t.Errorf("a Sentinel not failing over was asked GET-MASTER-ADDR-BY-NAME %d times", n)
	}
}

// What the leader answers to GET-MASTER-ADDR-BY-NAME is outside input like
// any reply. Tried: an error, nil, a wrong type, a one-element and a
// three-element array, a bad port, a placeholder host, and the old
// address itself. None of them is counted for any address, none makes the
// leader's view an error, and nothing is verified: the follower alone at
// the new epoch is no majority.
func TestCheckOnceIgnoresABadPromotedAnswer(t *testing.T) {
	oldMaster, newMaster := newFakeMaster(t), newFakeMaster(t)
	port := strconv.Itoa(newMaster.port())
	cases := map[string]string{
		"error":       "-ERR boom\r\n",
		"nil":         "*-1\r\n",
		"wrong type":  ":42\r\n",
		"one element": respArray(bulk(newMaster.host())),
		"three":       respArray(bulk(newMaster.host()), bulk(port), bulk("x")),
		"bad port":    respArray(bulk(newMaster.host()), bulk("70000")),
		"placeholder": respArray(bulk("0.0.0.0"), bulk(port)),
		"the old one": respArray(bulk(oldMaster.host()), bulk(strconv.Itoa(oldMaster.port()))),
		"huge array":  "*2147483647\r\n",
		"truncated":   "*2\r\n$9\r\n127.0",
	}
	for name, raw := range cases {
		t.Run(name, func(t *testing.T) {
			leader, f1, f2 := newFakeSentinel(t), newFakeSentinel(t), newFakeSentinel(t)
			leader.always("SENTINEL MASTER", leaderMasterReply(oldMaster, 2))
			leader.always("SENTINEL GET-MASTER-ADDR-BY-NAME", fakeReply{raw: raw, close: strings.HasPrefix(name, "truncated")})
			f1.always("SENTINEL MASTER", goodMasterReply(newMaster, 2))
			f2.always("SENTINEL MASTER", goodMasterReply(oldMaster, 1))
			w, err := New(badConfig(leader.addr, f1.addr, f2.addr))
			if err != nil {
				t.Fatal(err)
			}
			st, _, err := checkOnceBounded(t, w)
			if err == nil || st.Addr != "" {
				t.Fatalf("verified %q (err %v); want no master", st.Addr, err)
			}
			for _, v := range st.Views {
				if v.Err != nil {
					t.Errorf("view %+v: a bad GET-MASTER-ADDR-BY-NAME answer made it an error", v)
				}
				if v.Promoted != "" {
					t.Errorf("view %+v: Promoted from a bad answer", v)
				}
			}
		})
	}
}
