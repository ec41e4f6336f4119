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

// TestVerifyChecksEveryChunkInOnePass: every chunk of a real manifest
// verifies, in any order, and any change to a chunk's bytes or to the
// states the manifest claims fails exactly where it must.
func TestVerifyChecksEveryChunkInOnePass(t *testing.T) {
	data := make([]byte, 3<<20+77)
	rand.NewChaCha8([32]byte{3}).Read(data)
	built, whole, err := Build(context.Background(), bytes.NewReader(data), cdc.Default)
	if err != nil {
		t.Fatal(err)
	}
	// Chunks shorter than a block, and carries spanning chunks.
	small, smallWhole, err := Cut(data[:300], []uint32{10, 100, 3, 70, 1, 116})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		m     *Manifest
		whole resources.Hash
		data  []byte
	}{{"built", built, whole, data}, {"short chunks", small, smallWhole, data[:300]}} {
		t.Run(tc.name, func(t *testing.T) {
			m := tc.m
			if tc.whole != sha256.Sum256(tc.data) {
				t.Fatal("whole hash wrong")
			}
			chunk := func(i int) []byte { return bytes.Clone(tc.data[m.Chunks[i].Offset:m.Chunks[i].End()]) }
			for _, i := range rand.New(rand.NewPCG(1, 2)).Perm(len(m.Chunks)) {
				if err := m.Verify(tc.whole, i, chunk(i)); err != nil {
					t.Fatalf("chunk %d: %v", i, err)
				}
			}
			for i := range m.Chunks {
				b := chunk(i)
				b[len(b)/2] ^= 1
				if err := m.Verify(tc.whole, i, b); !errors.Is(err, ErrMismatch) {
					t.Fatalf("chunk %d with a bit flipped: %v", i, err)
				}
				if err := m.Verify(tc.whole, i, chunk(i)[1:]); !errors.Is(err, ErrMismatch) {
					t.Fatalf("chunk %d a byte short: %v", i, err)
				}
			}
			last := len(m.Chunks) - 1
			if err := m.Verify(h(1), last, chunk(last)); !errors.Is(err, ErrMismatch) {
				t.Fatalf("last chunk against another whole hash: %v", err)
			}
			// A forged state fails the chunk before it, whose bytes lead
			// to the true one.
			for i := 1; i < len(m.Chunks); i++ {
				forged := *m
				forged.Chunks = append([]Chunk(nil), m.Chunks...)
				forged.Chunks[i].Chain[31] ^= 1
				if err := forged.Verify(tc.whole, i-1, chunk(i-1)); !errors.Is(err, ErrMismatch) {
					t.Fatalf("chunk %d before a forged chain: %v", i-1, err)
				}
				if k := len(m.Chunks[i].Carry); k > 0 {
					forged.Chunks[i] = m.Chunks[i]
					forged.Chunks[i].Carry = bytes.Clone(m.Chunks[i].Carry)
					forged.Chunks[i].Carry[k-1] ^= 1
					if err := forged.Verify(tc.whole, i-1, chunk(i-1)); !errors.Is(err, ErrMismatch) {
						t.Fatalf("chunk %d before a forged carry: %v", i-1, err)
					}
				}
			}
			if err := m.Verify(tc.whole, len(m.Chunks), nil); err == nil {
				t.Fatal("a chunk past the manifest verified")
			}
		})
	}
}

// TestVerifyDoesNotTrustAManifestOfOtherBytes: a manifest built from other
// bytes, however consistent, cannot make its chunks verify against the
// bound hash.
func TestVerifyDoesNotTrustAManifestOfOtherBytes(t *testing.T) {
	data := make([]byte, 1<<20)
	rand.NewChaCha8([32]byte{4}).Read(data)
	whole := sha256.Sum256(data)
	other := bytes.Clone(data)
	other[500_000] ^= 0xff
	m, _, err := Cut(other, []uint32{300_000, 400_000, 1<<20 - 700_000})
	if err != nil {
		t.Fatal(err)
	}
	var failed int
	for i, c := range m.Chunks {
		if m.Verify(whole, i, other[c.Offset:c.End()]) != nil {
			failed++
		}
	}
	if failed == 0 {
		t.Fatal("every chunk of other bytes verified against the bound hash")
	}
}

// TestVerifyRefusesMalformedStates: a manifest made without New (whose
// states New would refuse) makes Verify fail, never panic or trust a
// carry of the wrong length.
func TestVerifyRefusesMalformedStates(t *testing.T) {
	data := make([]byte, 300)
	rand.NewChaCha8([32]byte{6}).Read(data)
	good, whole, err := Cut(data, []uint32{100, 100, 100})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		i     int
		spoil func(cs []Chunk)
	}{
		{"next carry too short", 0, func(cs []Chunk) { cs[1].Carry = nil }},
		{"next carry too long", 0, func(cs []Chunk) { cs[1].Carry = make([]byte, 100) }},
		{"own carry too long", 1, func(cs []Chunk) { cs[1].Carry = make([]byte, 100) }},
		{"first chunk not from the initial state", 0, func(cs []Chunk) { cs[0].Chain[3] ^= 1 }},
		{"next chunk elsewhere", 0, func(cs []Chunk) { cs[1].Offset++ }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := &Manifest{Size: good.Size, Chunks: append([]Chunk(nil), good.Chunks...)}
			tc.spoil(m.Chunks)
			c := m.Chunks[tc.i]
			if err := m.Verify(whole, tc.i, data[good.Chunks[tc.i].Offset:good.Chunks[tc.i].End()]); !errors.Is(err, ErrMismatch) {
				t.Fatalf("Verify = %v, want ErrMismatch (chunk %+v)", err, c)
			}
			if m.Check() == nil {
				t.Fatal("Check accepted it")
			}
		})
	}
}

func BenchmarkVerify(b *testing.B) {
	data := make([]byte, 64<<20)
	rand.NewChaCha8([32]byte{5}).Read(data)
	m, whole, err := Build(context.Background(), bytes.NewReader(data), cdc.Default)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		for i, c := range m.Chunks {
			if err := m.Verify(whole, i, data[c.Offset:c.End()]); err != nil {
				b.Fatal(err)
			}
		}
	}
}
