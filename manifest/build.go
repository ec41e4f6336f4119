package manifest

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"

	"github.com/voxsync/voxsync/cdc"
	"github.com/voxsync/voxsync/resources"
)

// Build cuts r by content with p and returns its manifest and the SHA-256
// of all of r. The whole hash runs on another goroutine, over a copy of
// each block read, while this one cuts and hashes chunks: a large file is
// described in about the time of one SHA-256 pass.
func Build(ctx context.Context, r io.Reader, p cdc.Params) (*Manifest, resources.Hash, error) {
	if p.Max > MaxChunkLen {
		return nil, resources.Hash{}, fmt.Errorf("build manifest: chunks up to %d bytes, limit %d", p.Max, MaxChunkLen)
	}
	t := &teeHasher{r: r, blocks: make(chan []byte, teeBlocks), free: make(chan []byte, teeBlocks), done: make(chan resources.Hash, 1)}
	for range teeBlocks {
		t.free <- make([]byte, 0, 1<<20)
	}
	go t.run()
	m, err := cut(ctx, t, p)
	close(t.blocks)
	whole := <-t.done
	if err != nil {
		return nil, resources.Hash{}, err
	}
	return m, whole, nil
}

func cut(ctx context.Context, r io.Reader, p cdc.Params) (*Manifest, error) {
	c, err := cdc.New(r, p)
	if err != nil {
		return nil, fmt.Errorf("build manifest: %w", err)
	}
	m := &Manifest{}
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		ch, err := c.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("build manifest: read: %w", err)
		}
		if len(m.Chunks) == MaxChunks {
			return nil, fmt.Errorf("build manifest: more than %d chunks", MaxChunks)
		}
		m.Chunks = append(m.Chunks, Chunk{Offset: uint64(ch.Offset), Length: uint32(len(ch.Data)), Hash: sha256.Sum256(ch.Data)})
		m.Size = uint64(ch.Offset) + uint64(len(ch.Data))
	}
	return m, nil
}

// teeBlocks is how many 1 MiB copies may wait for the whole hash.
const teeBlocks = 4

// teeHasher passes reads through and hashes a copy of every byte on its
// own goroutine.
type teeHasher struct {
	r      io.Reader
	blocks chan []byte // copies to hash, in order
	free   chan []byte // copies hashed, to reuse
	done   chan resources.Hash
}

func (t *teeHasher) Read(b []byte) (int, error) {
	n, err := t.r.Read(b)
	for rest := b[:n]; len(rest) > 0; {
		blk := <-t.free
		k := min(len(rest), cap(blk))
		t.blocks <- append(blk[:0], rest[:k]...)
		rest = rest[k:]
	}
	return n, err
}

func (t *teeHasher) run() {
	d := sha256.New()
	for b := range t.blocks {
		d.Write(b)
		t.free <- b[:0]
	}
	var h resources.Hash
	d.Sum(h[:0])
	t.done <- h
}
