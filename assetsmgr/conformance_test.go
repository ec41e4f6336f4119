package assetsmgr

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/voxsync/voxsync/resources"
)

// tierHarness makes one Tier implementation hold given blobs, and can
// damage one of its entries in place the way a disk or a person would.
type tierHarness struct {
	name   string
	source Source
	make   func(t *testing.T, blobs [][]byte) (tier Tier, corrupt func(h resources.Hash))
}

var tierHarnesses = []tierHarness{
	{"pack", SourcePack, func(t *testing.T, blobs [][]byte) (Tier, func(resources.Hash)) {
		dir := t.TempDir()
		paths := make(map[resources.Hash]string)
		for i, b := range blobs {
			p := filepath.Join(dir, "assets", "conf", "texture", fmt.Sprintf("f%04d.png", i))
			os.MkdirAll(filepath.Dir(p), 0o755)
			if err := os.WriteFile(p, b, 0o644); err != nil {
				t.Fatal(err)
			}
			paths[resources.Sum(b)] = p
		}
		c := openCache(t, Options{Dir: t.TempDir(), Packs: []string{dir}})
		return c.tiers[0], func(h resources.Hash) {
			b, _ := os.ReadFile(paths[h])
			b[len(b)/2] ^= 0x01
			os.WriteFile(paths[h], b, 0o644)
		}
	}},
	{"inline", SourceInline, func(t *testing.T, blobs [][]byte) (Tier, func(resources.Hash)) {
		c := openCache(t, Options{Dir: t.TempDir(), InlineMax: 1 << 20})
		for _, b := range blobs {
			put(t, c, b)
		}
		return c.tiers[1], func(h resources.Hash) {
			if _, err := c.db.Exec("UPDATE inline_blobs SET data = zeroblob(size) WHERE hash = ?", h[:]); err != nil {
				t.Fatal(err)
			}
		}
	}},
	{"blob file", SourceBlob, func(t *testing.T, blobs [][]byte) (Tier, func(resources.Hash)) {
		c := openCache(t, Options{Dir: t.TempDir()})
		for _, b := range blobs {
			putFile(t, c, b)
		}
		return c.tiers[2], func(h resources.Hash) {
			p := blobPath(filepath.Join(c.dir, "blobs"), h)
			b, _ := os.ReadFile(p)
			b[len(b)/2] ^= 0x01
			os.WriteFile(p, b, 0o644)
		}
	}},
}

// TestTierConformance runs the same checks against every Tier
// implementation (perkeep's storagetest habit).
func TestTierConformance(t *testing.T) {
	for _, th := range tierHarnesses {
		t.Run(th.name, func(t *testing.T) {
			ctx := context.Background()
			var blobs [][]byte
			var hs []resources.Hash
			for i := range 600 { // more than one 512-hash query batch
				b := pseudoRandom(100+i, byte(i))
				b[0], b[1] = byte(i), byte(i>>8) // distinct
				blobs = append(blobs, b)
				hs = append(hs, resources.Sum(b))
			}
			blobs = append(blobs, []byte{}) // the empty blob is a blob
			hs = append(hs, resources.Sum(nil))
			tier, corrupt := th.make(t, blobs)
			if tier.Source() != th.source {
				t.Fatalf("Source() = %v, want %v", tier.Source(), th.source)
			}

			absent := []resources.Hash{resources.Sum([]byte("absent 1")), resources.Sum([]byte("absent 2"))}
			tests := []struct {
				name string
				ask  []resources.Hash
				want []int // indexes into blobs
			}{
				{"nothing asked", nil, nil},
				{"one", hs[:1], []int{0}},
				{"absent only", absent, nil},
				{"present and absent mixed", []resources.Hash{absent[0], hs[3], absent[1], hs[7]}, []int{3, 7}},
				{"the same hash twice", []resources.Hash{hs[5], hs[5]}, []int{5}},
				{"empty blob", hs[600:], []int{600}},
				{"all, across query batches", hs, nil},
			}
			tests[len(tests)-1].want = make([]int, len(hs))
			for i := range hs {
				tests[len(tests)-1].want[i] = i
			}
			for _, tc := range tests {
				got, err := tier.Lookup(ctx, tc.ask)
				if err != nil {
					t.Fatalf("%s: %v", tc.name, err)
				}
				if len(got) != len(tc.want) {
					t.Fatalf("%s: %d hits, want %d", tc.name, len(got), len(tc.want))
				}
				for _, i := range tc.want {
					b, ok := got[hs[i]]
					if !ok {
						t.Fatalf("%s: %s missing", tc.name, hs[i].Short())
					}
					data, err := b.ReadAll()
					if err != nil || b.Hash != hs[i] || b.Size != int64(len(blobs[i])) || b.Source != th.source || resources.Sum(data) != hs[i] {
						t.Fatalf("%s: hit %s: hash %s size %d source %v, bytes ok %v, err %v", tc.name, hs[i].Short(), b.Hash.Short(), b.Size, b.Source, resources.Sum(data) == hs[i], err)
					}
				}
			}

			// A damaged entry is never served: a miss, or a hit whose
			// read fails (the tier verifies it then) and drops it. The
			// others are unaffected.
			corrupt(hs[10])
			got, err := tier.Lookup(ctx, hs[9:12])
			if err != nil {
				t.Fatal(err)
			}
			if b, ok := got[hs[10]]; ok {
				data, err := b.ReadAll()
				if !errors.Is(err, ErrHashMismatch) && !errors.Is(err, ErrSizeMismatch) {
					t.Fatalf("damaged entry served: %d bytes, err %v", len(data), err)
				}
				// The drop is queued on the store: let it commit.
				inner := tier
				if ht, ok := tier.(heldTier); ok {
					inner = ht.Tier
				}
				switch tt := inner.(type) {
				case *inlineTier:
					tt.store.flush(ctx)
				case *fileTier:
					tt.store.flush(ctx)
				}
			}
			for _, i := range []int{9, 11} {
				if data, err := got[hs[i]].ReadAll(); err != nil || resources.Sum(data) != hs[i] {
					t.Fatalf("neighbour %d of a damaged entry: %v", i, err)
				}
			}
			if got, _ := tier.Lookup(ctx, hs[10:11]); len(got) != 0 {
				t.Fatal("damaged entry served on a second lookup")
			}

			// A cancelled lookup returns no unverified hit.
			cctx, cancel := context.WithCancel(ctx)
			cancel()
			got, _ = tier.Lookup(cctx, hs)
			for h, b := range got {
				if data, err := b.ReadAll(); err != nil || resources.Sum(data) != h {
					t.Fatalf("cancelled lookup returned %s unverified", h.Short())
				}
			}
		})
	}
}
