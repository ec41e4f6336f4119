package session

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/voxsync/voxsync/assetsmgr"
	"github.com/voxsync/voxsync/configs"
	"github.com/voxsync/voxsync/packets"
	"github.com/voxsync/voxsync/packs/corpus"
	"github.com/voxsync/voxsync/resources"
	"github.com/voxsync/voxsync/session/probe"
)

var (
	benchCorpusOnce sync.Once
	benchCorpusDir  string
	benchCorpusInfo corpus.Stats
)

func TestMain(m *testing.M) {
	code := m.Run()
	if benchCorpusDir != "" {
		os.RemoveAll(benchCorpusDir)
	}
	os.Exit(code)
}

func voxelCorpus(b *testing.B) (string, corpus.Stats) {
	benchCorpusOnce.Do(func() {
		var err error
		if benchCorpusDir, err = os.MkdirTemp("", "voxsync-corpus"); err == nil {
			benchCorpusInfo, err = corpus.Generate(benchCorpusDir, corpus.Spec{})
		}
		if err != nil {
			panic(err)
		}
	})
	return benchCorpusDir, benchCorpusInfo
}

// syncAll runs a Syncer on cache until n resources are Loaded and returns
// how long that took from Run.
func syncAll(b *testing.B, url string, cache *assetsmgr.Cache, n int) (time.Duration, Stats) {
	var loaded atomic.Int64
	done := make(chan struct{})
	s := NewSyncer(SyncOptions{URL: url, Cache: cache, OnEvent: func(e Event) {
		if _, ok := e.(Loaded); ok && loaded.Add(1) == int64(n) {
			close(done)
		}
	}})
	ctx, cancel := context.WithCancel(context.Background())
	runDone := make(chan error, 1)
	start := time.Now()
	go func() { runDone <- s.Run(ctx) }()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		b.Fatalf("sync did not finish: %+v", s.Stats())
	}
	elapsed := time.Since(start)
	cancel()
	<-runDone
	return elapsed, s.Stats()
}

// httpBaseline fetches every corpus file from Go's file server with 8
// parallel keep-alive GETs and writes each to disk: what operators use for
// Luanti remote media or Source FastDL.
func httpBaseline(b *testing.B, srvURL string, paths []string, dest string) time.Duration {
	tr := &http.Transport{MaxIdleConnsPerHost: 8, MaxConnsPerHost: 8}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	var next atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for range 8 {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < len(paths); i = int(next.Add(1) - 1) {
				resp, err := client.Get(srvURL + "/" + paths[i])
				if err != nil {
					b.Error(err)
					return
				}
				p := filepath.Join(dest, filepath.FromSlash(paths[i]))
				os.MkdirAll(filepath.Dir(p), 0o755)
				f, err := os.Create(p)
				if err != nil {
					b.Error(err)
					resp.Body.Close()
					return
				}
				io.Copy(f, resp.Body)
				resp.Body.Close()
				f.Close()
			}
		})
	}
	wg.Wait()
	return time.Since(start)
}

func corpusServer(b *testing.B, dir string) *testServer {
	return startServer(b, serverSetup{dirs: []string{dir}, cfg: func(c *configs.Server) {
		c.BuiltinPack = false
		c.Preload = []string{"*"}
	}})
}

// BenchmarkColdSync syncs the ~2,600-file voxel corpus into an empty cache
// (every resource verified and durably stored) and, in the same iteration,
// fetches it over plain HTTP. ratio-vs-http below 1.0 means faster than a
// static web server while also verifying and caching. The issue asks for
// ≤ 150 ms.
func BenchmarkColdSync(b *testing.B) {
	dir, info := voxelCorpus(b)
	ts := corpusServer(b, dir)
	web := httptest.NewServer(http.FileServer(http.Dir(dir)))
	defer web.Close()
	var ours, plain time.Duration
	for b.Loop() {
		cache, err := assetsmgr.Open(context.Background(), assetsmgr.Options{Dir: b.TempDir()})
		if err != nil {
			b.Fatal(err)
		}
		d, st := syncAll(b, ts.url, cache, info.Files)
		if st.FromNetwork != info.Files || st.BytesReceived != info.Bytes {
			b.Fatalf("cold sync: %+v", st)
		}
		cache.Close()
		ours += d
		plain += httpBaseline(b, web.URL, info.Paths, b.TempDir())
	}
	b.ReportMetric(float64(ours.Milliseconds())/float64(b.N), "ms-ours")
	b.ReportMetric(float64(plain.Milliseconds())/float64(b.N), "ms-http")
	b.ReportMetric(ours.Seconds()/plain.Seconds(), "ratio-vs-http")
}

