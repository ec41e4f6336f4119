package assetsmgr

import (
	"context"
	"encoding/binary"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/voxsync/voxsync/resources"
)

// BenchmarkInlineVsFile stores and reads back blobs of one size, once in
// sqlite rows and once as blob files, to choose the inline threshold:
// DefaultInlineMax is the largest size where the inline tier is not slower
// (docs/benchmarks.md). Each op stores 64 blobs in one commit (as a sync
// does) and looks them up verified.
func BenchmarkInlineVsFile(b *testing.B) {
	const perOp = 64
	for _, size := range []int{1 << 10, 4 << 10, 16 << 10, 64 << 10, 256 << 10, 1 << 20} {
		for _, tier := range []string{"inline", "file"} {
			b.Run(fmt.Sprintf("%s/%dKiB", tier, size>>10), func(b *testing.B) {
				inlineMax := int64(1 << 30) // everything inline
				if tier == "file" {
					inlineMax = 1 // everything a file
				}
				c, err := Open(context.Background(), Options{Dir: b.TempDir(), InlineMax: inlineMax})
				if err != nil {
					b.Fatal(err)
				}
				defer c.Close()
				b.SetBytes(int64(size * perOp))
				round := 0
				var put, get float64
				for b.Loop() {
					round++
					hs := make([]resources.Hash, perOp)
					blobs := make([][]byte, perOp)
					for i := range blobs {
						blobs[i] = pseudoRandom(size, byte(i))
						blobs[i][0], blobs[i][1] = byte(round), byte(round>>8)
						hs[i] = resources.Sum(blobs[i])
					}
					start := nowNano()
					errs := make(chan error, perOp)
					for i := range blobs {
						if err := c.Put(hs[i], blobs[i], func(err error) { errs <- err }); err != nil {
							b.Fatal(err)
						}
					}
					for range perOp {
						if err := <-errs; err != nil {
							b.Fatal(err)
						}
					}
					mid := nowNano()
					hits, err := c.Lookup(context.Background(), hs)
					if err != nil || len(hits) != perOp {
						b.Fatalf("lookup: %d hits, %v", len(hits), err)
					}
					for _, h := range hs {
						if _, err := hits[h].ReadAll(); err != nil {
							b.Fatal(err)
						}
					}
					end := nowNano()
					put += float64(mid - start)
					get += float64(end - mid)
				}
				b.ReportMetric(put/float64(b.N)/perOp/1e3, "µs-put/blob")
				b.ReportMetric(get/float64(b.N)/perOp/1e3, "µs-get/blob")
			})
		}
	}
}

func nowNano() int64 { return time.Now().UnixNano() }

// BenchmarkStoreSmallBlobs stores what a cold sync of small resources
// stores: 2,600 blobs of 1-4 KiB arriving back to back, each reported
// durable and then named, as the Syncer names what it loads. Run with
// -cpuprofile to see where the store's CPU goes.
func BenchmarkStoreSmallBlobs(b *testing.B) {
	const n = 2600
	blobs := make([][]byte, n)
	for i := range blobs {
		blobs[i] = pseudoRandom(1024+i%3072, byte(i))
		blobs[i][0], blobs[i][1] = byte(i), byte(i>>8)
	}
	for b.Loop() {
		b.StopTimer()
		c, err := Open(context.Background(), Options{Dir: b.TempDir()})
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		errs := make(chan error, n)
		for i, data := range blobs {
			h := resources.Sum(data)
			loc := resources.Loc{Type: resources.TypeTexture, Ref: resources.Ref{Domain: "bench", Key: "t" + strconv.Itoa(i) + ".png"}}
			if err := c.Put(h, data, func(err error) { errs <- err }, loc); err != nil {
				b.Fatal(err)
			}
		}
		for range n {
			if err := <-errs; err != nil {
				b.Fatal(err)
			}
		}
		if err := c.store.flush(context.Background()); err != nil { // the names' batch
			b.Fatal(err)
		}
		b.StopTimer()
		c.Close()
		b.StartTimer()
	}
}

// BenchmarkLookupMiss looks up one hash the cache does not hold, as the
// client does for every hot-reloaded resource, in a cache of 2,000 small
// blobs. The set of held hashes answers it without a query. (Without it,
// a reload's miss also re-reads pages the store's last commit changed,
// which this loop of lookups alone does not.)
func BenchmarkLookupMiss(b *testing.B) {
	c, err := Open(context.Background(), Options{Dir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	for i := range 2000 {
		data := pseudoRandom(1000+i, byte(i))
		data[0], data[1] = byte(i), byte(i>>8)
		put(b, c, data)
	}
	ctx := context.Background()
	c.Lookup(ctx, []resources.Hash{resources.Sum([]byte("first miss"))})
	for !c.held.ready.Load() {
		time.Sleep(time.Millisecond)
	}
	var seed [8]byte
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		binary.LittleEndian.PutUint64(seed[:], uint64(i))
		hits, err := c.Lookup(ctx, []resources.Hash{resources.Sum(seed[:])})
		if err != nil || len(hits) != 0 {
			b.Fatalf("lookup of an absent hash: %d hits, %v", len(hits), err)
		}
	}
}
