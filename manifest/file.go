package manifest

import (
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
//	count × {length u32, hash [32]byte}
//
// Nothing may follow the last chunk. The caps are New's: a reader checks
// size and count with CheckHeader before it allocates anything.
//
// Version history:
//
//	1  the layout above
const (
	FileVersion = 1
	// fileHeaderLen is magic, version, whole hash, size and count.
	fileHeaderLen = 4 + 1 + 32 + 8 + 4
	fileChunkLen  = 4 + 32
	// MaxFileLen is the longest valid manifest file, for readers that
	// must cap what they download before parsing it.
	MaxFileLen = fileHeaderLen + MaxChunks*fileChunkLen
)

// fileMagic starts every manifest file.
var fileMagic = [4]byte{'V', 'X', 'M', 'F'}

// MarshalFile encodes m as a manifest file of the resource whose SHA-256
// is whole.
func (m *Manifest) MarshalFile(whole resources.Hash) []byte {
	b := make([]byte, 0, fileHeaderLen+len(m.Chunks)*fileChunkLen)
	b = append(b, fileMagic[:]...)
	b = append(b, FileVersion)
	b = append(b, whole[:]...)
	b = binary.LittleEndian.AppendUint64(b, m.Size)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(m.Chunks)))
	for _, c := range m.Chunks {
		b = binary.LittleEndian.AppendUint32(b, c.Length)
		b = append(b, c.Hash[:]...)
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
	if want := fileHeaderLen + int(n)*fileChunkLen; len(data) != want {
		return resources.Hash{}, nil, fmt.Errorf("%w: manifest file of %d chunks is %d bytes, want %d", ErrInvalid, n, len(data), want)
	}
	lengths := make([]uint32, n)
	hashes := make([]resources.Hash, n)
	for i, p := 0, data[fileHeaderLen:]; i < int(n); i, p = i+1, p[fileChunkLen:] {
		lengths[i] = binary.LittleEndian.Uint32(p)
		copy(hashes[i][:], p[4:fileChunkLen])
	}
	if m, err = New(size, lengths, hashes); err != nil {
		return resources.Hash{}, nil, err
	}
	return whole, m, nil
}
