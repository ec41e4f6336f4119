package packs

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"unique"

	"github.com/voxsync/voxsync/resources"
)

// Options control loading.
type Options struct {
	// Dirs are pack directories, in configuration order.
	Dirs []string
	// Builtin includes the built-in default pack at the lowest priority.
	Builtin bool
	// MaxFileSize skips larger files with a Problem. Default 1 GiB.
	MaxFileSize int64
	// MemoryMax: files up to this size are kept in memory once served.
	// Default 64 KiB; negative keeps none.
	MemoryMax int64
	// MemoryBudget caps the bytes kept in memory across all files; files
	// past it are read from disk on each request. Default 128 MiB.
	MemoryBudget int64
	// Workers hash files in parallel. Default GOMAXPROCS.
	Workers int
	// IDs assigns resource ids; pass the same allocator to every load of a
	// server so ids stay stable. Nil makes a fresh one.
	IDs *IDs
	// HashCache, if set, is asked for a file's hash before it is read, so
	// a persistent index (the client's) can skip unchanged files across
	// restarts. Read View.Files afterwards to update it.
	HashCache HashCache

	// hold, set by the Watcher, names files that are still being written:
	// they keep their previous state, or stay out if they are new.
	hold func(pack, path string) bool
	// holdOpen, set by the Watcher, also holds every new or changed file
	// that some process has open for writing (asked of the kernel, so no
	// missed event can let a half-written file through).
	holdOpen bool
}

// HashCache knows the hashes of files by pack, path, size and mtime.
type HashCache interface {
	LookupHash(pack, path string, size, mtime int64) (resources.Hash, bool)
}

func (o *Options) defaults() {
	if o.MaxFileSize <= 0 {
		o.MaxFileSize = 1 << 30
	}
	if o.MemoryMax == 0 {
		o.MemoryMax = 64 << 10
	}
	if o.MemoryBudget <= 0 {
		o.MemoryBudget = 128 << 20
	}
	if o.Workers <= 0 {
		o.Workers = runtime.GOMAXPROCS(0)
	}
	if o.IDs == nil {
		o.IDs = NewIDs()
	}
}

type fileKey struct {
	pack string // Pack.String()
	path string
}

type fileState struct {
	size  int64
	mtime int64 // UnixNano; 0 for the built-in pack, whose files never change
	hash  resources.Hash
	mem   *memSlot   // small files only
	cut   *chunkSlot // files large enough to be sent in chunks
}

type candidate struct {
	pack  *Pack
	path  string
	loc   Loc
	size  int64
	mtime int64
	state fileState
	ok    bool   // hashed successfully
	wins  bool   // served: no higher-ranked pack has a servable file here
	bad   string // why the file cannot be served now; its previous version may be
}

