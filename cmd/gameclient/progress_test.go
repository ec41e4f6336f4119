package main

import (
	"io"
	"strings"
	"testing"
	"time"

	"github.com/voxsync/voxsync/assetsmgr"
	"github.com/voxsync/voxsync/resources"
	"github.com/voxsync/voxsync/session"
)

func TestProgressDetailsFitTheirWidth(t *testing.T) {
	r := &reporter{w: io.Discard, quietEvs: true, bound: make(map[resources.Key]resources.Binding), loaded: make(map[resources.Key]bool)}
	small := resources.Binding{Type: resources.TypeTexture, ID: 1, Ref: resources.Ref{Domain: "d", Key: "small.png"}, Size: 1 << 20}
	big := resources.Binding{Type: resources.TypeTexture, ID: 2, Ref: resources.Ref{Domain: "d", Key: "big.png"}, Size: 3 << 20}
	r.event(session.Bound{Binding: small})
	r.event(session.Bound{Binding: big})
	r.event(session.Loaded{Binding: small})
	now := time.Now()
	r.rate.add(now, 0)
	r.rate.add(now.Add(time.Second), 1<<20)
	r.stats = session.Stats{Bound: 2, Loaded: 1}

	tests := []struct {
		name  string
		width int
		want  string
	}{
		{"wide", 200, "1.0 MiB/4.0 MiB · 1.0 MiB/s · ETA 3s · largest: d:big.png 3.0 MiB"},
		{"no room for the largest", 45, "1.0 MiB/4.0 MiB · 1.0 MiB/s · ETA 3s"},
		{"bytes only", 20, "1.0 MiB/4.0 MiB"},
		{"nothing fits", 5, ""},
	}
	for _, tc := range tests {
		if got := r.details(tc.width); got != tc.want {
			t.Errorf("%s: details(%d) = %q, want %q", tc.name, tc.width, got, tc.want)
		}
	}
}

// A resumed download counts what it kept as done, and once loaded does
// not hide another download's progress.
func TestProgressCountsResumedBytes(t *testing.T) {
	r := &reporter{w: io.Discard, quietEvs: true, bound: make(map[resources.Key]resources.Binding), loaded: make(map[resources.Key]bool),
		fetched: make(map[resources.Hash]bool)}
	a := resources.Binding{Type: resources.TypeModel, ID: 1, Ref: resources.Ref{Domain: "d", Key: "a.bin"}, Hash: resources.Sum([]byte("a")), Size: 200 << 20}
	b := resources.Binding{Type: resources.TypeModel, ID: 2, Ref: resources.Ref{Domain: "d", Key: "b.bin"}, Hash: resources.Sum([]byte("b")), Size: 100 << 20}
	r.event(session.Bound{Binding: a})
	r.event(session.Bound{Binding: b})
	// a: 150 MiB resumed and 10 received; b: 20 received.
	r.stats = session.Stats{Bound: 2, BytesReceived: 30 << 20, ChunksResumed: 150 << 20}
	if got := r.details(20); got != "180.0 MiB/300.0 MiB" {
		t.Fatalf("while resuming: %q, want 180.0 MiB/300.0 MiB", got)
	}
	// a done (40 more received); b at 20.
	r.event(session.Loaded{Binding: a, Source: assetsmgr.SourceNetwork})
	r.stats = session.Stats{Bound: 2, Loaded: 1, BytesReceived: 70 << 20, ChunksResumed: 150 << 20}
	if got := r.details(20); got != "220.0 MiB/300.0 MiB" {
		t.Fatalf("after the resumed one: %q, want 220.0 MiB/300.0 MiB", got)
	}
}

// In a log (not a terminal), a follower's last progress line after a hot
// reload is the finished state, not one from the middle of it.
func TestPlainProgressEndsCaughtUp(t *testing.T) {
	var out strings.Builder
	r := &reporter{w: &out, quietEvs: true, bound: make(map[resources.Key]resources.Binding), loaded: make(map[resources.Key]bool),
		fetched: make(map[resources.Hash]bool)}
	r.progress(session.Stats{Bound: 10, Loaded: 10})  // first line: synced
	r.progress(session.Stats{Bound: 600, Loaded: 10}) // a reload: within the second, not printed
	r.last = time.Now().Add(-2 * time.Second)
	r.progress(session.Stats{Bound: 600, Loaded: 221}) // a second on: printed
	r.progress(session.Stats{Bound: 600, Loaded: 599}) // within the second: not printed
	r.progress(session.Stats{Bound: 600, Loaded: 600}) // caught up: printed at once
	r.progress(session.Stats{Bound: 600, Loaded: 600}) // nothing new to say
	// A reload begun and finished within the second of the last line.
	r.progress(session.Stats{Bound: 610, Loaded: 600})
	r.progress(session.Stats{Bound: 610, Loaded: 610}) // printed: the log said 600/600
	r.finish(session.Stats{Bound: 610, Loaded: 610})   // said already: not again
	var got []string
	for _, l := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		got = append(got, strings.Fields(l)[1])
	}
	if want := "10/10 221/600 600/600 610/610"; strings.Join(got, " ") != want {
		t.Errorf("plain progress lines %q, want counts %s:\n%s", got, want, out.String())
	}
}

// The rate of a burst after a quiet spell is the burst's own, not an
// average with the quiet time.
func TestRateMeterForgetsIdleTime(t *testing.T) {
	var m rateMeter
	start := time.Now()
	m.add(start, 0)
	m.add(start.Add(time.Second), 10<<20) // 10 MiB/s
	burst := start.Add(time.Minute)       // idle, then a hot reload
	m.add(burst, 10<<20)
	m.add(burst.Add(time.Second), 20<<20)
	if got := m.perSecond(); got != 10<<20 {
		t.Errorf("rate after an idle minute: %.0f B/s, want %d", got, 10<<20)
	}
}
