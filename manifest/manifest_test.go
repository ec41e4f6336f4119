package manifest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"math/rand/v2"
	"testing"

	"github.com/voxsync/voxsync/cdc"
	"github.com/voxsync/voxsync/resources"
)

func h(i int) resources.Hash { return sha256.Sum256([]byte{byte(i), byte(i >> 8)}) }

func TestNewChecksEveryRule(t *testing.T) {
	for _, tc := range []struct {
		name    string
		size    uint64
		lengths []uint32
		ok      bool
	}{
		{"one chunk", 10, []uint32{10}, true},
		{"several", 3 * MinAverageChunk, []uint32{MinAverageChunk, MinAverageChunk + 5, MinAverageChunk - 5}, true},
		{"more chunks than one per MinAverageChunk", 30, []uint32{10, 15, 5}, false},
		{"empty resource", 0, nil, true},
		{"short of the size", 3 * MinAverageChunk, []uint32{MinAverageChunk, MinAverageChunk}, false},
		{"past the size", 2 * MinAverageChunk, []uint32{MinAverageChunk, MinAverageChunk + 1}, false},
		{"empty chunk", 2 * MinAverageChunk, []uint32{2 * MinAverageChunk, 0}, false},
		{"chunk over the cap", MaxChunkLen + 1, []uint32{MaxChunkLen + 1}, false},
		{"chunks for an empty resource", 0, []uint32{1}, false},
		{"no chunks for bytes", 5, nil, false},
		{"too few chunks to cover the size", 3 * MaxChunkLen, []uint32{MaxChunkLen, MaxChunkLen}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hs := make([]resources.Hash, len(tc.lengths))
			for i := range hs {
				hs[i] = h(i)
			}
			m, err := New(tc.size, tc.lengths, hs)
			if (err == nil) != tc.ok {
				t.Fatalf("New(%d, %v) = %v, want ok %v", tc.size, tc.lengths, err, tc.ok)
			}
			if err != nil && !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v does not wrap ErrInvalid", err)
			}
			if err == nil {
				var off uint64
				for i, c := range m.Chunks {
					if c.Offset != off || c.Length != tc.lengths[i] {
						t.Fatalf("chunk %d at %d+%d, want %d+%d", i, c.Offset, c.Length, off, tc.lengths[i])
					}
					off = c.End()
				}
			}
		})
	}
	if _, err := New(10, []uint32{10}, nil); err == nil {
		t.Fatal("lengths and hashes of different counts accepted")
	}
}

func TestCheckHeaderRefusesBeforeAllocating(t *testing.T) {
	for _, tc := range []struct {
		size uint64
		n    uint32
		ok   bool
	}{
		{1 << 30, 8192, true},
		{1 << 30, MaxChunks + 1, false},
		{1 << 30, 10, false}, // 10 chunks cannot cover 1 GiB
		{100, 101, false},    // more chunks than bytes
		{1 << 40, 1 << 18, false},
	} {
		if err := CheckHeader(tc.size, tc.n); (err == nil) != tc.ok {
			t.Errorf("CheckHeader(%d, %d) = %v, want ok %v", tc.size, tc.n, err, tc.ok)
		}
	}
}

func TestEncodeDecodeAndFind(t *testing.T) {
	const k = MinAverageChunk
	m, err := New(35*k, []uint32{10 * k, 20 * k, 5 * k}, []resources.Hash{h(1), h(2), h(3)})
	if err != nil {
		t.Fatal(err)
	}
	got, err := Decode(m.Encode())
	if err != nil || got.Digest() != m.Digest() || len(got.Chunks) != 3 || got.Chunks[2] != m.Chunks[2] {
		t.Fatalf("round trip: %+v, %v", got, err)
	}
	if i, ok := m.Find(10*k, 20*k); !ok || i != 1 {
		t.Fatalf("Find(10k, 20k) = %d, %v", i, ok)
	}
	for _, q := range [][2]uint64{{10 * k, 19 * k}, {11 * k, 20 * k}, {35 * k, 0}, {0, 35 * k}} {
		if _, ok := m.Find(q[0], q[1]); ok {
			t.Errorf("Find(%d, %d) found a chunk", q[0], q[1])
		}
	}
	other, _ := New(35*k, []uint32{10 * k, 20 * k, 5 * k}, []resources.Hash{h(1), h(2), h(4)})
	if other.Digest() == m.Digest() {
		t.Fatal("different chunks, same digest")
	}
	for _, bad := range [][]byte{nil, m.Encode()[:20], append(m.Encode(), 0)} {
		if _, err := Decode(bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("Decode(%d bytes) = %v", len(bad), err)
		}
	}
}

