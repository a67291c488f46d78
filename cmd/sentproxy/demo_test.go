package main

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

func TestTimelineLog(t *testing.T) {
	var stderr bytes.Buffer
	next := slog.NewTextHandler(&stderr, &slog.HandlerOptions{Level: slog.LevelWarn})
	var got []string
	open := true
	post := func(ev demoEvent) bool {
		if open {
			got = append(got, ev.msg)
		}
		return open
	}
	log := slog.New(timelineLog{next: next, post: post}).With("route", "mymaster")
	log.Info("below the level")
	log.WithGroup("dial").Warn("no verified master", "reason", `dial "x" failed`, "empty", "")
	want := `sentproxy log WARN: no verified master route=mymaster dial.reason="dial \"x\" failed" dial.empty=""`
	if len(got) != 1 || got[0] != want {
		t.Fatalf("timeline got %q; want [%q]", got, want)
	}
	if stderr.Len() != 0 {
		t.Errorf("stderr got %q while the timeline ran", stderr.String())
	}
	// Once the timeline has ended, records go to the next handler.
	open = false
	log.Warn("stopping")
	if !strings.Contains(stderr.String(), `level=WARN msg=stopping route=mymaster`) {
		t.Errorf("after the timeline: stderr %q", stderr.String())
	}
}