// Load opens the packs and builds a View. prev, if not nil, is the view
// being replaced: files whose size and mtime are unchanged since it was
// built are not read again. Problems with packs and files are in
// View.Problems; the error is only for a cancelled ctx.
func Load(ctx context.Context, opts Options, prev *View) (*View, error) {
	opts.defaults()
	v := &View{}
	if opts.Builtin {
		v.packs = append(v.packs, builtinPack())
	}
	for i, dir := range opts.Dirs {
		var prevMeta *Meta
		if prev != nil {
			for _, q := range prev.packs {
				if q.Dir == dir {
					prevMeta = &q.Meta
				}
			}
		}
		p, metaErr, err := openDir(dir, i+1, prevMeta)
		if err != nil {
			var bad *badMeta
			if errors.As(err, &bad) {
				bad.p.close()
			}
			v.Problems = append(v.Problems, Problem{Pack: dir, Reason: err.Error()})
			continue
		}
		if metaErr != nil {
			v.Problems = append(v.Problems, Problem{Pack: dir, Reason: metaErr.Error()})
		}
		v.packs = append(v.packs, p)
	}

	// Scan and hash overlap: workers hash files while the walk goes on.
	// The walk finishes long before the hashing, so the scanner then
	// layers the packs and assigns ids, leaving little for after the last
	// file is hashed, when the other core would sit idle.
	var prevFiles map[fileKey]fileState
	if prev != nil {
		prevFiles = prev.files
	}
	found := make(chan *candidate, 4096)
	var cands []*candidate
	var lay layering
	layered := make(chan struct{})
	var problemsMu sync.Mutex // guards v.Problems while workers run
	report := func(p Problem) {
		problemsMu.Lock()
		v.Problems = append(v.Problems, p)
		problemsMu.Unlock()
	}
	go func() {
		defer close(layered)
		for _, p := range v.packs {
			v.scan(p, opts.MaxFileSize, report, func(c *candidate) {
				cands = append(cands, c)
				found <- c
			})
		}
		close(found)
		lay = layer(cands, opts.IDs)
	}()
	v.held = hashAll(ctx, found, prevFiles, opts, report)
	<-layered
	if err := ctx.Err(); err != nil {
		v.Close()
		return nil, err
	}

	// The highest-ranked pack's file wins each location, unless it could
	// not be hashed; then the next one that could is served.
	entries := make([]Entry, 0, len(lay.locs))
	budget := opts.MemoryBudget
	for i, l := range lay.locs {
		c := lay.top[i]
		if !c.ok {
			if c = lay.fallback(l); c == nil {
				continue
			}
		}
		c.wins = true
		// A file over ChunkedMin is offered by manifest whether or not it
		// is also held in memory: a single chunk of it would be over the
		// protocol's chunk cap.
		if c.state.cut == nil && c.state.size > ChunkedMin {
			c.state.cut = &chunkSlot{}
		}
		switch {
		case opts.MemoryMax < 0 || c.state.size > opts.MemoryMax:
			c.state.mem = nil
		case c.state.mem == nil:
			c.state.mem = &memSlot{}
		default:
			if d := c.state.mem.data.Load(); d != nil {
				budget -= int64(len(*d)) // carried over from the previous view
			}
		}
		entries = append(entries, Entry{Loc: l, ID: lay.ids[i], Hash: c.state.hash, Content: unique.Make(c.state.hash), Size: c.state.size, Pack: c.pack, Path: c.path, mtime: c.state.mtime, mem: c.state.mem, cut: c.state.cut, view: v})
	}
	v.memBudget.Store(budget)
	// The indexes are independent: build them on both cores.
	var wg sync.WaitGroup
	wg.Go(func() {
		v.files = make(map[fileKey]fileState, len(cands))
		for _, c := range cands {
			if !c.ok {
				continue
			}
			if !c.wins {
				c.state.mem = nil // shadowed files are never served
			}
			v.files[fileKey{c.pack.String(), c.path}] = c.state
		}
	})
	v.byLoc = make(map[Loc]*Entry, len(entries))
	v.byKey = make(map[resources.Key]*Entry, len(entries))
	v.byHash = make(map[resources.Hash]*Entry, len(entries))
	for i := range entries {
		e := &entries[i]
		v.byLoc[e.Loc] = e
		v.byKey[resources.Key{Type: e.Type, ID: e.ID}] = e
		if first, ok := v.byHash[e.Hash]; !ok {
			v.byHash[e.Hash] = e
		} else {
			if v.dupKeys == nil {
				v.dupKeys = make(map[resources.Hash][]resources.Key)
			}
			if len(v.dupKeys[e.Hash]) == 0 {
				v.dupKeys[e.Hash] = []resources.Key{{Type: first.Type, ID: first.ID}}
			}
			v.dupKeys[e.Hash] = append(v.dupKeys[e.Hash], resources.Key{Type: e.Type, ID: e.ID})
		}
	}
	wg.Wait()
	slices.SortStableFunc(v.packs, byRank)
	return v, nil
}

// layering is each location's candidates ranked by pack, with ids
// assigned in a fixed order so the same packs give the same ids on every
// start.
type layering struct {
	locs []Loc                  // sorted by type, domain, key
	ids  []resources.ResourceID // ids[i] is the id of locs[i]
	top  []*candidate           // top[i] is the highest-ranked file at locs[i]
	// others are the lower-ranked files of the few locations that more
	// than one pack has, best first.
	others map[Loc][]*candidate
}

// layer ranks cands by location. It reads only what the scan set, so it
// runs while the files are still being hashed.
func layer(cands []*candidate, ids *IDs) layering {
	top := make(map[Loc]*candidate, len(cands))
	var lay layering
	for _, c := range cands {
		w, ok := top[c.loc]
		switch {
		case !ok:
			top[c.loc] = c
			continue
		case c.pack.outranks(w.pack):
			top[c.loc], c = c, w
		}
		if lay.others == nil {
			lay.others = make(map[Loc][]*candidate)
		}
		lay.others[c.loc] = append(lay.others[c.loc], c)
	}
	for _, o := range lay.others {
		slices.SortStableFunc(o, func(a, b *candidate) int { return byRank(b.pack, a.pack) }) // best first
	}
	lay.locs = make([]Loc, 0, len(top))
	for l := range top {
		lay.locs = append(lay.locs, l)
	}
	slices.SortFunc(lay.locs, func(a, b Loc) int {
		if a.Type != b.Type {
			return int(a.Type) - int(b.Type)
		}
		if c := strings.Compare(a.Ref.Domain, b.Ref.Domain); c != 0 {
			return c
		}
		return strings.Compare(a.Ref.Key, b.Ref.Key)
	})
	lay.top = make([]*candidate, len(lay.locs))
	for i, l := range lay.locs {
		lay.top[i] = top[l]
	}
	lay.ids = ids.assign(lay.locs)
	return lay
}