func TestBuildCutsByContentAndHashesTheWhole(t *testing.T) {
	data := make([]byte, 5<<20+12345)
	rand.NewChaCha8([32]byte{1}).Read(data)
	m, whole, err := Build(context.Background(), bytes.NewReader(data), cdc.Default)
	if err != nil {
		t.Fatal(err)
	}
	if whole != sha256.Sum256(data) || m.Size != uint64(len(data)) {
		t.Fatalf("whole hash or size wrong: %d", m.Size)
	}
	if _, err := New(m.Size, m.Lengths(), m.Hashes()); err != nil {
		t.Fatalf("built manifest is invalid: %v", err)
	}
	for i, c := range m.Chunks {
		if sha256.Sum256(data[c.Offset:c.End()]) != c.Hash {
			t.Fatalf("chunk %d hash wrong", i)
		}
		if i < len(m.Chunks)-1 && (c.Length < uint32(cdc.Default.Min) || c.Length > uint32(cdc.Default.Max)) {
			t.Fatalf("chunk %d of %d bytes outside the chunker's bounds", i, c.Length)
		}
	}
	// An insertion near the start leaves most chunks as they were.
	edited := append(append(append([]byte{}, data[:4096]...), []byte("inserted")...), data[4096:]...)
	m2, _, err := Build(context.Background(), bytes.NewReader(edited), cdc.Default)
	if err != nil {
		t.Fatal(err)
	}
	have := map[resources.Hash]bool{}
	for _, c := range m.Chunks {
		have[c.Hash] = true
	}
	shared := 0
	for _, c := range m2.Chunks {
		if have[c.Hash] {
			shared++
		}
	}
	if shared < len(m2.Chunks)-3 {
		t.Fatalf("only %d of %d chunks shared after an 8-byte insert", shared, len(m2.Chunks))
	}
	empty, whole, err := Build(context.Background(), bytes.NewReader(nil), cdc.Default)
	if err != nil || len(empty.Chunks) != 0 || whole != sha256.Sum256(nil) {
		t.Fatalf("empty: %+v %v", empty, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, _, err := Build(ctx, bytes.NewReader(data), cdc.Default); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled build: %v", err)
	}
}

func FuzzDecode(f *testing.F) {
	m, _ := New(3*MinAverageChunk, []uint32{MinAverageChunk, MinAverageChunk, MinAverageChunk}, []resources.Hash{h(1), h(2), h(3)})
	f.Add(m.Encode())
	f.Add(Single(0, h(0)).Encode())
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := Decode(b)
		if err != nil {
			return
		}
		var off uint64
		for _, c := range m.Chunks {
			if c.Offset != off || c.Length == 0 || c.Length > MaxChunkLen {
				t.Fatalf("decoded an invalid chunk %+v", c)
			}
			off = c.End()
		}
		if off != m.Size || !bytes.Equal(m.Encode(), b) {
			t.Fatal("decoded manifest does not re-encode to its input")
		}
	})
}

func BenchmarkBuild(b *testing.B) {
	data := make([]byte, 64<<20)
	rand.NewChaCha8([32]byte{2}).Read(data)
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if _, _, err := Build(context.Background(), bytes.NewReader(data), cdc.Default); err != nil {
			b.Fatal(err)
		}
	}
}
