package main

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/voxsync/voxsync/packets"
	"github.com/voxsync/voxsync/resources"
	"github.com/voxsync/voxsync/session/probe"
)

// BenchmarkHostileClient runs, against a gameserver process with its
// default configuration, one client that for 60 s re-requests the largest
// resource over and over and never reads (the pattern that once took the
// server from 33 MiB to 2.4 GiB), while four honest clients sync the corpus
// in turns. It reports the server's RSS growth during the attack and 5 s
// after the attacker left, and the honest clients' median sync time during
// the attack against the same measured before it. The issue asks: growth ≤
// 32 MiB and returned; honest syncs within 1.5×.
func BenchmarkHostileClient(b *testing.B) {
	const attack = 60 * time.Second
	dir, _ := benchCorpus(b)
	for b.Loop() {
		url, cmd := startServerCmd(b, "-packs", dir)
		total := countBinds(b, url)
		honest := func(d time.Duration) []time.Duration {
			var mu sync.Mutex
			var times []time.Duration
			var wg sync.WaitGroup
			stop := time.Now().Add(d)
			for i := range 4 {
				wg.Go(func() {
					for time.Now().Before(stop) {
						start := time.Now()
						if err := joinAndFetch(url, probe.Loopback(8+8*i), total, nil); err != nil {
							b.Error(err)
							return
						}
						mu.Lock()
						times = append(times, time.Since(start))
						mu.Unlock()
					}
				})
			}
			wg.Wait()
			slices.Sort(times)
			return times
		}
		calm := honest(10 * time.Second)
		before, _ := rssBytes(cmd.Process.Pid)

		// The attacker: joins, waits for its Binds, then floods.
		a, err := probe.JoinFrom(context.Background(), url, probe.Loopback(0))
		if err != nil {
			b.Fatal(err)
		}
		if err := a.WaitBinds(total, 30*time.Second); err != nil {
			b.Fatal(err)
		}
		var big resources.Binding
		for _, e := range a.Binds {
			if e.Size > big.Size {
				big = e
			}
		}
		flood := &packets.ResourceRequest{}
		for range 1024 {
			flood.Wants = append(flood.Wants, packets.Want{Hash: big.Hash})
		}
		enc := packets.Encode(flood)
		var peak int64
		done := make(chan struct{})
		go func() {
			defer close(done)
			end := time.Now().Add(attack)
			for time.Now().Before(end) {
				if a.Conn().WriteMessage(websocket.BinaryMessage, enc) != nil {
					return // dropped
				}
			}
		}()
		sampling := make(chan struct{})
		go func() {
			for {
				select {
				case <-done:
					close(sampling)
					return
				case <-time.After(100 * time.Millisecond):
					if r, _ := rssBytes(cmd.Process.Pid); r > peak {
						peak = r
					}
				}
			}
		}()
		attacked := honest(attack)
		<-sampling
		a.Close()
		time.Sleep(5 * time.Second)
		after, _ := rssBytes(cmd.Process.Pid)
		stopAndPeakRSS(b, cmd)
		b.ReportMetric(float64(peak-before)/(1<<20), "growth-MiB")
		b.ReportMetric(float64(after-before)/(1<<20), "after-leaving-MiB")
		b.ReportMetric(attacked[len(attacked)/2].Seconds()/calm[len(calm)/2].Seconds(), "honest-slowdown")
	}
}
