package manifest

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"testing"

	"github.com/voxsync/voxsync/cdc"
	"github.com/voxsync/voxsync/resources"
)

// builtFile is the manifest file of 3 MiB of random bytes, cut as the
// server cuts them, with its manifest and whole hash.
func builtFile(t testing.TB) ([]byte, *Manifest, resources.Hash) {
	t.Helper()
	data := make([]byte, 3<<20)
	rand.NewChaCha8([32]byte{7}).Read(data)
	m, whole, err := Build(context.Background(), bytes.NewReader(data), cdc.Default)
	if err != nil {
		t.Fatal(err)
	}
	return m.MarshalFile(whole), m, whole
}

// fileOf writes a manifest file by hand, so that tests can write what
// MarshalFile never would.
func fileOf(magic string, version byte, size uint64, count uint32, lengths ...uint32) []byte {
	b := append([]byte(magic), version)
	b = append(b, make([]byte, 32)...)
	b = binary.LittleEndian.AppendUint64(b, size)
	b = binary.LittleEndian.AppendUint32(b, count)
	for i, c := range chunksOf(lengths...) {
		b = binary.LittleEndian.AppendUint32(b, c.Length)
		hh := h(i)
		b = append(b, hh[:]...)
		b = append(b, c.Chain[:]...)
		b = append(b, byte(len(c.Carry)))
		b = append(b, c.Carry...)
	}
	return b
}

func TestManifestFileRoundTrip(t *testing.T) {
	data, m, whole := builtFile(t)
	if len(m.Chunks) < 4 {
		t.Fatalf("only %d chunks; the test wants several", len(m.Chunks))
	}
	want := 49
	for _, c := range m.Chunks {
		want += 69 + int(c.Offset%64)
	}
	if len(data) != want {
		t.Fatalf("file is %d bytes, want %d", len(data), want)
	}
	gotWhole, got, err := ParseFile(data)
	if err != nil {
		t.Fatal(err)
	}
	if gotWhole != whole || got.Size != m.Size || got.Digest() != m.Digest() {
		t.Fatalf("parsed %x %d chunks of %d bytes, want %x %d of %d", gotWhole[:4], len(got.Chunks), got.Size, whole[:4], len(m.Chunks), m.Size)
	}
	for i := range m.Chunks {
		g, w := got.Chunks[i], m.Chunks[i]
		if g.Offset != w.Offset || g.Length != w.Length || g.Hash != w.Hash || g.Chain != w.Chain || !bytes.Equal(g.Carry, w.Carry) {
			t.Fatalf("chunk %d: %+v, want %+v", i, got.Chunks[i], m.Chunks[i])
		}
	}
}

func TestParseFileRefusesMalformedFiles(t *testing.T) {
	good, _, _ := builtFile(t)
	const k = MinAverageChunk
	// withCarry replaces the 1-byte carry of chunk 1 in twoChunks.
	withCarry := func(data []byte, carry []byte) []byte {
		at := 49 + 69 + 68 // header, chunk 0, chunk 1 up to its carry length
		out := append(bytes.Clone(data[:at]), byte(len(carry)))
		out = append(out, carry...)
		return append(out, data[at+2:]...)
	}
	twoChunks := fileOf("VXMF", 2, 3*k, 2, k+1, 2*k-1)
	notInitial := fileOf("VXMF", 2, 3*k, 2, k, 2*k)
	notInitial[49+36+31] ^= 1 // the last byte of chunk 0's chain
	tests := []struct {
		name string
		data []byte
		ok   bool
	}{
		{"built by MarshalFile", good, true},
		{"written by hand", fileOf("VXMF", 2, 3*k, 2, k, 2*k), true},
		{"a chunk with a carry", twoChunks, true},
		{"a carry one byte short", withCarry(twoChunks, nil), false},
		{"a carry one byte long", withCarry(twoChunks, []byte{0, 0}), false},
		{"a carry of a whole block", withCarry(twoChunks, make([]byte, 64)), false},
		{"first chunk not from the initial state", notInitial, false},
		{"empty resource, no chunks", fileOf("VXMF", 2, 0, 0), true},
		{"empty", nil, false},
		{"header cut short", good[:48], false},
		{"wrong magic", append([]byte("VXMG"), good[4:]...), false},
		{"future version", fileOf("VXMF", 3, 3*k, 2, k, 2*k), false},
		{"version 1, before hash states", fileOf("VXMF", 1, 3*k, 2, k, 2*k), false},
		{"version 0", fileOf("VXMF", 0, 3*k, 2, k, 2*k), false},
		{"last chunk cut short", good[:len(good)-1], false},
		{"trailing byte", append(bytes.Clone(good), 0), false},
		{"count says more chunks than follow", fileOf("VXMF", 2, 3*k, 3, k, 2*k), false},
		{"count says fewer chunks than follow", fileOf("VXMF", 2, 3*k, 1, k, 2*k), false},
		{"count over the cap, nothing allocated", fileOf("VXMF", 2, 1<<40, MaxChunks+1), false},
		{"count of 2^32-1", fileOf("VXMF", 2, 1<<40, 1<<32-1), false},
		{"lengths short of the size", fileOf("VXMF", 2, 4*k, 2, k, 2*k), false},
		{"lengths past the size", fileOf("VXMF", 2, 3*k, 2, 2*k, 2*k), false},
		{"empty chunk", fileOf("VXMF", 2, 3*k, 2, 3*k, 0), false},
		{"chunk over 1 MiB", fileOf("VXMF", 2, MaxChunkLen+1, 1, MaxChunkLen+1), false},
		{"more than one chunk per 4 KiB", fileOf("VXMF", 2, 30, 3, 10, 15, 5), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, m, err := ParseFile(tc.data)
			if got := err == nil; got != tc.ok {
				t.Fatalf("ParseFile = %v, want ok %v", err, tc.ok)
			}
			if err != nil && !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v does not wrap ErrInvalid", err)
			}
			if err != nil && m != nil {
				t.Fatal("a manifest returned with an error")
			}
		})
	}
}

// FuzzParseFile: whatever ParseFile accepts is a valid manifest that
// MarshalFile writes back byte for byte, so there is exactly one encoding
// of each manifest and nothing can hide in a file. The input is also
// parsed from a fresh copy of each half-way prefix, the way a download cut
// short would arrive.
func FuzzParseFile(f *testing.F) {
	good, _, _ := builtFile(f)
	const k = MinAverageChunk
	f.Add(good)
	f.Add(fileOf("VXMF", 2, 3*k, 2, k, 2*k))
	f.Add(fileOf("VXMF", 2, 3*k, 2, k+1, 2*k-1))
	f.Add(fileOf("VXMF", 2, 0, 0))
	f.Add(fileOf("VXMF", 2, 3*k, 3, k, 2*k))
	f.Add(fileOf("VXMF", 2, 1<<40, MaxChunks+1))
	f.Add(fileOf("VXMF", 1, k, 1, k))
	f.Fuzz(func(t *testing.T, data []byte) {
		whole, m, err := ParseFile(data)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v does not wrap ErrInvalid", err)
			}
		} else {
			checkAccepted(t, m)
			if again := m.MarshalFile(whole); !bytes.Equal(again, data) {
				t.Fatalf("accepted a file that does not encode back to itself:\n got %x\nwant %x", data, again)
			}
		}
		if half := bytes.Clone(data[:len(data)/2]); len(half) > 0 && err == nil && len(m.Chunks) > 0 {
			if _, _, err := ParseFile(half); err == nil {
				t.Fatal("half of a valid file with chunks accepted")
			}
		}
	})
}
