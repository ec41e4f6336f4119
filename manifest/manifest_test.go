package manifest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/voxsync/voxsync/cdc"
	"github.com/voxsync/voxsync/resources"
)

func h(i int) resources.Hash { return sha256.Sum256([]byte{byte(i), byte(i >> 8)}) }

// chunksOf returns well-formed chunks of the given lengths for New: named
// h(i), the first from SHA-256's initial state, each with a carry of the
// right length (the states are not those of any bytes).
func chunksOf(lengths ...uint32) []Chunk {
	cs := make([]Chunk, len(lengths))
	var off uint64
	for i, n := range lengths {
		cs[i] = Chunk{Length: n, Hash: h(i), Chain: h(i + 1000), Carry: make([]byte, off%blockLen)}
		if off == 0 {
			cs[i].Chain = initialChain
		}
		off += uint64(n)
	}
	return cs
}

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
			m, err := New(tc.size, chunksOf(tc.lengths...))
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
	wrongCarry := chunksOf(MinAverageChunk+1, MinAverageChunk)
	wrongCarry[1].Carry = nil
	if _, err := New(2*MinAverageChunk+1, wrongCarry); !errors.Is(err, ErrInvalid) {
		t.Fatalf("a carry of the wrong length: %v", err)
	}
	notInitial := chunksOf(10)
	notInitial[0].Chain[0]++
	if _, err := New(10, notInitial); !errors.Is(err, ErrInvalid) {
		t.Fatalf("a first chunk not from SHA-256's initial state: %v", err)
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

func TestFindAndDigest(t *testing.T) {
	const k = MinAverageChunk
	m, err := New(35*k, chunksOf(10*k, 20*k, 5*k))
	if err != nil {
		t.Fatal(err)
	}
	again, err := New(35*k, chunksOf(10*k, 20*k, 5*k))
	if err != nil || again.Digest() != m.Digest() {
		t.Fatalf("the same chunks, another digest: %v", err)
	}
	if i, ok := m.Find(10*k, 20*k); !ok || i != 1 {
		t.Fatalf("Find(10k, 20k) = %d, %v", i, ok)
	}
	for _, q := range [][2]uint64{{10 * k, 19 * k}, {11 * k, 20 * k}, {35 * k, 0}, {0, 35 * k}} {
		if _, ok := m.Find(q[0], q[1]); ok {
			t.Errorf("Find(%d, %d) found a chunk", q[0], q[1])
		}
	}
	cs := chunksOf(10*k, 20*k, 5*k)
	cs[2].Hash = h(4)
	other, _ := New(35*k, cs)
	if other.Digest() == m.Digest() {
		t.Fatal("different chunks, same digest")
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
	if _, err := New(m.Size, slices.Clone(m.Chunks)); err != nil {
		t.Fatalf("built manifest is invalid: %v", err)
	}
	for i, c := range m.Chunks {
		if sha256.Sum256(data[c.Offset:c.End()]) != c.Hash {
			t.Fatalf("chunk %d hash wrong", i)
		}
		if err := m.Verify(whole, i, data[c.Offset:c.End()]); err != nil {
			t.Fatalf("chunk %d does not verify: %v", i, err)
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

// FuzzNew feeds New what a receiver collects from Manifest packets: a size
// and a list of lengths (u64 size, then u32 lengths, little-endian; the
// hashes do not matter to the rules). Whatever New accepts is a valid
// manifest.
func FuzzNew(f *testing.F) {
	seed := func(size uint64, lengths ...uint32) []byte {
		b := binary.LittleEndian.AppendUint64(nil, size)
		for _, n := range lengths {
			b = binary.LittleEndian.AppendUint32(b, n)
		}
		return b
	}
	f.Add(seed(3*MinAverageChunk, MinAverageChunk, MinAverageChunk, MinAverageChunk))
	f.Add(seed(0))
	f.Add(seed(30, 10, 15, 5))
	f.Add(seed(1<<40, MaxChunkLen, MaxChunkLen))
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) < 8 {
			return
		}
		size := binary.LittleEndian.Uint64(b)
		var lengths []uint32
		for rest := b[8:]; len(rest) >= 4; rest = rest[4:] {
			lengths = append(lengths, binary.LittleEndian.Uint32(rest))
		}
		m, err := New(size, chunksOf(lengths...))
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v does not wrap ErrInvalid", err)
			}
			return
		}
		checkAccepted(t, m)
		var off uint64
		for _, c := range m.Chunks {
			off = c.End()
		}
		if off != m.Size || len(m.Chunks) > MaxChunks || uint64(len(m.Chunks)) > (size+MinAverageChunk-1)/MinAverageChunk {
			t.Fatalf("accepted %d chunks covering %d of %d bytes", len(m.Chunks), off, m.Size)
		}
	})
}

// checkAccepted fails t unless m obeys every rule New and ParseFile
// promise: contiguous chunks of 1..MaxChunkLen bytes covering Size, chunk
// 0 from SHA-256's initial state, each carry offset mod 64 bytes long.
func checkAccepted(t *testing.T, m *Manifest) {
	t.Helper()
	var off uint64
	for i, c := range m.Chunks {
		if c.Offset != off || c.Length == 0 || c.Length > MaxChunkLen {
			t.Fatalf("accepted an invalid chunk %d: %+v", i, c)
		}
		if len(c.Carry) != int(c.Offset%64) || (i == 0 && c.Chain != initialChain) {
			t.Fatalf("accepted chunk %d with an invalid hash state: %x %x", i, c.Chain, c.Carry)
		}
		off = c.End()
	}
	if off != m.Size {
		t.Fatalf("accepted chunks covering %d of %d bytes", off, m.Size)
	}
	if err := m.Check(); err != nil {
		t.Fatalf("accepted a manifest Check refuses: %v", err)
	}
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
