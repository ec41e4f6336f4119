package manifest

import (
	"bytes"
	"encoding/binary"
	"fmt"

	"github.com/voxsync/voxsync/resources"
)

// A manifest file is how a published mirror (see package publish) stores
// a large resource's manifest, at manifests/<hh>/<hex of the resource's
// SHA-256>. Little-endian, like the wire protocol:
//
//	magic   "VXMF"                 4 bytes
//	version u8                     FileVersion
//	whole   [32]byte               SHA-256 of the whole resource
//	size    u64                    the resource's length
//	count   u32                    number of chunks
//	count × {length u32, hash [32]byte, chain [32]byte, carry length u8, carry}
//
// chain and carry are the chunk's SHA-256 state (see Chunk); the carry
// length must be the chunk's offset modulo 64. Nothing may follow the last
// chunk. The caps are New's: a reader checks size and count with
// CheckHeader before it allocates anything.
//
// Version history:
//
//	1  chunks were {length u32, hash [32]byte}
//	2  the layout above: each chunk carries its hash state
const (
	FileVersion = 2
	// fileHeaderLen is magic, version, whole hash, size and count.
	fileHeaderLen = 4 + 1 + 32 + 8 + 4
	// A chunk's entry is fileChunkMin bytes and its carry.
	fileChunkMin = 4 + 32 + 32 + 1
	// MaxFileLen is the longest valid manifest file, for readers that
	// must cap what they download before parsing it.
	MaxFileLen = fileHeaderLen + MaxChunks*(fileChunkMin+blockLen-1)
)

// fileMagic starts every manifest file.
var fileMagic = [4]byte{'V', 'X', 'M', 'F'}

// MarshalFile encodes m as a manifest file of the resource whose SHA-256
// is whole.
func (m *Manifest) MarshalFile(whole resources.Hash) []byte {
	b := make([]byte, 0, fileHeaderLen+len(m.Chunks)*(fileChunkMin+blockLen/2))
	b = append(b, fileMagic[:]...)
	b = append(b, FileVersion)
	b = append(b, whole[:]...)
	b = binary.LittleEndian.AppendUint64(b, m.Size)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(m.Chunks)))
	for _, c := range m.Chunks {
		b = binary.LittleEndian.AppendUint32(b, c.Length)
		b = append(b, c.Hash[:]...)
		b = append(b, c.Chain[:]...)
		b = append(b, byte(len(c.Carry)))
		b = append(b, c.Carry...)
	}
	return b
}

// ParseFile decodes a manifest file. Every error wraps ErrInvalid. The
// caller still checks whole against the name it fetched the file by, and
// the assembled bytes against whole.
func ParseFile(data []byte) (whole resources.Hash, m *Manifest, err error) {
	if len(data) < fileHeaderLen {
		return whole, nil, fmt.Errorf("%w: manifest file of %d bytes, shorter than its %d-byte header", ErrInvalid, len(data), fileHeaderLen)
	}
	if [4]byte(data[:4]) != fileMagic {
		return whole, nil, fmt.Errorf("%w: manifest file starts with %q, not %q", ErrInvalid, data[:4], fileMagic[:])
	}
	if v := data[4]; v != FileVersion {
		return whole, nil, fmt.Errorf("%w: manifest file version %d, this reader knows %d", ErrInvalid, v, FileVersion)
	}
	copy(whole[:], data[5:37])
	size := binary.LittleEndian.Uint64(data[37:45])
	n := binary.LittleEndian.Uint32(data[45:49])
	if err := CheckHeader(size, n); err != nil {
		return resources.Hash{}, nil, err
	}
	// n is now at most MaxChunks, so the product cannot overflow.
	p := data[fileHeaderLen:]
	if len(p) < int(n)*fileChunkMin {
		return resources.Hash{}, nil, fmt.Errorf("%w: manifest file of %d chunks is %d bytes, want at least %d", ErrInvalid, n, len(data), fileHeaderLen+int(n)*fileChunkMin)
	}
	chunks := make([]Chunk, n)
	for i := range chunks {
		if len(p) < fileChunkMin {
			return resources.Hash{}, nil, fmt.Errorf("%w: manifest file ends in chunk %d of %d", ErrInvalid, i, n)
		}
		c := &chunks[i]
		c.Length = binary.LittleEndian.Uint32(p)
		copy(c.Hash[:], p[4:36])
		copy(c.Chain[:], p[36:68])
		k := int(p[68])
		p = p[fileChunkMin:]
		if k >= blockLen || k > len(p) {
			return resources.Hash{}, nil, fmt.Errorf("%w: manifest file's chunk %d carries %d bytes, at most %d", ErrInvalid, i, k, min(blockLen-1, len(p)))
		}
		if k > 0 {
			c.Carry = bytes.Clone(p[:k]) // m must not refer to data
		}
		p = p[k:]
	}
	if len(p) != 0 {
		return resources.Hash{}, nil, fmt.Errorf("%w: %d bytes after the last chunk of the manifest file", ErrInvalid, len(p))
	}
	if m, err = New(size, chunks); err != nil {
		return resources.Hash{}, nil, err
	}
	return whole, m, nil
}
