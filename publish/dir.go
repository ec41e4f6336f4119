package publish

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// tempPrefix starts the name of a file Dir is still writing. Static web
// servers commonly refuse dot files, and List never counts one.
const tempPrefix = ".voxsync-tmp-"

// staleTemp is how old a temp file must be before List removes it: one
// that old is a leftover of a publish that was killed, not one that
// another publish to the same directory is writing now.
const staleTemp = time.Hour

// Dir is a base in a local directory, for a static web server to serve.
// Every file is written to a temp file in its final directory, synced and
// renamed into place, so a file with a content name is always complete.
type Dir struct {
	root string // cleaned
	name string // as given

	mu    sync.Mutex      // guards dirty
	dirty map[string]bool // directories with entries added since the last Flush
}

var _ Target = (*Dir)(nil)

// NewDir returns the base at root, which need not exist yet.
func NewDir(root string) *Dir {
	return &Dir{root: filepath.Clean(root), name: root, dirty: map[string]bool{}}
}

func (d *Dir) String() string { return d.name }

// List also removes temp files older than staleTemp.
func (d *Dir) List(ctx context.Context) (map[string]int64, error) {
	have := map[string]int64{}
	d.removeStaleTemps(d.root)
	for _, top := range []string{objectsDir, manifestsDir} {
		subs, err := os.ReadDir(filepath.Join(d.root, top))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("list %s: %w", top, err)
		}
		for _, sub := range subs {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			if !sub.IsDir() {
				continue
			}
			dir := filepath.Join(d.root, top, sub.Name())
			files, err := os.ReadDir(dir)
			if err != nil {
				return nil, fmt.Errorf("list %s%s/: %w", top, sub.Name(), err)
			}
			for _, f := range files {
				name := top + sub.Name() + "/" + f.Name()
				if strings.HasPrefix(f.Name(), tempPrefix) {
					d.removeIfStale(filepath.Join(dir, f.Name()), f)
					continue
				}
				if !f.Type().IsRegular() || !isContentName(name) {
					continue
				}
				fi, err := f.Info()
				if err != nil {
					continue // removed since the listing: as if never there
				}
				have[name] = fi.Size()
			}
		}
	}
	return have, nil
}

func (d *Dir) removeStaleTemps(dir string) {
	files, _ := os.ReadDir(dir)
	for _, f := range files {
		if strings.HasPrefix(f.Name(), tempPrefix) {
			d.removeIfStale(filepath.Join(dir, f.Name()), f)
		}
	}
}

func (d *Dir) removeIfStale(path string, f fs.DirEntry) {
	if fi, err := f.Info(); err == nil && fi.Mode().IsRegular() && time.Since(fi.ModTime()) > staleTemp {
		os.Remove(path) // best effort: a temp file left is only ignored
	}
}

func (d *Dir) Get(ctx context.Context, name string, max int64) ([]byte, error) {
	f, err := os.Open(filepath.Join(d.root, filepath.FromSlash(name)))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("read %s: longer than %d bytes", name, max)
	}
	return b, nil
}

// Put writes data to a temp file next to name, syncs it and renames it
// into place. Files are world-readable: they are meant to be served.
func (d *Dir) Put(ctx context.Context, name string, data []byte) error {
	path := filepath.Join(d.root, filepath.FromSlash(name))
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	f, err := os.CreateTemp(dir, tempPrefix+"*")
	if err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(0o644)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("write %s: %w", name, err)
	}
	d.mu.Lock()
	// The parents too: MkdirAll may have just created dir in them.
	for p := dir; ; p = filepath.Dir(p) {
		d.dirty[p] = true
		if p == d.root || p == filepath.Dir(p) || !strings.HasPrefix(p, d.root) {
			break
		}
	}
	d.mu.Unlock()
	return nil
}

// Flush syncs every directory that got a new entry, so the renames are
// durable before the caller writes anything that says they happened.
func (d *Dir) Flush(ctx context.Context) error {
	d.mu.Lock()
	dirs := d.dirty
	d.dirty = map[string]bool{}
	d.mu.Unlock()
	for dir := range dirs {
		if err := syncDir(dir); err != nil {
			return fmt.Errorf("sync directory %s: %w", dir, err)
		}
	}
	return nil
}

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}
