package packs

import (
	"context"
	"fmt"
	"io"
	"sync"
	"sync/atomic"

	"github.com/voxsync/voxsync/cdc"
	"github.com/voxsync/voxsync/manifest"
)

// ChunkedMin is the size above which a file's manifest is cut by content
// (cdc.Default); a file up to it is one chunk.
const ChunkedMin = manifest.MaxChunkLen

// chunkSlot holds a large file's manifest once computed.
type chunkSlot struct {
	mu sync.Mutex // guards m and changed; held while computing, so it is computed once
	m  *manifest.Manifest
	// changed: the file no longer has its indexed hash. Kept, so that
	// clients asking again do not make the server read it again; a reload
	// that sees the change gives the file a new slot.
	changed error
	// done is m once computed, for readers that must not wait.
	done atomic.Pointer[manifest.Manifest]
}

// Manifest returns the chunks e is sent in. A large file's are cut by
// content the first time they are asked for (about a second per GiB, both
// cores) and kept while the file is unchanged; if the file no longer has
// its indexed hash the error wraps ErrChanged.
func (e *Entry) Manifest(ctx context.Context) (*manifest.Manifest, error) {
	if e.cut == nil {
		return manifest.Single(uint64(e.Size), e.Hash), nil
	}
	e.cut.mu.Lock()
	defer e.cut.mu.Unlock()
	if e.cut.m != nil {
		return e.cut.m, nil
	}
	if e.cut.changed != nil {
		return nil, e.cut.changed
	}
	f, err := e.Pack.open(e.Path)
	if err != nil {
		return nil, fmt.Errorf("cut %s in pack %s: %w", e.Path, e.Pack, err)
	}
	defer f.Close()
	m, whole, err := manifest.Build(ctx, io.LimitReader(f, e.Size), cdc.Default)
	if err != nil {
		return nil, fmt.Errorf("cut %s in pack %s: %w", e.Path, e.Pack, err)
	}
	if whole != e.Hash || m.Size != uint64(e.Size) {
		e.cut.changed = fmt.Errorf("cut %s in pack %s: %w", e.Path, e.Pack, ErrChanged)
		return nil, e.cut.changed
	}
	e.cut.m = m
	e.cut.done.Store(m)
	return m, nil
}

// IsChunk reports whether [off, off+n) is exactly one chunk of e's
// manifest, without waiting for a manifest still being cut (then false).
func (e *Entry) IsChunk(off, n uint64) bool {
	if e.cut == nil {
		return off == 0 && n == uint64(e.Size)
	}
	m := e.cut.done.Load()
	if m == nil {
		return false
	}
	_, ok := m.Find(off, n)
	return ok
}

// CutAll computes the manifests of every large entry not yet cut, one at a
// time, so the first client to ask for one does not wait. It returns when
// done or when ctx is cancelled.
func (v *View) CutAll(ctx context.Context, report func(*Entry, error)) {
	for _, e := range v.Entries() {
		if ctx.Err() != nil {
			return
		}
		if e.cut == nil {
			continue
		}
		if _, err := e.Manifest(ctx); err != nil && report != nil {
			report(e, err)
		}
	}
}
