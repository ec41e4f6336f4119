package packs

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"unique"

	"github.com/voxsync/voxsync/resources"
)

// Loc names a resource by type and domain:key.
type Loc = resources.Loc

// Entry is one resource as the winning pack provides it.
type Entry struct {
	Loc
	ID   resources.ResourceID
	Hash resources.Hash
	// Content is Hash interned: one pointer-sized handle per distinct
	// content, the same across views. Sessions keep it to remember what a
	// client was told without holding on to (and so keeping alive) the
	// view the entry belongs to.
	Content unique.Handle[resources.Hash]
	Size    int64
	Pack    *Pack
	Path    string // slash path inside the pack, e.g. assets/default/texture/stone.png
	mtime   int64  // when indexed (UnixNano); 0 for files that never change
	// mem holds the bytes of a small file once it has been served, so
	// later requests do not touch the disk; nil for files always read from
	// disk. Shared with the next view while the file is unchanged.
	mem *memSlot
	// cut is the manifest of a large file, computed once when first asked
	// for and shared with the next view while the file is unchanged; nil
	// for files small enough to send as one chunk.
	cut  *chunkSlot
	view *View
}

// memSlot is a small file's bytes, loaded on first use and verified
// against the file's hash when loaded.
type memSlot struct{ data atomic.Pointer[[]byte] }

// ErrChanged: a file no longer has the hash it was indexed with; the next
// reload will pick up the new version.
var ErrChanged = errors.New("file changed since it was hashed")

// View returns the view e belongs to.
func (e *Entry) View() *View { return e.view }

// Key returns e's (type, id).
func (e *Entry) Key() resources.Key { return resources.Key{Type: e.Type, ID: e.ID} }

// Binding returns what a Bind announces for e.
func (e *Entry) Binding() resources.Binding {
	return resources.Binding{Type: e.Type, ID: e.ID, Ref: e.Ref, Hash: e.Hash, Size: uint64(e.Size)}
}

// Content is an open resource. ReadAt never reads past Size.
type Content interface {
	io.ReaderAt
	io.Closer
}

type memContent struct {
	*bytes.Reader
	b []byte
}

func (memContent) Close() error { return nil }

// Bytes returns the bytes of content held in memory, so they can be sent
// without a copy per reader, or nil for content read from a file. The
// caller must not modify them.
func Bytes(c Content) []byte {
	if m, ok := c.(memContent); ok {
		return m.b
	}
	return nil
}

// Open returns the resource's bytes for reading. The caller closes it.
// A small file is read into memory the first time, within the view's
// memory budget, and only if its bytes still have the indexed hash.
func (e *Entry) Open() (Content, error) {
	if e.mem != nil {
		if d := e.mem.data.Load(); d != nil {
			return memContent{bytes.NewReader(*d), *d}, nil
		}
		if e.view.memBudget.Add(-e.Size) >= 0 {
			data, err := e.load()
			if err != nil {
				e.view.memBudget.Add(e.Size)
				return nil, err
			}
			if !e.mem.data.CompareAndSwap(nil, &data) {
				e.view.memBudget.Add(e.Size) // another request loaded it first
			}
			return memContent{bytes.NewReader(data), data}, nil
		}
		e.view.memBudget.Add(e.Size)
	}
	f, err := e.Pack.open(e.Path)
	if err != nil {
		return nil, fmt.Errorf("open %s in pack %s: %w", e.Path, e.Pack, err)
	}
	// A file rewritten in place since it was indexed no longer has the
	// indexed hash: serving it would send every client bytes that fail
	// verification until the next reload. One fstat tells.
	if e.mtime != 0 {
		if fi, err := f.Stat(); err == nil && (fi.Size() != e.Size || fi.ModTime().UnixNano() != e.mtime) {
			f.Close()
			return nil, fmt.Errorf("open %s in pack %s: %w", e.Path, e.Pack, ErrChanged)
		}
	}
	ra, ok := f.(Content)
	if !ok {
		f.Close()
		return nil, fmt.Errorf("open %s in pack %s: file does not support ReadAt", e.Path, e.Pack)
	}
	return ra, nil
}

func (e *Entry) load() ([]byte, error) {
	f, err := e.Pack.open(e.Path)
	if err != nil {
		return nil, fmt.Errorf("open %s in pack %s: %w", e.Path, e.Pack, err)
	}
	defer f.Close()
	data := make([]byte, e.Size)
	if _, err := io.ReadFull(f, data); err != nil {
		return nil, fmt.Errorf("read %s in pack %s: %w", e.Path, e.Pack, err)
	}
	if resources.Sum(data) != e.Hash {
		return nil, fmt.Errorf("read %s in pack %s: %w", e.Path, e.Pack, ErrChanged)
	}
	return data, nil
}

