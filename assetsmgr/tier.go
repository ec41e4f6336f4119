package assetsmgr

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"

	"github.com/voxsync/voxsync/resources"
)

// Sentinels callers branch on.
var (
	ErrHashMismatch = errors.New("content does not match its hash")
	ErrSizeMismatch = errors.New("content size does not match")
	ErrNewerSchema  = errors.New("cache made by a newer client")
	ErrClosed       = errors.New("cache closed")
)

// Source says where a resource was found.
type Source uint8

const (
	SourcePack Source = iota + 1
	SourceInline
	SourceBlob
	SourceNetwork
	// SourcePartial names partials in reports (Stats, Verify); Lookup
	// never returns one.
	SourcePartial
)

func (s Source) String() string {
	switch s {
	case SourcePack:
		return "pack"
	case SourceInline:
		return "inline"
	case SourceBlob:
		return "blob"
	case SourceNetwork:
		return "network"
	case SourcePartial:
		return "partial"
	}
	return fmt.Sprintf("source(%d)", uint8(s))
}

func (s Source) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// Content is an open blob.
type Content interface {
	io.ReaderAt
	io.Closer
}

// Blob is a verified hit.
type Blob struct {
	Hash   resources.Hash
	Size   int64
	Source Source
	open   func() (Content, error) // reads (and where due verifies) the bytes
	used   int64                   // last_used of a cache row (unix seconds)
}

// Open returns the blob's bytes for reading. An inline blob, and a blob
// file not re-hashed at lookup (its fingerprint was unchanged), is
// verified whole on the first read, which fails with ErrHashMismatch or
// ErrSizeMismatch rather than return a corrupt byte.
func (b Blob) Open() (Content, error) {
	if b.open == nil {
		return nil, fmt.Errorf("open blob %s: not a cache hit", b.Hash.Short())
	}
	return b.open()
}

// ReadAll returns the blob's bytes.
func (b Blob) ReadAll() ([]byte, error) {
	c, err := b.Open()
	if err != nil {
		return nil, err
	}
	defer c.Close()
	switch cc := c.(type) {
	case *checkedContent:
		return cc.readAll() // one pass: read and verify together
	case inlineContent:
		return cc.data, nil // verified as it was read
	}
	out := make([]byte, b.Size)
	if _, err := c.ReadAt(out, 0); err != nil && !(err == io.EOF && b.Size == 0) {
		return nil, err
	}
	return out, nil
}

// Tier is one place blobs can be found. Lookup returns the hits among hs.
// Their bytes are verified at lookup or, where that would cost a read of
// every blob at every join, when first read; an entry found corrupt either
// way is removed (where the tier owns it) and is a miss, or a read error.
type Tier interface {
	Source() Source
	Lookup(ctx context.Context, hs []resources.Hash) (map[resources.Hash]Blob, error)
}

// verifyReader hashes r's first size bytes and checks them against h.
func verifyReader(r io.ReaderAt, size int64, h resources.Hash, buf []byte) error {
	d := sha256.New()
	n, err := io.CopyBuffer(d, io.NewSectionReader(r, 0, size), buf)
	if err != nil {
		return err
	}
	if n != size {
		return fmt.Errorf("%d of %d bytes: %w", n, size, ErrSizeMismatch)
	}
	var got resources.Hash
	d.Sum(got[:0])
	if got != h {
		return fmt.Errorf("hash %s, want %s: %w", got.Short(), h.Short(), ErrHashMismatch)
	}
	return nil
}
