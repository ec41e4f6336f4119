package assetsmgr

import (
	"context"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/voxsync/voxsync/resources"
)

// BenchmarkPartialPut puts the 64 KiB chunks of a 256 MiB resource from
// two goroutines (as the session does) and commits it, in a cache on tmpfs
// and on disk. The bytes/s figure covers Put and Commit; put-MB/s the Puts
// alone; commit-ms is Commit after the last Put until the blob is durable.
// sha256 is one core hashing the same bytes: each byte is hashed once, in
// Put, so two goroutines Putting can pass it.
func BenchmarkPartialPut(b *testing.B) {
	const size = 256 << 20
	data := chachaBytes(20, size)
	h := resources.Sum(data)
	m := fixedManifest(b, data, testChunk)

	b.Run("sha256", func(b *testing.B) {
		b.SetBytes(size)
		for b.Loop() {
			resources.Sum(data)
		}
	})
	for _, where := range []struct{ name, root string }{{"tmpfs", "/dev/shm"}, {"disk", os.TempDir()}} {
		b.Run(where.name, func(b *testing.B) {
			if fi, err := os.Stat(where.root); err != nil || !fi.IsDir() {
				b.Skipf("no %s", where.root)
			}
			b.SetBytes(size)
			var puts, commits time.Duration
			n := 0
			for b.Loop() {
				b.StopTimer()
				dir, err := os.MkdirTemp(where.root, "partialbench")
				if err != nil {
					b.Fatal(err)
				}
				c, err := Open(context.Background(), Options{Dir: dir, MaxBytes: -1})
				if err != nil {
					b.Fatal(err)
				}
				p, err := c.OpenPartial(context.Background(), h, m)
				if err != nil {
					b.Fatal(err)
				}
				b.StartTimer()

				start := time.Now()
				var next atomic.Int64
				var wg sync.WaitGroup
				for range 2 {
					wg.Go(func() {
						for {
							i := int(next.Add(1) - 1)
							if i >= len(m.Chunks) {
								return
							}
							if err := p.Put(i, chunkOf(data, m, i)); err != nil {
								b.Error(err)
								return
							}
						}
					})
				}
				wg.Wait()
				put := time.Now()
				if err := commitPartial(p); err != nil {
					b.Fatal(err)
				}
				puts += put.Sub(start)
				commits += time.Since(put)
				n++

				b.StopTimer()
				c.Close()
				os.RemoveAll(dir)
				b.StartTimer()
			}
			b.ReportMetric(float64(size)*float64(n)/puts.Seconds()/1e6, "put-MB/s")
			b.ReportMetric(float64(commits.Milliseconds())/float64(n), "commit-ms")
		})
	}
}
