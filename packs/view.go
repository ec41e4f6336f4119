package packs

import (
	"bytes"
	"fmt"
	"io"
	"sync"

	"github.com/voxsync/voxsync/resources"
)

// Loc names a resource by type and domain:key.
type Loc = resources.Loc

// Entry is one resource as the winning pack provides it.
type Entry struct {
	Loc
	ID   resources.ResourceID
	Hash resources.Hash
	Size int64
	Pack *Pack
	Path string // slash path inside the pack, e.g. assets/default/texture/stone.png
	// data holds the bytes of small files, read once while hashing, so they
	// are served exactly as hashed without touching the disk; nil for files
	// read from disk on each request.
	data []byte
}

// Binding returns what a Bind announces for e.
func (e *Entry) Binding() resources.Binding {
	return resources.Binding{Type: e.Type, ID: e.ID, Ref: e.Ref, Hash: e.Hash, Size: uint64(e.Size)}
}

// Content is an open resource. ReadAt never reads past Size.
type Content interface {
	io.ReaderAt
	io.Closer
}

type memContent struct{ *bytes.Reader }

func (memContent) Close() error { return nil }

// Open returns the resource's bytes for reading. The caller closes it.
func (e *Entry) Open() (Content, error) {
	if e.data != nil {
		return memContent{bytes.NewReader(e.data)}, nil
	}
	f, err := e.Pack.fsys.Open(e.Path)
	if err != nil {
		return nil, fmt.Errorf("open %s in pack %s: %w", e.Path, e.Pack, err)
	}
	ra, ok := f.(Content)
	if !ok {
		f.Close()
		return nil, fmt.Errorf("open %s in pack %s: file does not support ReadAt", e.Path, e.Pack)
	}
	return ra, nil
}

// InMemory reports whether the bytes are held in memory.
func (e *Entry) InMemory() bool { return e.data != nil }

// IDs assigns each (type, domain:key) a ResourceID that stays the same for the
// server's lifetime, across reloads, so a changed file keeps its id and a
// client sees a re-Bind rather than a Lost and a new Bind.
type IDs struct {
	mu   sync.Mutex // guards next and ids
	next [resources.NumTypes]resources.ResourceID
	ids  map[Loc]resources.ResourceID
}

// NewIDs returns an empty allocator. Ids start at 1; 0 is never assigned.
func NewIDs() *IDs { return &IDs{ids: make(map[Loc]resources.ResourceID)} }

// ID returns the id of l, assigning the next free one on first sight.
func (a *IDs) ID(l Loc) resources.ResourceID {
	a.mu.Lock()
	defer a.mu.Unlock()
	if id, ok := a.ids[l]; ok {
		return id
	}
	a.next[l.Type]++
	id := a.next[l.Type]
	a.ids[l] = id
	return id
}

// View is an immutable snapshot of the layered packs. Safe for concurrent use.
type View struct {
	packs  []*Pack
	byLoc  map[Loc]*Entry
	byKey  map[resources.Key]*Entry
	byHash map[resources.Hash]*Entry
	// files remembers every hashed file, winning or shadowed, so the next
	// load can skip files whose size and mtime did not change.
	files map[fileKey]fileState
	// Problems lists the files and packs that were skipped, and why.
	Problems []Problem
}

// Lookup returns the winning entry for a type and reference.
func (v *View) Lookup(l Loc) (*Entry, bool) {
	e, ok := v.byLoc[l]
	return e, ok
}

// Get returns the entry bound to (type, id).
func (v *View) Get(k resources.Key) (*Entry, bool) {
	e, ok := v.byKey[k]
	return e, ok
}

// ByHash returns an entry whose content has hash h.
func (v *View) ByHash(h resources.Hash) (*Entry, bool) {
	e, ok := v.byHash[h]
	return e, ok
}

// Len returns the number of resources.
func (v *View) Len() int { return len(v.byLoc) }

// Entries returns every winning entry, in no particular order.
func (v *View) Entries() []*Entry {
	out := make([]*Entry, 0, len(v.byLoc))
	for _, e := range v.byLoc {
		out = append(out, e)
	}
	return out
}

// Files calls f for every file hashed into the view, shadowed ones included.
func (v *View) Files(f func(pack, path string, size, mtime int64, h resources.Hash)) {
	for k, st := range v.files {
		f(k.pack, k.path, st.size, st.mtime, st.hash)
	}
}

// Packs returns the loaded packs, lowest priority first.
func (v *View) Packs() []*Pack { return v.packs }

// TotalSize returns the summed size of all winning entries.
func (v *View) TotalSize() int64 {
	var n int64
	for _, e := range v.byLoc {
		n += e.Size
	}
	return n
}

// Close releases the pack directories. Content already opened stays readable.
func (v *View) Close() {
	for _, p := range v.packs {
		p.close()
	}
}

// Problem is a file or pack that was skipped.
type Problem struct {
	Pack   string
	Path   string
	Reason string
}

func (p Problem) String() string {
	if p.Path == "" {
		return fmt.Sprintf("pack %s: %s", p.Pack, p.Reason)
	}
	return fmt.Sprintf("pack %s: %s: %s", p.Pack, p.Path, p.Reason)
}
