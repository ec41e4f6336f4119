package manifest

import (
	"bytes"
	"crypto/sha256"
	"encoding"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"

	"github.com/voxsync/voxsync/resources"
)

// ErrMismatch is wrapped when a chunk's bytes do not lead from its hash
// state to the next chunk's (or to the whole resource's hash).
var ErrMismatch = errors.New("chunk does not match the manifest")

const (
	// blockLen is SHA-256's block: a chain value covers whole blocks.
	blockLen = 64
	// stateLen is Go's encoding of a SHA-256 state (crypto/sha256's
	// MarshalBinary): "sha\x03", the chain value, the 64-byte block
	// buffer (carry first, zero after) and the big-endian u64 count of
	// bytes hashed.
	stateLen   = 4 + 32 + blockLen + 8
	stateMagic = "sha\x03"
)

// initialChain is SHA-256's initial hash value, the chain value of the
// first chunk.
var initialChain = func() (c [32]byte) {
	st := appendState(nil, sha256.New())
	return [32]byte(st[4:36])
}()

// appendState appends d's state in Go's encoding.
func appendState(b []byte, d hash.Hash) []byte {
	b, err := d.(encoding.BinaryAppender).AppendBinary(b)
	if err != nil || len(b) < stateLen {
		// crypto/sha256's digest always encodes; anything else is a bug.
		panic(fmt.Sprintf("manifest: encode SHA-256 state: %v", err))
	}
	return b
}

// resume returns a SHA-256 that continues from chunk c's state.
func resume(c Chunk) hash.Hash {
	var st [stateLen]byte
	copy(st[:], stateMagic)
	copy(st[4:36], c.Chain[:])
	copy(st[36:], c.Carry)
	binary.BigEndian.PutUint64(st[4+32+blockLen:], c.Offset)
	d := sha256.New()
	if err := d.(encoding.BinaryUnmarshaler).UnmarshalBinary(st[:]); err != nil {
		panic(fmt.Sprintf("manifest: decode SHA-256 state: %v", err))
	}
	return d
}

// Verify checks data as chunk i of m, a resource whose SHA-256 is whole:
// resumed from the chunk's state, the whole hash over data must reach the
// next chunk's state, or whole after the last chunk. It reads data once.
// A chunk whose state or bytes were forged cannot pass: with the first
// chunk's state fixed to SHA-256's initial one, every chunk verifying
// means the bytes, in order, hash to whole. The chunk's Hash (its name)
// is not checked: it only says where a local copy may be found, and such
// a copy is verified here too. Every failure wraps ErrMismatch.
func (m *Manifest) Verify(whole resources.Hash, i int, data []byte) error {
	if i < 0 || i >= len(m.Chunks) {
		return fmt.Errorf("verify chunk %d: the manifest has %d chunks", i, len(m.Chunks))
	}
	c := m.Chunks[i]
	if len(data) != int(c.Length) {
		return fmt.Errorf("verify chunk %d: %d bytes, want %d: %w", i, len(data), c.Length, ErrMismatch)
	}
	// New and Check refuse these; a manifest made otherwise must not make
	// Verify trust a carry of the wrong length, or index past a state.
	if err := checkState(i, c); err != nil {
		return fmt.Errorf("verify chunk %d: %w: %w", i, err, ErrMismatch)
	}
	if i+1 < len(m.Chunks) {
		if next := m.Chunks[i+1]; next.Offset != c.End() || checkState(i+1, next) != nil {
			return fmt.Errorf("verify chunk %d: the next chunk's state is malformed: %w", i, ErrMismatch)
		}
	}
	d := resume(c)
	d.Write(data)
	if i == len(m.Chunks)-1 {
		var got resources.Hash
		d.Sum(got[:0])
		if got != whole {
			return fmt.Errorf("verify chunk %d: the resource hashes to %s, want %s: %w", i, got.Short(), whole.Short(), ErrMismatch)
		}
		return nil
	}
	var buf [stateLen]byte
	st := appendState(buf[:0], d)
	next := m.Chunks[i+1]
	if [32]byte(st[4:36]) != next.Chain || !bytes.Equal(st[36:36+len(next.Carry)], next.Carry) {
		return fmt.Errorf("verify chunk %d: the hash at %d does not match the next chunk's: %w", i, next.Offset, ErrMismatch)
	}
	return nil
}

// stateAt records d's state as the state of a chunk starting at off,
// which is what d has hashed: its chain value, and its carry appended to
// carries (returned).
func stateAt(d hash.Hash, off uint64, carries []byte) (chain [32]byte, _ []byte) {
	var buf [stateLen]byte
	st := appendState(buf[:0], d)
	copy(chain[:], st[4:36])
	return chain, append(carries, st[36:36+off%blockLen]...)
}
