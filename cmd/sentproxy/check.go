package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/sentproxy/sentproxy/discovery"
)

// CheckCmd is `sentproxy check`: the replacement for the
// `redis-cli SENTINEL get-master-addr-by-name` step of ops scripts, but by
// agreement of the Sentinels and verified with ROLE.
type CheckCmd struct {
	Sentinel SentinelFlags `embed:"" prefix:"sentinel."`
	Master   MasterFlags   `embed:"" prefix:"master."`
	TLS      TLSFlags      `embed:"" prefix:"tls."`
	Names    []string      `name:"master-names" env:"SENTPROXY_CHECK_MASTER_NAMES" placeholder:"NAME,..." help:"Check these master names instead of --sentinel.master-name."`
	JSON     bool          `name:"json" env:"SENTPROXY_CHECK_JSON" help:"Print JSON instead of a table."`
}

type checkResult struct {
	MasterName string      `json:"master_name"`
	Master     string      `json:"master"`
	Epoch      int64       `json:"config_epoch"`
	Reason     string      `json:"reason"`
	Sentinels  []checkView `json:"sentinels"`
}

type checkView struct {
	Sentinel string   `json:"sentinel"`
	Master   string   `json:"master,omitempty"`
	Epoch    int64    `json:"config_epoch"`
	Flags    []string `json:"flags,omitempty"`
	Error    string   `json:"error,omitempty"`
}

// Run asks every Sentinel once per master name and prints the result. It
// fails when any name has no verified master.
func (c *CheckCmd) Run(g *globals) error {
	dcfg, _, err := discoveryConfig(c.Sentinel, c.Master, c.TLS)
	if err != nil {
		return err
	}
	names := c.Names
	if len(names) == 0 {
		names = []string{c.Sentinel.MasterName}
	}
	var (
		results []checkResult
		failed  []error
	)
	for _, name := range names {
		cfg := dcfg
		cfg.MasterName = name
		cfg.Logger = g.logger
		w, err := discovery.New(cfg)
		if err != nil {
			return usageError{err}
		}
		// Peers, one query each, and a ROLE check: a few timeouts at most.
		ctx, cancel := context.WithTimeout(context.Background(), 4*cfg.Timeout+time.Second)
		st, err := w.CheckOnce(ctx)
		cancel()
		if err != nil {
			failed = append(failed, err)
		}
		results = append(results, toCheckResult(st))
	}
	if c.JSON {
		enc := json.NewEncoder(g.stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(results); err != nil {
			return err
		}
	} else {
		printCheck(g, results)
	}
	return errors.Join(failed...)
}

func toCheckResult(st discovery.Status) checkResult {
	r := checkResult{MasterName: st.MasterName, Master: st.Addr, Epoch: st.Epoch, Reason: st.Reason}
	for _, v := range st.Views {
		cv := checkView{Sentinel: v.Sentinel, Master: v.Addr, Epoch: v.Epoch, Flags: v.Flags}
		switch {
		case v.Err != nil:
			cv.Error = v.Err.Error()
		case v.NotReady != "":
			cv.Error = "not ready: " + v.NotReady
		}
		r.Sentinels = append(r.Sentinels, cv)
	}
	return r
}

func printCheck(g *globals, results []checkResult) {
	for i, r := range results {
		if i > 0 {
			fmt.Fprintln(g.stdout)
		}
		tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintf(tw, "SENTINEL\tMASTER\tCONFIG-EPOCH\tFLAGS\n")
		for _, v := range r.Sentinels {
			if v.Error != "" {
				fmt.Fprintf(tw, "%s\t-\t-\t%s\n", v.Sentinel, v.Error)
				continue
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\n", v.Sentinel, v.Master, v.Epoch, strings.Join(v.Flags, ","))
		}
		tw.Flush()
		if r.Master != "" {
			fmt.Fprintf(g.stdout, "%s: verified master %s (config-epoch %d): %s\n", r.MasterName, r.Master, r.Epoch, r.Reason)
		} else {
			fmt.Fprintf(g.stdout, "%s: NO verified master: %s\n", r.MasterName, r.Reason)
		}
	}
}
