package packs

import (
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"
)

// WatchOptions configure a Watcher.
type WatchOptions struct {
	// Load is how views are built; the same Options the first view used.
	Load Options
	// Debounce is the quiet period after the last event before a reload.
	// Default 100 ms.
	Debounce time.Duration
	// A file written to since the last reload is held back (its previous
	// version, or its absence, stays in service) while any process still
	// has it open for writing, so a file being copied in slowly is never
	// announced half-written. Where that cannot be asked (Linux leases
	// need the file's owner or CAP_LEASE), files of LargeFile bytes or
	// more (default 1 MiB) are held until they had no write for Settle
	// (default 1 s).
	Settle    time.Duration
	LargeFile int64
	Logger    *slog.Logger
	// Apply receives each new view; it takes ownership of it.
	Apply func(*View)

	quiet time.Duration // tests: atomicQuiet
}

// Atomic changes — a few files renamed into place or created, with no
// writes to, removals or renames of real (non-scratch) files — are
// complete when the event arrives: such a batch waits only atomicQuiet,
// and if it starts, after atomicQuiet without events, with a resource's
// file renamed over, only leadGrace (a lone save). Anything else waits
// the configured Debounce, which coalesces bursts such as a checkout. A
// file created and still being written is safe either way: Load holds
// files open for writing, and reads again one that changed while read.
const (
	atomicQuiet    = 20 * time.Millisecond
	atomicMaxPaths = 16
	// leadGrace is how long a lone save waits for company: a tool that
	// goes on to change other files (a script's next command, an editor's
	// "save all", a build writing its outputs) does so within it, and its
	// events turn the batch into an ordinary one, coalesced as before,
	// rather than have a reload scan the packs mid-change.
	leadGrace = 5 * time.Millisecond
)

// maxDirty bounds the changed paths counted between reloads. Every reload
// rescans the packs, so the set only sizes the batch (for atomicMaxPaths
// and the log); past the cap nothing more is remembered.
const maxDirty = 65536

// Watcher rebuilds the view when pack directories change: it watches every
// directory of every pack (and each pack's parent, to see a pack directory
// appear or disappear), waits for a quiet period, builds the new view from
// the old one (unchanged files are not read again) and hands it to Apply.
// A reload that fails keeps the old view.
type Watcher struct {
	opts WatchOptions
	log  *slog.Logger
	fsw  *fsnotify.Watcher

	cancel context.CancelFunc
	done   chan struct{}

	mu      sync.Mutex // guards current, reloads
	current *View
	reloads int
}

// NewWatcher starts watching. current is the view in service now; the
// Watcher keeps it as the base of the next build (it never closes it;
// whoever Apply hands views to does).
func NewWatcher(current *View, opts WatchOptions) (*Watcher, error) {
	if opts.Debounce <= 0 {
		opts.Debounce = 100 * time.Millisecond
	}
	if opts.Settle <= 0 {
		opts.Settle = time.Second
	}
	if opts.LargeFile <= 0 {
		opts.LargeFile = 1 << 20
	}
	if opts.quiet <= 0 {
		opts.quiet = atomicQuiet
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	opts.Load.defaults()
	fsw, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	w := &Watcher{opts: opts, log: opts.Logger, fsw: fsw, cancel: cancel, done: make(chan struct{}), current: current}
	for _, dir := range opts.Load.Dirs {
		w.watchParent(dir)
		w.watchTree(dir)
	}
	go w.run(ctx)
	return w, nil
}

// Close stops watching and waits for a reload in progress.
func (w *Watcher) Close() error {
	w.cancel()
	err := w.fsw.Close()
	<-w.done
	return err
}

// Reloads returns how many reloads have been applied.
func (w *Watcher) Reloads() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.reloads
}

// watchParent watches the directory holding a pack, to notice the pack
// directory itself being created, removed or renamed.
func (w *Watcher) watchParent(dir string) {
	parent := filepath.Dir(filepath.Clean(dir))
	if err := w.fsw.Add(parent); err != nil {
		w.log.Warn("cannot watch pack parent directory", "dir", parent, "err", err)
	}
}