// fallback is the best file at l that could be hashed after the top one,
// or nil.
func (lay *layering) fallback(l Loc) *candidate {
	for _, c := range lay.others[l] {
		if c.ok {
			return c
		}
	}
	return nil
}

// isScratch reports names that editors and tools create next to the real
// file (hidden files, backups, swap and temp files): not resources, and not
// worth a Problem.
func isScratch(name string) bool {
	return strings.HasPrefix(name, ".") || strings.HasSuffix(name, "~") ||
		strings.HasSuffix(name, ".tmp") || strings.HasSuffix(name, ".swp") ||
		strings.HasSuffix(name, ".part")
}

// scan walks a pack, passing each candidate file to emit and each file it
// skips to report.
func (v *View) scan(p *Pack, maxSize int64, report func(Problem), emit func(*candidate)) {
	problem := func(path, reason string) {
		report(Problem{Pack: p.String(), Path: path, Reason: reason})
	}
	err := fs.WalkDir(p.fsys, "assets", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if path == "assets" && errors.Is(err, fs.ErrNotExist) {
				return fs.SkipAll // a pack with no assets is empty, not broken
			}
			problem(path, "unreadable: "+err.Error())
			if d != nil && d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		if d.IsDir() {
			if path != "assets" && strings.HasPrefix(d.Name(), ".") {
				return fs.SkipDir
			}
			return nil
		}
		if isScratch(d.Name()) {
			return nil
		}
		loc, err := parsePath(path)
		if err != nil {
			problem(path, err.Error())
			return nil
		}
		// From here on the name is valid: a file that cannot be served now
		// is passed on marked bad, so a version served before stays.
		broken := func(reason string) { emit(&candidate{pack: p, path: path, loc: loc, bad: reason}) }
		var fi fs.FileInfo
		if d.Type()&fs.ModeSymlink != 0 {
			// Stat follows the link inside the root and fails if it leaves it.
			fi, err = p.root.Stat(path)
			if err != nil {
				broken("symlink leaves the pack or is broken: " + err.Error())
				return nil
			}
			if fi.IsDir() {
				broken("symlink to a directory is not followed")
				return nil
			}
		} else {
			fi, err = d.Info()
			if err != nil {
				broken("unreadable: " + err.Error())
				return nil
			}
		}
		if !fi.Mode().IsRegular() {
			broken("not a regular file")
			return nil
		}
		if fi.Size() > maxSize {
			broken(fmt.Sprintf("%d bytes, over the limit of %d (max_file_size)", fi.Size(), maxSize))
			return nil
		}
		c := &candidate{pack: p, path: path, loc: loc, size: fi.Size()}
		if p.root != nil {
			c.mtime = fi.ModTime().UnixNano()
		}
		emit(c)
		return nil
	})
	if err != nil {
		problem("assets", "unreadable: "+err.Error())
	}
}

// parsePath turns assets/<domain>/<type>/<key> into a Loc.
func parsePath(path string) (Loc, error) {
	// Cut, not Split: this runs once per file at startup.
	rest, ok := strings.CutPrefix(path, "assets/")
	domain, rest, ok2 := strings.Cut(rest, "/")
	typeName, key, ok3 := strings.Cut(rest, "/")
	if !ok || !ok2 || !ok3 {
		return Loc{}, errors.New("not at assets/<domain>/<type>/<key>")
	}
	typ, err := resources.ParseType(typeName)
	if err != nil {
		return Loc{}, fmt.Errorf("folder %q is not one of the asset types (nodestate, particle, animation, model, texture, sound, font)", typeName)
	}
	ref := resources.Ref{Domain: domain, Key: key}
	if err := ref.Validate(); err != nil {
		return Loc{}, err
	}
	return Loc{Type: typ, Ref: ref}, nil
}

