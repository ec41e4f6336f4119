package cdc

import (
	"bytes"
	"io"
	"slices"
	"testing"
	"testing/iotest"
)

// small are Params small enough for many chunks in a few KiB.
var small = Params{Min: 64, Avg: 256, Max: 1024}

// cutAll cuts data with Cut alone and returns the chunk lengths.
func cutAll(data []byte, p Params) []int {
	var lengths []int
	for off := 0; off < len(data); {
		n := Cut(data[off:], p)
		lengths = append(lengths, n)
		off += n
	}
	return lengths
}

// nextAll cuts r with a Chunker and returns the chunk lengths, checking that
// the chunks are contiguous and carry the stream's bytes.
func nextAll(t testing.TB, r io.Reader, data []byte, p Params) []int {
	t.Helper()
	c, err := New(r, p)
	if err != nil {
		t.Fatal(err)
	}
	var lengths []int
	var off int64
	for {
		ch, err := c.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("Next after %d bytes: %v", off, err)
		}
		if ch.Offset != off {
			t.Fatalf("chunk %d at offset %d, want %d", len(lengths), ch.Offset, off)
		}
		if !bytes.Equal(ch.Data, data[off:off+int64(len(ch.Data))]) {
			t.Fatalf("chunk %d at offset %d does not hold the stream's bytes", len(lengths), off)
		}
		lengths = append(lengths, len(ch.Data))
		off += int64(len(ch.Data))
	}
	if off != int64(len(data)) {
		t.Fatalf("chunks cover %d bytes, stream has %d", off, len(data))
	}
	if _, err := c.Next(); err != io.EOF {
		t.Fatalf("Next after io.EOF: %v, want io.EOF again", err)
	}
	return lengths
}

func repeat(n, times int) []int { return slices.Repeat([]int{n}, times) }

func TestEdgeCases(t *testing.T) {
	random := randomBytes(64<<10, 2)
	// The stream ends exactly where a chunk of a longer stream ends: the
	// chunks are the same and there is no empty one after them.
	natural := cutAll(random, small)[:5]
	var end int
	for _, n := range natural {
		end += n
	}
	tests := []struct {
		name string
		data []byte
		want []int
	}{
		{"empty", nil, nil},
		{"one byte", []byte{7}, []int{1}},
		{"shorter than Min", random[:50], []int{50}},
		{"exactly Min", random[:64], []int{64}},
		{"exactly Max of zeros", make([]byte, 1024), []int{1024}},
		{"Max+1 of zeros", make([]byte, 1025), []int{1024, 1}},
		{"all zeros", make([]byte, 10*1024+5), append(repeat(1024, 10), 5)},
		{"all zeros ending on Max", make([]byte, 3*1024), repeat(1024, 3)},
		{"boundary at end", random[:end], natural},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := cutAll(tt.data, small); !slices.Equal(got, tt.want) {
				t.Errorf("Cut: lengths %v, want %v", got, tt.want)
			}
			if got := nextAll(t, bytes.NewReader(tt.data), tt.data, small); !slices.Equal(got, tt.want) {
				t.Errorf("Next: lengths %v, want %v", got, tt.want)
			}
			r := iotest.OneByteReader(bytes.NewReader(tt.data))
			if got := nextAll(t, r, tt.data, small); !slices.Equal(got, tt.want) {
				t.Errorf("Next reading a byte at a time: lengths %v, want %v", got, tt.want)
			}
		})
	}
}

// TestChunkSizes checks the bounds on random data with an odd Min, where
// the two-byte loop must still not cut below Min.
func TestChunkSizes(t *testing.T) {
	data := randomBytes(1<<20, 3)
	for _, p := range []Params{small, {Min: 101, Avg: 512, Max: 1001}, {Min: 256, Avg: 256, Max: 256}} {
		t.Run(p.String(), func(t *testing.T) {
			lengths := cutAll(data, p)
			for i, n := range lengths {
				last := i == len(lengths)-1
				if n > p.Max || n < p.Min && !last || n == 0 {
					t.Fatalf("chunk %d of %d has length %d, outside [%d, %d]", i, len(lengths), n, p.Min, p.Max)
				}
			}
		})
	}
}

// TestResync checks what content-defined chunking is for: after 100 KiB is
// inserted near the start of 16 MiB, the chunker finds the old cut points
// again, shifted, a few chunks after the insertion, and then all of them.
func TestResync(t *testing.T) {
	const at, inserted = 1 << 20, 100 << 10
	v1 := randomBytes(16<<20, 4)
	v2 := slices.Concat(v1[:at], randomBytes(inserted, 5), v1[at:])
	for _, p := range candidates {
		t.Run(p.String(), func(t *testing.T) {
			cuts1, cuts2 := cutPoints(v1, p), cutPoints(v2, p)
			inV2 := make(map[int]bool, len(cuts2))
			for _, c := range cuts2 {
				inV2[c] = true
			}
			var after, found, resync int
			for _, c := range cuts1 {
				if c <= at {
					if !inV2[c] {
						t.Errorf("cut at %d, before the insertion, is missing from v2", c)
					}
					continue
				}
				after++
				switch {
				case inV2[c+inserted]:
					found++
					if resync == 0 {
						resync = c
					}
				case resync != 0:
					t.Errorf("cut at %d (v1) is missing from v2 after both resynchronised at %d", c, resync)
				}
			}
			t.Logf("%d of %d cut points after the insertion found again, shifted, from %d KiB past it on", found, after, (resync-at)>>10)
			if resync == 0 || resync-at > 4*p.Max {
				t.Errorf("resynchronised at %d, more than 4×Max after the insertion at %d", resync, at)
			}
		})
	}
}

// cutPoints returns the offsets where chunks of data end.
func cutPoints(data []byte, p Params) []int {
	var cuts []int
	for off := 0; off < len(data); {
		off += Cut(data[off:], p)
		cuts = append(cuts, off)
	}
	return cuts
}
