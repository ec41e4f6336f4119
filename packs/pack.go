package packs

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"

	"github.com/voxsync/voxsync/configs"
)

// BuiltinPriority is the priority of the built-in pack: below any pack an
// operator configures, so every built-in resource can be overridden.
const BuiltinPriority = -1 << 20

// Meta is a pack's pack.toml.
type Meta = configs.PackFile

// Pack is one loaded pack.
type Pack struct {
	Meta
	// Dir is the directory the pack was loaded from; empty for the built-in pack.
	Dir string
	// order breaks priority ties: a pack listed later wins.
	order int
	fsys  fs.FS    // read-only view of the pack root
	root  *os.Root // nil for the built-in pack
	dirFD *os.File // the pack directory, for openat2; nil for the built-in pack
	// fdMu is held shared while dirFD's number is in use and exclusively
	// to close it: a stream that opens a file of a view being replaced
	// must never use a closed descriptor, whose number the process may
	// already have given to another file.
	fdMu   sync.RWMutex
	closed bool // guarded by fdMu
}

// ErrPackClosed: the pack belongs to a view that was replaced; the file is
// opened again through the current view.
var ErrPackClosed = errors.New("pack closed: it was reloaded")

// open opens a file of the pack for reading, never outside the pack.
func (p *Pack) open(path string) (fs.File, error) {
	p.fdMu.RLock()
	defer p.fdMu.RUnlock()
	if p.closed {
		return nil, fmt.Errorf("open %s: %w", path, ErrPackClosed)
	}
	if f, err := p.openBeneath(path); !errors.Is(err, errors.ErrUnsupported) {
		if err != nil {
			return nil, err
		}
		return f, nil
	}
	return p.fsys.Open(path)
}

func (p *Pack) String() string {
	if p.Dir == "" {
		return "builtin"
	}
	return p.Dir
}

// outranks reports whether p's files override q's.
func (p *Pack) outranks(q *Pack) bool {
	if p.Priority != q.Priority {
		return p.Priority > q.Priority
	}
	return p.order > q.order
}

// byRank orders packs lowest-ranked first, for sorting.
func byRank(p, q *Pack) int {
	switch {
	case p.outranks(q):
		return 1
	case q.outranks(p):
		return -1
	}
	return 0
}

// openDir opens a pack directory and reads its pack.toml. A pack.toml it
// cannot read or parse is an error, unless prev, the pack's settings in the
// view being replaced, is given: then the pack keeps them, and metaErr says
// why. A developer's typo saved while the server runs must not take every
// resource of the pack from every client.
//
// At the first load (no prev), a pack.toml that is TOML but has settings
// problems (an unknown setting, a value out of range) is read as far as it
// goes, and metaErr says so: the server refuses such a pack before it
// loads anything (configs.CheckPack), and a client, which picks files by
// hash, not by priority, should not lose a player's pack over it.
func openDir(dir string, order int, prev *Meta) (p *Pack, metaErr, err error) {
	p, err = openDirMeta(dir, order)
	var bad *badMeta
	switch {
	case !errors.As(err, &bad):
		return p, nil, err
	case prev != nil:
		bad.p.Meta = *prev
		return bad.p, fmt.Errorf("%w; its previous settings stay in use", bad.err), nil
	case bad.parsed != nil:
		bad.p.Meta = *bad.parsed
		if bad.p.Name == "" {
			bad.p.Name = filepath.Base(dir)
		}
		return bad.p, fmt.Errorf("%w; read as far as it goes", bad.err), nil
	}
	return nil, nil, err
}

// badMeta is an open pack whose pack.toml could not be read or parsed.
type badMeta struct {
	p      *Pack
	err    error
	parsed *Meta // what a pack.toml that is TOML said, despite problems with its settings
}

func (e *badMeta) Error() string { return e.err.Error() }

// openDirMeta opens a pack directory and reads its pack.toml: an error
// about that is a *badMeta holding the open pack.
func openDirMeta(dir string, order int) (*Pack, error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("open pack %s: %w", dir, err)
	}
	p := &Pack{Dir: dir, order: order, root: root, fsys: root.FS()}
	p.dirFD, _ = os.Open(dir) // only an optimisation; open falls back to root without it
	p.Name = filepath.Base(dir)
	data, err := fs.ReadFile(p.fsys, "pack.toml")
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return nil, p.badMeta(fmt.Errorf("read %s: %w", filepath.Join(dir, "pack.toml"), err))
	default:
		// As strict as -check-config: an unknown setting (a typo of
		// priority) or a value out of range read leniently would quietly
		// change which pack wins.
		m, ps := configs.ParsePackFile(filepath.Join(dir, "pack.toml"), data)
		if len(ps) > 0 {
			err := p.badMeta(ps)
			if ps[0].Setting != "" { // TOML, with bad settings
				err.(*badMeta).parsed = &m
			}
			return nil, err
		}
		p.Meta = m
		if p.Name == "" {
			p.Name = filepath.Base(dir)
		}
	}
	return p, nil
}

// badMeta returns err about p's pack.toml as a *badMeta, p open with the
// defaults.
func (p *Pack) badMeta(err error) error {
	p.Meta = Meta{Name: filepath.Base(p.Dir)}
	return &badMeta{p: p, err: err}
}

func (p *Pack) close() {
	p.fdMu.Lock()
	defer p.fdMu.Unlock()
	p.closed = true
	if p.root != nil {
		p.root.Close()
	}
	if p.dirFD != nil {
		p.dirFD.Close()
	}
}