// hashAll hashes candidates from found in parallel, reusing prev or the
// HashCache where size and mtime match, and reports unreadable files. It
// drains found even when ctx is cancelled, so the scanner never blocks.
func hashAll(ctx context.Context, found <-chan *candidate, prev map[fileKey]fileState, opts Options, report func(Problem)) (held int) {
	var heldOpen atomic.Int64
	var wg sync.WaitGroup
	for range opts.Workers {
		wg.Go(func() {
			buf := make([]byte, 256<<10)
			h := sha256.New()
			for c := range found {
				if ctx.Err() != nil {
					continue
				}
				st, known := prev[fileKey{c.pack.String(), c.path}]
				if c.bad != "" {
					c.state, c.ok = st, known
					if known {
						c.bad += "; still serving the previous version"
					}
					report(Problem{Pack: c.pack.String(), Path: c.path, Reason: c.bad})
					continue
				}
				if opts.hold != nil && c.pack.root != nil && opts.hold(c.pack.Dir, c.path) {
					c.state, c.ok = st, known // not ok: a new file not yet complete stays out
					continue
				}
				if known && st.size == c.size && st.mtime == c.mtime {
					c.state, c.ok = st, true
					continue
				}
				if opts.holdOpen && c.pack.root != nil {
					if writing, err := openForWriting(filepath.Join(c.pack.Dir, filepath.FromSlash(c.path))); err == nil && writing {
						c.state, c.ok = st, known
						heldOpen.Add(1)
						continue
					}
				}
				if opts.HashCache != nil && c.mtime != 0 {
					if h, ok := opts.HashCache.LookupHash(c.pack.String(), c.path, c.size, c.mtime); ok {
						c.state, c.ok = fileState{size: c.size, mtime: c.mtime, hash: h}, true
						continue
					}
				}
				err := hashOne(c, h, buf)
				if errors.Is(err, errChangedWhileRead) && opts.holdOpen {
					c.state, c.ok = st, known
					heldOpen.Add(1) // as if still open: the watcher looks again soon
					continue
				}
				if err != nil {
					reason := err.Error()
					if known {
						c.state, c.ok = st, true
						reason += "; still serving the previous version"
					}
					report(Problem{Pack: c.pack.String(), Path: c.path, Reason: reason})
				}
			}
		})
	}
	wg.Wait()
	return int(heldOpen.Load())
}

// stamp is what says a file changed: its size and modification time.
type stamp struct{ size, mtime int64 }

// errChangedWhileRead: the file kept changing over several reads; a
// reload holds it at its previous version (or out) and tries again.
var errChangedWhileRead = errors.New("changed while being read")

// hashAs hashes the file's listed size with h and returns how many bytes
// it read and the file's size and mtime after the read.
func hashAs(c *candidate, h hash.Hash, buf []byte) (int64, stamp, error) {
	h.Reset()
	n, after, err := c.pack.hashBeneath(c.path, c.size, h, buf)
	if errors.Is(err, errors.ErrUnsupported) {
		var f fs.File
		if f, err = c.pack.open(c.path); err == nil {
			n, err = io.CopyBuffer(h, io.LimitReader(f, c.size), buf)
			if fi, serr := f.Stat(); err == nil && serr == nil {
				after = stamp{size: fi.Size(), mtime: fi.ModTime().UnixNano()}
			}
			f.Close()
		}
	}
	return n, after, err
}

// hashOne hashes a file's listed size with h through buf. Startup only
// hashes: small files are read into memory when first served (Entry.Open),
// so a server with more content than memory budget starts as fast as any.
// Reading exactly the listed size saves the read that finds EOF.
func hashOne(c *candidate, h hash.Hash, buf []byte) error {
	// A file written to since it was listed (a writer quick enough to
	// finish before the open-for-writing check, or a touch) is read again
	// as it is now, a few times: what was read may be a mix of versions, or
	// a truncated file's nothing.
	var n int64
	for try := 1; ; try++ {
		var after stamp
		var err error
		n, after, err = hashAs(c, h, buf)
		if err != nil {
			return fmt.Errorf("unreadable: %w", err)
		}
		if n == c.size && (c.pack.root == nil || after == (stamp{size: c.size, mtime: c.mtime})) { // built-in packs never change
			break
		}
		if try == 3 || after == (stamp{}) {
			return errChangedWhileRead
		}
		c.size, c.mtime = after.size, after.mtime
	}
	var sum resources.Hash
	h.Sum(sum[:0])
	c.state = fileState{size: n, mtime: c.mtime, hash: sum}
	c.ok = true
	return nil
}