// InMemory reports whether the bytes are held in memory.
func (e *Entry) InMemory() bool { return e.mem != nil && e.mem.data.Load() != nil }

// IDs assigns each (type, domain:key) a ResourceID. An id is derived from
// the name (FNV-1a of type, domain and key), so it is the same across
// reloads and across server restarts whatever else the packs hold: a client
// that reconnects to a restarted server sees the same ids for the same
// names. Two names whose hashes collide get the next free id, in the order
// they are first seen; only then can an id differ between runs.
type IDs struct {
	mu    sync.Mutex // guards ids and taken
	ids   map[Loc]resources.ResourceID
	taken map[resources.Key]bool
}

// NewIDs returns an empty allocator. 0 is never assigned.
func NewIDs() *IDs {
	return &IDs{ids: make(map[Loc]resources.ResourceID), taken: make(map[resources.Key]bool)}
}

// ID returns the id of l, assigning it on first sight.
func (a *IDs) ID(l Loc) resources.ResourceID {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.idLocked(l)
}

// assign returns the ids of locs, assigning new ones in order, under one
// lock: a first load assigns thousands at once.
func (a *IDs) assign(locs []Loc) []resources.ResourceID {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.ids) == 0 {
		a.ids = make(map[Loc]resources.ResourceID, len(locs))
		a.taken = make(map[resources.Key]bool, len(locs))
	}
	out := make([]resources.ResourceID, len(locs))
	for i, l := range locs {
		out[i] = a.idLocked(l)
	}
	return out
}

func (a *IDs) idLocked(l Loc) resources.ResourceID {
	if id, ok := a.ids[l]; ok {
		return id
	}
	id := nameID(l)
	for id == 0 || a.taken[resources.Key{Type: l.Type, ID: id}] {
		id++
	}
	a.ids[l] = id
	a.taken[resources.Key{Type: l.Type, ID: id}] = true
	return id
}

// nameID is 32-bit FNV-1a over the type byte, the domain, a 0 byte and the
// key (names cannot contain 0 bytes, so the split is unambiguous).
func nameID(l Loc) resources.ResourceID {
	const offset, prime = 2166136261, 16777619
	h := uint32(offset)
	mix := func(b byte) { h = (h ^ uint32(b)) * prime }
	mix(byte(l.Type))
	for i := 0; i < len(l.Ref.Domain); i++ {
		mix(l.Ref.Domain[i])
	}
	mix(0)
	for i := 0; i < len(l.Ref.Key); i++ {
		mix(l.Ref.Key[i])
	}
	return resources.ResourceID(h)
}

// View is an immutable snapshot of the layered packs. Safe for concurrent use.
type View struct {
	packs  []*Pack
	byLoc  map[Loc]*Entry
	byKey  map[resources.Key]*Entry
	byHash map[resources.Hash]*Entry
	// dupKeys lists, for hashes that more than one resource has, all the
	// keys with that hash (rare: identical files under two names).
	dupKeys map[resources.Hash][]resources.Key
	// files remembers every hashed file, winning or shadowed, so the next
	// load can skip files whose size and mtime did not change.
	files map[fileKey]fileState
	// held counts files left at their previous version (or out) because
	// they were still open for writing.
	held int
	// memBudget is what is left of Options.MemoryBudget for small files.
	memBudget atomic.Int64
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

// KeysWithHash returns the keys of every resource whose content has hash h.
func (v *View) KeysWithHash(h resources.Hash) []resources.Key {
	if ks, ok := v.dupKeys[h]; ok {
		return ks
	}
	if e, ok := v.byHash[h]; ok {
		return []resources.Key{{Type: e.Type, ID: e.ID}}
	}
	return nil
}

// ChangedFrom returns the keys whose content differs between old and v:
// added, removed, or bound to another hash. A reload costs sessions in
// proportion to these, not to everything loaded.
func (v *View) ChangedFrom(old *View) []resources.Key {
	var out []resources.Key
	for k, e := range v.byKey {
		if o, ok := old.byKey[k]; !ok || o.Hash != e.Hash {
			out = append(out, k)
		}
	}
	for k := range old.byKey {
		if _, ok := v.byKey[k]; !ok {
			out = append(out, k)
		}
	}
	return out
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

// Summary is a log message for p: about a file of a pack, or about the
// pack itself (Path empty), such as its pack.toml.
func (p Problem) Summary() string {
	if p.Path == "" {
		return "pack problem"
	}
	return "skipped pack file"
}

func (p Problem) String() string {
	if p.Path == "" {
		return fmt.Sprintf("pack %s: %s", p.Pack, p.Reason)
	}
	return fmt.Sprintf("pack %s: %s: %s", p.Pack, p.Path, p.Reason)
}