// BenchmarkWarmJoin joins with everything already cached: from connect to
// every resource loaded and verified. The issue asks for ≤ 30 ms.
func BenchmarkWarmJoin(b *testing.B) {
	dir, info := voxelCorpus(b)
	ts := corpusServer(b, dir)
	cache, err := assetsmgr.Open(context.Background(), assetsmgr.Options{Dir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer cache.Close()
	syncAll(b, ts.url, cache, info.Files)
	var total time.Duration
	for b.Loop() {
		d, st := syncAll(b, ts.url, cache, info.Files)
		if st.FromNetwork != 0 || st.BytesReceived != 0 {
			b.Fatalf("warm join fetched: %+v", st)
		}
		total += d
	}
	b.ReportMetric(float64(total.Microseconds())/1000/float64(b.N), "ms-join")
}

// BenchmarkInlineThreshold runs a cold sync and a warm join of the voxel
// corpus with different inline thresholds: the measurement behind
// assetsmgr.DefaultInlineMax for this size distribution.
func BenchmarkInlineThreshold(b *testing.B) {
	dir, info := voxelCorpus(b)
	ts := corpusServer(b, dir)
	for _, max := range []int64{16 << 10, 64 << 10, 256 << 10} {
		b.Run(fmt.Sprintf("%dKiB", max>>10), func(b *testing.B) {
			var cold, warm time.Duration
			for b.Loop() {
				cache, err := assetsmgr.Open(context.Background(), assetsmgr.Options{Dir: b.TempDir(), InlineMax: max})
				if err != nil {
					b.Fatal(err)
				}
				d, _ := syncAll(b, ts.url, cache, info.Files)
				cold += d
				d, _ = syncAll(b, ts.url, cache, info.Files)
				warm += d
				cache.Close()
			}
			b.ReportMetric(float64(cold.Milliseconds())/float64(b.N), "ms-cold")
			b.ReportMetric(float64(warm.Microseconds())/1000/float64(b.N), "ms-warm")
		})
	}
}

// reloadClients connects n Syncers, each with its own cache, to ts and
// returns a channel of (client, hash) Loaded notifications.
type loadedNote struct {
	client int
	hash   resources.Hash
	at     time.Time
}

func reloadClients(b *testing.B, ts *testServer, n, resources int) <-chan loadedNote {
	notes := make(chan loadedNote, 1<<20)
	for i := range n {
		cache, err := assetsmgr.Open(context.Background(), assetsmgr.Options{Dir: b.TempDir()})
		if err != nil {
			b.Fatal(err)
		}
		s := NewSyncer(SyncOptions{URL: ts.url, Cache: cache, OnEvent: func(e Event) {
			if l, ok := e.(Loaded); ok {
				select {
				case notes <- loadedNote{i, l.Binding.Hash, time.Now()}:
				default:
				}
			}
		}})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- s.Run(ctx) }()
		b.Cleanup(func() { cancel(); <-done; cache.Close() })
		deadline := time.Now().Add(30 * time.Second)
		for s.Stats().Loaded < resources {
			if time.Now().After(deadline) {
				b.Fatalf("client %d not synced: %+v", i, s.Stats())
			}
			time.Sleep(2 * time.Millisecond)
		}
	}
	for len(notes) > 0 {
		<-notes
	}
	return notes
}

// BenchmarkHotReloadLatency renames a changed ≤ 64 KiB file into place
// with 100 clients connected and measures, per client, the time until the
// new version is verified and stored in its cache. The issue asks for a
// p95 of at most 150 ms (with the default 100 ms quiet period).
func BenchmarkHotReloadLatency(b *testing.B) {
	const clients = 100
	dir := b.TempDir()
	target := filepath.Join(dir, "assets/bench/texture/edited.png")
	os.MkdirAll(filepath.Dir(target), 0o755)
	os.WriteFile(target, randomBytes(60_000, 0), 0o644)
	ts := startServer(b, serverSetup{dirs: []string{dir}, hotReload: true, cfg: func(c *configs.Server) {
		c.Preload = []string{"bench:*"}
		c.HotReload = true
		c.MaxClientsPerAddress = 0 // every client here is on 127.0.0.1
	}})
	notes := reloadClients(b, ts, clients, 1)
	var lat []time.Duration
	round := byte(0)
	for b.Loop() {
		round++
		data := randomBytes(60_000, round)
		h := resources.Sum(data)
		os.WriteFile(target+".tmp", data, 0o644)
		start := time.Now()
		if err := os.Rename(target+".tmp", target); err != nil {
			b.Fatal(err)
		}
		seen := make(map[int]bool)
		timeout := time.After(30 * time.Second)
		for len(seen) < clients {
			select {
			case n := <-notes:
				if n.hash == h && !seen[n.client] {
					seen[n.client] = true
					lat = append(lat, n.at.Sub(start))
				}
			case <-timeout:
				b.Fatalf("%d of %d clients got the new version", len(seen), clients)
			}
		}
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*95/100].Microseconds())/1000, "p95-ms")
}