// watchTree adds a watch on dir and every directory below it. dir itself
// may be a symlink (a pack switched between releases with ln -s and mv):
// its target is walked, and watched under dir's name, so that events are
// named as the pack is. Symlinks below it are not followed, as Load
// does not follow them.
func (w *Watcher) watchTree(dir string) {
	root := dir
	if real, err := filepath.EvalSymlinks(dir); err == nil {
		root = real
	}
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return nil
		}
		name := dir
		if rel, err := filepath.Rel(root, p); err == nil && rel != "." {
			name = filepath.Join(dir, rel)
		}
		if err := w.fsw.Add(name); err != nil && !errors.Is(err, fs.ErrNotExist) {
			w.log.Warn("cannot watch directory", "dir", name, "err", err)
		}
		return nil
	})
}

// packOf returns the pack directory containing path, or "".
func (w *Watcher) packOf(path string) string {
	for _, dir := range w.opts.Load.Dirs {
		// Rel, not a prefix test: events are named as fsnotify joins
		// them, cleaned, so a pack "." has events named "assets/...".
		d := filepath.Clean(dir)
		if rel, err := filepath.Rel(d, path); err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
			return d
		}
	}
	return ""
}

// run owns the debounce timer and the dirty set.
func (w *Watcher) run(ctx context.Context) {
	defer close(w.done)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	dirty := make(map[string]struct{}) // paths changed since the last reload
	lastWrite := make(map[string]time.Time)
	atomic := true           // the batch so far is only renames, creates and removes
	realSeen := false        // the batch has an event on a real (non-scratch) file
	var quietSince time.Time // last event on a real file, or last reload
	for {
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case ev, ok := <-w.fsw.Events:
			if !ok {
				return
			}
			path := filepath.Clean(ev.Name)
			if w.packOf(path) == "" {
				continue // a sibling of a pack in its parent directory
			}
			if ev.Has(fsnotify.Create) {
				stat := os.Lstat
				if w.packOf(path) == path {
					stat = os.Stat // a pack's own directory may be a symlink
				}
				if fi, err := stat(path); err == nil && fi.IsDir() {
					// New directories (and what was created in them before
					// the watch existed) are found by the reload's walk.
					w.watchTree(path)
				}
			}
			if len(dirty) < maxDirty {
				dirty[path] = struct{}{}
			}
			if ev.Has(fsnotify.Write) {
				lastWrite[path] = time.Now()
			}
			scratch := isScratch(filepath.Base(path))
			// A write to a real file may go on; a removal may be the first
			// half of delete-then-create. Scratch names do not count.
			if ev.Has(fsnotify.Write|fsnotify.Remove|fsnotify.Rename) && !scratch {
				atomic = false
			}
			if len(dirty) > atomicMaxPaths {
				atomic = false
			}
			// A resource's file replaced by a rename after a quiet spell
			// is, as far as anyone can tell, a lone save: reload after
			// leadGrace rather than the quiet period (the developer waits
			// that long on every save). Any event within leadGrace makes it
			// an ordinary batch; what follows later is coalesced into one
			// more reload. A file written while a reload reads it is read
			// again (Load checks it did not change while read). A new
			// name is not a save: editors create probe and temp files (vim's
			// 4913, JetBrains' *___jb_tmp___) that would be announced as
			// resources, and a new file has no client waiting for it.
			lead := atomic && !realSeen && !scratch && ev.Has(fsnotify.Create) &&
				time.Since(quietSince) >= w.opts.quiet && w.serves(path)
			if !scratch {
				realSeen, quietSince = true, time.Now()
			}
			switch {
			case lead:
				timer.Reset(leadGrace)
			case atomic:
				timer.Reset(min(w.opts.quiet, w.opts.Debounce))
			default:
				timer.Reset(w.opts.Debounce)
			}
		case err, ok := <-w.fsw.Errors:
			if !ok {
				return
			}
			// An overflowed event queue loses events; the reload rescans
			// everything, it only must not take the short wait.
			w.log.Warn("file watcher error; reloading packs", "err", err)
			atomic = false
			timer.Reset(w.opts.Debounce)
		case <-timer.C:
			held := w.unsettled(lastWrite)
			n, stillOpen := w.reload(ctx, held)
			if n >= 0 {
				// Counted from the views, not the events: a file held back
				// while written is applied on a later tick, with no event.
				// The server logs what changed, by name; this says what the
				// watcher saw.
				lvl := slog.LevelDebug
				if len(held)+stillOpen > 0 {
					lvl = slog.LevelInfo
				}
				w.log.Log(ctx, lvl, "pack files rescanned", "changed_resources", n, "held_back_while_written", len(held)+stillOpen)
			} else if len(held)+stillOpen > 0 {
				w.log.Debug("files still being written; holding them back", "files", len(held)+stillOpen)
			}
			clear(dirty)
			atomic, realSeen, quietSince = true, false, time.Now()
			for p := range lastWrite {
				if !held[p] {
					delete(lastWrite, p)
				}
			}
			if len(held)+stillOpen > 0 {
				// A writer's close makes no event: look again soon.
				timer.Reset(w.opts.Debounce)
			}
		}
	}
}

