package packs

import (
	"context"
	"crypto/sha256"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/voxsync/voxsync/packs/corpus"
)

var (
	hashCorpusOnce sync.Once
	hashCorpusDir  string
	hashCorpusErr  error
)

const (
	hashFiles = 10_000
	hashSize  = 500 << 20 / hashFiles // 10,000 files, 500 MiB
)

// TestMain removes the benchmark corpus, which is shared across runs of a
// benchmark so it is written once.
func TestMain(m *testing.M) {
	code := m.Run()
	if hashCorpusDir != "" {
		os.RemoveAll(hashCorpusDir)
	}
	os.Exit(code)
}

// singleCoreSHA256 measures one core's SHA-256 speed in bytes a second on
// an in-memory buffer: the baseline for startup hashing.
func singleCoreSHA256() float64 {
	buf := make([]byte, 64<<20)
	sha256.Sum256(buf[:1<<20]) // warm up
	best := 0.0
	for range 3 {
		start := time.Now()
		sha256.Sum256(buf)
		best = max(best, float64(len(buf))/time.Since(start).Seconds())
	}
	return best
}

// BenchmarkStartupHashing loads a pack of 10,000 files / 500 MiB from a
// warm page cache and reports its throughput against single-core SHA-256 ×
// cores, measured in the same run. The issue asks for ≥ 0.70 efficiency.
//
// Before each load (untimed) it also runs the floor: the same files opened,
// read and hashed by bare system calls on every core, with no listing,
// validation or index. That is the least any loader could do here, so
// floor-efficiency is the ceiling for ours on this machine, and of-floor
// says how close Load comes to it in the same noise.
func BenchmarkStartupHashing(b *testing.B) {
	hashCorpusOnce.Do(func() {
		hashCorpusDir, hashCorpusErr = os.MkdirTemp("", "voxsync-hash-bench")
		if hashCorpusErr == nil {
			hashCorpusErr = corpus.LargeFiles(hashCorpusDir, hashFiles, hashSize, 1)
		}
	})
	if hashCorpusErr != nil {
		b.Fatal(hashCorpusErr)
	}
	opts := Options{Dirs: []string{hashCorpusDir}}
	warm, err := Load(context.Background(), opts, nil) // warms the page cache
	if err != nil || warm.Len() != hashFiles {
		b.Fatalf("load: %v, %d files", err, warm.Len())
	}
	var files []string
	for _, e := range warm.byLoc {
		files = append(files, filepath.Join(hashCorpusDir, filepath.FromSlash(e.Path)))
	}
	warm.Close()
	cores := runtime.GOMAXPROCS(0)

	// Neighbours on a shared machine change every speed from second to
	// second, so each load is compared with a baseline and a floor taken
	// just before it, and the ratios' medians are reported.
	var bases, effs, floorEffs, ofFloor []float64
	b.SetBytes(hashFiles * hashSize)
	for b.Loop() {
		b.StopTimer()
		base := singleCoreSHA256()
		floor := hashFloor(b, files, cores).Seconds()
		b.StartTimer()
		start := time.Now()
		v, err := Load(context.Background(), opts, nil)
		load := time.Since(start).Seconds()
		if err != nil || v.Len() != hashFiles || len(v.Problems) != 0 {
			b.Fatalf("load: %v, %d files, %v", err, v.Len(), v.Problems)
		}
		v.Close()
		ideal := float64(hashFiles*hashSize) / (base * float64(cores)) // seconds
		bases = append(bases, base)
		effs = append(effs, ideal/load)
		floorEffs = append(floorEffs, ideal/floor)
		ofFloor = append(ofFloor, floor/load)
	}
	b.ReportMetric(median(bases)/1e6, "sha256-1core-MB/s")
	b.ReportMetric(median(effs), "efficiency")
	b.ReportMetric(median(floorEffs), "floor-efficiency")
	b.ReportMetric(median(ofFloor), "of-floor")
}

func median(xs []float64) float64 {
	xs = slices.Clone(xs)
	slices.Sort(xs)
	return xs[len(xs)/2]
}

// hashFloor opens, reads and hashes every file once on workers cores with
// bare system calls: the cost of startup hashing without any of Load.
func hashFloor(b *testing.B, files []string, workers int) time.Duration {
	start := time.Now()
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			buf := make([]byte, hashSize)
			h := sha256.New()
			for i := int(next.Add(1) - 1); i < len(files); i = int(next.Add(1) - 1) {
				fd, err := syscall.Open(files[i], syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
				if err != nil {
					b.Error(err)
					return
				}
				n, err := syscall.Read(fd, buf)
				syscall.Close(fd)
				if err != nil || n != hashSize {
					b.Errorf("read %s: %d bytes, %v", files[i], n, err)
					return
				}
				h.Reset()
				h.Write(buf)
			}
		})
	}
	wg.Wait()
	return time.Since(start)
}
