package assetsmgr

import (
	"context"
	"crypto/sha256"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/voxsync/voxsync/resources"
)

// The client cache at scale (docs/benchmarks.md, "Client cache at scale").
// Both benchmarks build their fixture once per test process, in a directory
// under /dev/shm (this machine's disk creates files slowly after mass
// deletes), reuse it across iterations and runs (-count), and remove it
// when the process ends (TestMain). Nothing here runs without -bench.

// scaleRoot is where the fixtures go: tmpfs if there is one.
func scaleRoot() string {
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		return "/dev/shm"
	}
	return os.TempDir()
}

var (
	scaleMu   sync.Mutex // guards scaleDirs
	scaleDirs []string   // fixture directories, removed by TestMain
)

func TestMain(m *testing.M) {
	code := m.Run()
	scaleMu.Lock()
	for _, d := range scaleDirs {
		os.RemoveAll(d)
	}
	scaleMu.Unlock()
	os.Exit(code)
}

func newScaleDir(b *testing.B, pattern string) string {
	dir, err := os.MkdirTemp(scaleRoot(), pattern)
	if err != nil {
		b.Fatal(err)
	}
	scaleMu.Lock()
	scaleDirs = append(scaleDirs, dir)
	scaleMu.Unlock()
	return dir
}

// chachaStream writes size bytes of seeded ChaCha8 output to w in 8 MiB
// pieces; the same seed gives the same bytes.
func chachaStream(w io.Writer, seed byte, size int64) error {
	var s [32]byte
	s[0] = seed
	r := rand.NewChaCha8(s)
	buf := make([]byte, 8<<20)
	for size > 0 {
		n := int64(len(buf))
		if n > size {
			n = size
		}
		r.Read(buf[:n])
		if _, err := w.Write(buf[:n]); err != nil {
			return err
		}
		size -= n
	}
	return nil
}

// putAll stores blobs through Put and waits until each is durable.
func putAll(b *testing.B, c *Cache, blobs [][]byte, hs []resources.Hash) {
	errs := make(chan error, len(blobs))
	for i, data := range blobs {
		if err := c.Put(hs[i], data, func(err error) { errs <- err }); err != nil {
			b.Fatal(err)
		}
	}
	for range blobs {
		if err := <-errs; err != nil {
			b.Fatal(err)
		}
	}
}

type warmFixture struct {
	dir   string
	hs    []resources.Hash // every cached hash: 4 large, then the small ones
	files []string         // the large blobs' files
	err   error
}

var (
	warmOnce sync.Once
	warm     warmFixture
)

const (
	warmLarge     = 4
	warmLargeSize = 1 << 30
	warmSmall     = 2600
)

// warmCache builds, once per process, a cache with four 1 GiB blob files
// (streamed in through Create/Write/Commit) and 2,600 blobs of 400 B–16 KiB
// (Put, so inline).
func warmCache(b *testing.B) *warmFixture {
	warmOnce.Do(func() {
		start := time.Now()
		f := &warm
		f.dir = newScaleDir(b, "voxsync-bench-warmjoin-")
		ctx := context.Background()
		c, err := Open(ctx, Options{Dir: f.dir, MaxBytes: -1})
		if err != nil {
			f.err = err
			return
		}
		defer c.Close()
		errs := make(chan error, warmLarge)
		for i := range warmLarge {
			seed := byte(i + 1)
			d := sha256.New()
			if err := chachaStream(d, seed, warmLargeSize); err != nil {
				f.err = err
				return
			}
			var h resources.Hash
			d.Sum(h[:0])
			p, err := c.Create(h, warmLargeSize)
			if err != nil {
				f.err = err
				return
			}
			if err := chachaStream(p, seed, warmLargeSize); err != nil {
				p.Abort()
				f.err = err
				return
			}
			if err := p.Commit(func(err error) { errs <- err }); err != nil {
				f.err = err
				return
			}
			f.hs = append(f.hs, h)
			f.files = append(f.files, blobPath(filepath.Join(f.dir, "blobs"), h))
		}
		r := rand.New(rand.NewPCG(12, 0))
		blobs := make([][]byte, warmSmall)
		small := make([]resources.Hash, warmSmall)
		var smallBytes int
		for i := range blobs {
			blobs[i] = make([]byte, 400+r.IntN(16<<10-400+1))
			for j := range blobs[i] {
				blobs[i][j] = byte(r.Uint32())
			}
			small[i] = resources.Sum(blobs[i])
			smallBytes += len(blobs[i])
		}
		putAll(b, c, blobs, small)
		for range warmLarge {
			if err := <-errs; err != nil {
				f.err = err
				return
			}
		}
		f.hs = append(f.hs, small...)
		if err := c.Flush(ctx); err != nil {
			f.err = err
			return
		}
		var dbBytes int64
		if fi, err := os.Stat(filepath.Join(f.dir, dbName)); err == nil {
			dbBytes = fi.Size()
		}
		b.Logf("warm-join fixture: %d blobs (4 GiB in blob files, %.1f MiB inline; database %.1f MiB) in %s, built in %v",
			len(f.hs), float64(smallBytes)/(1<<20), float64(dbBytes)/(1<<20), f.dir, time.Since(start).Round(time.Millisecond))
	})
	if warm.err != nil {
		b.Fatal(warm.err)
	}
	return &warm
}