// unsettled returns, where the kernel cannot be asked whether a file is
// open for writing, the large files written within the settle window.
// (Where it can, Load asks it about every changed file.)
func (w *Watcher) unsettled(lastWrite map[string]time.Time) map[string]bool {
	held := make(map[string]bool)
	for p, t := range lastWrite {
		if _, err := openForWriting(p); !errors.Is(err, errors.ErrUnsupported) {
			continue
		}
		if time.Since(t) < w.opts.Settle {
			if fi, err := os.Stat(p); err == nil && fi.Size() >= w.opts.LargeFile {
				held[p] = true
			}
		}
	}
	return held
}

// serves reports whether path is a resource's file in the view in service.
func (w *Watcher) serves(path string) bool {
	rel, err := filepath.Rel(w.packOf(path), path)
	if err != nil {
		return false
	}
	loc, err := parsePath(filepath.ToSlash(rel))
	if err != nil {
		return false
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	_, ok := w.current.Lookup(loc)
	return ok
}

// reload builds a view from the current one and applies it. It returns how
// many resources changed (added, removed or re-hashed), or -1 if nothing
// was applied, and how many files were held back because they are still
// open for writing.
func (w *Watcher) reload(ctx context.Context, held map[string]bool) (int, int) {
	w.mu.Lock()
	prev := w.current
	w.mu.Unlock()
	opts := w.opts.Load
	opts.holdOpen = true
	if len(held) > 0 {
		opts.hold = func(pack, rel string) bool { return held[filepath.Join(pack, filepath.FromSlash(rel))] }
	}
	start := time.Now()
	v, err := Load(ctx, opts, prev)
	if err != nil {
		w.log.Error("pack reload failed; still serving the previous packs", "err", err)
		return -1, 0
	}
	newProblems(prev, v, w.log)
	if sameContent(prev, v) && samePacks(prev, v) && len(prev.Problems) == len(v.Problems) {
		// Scratch files, a held file's writes, a touch: nothing to tell
		// clients. The next build still starts from prev.
		v.Close()
		return -1, v.held
	}
	changed := len(v.ChangedFrom(prev)) // before Apply, which may close prev
	w.mu.Lock()
	w.current = v
	w.reloads++
	w.mu.Unlock()
	w.opts.Apply(v)
	w.log.Debug("pack view rebuilt", "took", time.Since(start))
	return changed, v.held
}

// sameContent reports whether two views serve the same hash at every
// location.
func sameContent(a, b *View) bool {
	if len(a.byLoc) != len(b.byLoc) {
		return false
	}
	for l, e := range a.byLoc {
		if f, ok := b.byLoc[l]; !ok || f.Hash != e.Hash {
			return false
		}
	}
	return true
}

// samePacks reports whether two views have the same packs with the same
// settings. A pack.toml edit that changes no served file (a new name, a
// priority that reorders no file) is still applied: the status page shows
// the settings in force, and a later edit must not surprise.
func samePacks(a, b *View) bool {
	return slices.EqualFunc(a.packs, b.packs, func(p, q *Pack) bool { return p.Dir == q.Dir && p.Meta == q.Meta })
}

// newProblems logs the problems of v that prev did not have, so a broken
// file is reported once, not on every reload.
func newProblems(prev, v *View, log *slog.Logger) {
	old := make(map[Problem]bool, len(prev.Problems))
	for _, p := range prev.Problems {
		old[p] = true
	}
	for _, p := range v.Problems {
		if !old[p] {
			log.Warn(p.Summary(), "pack", p.Pack, "path", p.Path, "reason", p.Reason)
		}
	}
}
