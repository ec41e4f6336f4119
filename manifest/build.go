package manifest

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"

	"github.com/voxsync/voxsync/cdc"
	"github.com/voxsync/voxsync/resources"
)

// Build cuts r by content with p and returns its manifest and the SHA-256
// of all of r. This goroutine cuts and runs the whole hash, recording its
// state at each chunk's start; another names each chunk (SHA-256 of a
// copy): a large file is described in about the time of one SHA-256 pass.
func Build(ctx context.Context, r io.Reader, p cdc.Params) (*Manifest, resources.Hash, error) {
	if p.Max > MaxChunkLen {
		return nil, resources.Hash{}, fmt.Errorf("build manifest: chunks up to %d bytes, limit %d", p.Max, MaxChunkLen)
	}
	c, err := cdc.New(r, p)
	if err != nil {
		return nil, resources.Hash{}, fmt.Errorf("build manifest: %w", err)
	}
	n := &namer{todo: make(chan []byte, nameAhead), free: make(chan []byte, nameAhead), done: make(chan []resources.Hash, 1)}
	for range nameAhead {
		n.free <- make([]byte, 0, p.Max)
	}
	go n.run()
	m, whole, err := cut(ctx, c, n)
	close(n.todo)
	names := <-n.done
	if err != nil {
		return nil, resources.Hash{}, err
	}
	for i := range m.Chunks {
		m.Chunks[i].Hash = names[i]
	}
	return m, whole, nil
}

func cut(ctx context.Context, c *cdc.Chunker, n *namer) (*Manifest, resources.Hash, error) {
	var ch chainer
	for {
		if err := ctx.Err(); err != nil {
			return nil, resources.Hash{}, err
		}
		next, err := c.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, resources.Hash{}, fmt.Errorf("build manifest: read: %w", err)
		}
		if err := ch.add(next.Data); err != nil {
			return nil, resources.Hash{}, err
		}
		n.todo <- append(<-n.free, next.Data...)
	}
	m, whole := ch.done()
	return m, whole, nil
}

// Cut describes data cut into chunks of the given lengths, which must add
// up to len(data): its manifest, with every chunk named, and its SHA-256.
// For data already in memory; Build cuts a stream by content.
func Cut(data []byte, lengths []uint32) (*Manifest, resources.Hash, error) {
	var ch chainer
	off := 0
	for _, n := range lengths {
		if n == 0 || int(n) > len(data)-off {
			return nil, resources.Hash{}, fmt.Errorf("cut %d bytes: a chunk of %d at %d", len(data), n, off)
		}
		if err := ch.add(data[off : off+int(n)]); err != nil {
			return nil, resources.Hash{}, err
		}
		ch.m.Chunks[len(ch.m.Chunks)-1].Hash = sha256.Sum256(data[off : off+int(n)])
		off += int(n)
	}
	if off != len(data) {
		return nil, resources.Hash{}, fmt.Errorf("cut %d bytes: chunks add up to %d", len(data), off)
	}
	m, whole := ch.done()
	return m, whole, nil
}

// chainer runs a resource's whole hash over its chunks in order and
// records each chunk's hash state; chunks are left unnamed.
type chainer struct {
	m       Manifest
	d       hash.Hash
	carries []byte // every chunk's carry, in order
}

func (c *chainer) add(data []byte) error {
	if len(c.m.Chunks) == MaxChunks {
		return fmt.Errorf("build manifest: more than %d chunks", MaxChunks)
	}
	if c.d == nil {
		c.d = sha256.New()
	}
	off := c.m.Size
	var chain [32]byte
	chain, c.carries = stateAt(c.d, off, c.carries)
	c.d.Write(data)
	c.m.Chunks = append(c.m.Chunks, Chunk{Offset: off, Length: uint32(len(data)), Chain: chain})
	c.m.Size = off + uint64(len(data))
	return nil
}

// done returns the manifest and the whole hash.
func (c *chainer) done() (*Manifest, resources.Hash) {
	if c.d == nil {
		c.d = sha256.New()
	}
	// Carries are cut from one array once it stops growing.
	carries := c.carries
	for i, at := range c.m.Chunks {
		k := int(at.Offset % blockLen)
		c.m.Chunks[i].Carry = carries[:k:k]
		carries = carries[k:]
	}
	var whole resources.Hash
	c.d.Sum(whole[:0])
	return &c.m, whole
}

// nameAhead is how many chunk copies may wait to be named.
const nameAhead = 4

// namer hashes copies of chunks, in order, on its own goroutine.
type namer struct {
	todo chan []byte // copies to name, in order
	free chan []byte // copies named, to reuse
	done chan []resources.Hash
}

func (n *namer) run() {
	var names []resources.Hash
	for b := range n.todo {
		names = append(names, sha256.Sum256(b))
		n.free <- b[:0]
	}
	n.done <- names
}
