// Package manifest describes a large resource as a list of content-defined
// chunks, so that a receiver can verify every chunk as it arrives, copy
// chunks it already holds from other resources, and resume from the chunks
// it has.
//
// Each chunk is named by its own SHA-256 (what local copies are found by)
// and carries the state of the whole resource's SHA-256 where the chunk
// starts: its chain value (the eight words after the whole 64-byte blocks
// before the chunk) and carry (the bytes since the last whole block). A
// receiver verifies a chunk by resuming the whole hash from the chunk's
// state over the chunk's bytes: it must reach the next chunk's state, or,
// after the last chunk, the Bind's hash. The first chunk starts from
// SHA-256's initial state, so chunks that each verify are, together, the
// resource with the Bind's hash: each byte is hashed once, chunks verify
// in any order and on any core, and bad data is caught in the chunk that
// carries it. See Verify.
//
// This package must never trust a count or length before checking it
// against the caps below.
package manifest

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"sort"

	"github.com/voxsync/voxsync/resources"
)

// Caps every manifest obeys, part of the wire protocol.
const (
	// MaxChunkLen caps one chunk's length.
	MaxChunkLen = 1 << 20
	// MaxChunks caps the chunks of one manifest: 16 GiB at 64 KiB chunks.
	MaxChunks = 1 << 18
	// MinAverageChunk: a manifest has at most one chunk per this many
	// bytes of the resource, rounded up. Every chunk costs the receiver a
	// request and a record, so a server cannot make a 16 MiB resource
	// cost 262,144 of them.
	MinAverageChunk = 4 << 10
)

// ErrInvalid is wrapped by every validation failure.
var ErrInvalid = errors.New("invalid manifest")

// Chunk is one chunk of a resource: Length bytes at Offset, whose SHA-256
// is Hash, and the whole resource's SHA-256 state at Offset.
type Chunk struct {
	Offset uint64
	Length uint32
	Hash   resources.Hash
	// Chain is SHA-256's intermediate hash value after the resource's
	// first Offset&^63 bytes, as eight big-endian 32-bit words.
	Chain [32]byte
	// Carry is the resource's bytes [Offset&^63, Offset): Offset%64 of
	// them, hashed with the chunk's block.
	Carry []byte
}

// End is the offset just past the chunk.
func (c Chunk) End() uint64 { return c.Offset + uint64(c.Length) }

// Manifest is a resource of Size bytes cut into Chunks, which are in order,
// contiguous, non-empty and cover [0, Size) exactly.
type Manifest struct {
	Size   uint64
	Chunks []Chunk
}

// New validates chunks read from the wire or a file (their Length, Hash,
// Chain and Carry; Offset is computed) and returns the manifest they
// describe, which owns chunks from then on.
func New(size uint64, chunks []Chunk) (*Manifest, error) {
	if err := checkCount(size, len(chunks)); err != nil {
		return nil, err
	}
	// At most MaxChunks lengths of 32 bits: the sum cannot overflow.
	var off uint64
	for i := range chunks {
		chunks[i].Offset = off
		off += uint64(chunks[i].Length)
	}
	m := &Manifest{Size: size, Chunks: chunks}
	if err := m.Check(); err != nil {
		return nil, err
	}
	return m, nil
}

// Check checks a manifest against New's rules, offsets included: New's
// own check, and the one for a manifest made otherwise (built in memory,
// or by hand).
func (m *Manifest) Check() error {
	if m == nil {
		return fmt.Errorf("%w: no manifest", ErrInvalid)
	}
	if err := checkCount(m.Size, len(m.Chunks)); err != nil {
		return err
	}
	var off uint64
	for i, c := range m.Chunks {
		if c.Offset != off || c.Length == 0 || c.Length > MaxChunkLen {
			return fmt.Errorf("%w: chunk %d at %d+%d, want one of 1..%d bytes at %d", ErrInvalid, i, c.Offset, c.Length, MaxChunkLen, off)
		}
		if err := checkState(i, c); err != nil {
			return err
		}
		off += uint64(c.Length)
	}
	if off != m.Size {
		return fmt.Errorf("%w: chunks add up to %d bytes, the resource has %d", ErrInvalid, off, m.Size)
	}
	return nil
}

// checkState checks what can be checked of chunk i's hash state without
// its bytes: the carry's length, and that the first chunk starts from
// SHA-256's initial state (otherwise chunks that verify would prove
// nothing about the whole).
func checkState(i int, c Chunk) error {
	if len(c.Carry) != int(c.Offset%blockLen) {
		return fmt.Errorf("%w: chunk %d at %d carries %d bytes, want %d", ErrInvalid, i, c.Offset, len(c.Carry), c.Offset%blockLen)
	}
	if c.Offset == 0 && c.Chain != initialChain {
		return fmt.Errorf("%w: chunk %d at 0 does not start from SHA-256's initial state", ErrInvalid, i)
	}
	return nil
}

// checkCount checks a chunk count against the caps and the size it must
// cover, before anything is allocated for it.
func checkCount(size uint64, n int) error {
	switch {
	case n < 0 || n > MaxChunks:
		return fmt.Errorf("%w: %d chunks, limit %d", ErrInvalid, n, MaxChunks)
	case size == 0 && n != 0:
		return fmt.Errorf("%w: %d chunks for an empty resource", ErrInvalid, n)
	case size > 0 && n == 0:
		return fmt.Errorf("%w: no chunks for %d bytes", ErrInvalid, size)
	case size > uint64(n)*MaxChunkLen:
		return fmt.Errorf("%w: %d chunks of at most %d bytes cannot cover %d bytes", ErrInvalid, n, MaxChunkLen, size)
	case uint64(n) > (size+MinAverageChunk-1)/MinAverageChunk:
		return fmt.Errorf("%w: %d chunks for %d bytes; at most one per %d bytes", ErrInvalid, n, size, MinAverageChunk)
	}
	return nil
}

// CheckHeader checks a manifest's announced size and chunk count, so a
// receiver can refuse one before collecting its parts.
func CheckHeader(size uint64, n uint32) error { return checkCount(size, int(min(n, MaxChunks+1))) }

// Single is the manifest of a resource sent as one chunk.
func Single(size uint64, h resources.Hash) *Manifest {
	if size == 0 {
		return &Manifest{}
	}
	return &Manifest{Size: size, Chunks: []Chunk{{Length: uint32(size), Hash: h, Chain: initialChain}}}
}

// Find returns the index of the chunk that starts at off and is n bytes
// long.
func (m *Manifest) Find(off uint64, n uint64) (int, bool) {
	i := sort.Search(len(m.Chunks), func(i int) bool { return m.Chunks[i].Offset >= off })
	if i < len(m.Chunks) && m.Chunks[i].Offset == off && uint64(m.Chunks[i].Length) == n {
		return i, true
	}
	return 0, false
}

// Digest identifies the manifest: the SHA-256 of its size and every
// chunk's length and hash. Two manifests with the same digest cut the same
// resource the same way. (The chunks' hash states are left out: they
// follow from the bytes, and every chunk is verified against them.)
func (m *Manifest) Digest() resources.Hash {
	d := sha256.New()
	var b [8 + 4 + 32]byte
	binary.LittleEndian.PutUint64(b[:8], m.Size)
	d.Write(b[:8])
	for _, c := range m.Chunks {
		binary.LittleEndian.PutUint32(b[:4], c.Length)
		copy(b[4:], c.Hash[:])
		d.Write(b[:36])
	}
	var h resources.Hash
	d.Sum(h[:0])
	return h
}