// BenchmarkWarmJoinFiveGiB: a cache holding four 1 GiB blob files and 2,600
// small inline blobs is closed; each op opens it again and looks up every
// hash, all hits (target ≤ 50 ms). Metrics: ms-join (Open to the last
// hit), ms-open, ms-lookup; the floor, µs-stat-floor (os.Stat of every
// blob file); and ms-sha256-1GiB, one single-core SHA-256 of a 1 GiB blob
// file — what each large blob cost at lookup before blob files had
// fingerprints.
func BenchmarkWarmJoinFiveGiB(b *testing.B) {
	f := warmCache(b)
	ctx := context.Background()
	opts := Options{Dir: f.dir, MaxBytes: -1}

	// The pre-fingerprint cost: re-hash one 1 GiB file, once per run.
	t0 := time.Now()
	if _, err := hashFile(f.files[0], f.hs[0], make([]byte, 256<<10)); err != nil {
		b.Fatal(err)
	}
	rehash := time.Since(t0)

	var join, open, lookup, stat time.Duration
	b.ResetTimer()
	for b.Loop() {
		b.StopTimer()
		s0 := time.Now()
		for _, p := range f.files {
			if _, err := os.Stat(p); err != nil {
				b.Fatal(err)
			}
		}
		stat += time.Since(s0)
		b.StartTimer()

		start := time.Now()
		c, err := Open(ctx, opts)
		if err != nil {
			b.Fatal(err)
		}
		opened := time.Now()
		hits, err := c.Lookup(ctx, f.hs)
		end := time.Now()
		if err != nil || len(hits) != len(f.hs) {
			b.Fatalf("lookup: %d of %d hits, %v", len(hits), len(f.hs), err)
		}
		b.StopTimer()
		if rep := c.Opened(); rep.Adopted != 0 || rep.RemovedFiles != 0 || rep.DatabaseMovedAside != "" {
			b.Fatalf("open repaired something: %+v", rep)
		}
		if n := c.files.rehashes.Load(); n != 0 {
			b.Fatalf("%d blob files re-hashed at lookup", n)
		}
		if err := c.Close(); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		join += end.Sub(start)
		open += opened.Sub(start)
		lookup += end.Sub(opened)
	}
	n := float64(b.N)
	b.ReportMetric(float64(join.Microseconds())/1e3/n, "ms-join")
	b.ReportMetric(float64(open.Microseconds())/1e3/n, "ms-open")
	b.ReportMetric(float64(lookup.Microseconds())/1e3/n, "ms-lookup")
	b.ReportMetric(float64(stat.Nanoseconds())/1e3/n, "µs-stat-floor")
	b.ReportMetric(float64(rehash.Microseconds())/1e3, "ms-sha256-1GiB")
}