// BenchmarkCheckoutBurst changes 1,000 files at once, as a git checkout
// does, with 10 clients connected, and measures the time until every
// client has every new version. The issue asks for at most 1 s.
func BenchmarkCheckoutBurst(b *testing.B) {
	const clients, files = 10, 1000
	dir := b.TempDir()
	path := func(i int) string {
		return filepath.Join(dir, fmt.Sprintf("assets/bench/texture/d%02d/f%04d.png", i%20, i))
	}
	for i := range files {
		os.MkdirAll(filepath.Dir(path(i)), 0o755)
		os.WriteFile(path(i), []byte(fmt.Sprintf("round 0 file %d", i)), 0o644)
	}
	ts := startServer(b, serverSetup{dirs: []string{dir}, hotReload: true, cfg: func(c *configs.Server) {
		c.BuiltinPack = false
		c.Preload = []string{"*"}
		c.HotReload = true
		c.MaxClientsPerAddress = 0 // every client here is on 127.0.0.1
	}})
	notes := reloadClients(b, ts, clients, files)
	var total time.Duration
	round := 0
	for b.Loop() {
		round++
		want := make(map[resources.Hash]bool, files)
		start := time.Now()
		for i := range files {
			data := []byte(fmt.Sprintf("round %d file %d", round, i))
			want[resources.Sum(data)] = true
			os.WriteFile(path(i), data, 0o644)
		}
		got := 0
		timeout := time.After(60 * time.Second)
		for got < clients*files {
			select {
			case n := <-notes:
				if want[n.hash] {
					got++
				}
			case <-timeout:
				b.Fatalf("%d of %d deliveries", got, clients*files)
			}
		}
		total += time.Since(start)
	}
	b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "ms-all-delivered")
}