type bigFixture struct {
	dir            string
	inline, fileHs []resources.Hash
	err            error
}

var (
	bigOnce sync.Once
	big     bigFixture
)

const (
	bigInline = 99_000
	bigFiles  = 1_000
)

// bigCache builds, once per process, a cache of 100,000 entries: 99,000
// inline blobs of 100 B–16 KiB (most under 2 KiB, as in the corpus) and
// 1,000 blob files of 65–256 KiB, all stored through Put (the store commits
// up to 1,024 writes per transaction).
func bigCache(b *testing.B) *bigFixture {
	bigOnce.Do(func() {
		start := time.Now()
		f := &big
		f.dir = newScaleDir(b, "voxsync-bench-bigcache-")
		ctx := context.Background()
		c, err := Open(ctx, Options{Dir: f.dir, MaxBytes: -1})
		if err != nil {
			f.err = err
			return
		}
		defer c.Close()
		r := rand.New(rand.NewPCG(100, 0))
		var s [32]byte
		s[0] = 100
		src := rand.NewChaCha8(s)
		const chunk = 4096
		for done := 0; done < bigInline+bigFiles; {
			n := min(chunk, bigInline+bigFiles-done)
			blobs := make([][]byte, n)
			hs := make([]resources.Hash, n)
			for i := range blobs {
				var size int
				switch k := done + i; {
				case k >= bigInline:
					size = 64<<10 + 1 + r.IntN(192<<10)
				case k%20 == 0:
					size = 2<<10 + r.IntN(14<<10)
				default:
					size = 100 + r.IntN(1900)
				}
				blobs[i] = make([]byte, size)
				src.Read(blobs[i])
				hs[i] = resources.Sum(blobs[i])
				if done+i < bigInline {
					f.inline = append(f.inline, hs[i])
				} else {
					f.fileHs = append(f.fileHs, hs[i])
				}
			}
			putAll(b, c, blobs, hs)
			done += n
		}
		if err := c.Flush(ctx); err != nil {
			f.err = err
			return
		}
		var dbBytes int64
		if fi, err := os.Stat(filepath.Join(f.dir, dbName)); err == nil {
			dbBytes = fi.Size()
		}
		b.Logf("100,000-entry fixture in %s (database %d MiB), built in %v", f.dir, dbBytes>>20, time.Since(start).Round(time.Millisecond))
	})
	if big.err != nil {
		b.Fatal(big.err)
	}
	return &big
}

// BenchmarkOpenLargeCache: a cache of 100,000 entries (mostly inline) is
// opened, and one lookup (one inline and one file blob) served; target
// ≤ 200 ms. Closed, untimed, between iterations. Metrics: ms-open-lookup,
// ms-open, ms-first-lookup.
func BenchmarkOpenLargeCache(b *testing.B) {
	f := bigCache(b)
	ctx := context.Background()
	opts := Options{Dir: f.dir, MaxBytes: -1}
	var total, open time.Duration
	i := 0
	b.ResetTimer()
	for b.Loop() {
		i++
		want := []resources.Hash{f.inline[(i*7919)%len(f.inline)], f.fileHs[(i*31)%len(f.fileHs)]}
		start := time.Now()
		c, err := Open(ctx, opts)
		if err != nil {
			b.Fatal(err)
		}
		opened := time.Now()
		hits, err := c.Lookup(ctx, want)
		end := time.Now()
		if err != nil || len(hits) != len(want) {
			b.Fatalf("lookup: %d of %d hits, %v", len(hits), len(want), err)
		}
		b.StopTimer()
		if err := c.Close(); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		total += end.Sub(start)
		open += opened.Sub(start)
	}
	n := float64(b.N)
	b.ReportMetric(float64(total.Microseconds())/1e3/n, "ms-open-lookup")
	b.ReportMetric(float64(open.Microseconds())/1e3/n, "ms-open")
	b.ReportMetric(float64((total-open).Microseconds())/1e3/n, "ms-first-lookup")
}