// BenchmarkHotReloadBindLatency renames a changed file into place with
// 1,000 clients connected, each with the ~2,600-file corpus bound, and
// measures per client the time until the Bind of the new version arrives.
// A reload must cost in proportion to what changed: version 1 marked every
// bound key of every client (p95 633 ms here); the issue asks ≤ 150 ms.
func BenchmarkHotReloadBindLatency(b *testing.B) {
	const clients = 1000
	dir, info := voxelCorpus(b)
	// The corpus is shared with other benchmarks: edit a file of our own.
	target := filepath.Join(dir, "assets/bench/texture/hot_reload_edited.png")
	os.MkdirAll(filepath.Dir(target), 0o755)
	os.WriteFile(target, randomBytes(20_000, 0), 0o644)
	defer os.Remove(target)
	ts := startServer(b, serverSetup{dirs: []string{dir}, hotReload: true, cfg: func(c *configs.Server) {
		c.BuiltinPack = false
		c.Preload = []string{"*"}
		c.HotReload = true
		c.MaxClients = clients + 10
	}})
	probes := make([]*probe.Client, clients)
	for i := range probes {
		c, err := probe.JoinFrom(context.Background(), ts.url, probe.Loopback(i))
		if err != nil {
			b.Fatal(err)
		}
		if err := c.WaitBinds(info.Files+1, 30*time.Second); err != nil {
			b.Fatal(err)
		}
		probes[i] = c
		defer c.Close()
	}
	var lat []time.Duration
	round := byte(0)
	for b.Loop() {
		round++
		data := randomBytes(20_000, round)
		h := resources.Sum(data)
		os.WriteFile(target+".tmp", data, 0o644)
		start := time.Now()
		if err := os.Rename(target+".tmp", target); err != nil {
			b.Fatal(err)
		}
		got := make([]time.Duration, clients)
		var wg sync.WaitGroup
		for i, c := range probes {
			wg.Go(func() {
				at, err := c.WaitBindOf(h, 30*time.Second)
				if err != nil {
					b.Error(err)
					return
				}
				got[i] = at.Sub(start)
			})
		}
		wg.Wait()
		lat = append(lat, got...)
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*95/100].Microseconds())/1000, "p95-ms")
}

// BenchmarkNeededNowWhileStreaming starts a cold sync of a 1 GiB resource
// and, once it is streaming, has the game server start using 1 KiB
// resources one at a time, which the client requests as needed now. It
// reports the time from the server's Use to the client's Loaded, median
// and 95th percentile over 20 resources (the issue asks ≤ 20 ms).
func BenchmarkNeededNowWhileStreaming(b *testing.B) {
	dir := b.TempDir()
	big := randomBytes(1<<30, 12)
	writePackFile(b, dir, "assets/n/model/world.bin", big)
	big = nil
	const smalls = 20
	for i := range smalls {
		writePackFile(b, dir, "assets/n/texture/s"+itoa(i)+".png", randomBytes(1024, byte(100+i)))
	}
	joined := make(chan *Client, 1)
	ts := startServer(b, serverSetup{dirs: []string{dir}, cfg: func(c *configs.Server) {
		c.BuiltinPack = false
		c.Preload = []string{"model/n:*"}
	}, onJoin: func(c *Client) { joined <- c }})
	// The first client waits for the manifest to be cut; later ones do not.
	for b.Loop() {
		loaded := make(chan resources.Hash, smalls+16)
		cache, err := assetsmgr.Open(context.Background(), assetsmgr.Options{Dir: b.TempDir()})
		if err != nil {
			b.Fatal(err)
		}
		syncer := NewSyncer(SyncOptions{URL: ts.url, Cache: cache,
			Priority: func(bd resources.Binding) uint8 {
				if bd.Type == resources.TypeTexture {
					return packets.PriorityNow
				}
				return packets.PriorityNormal
			},
			OnEvent: func(e Event) {
				if l, ok := e.(Loaded); ok {
					loaded <- l.Binding.Hash
				}
			},
		})
		ctx, cancel := context.WithCancel(context.Background())
		runDone := make(chan error, 1)
		go func() { runDone <- syncer.Run(ctx) }()
		sc := <-joined
		for syncer.Stats().WireBytes < 64<<20 { // streaming well under way
			time.Sleep(time.Millisecond)
		}
		var lat []time.Duration
		for i := range smalls {
			l := resources.Loc{Type: resources.TypeTexture, Ref: resources.Ref{Domain: "n", Key: "s" + itoa(i) + ".png"}}
			e, _ := ts.View().Lookup(l)
			start := time.Now()
			sc.Use(l)
			for h := range loaded {
				if h == e.Hash {
					break
				}
			}
			lat = append(lat, time.Since(start))
		}
		if syncer.Synced() {
			b.Fatal("the 1 GiB resource finished before the last small one was asked for: the test measured nothing")
		}
		slices.Sort(lat)
		b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
		b.ReportMetric(float64(lat[len(lat)*95/100].Microseconds())/1000, "p95-ms")
		cancel()
		<-runDone
		cache.Close()
	}
}
