package assetsmgr

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"fmt"
	"hash"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/voxsync/voxsync/packs"
	"github.com/voxsync/voxsync/resources"
	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

// DefaultInlineMax is the largest blob stored in sqlite rather than as a
// file; docs/benchmarks.md has the measurement behind it.
const DefaultInlineMax = 64 << 10

// Options configure a Cache.
type Options struct {
	// Dir is the cache directory (the client's default is ./Cache).
	Dir string
	// Packs are the client's local resource pack directories.
	Packs []string
	// InlineMax: blobs up to this size go in sqlite. Default DefaultInlineMax.
	InlineMax int64
	// MaxBytes caps the inline and blob tiers together; Trim evicts the
	// least recently used blobs past it. Default DefaultMaxBytes; negative
	// means no cap.
	MaxBytes int64
	Logger   *slog.Logger
	Now      func() time.Time
}

// Cache is the client's three-tier resource cache. Safe for concurrent use.
type Cache struct {
	dir       string
	db        *sql.DB
	log       *slog.Logger
	inlineMax int64
	maxBytes  int64
	store     *store
	held      *heldSet // rules out misses without a query
	tiers     []Tier
	files     *fileTier // the last of tiers, behind held
	packs     *packs.View
	now       func() time.Time
	stmts     *stmtCache
	lock      *dirLock
	closeOnce sync.Once

	damagedOnce sync.Once // markDamaged logs and writes its marker once

	namesMu sync.Mutex // guards named
	named   map[blobName]bool

	partialsMu sync.Mutex                  // guards partials
	partials   map[resources.Hash]*Partial // open partials; nil: claimed (opening, or being removed)
	// partialFlushed, if set (tests, before OpenPartial), is called after
	// each durability flush of a partial with its recorded chunk count.
	partialFlushed func(h resources.Hash, durable int)

	opened OpenReport

	corrupt corruptHooks // see OnCorrupt
	room    room         // see Keep
}

// Open opens (creating if needed) the cache in opts.Dir and indexes the
// local packs, hashing only files the index has not seen at this size and
// mtime. It fails at once with an *InUseError (ErrInUse) if another process
// has the cache open, and with ErrNotWritable or ErrDiskFull, explained,
// for those conditions. It repairs what it finds (see the package comment
// and Opened): a damaged database is moved aside and rebuilt, verified
// blob files without a row are adopted, temp files of a dead process are
// removed.
func Open(ctx context.Context, opts Options) (*Cache, error) {
	if opts.InlineMax <= 0 {
		opts.InlineMax = DefaultInlineMax
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.MaxBytes == 0 {
		opts.MaxBytes = DefaultMaxBytes
	}
	if fi, err := os.Stat(opts.Dir); err == nil && !fi.IsDir() {
		// MkdirAll would say "not a directory" about a path under it.
		return nil, fmt.Errorf("open cache: %s is a file, not a directory; give the cache a directory of its own", opts.Dir)
	}
	blobs := filepath.Join(opts.Dir, "blobs")
	if err := os.MkdirAll(blobs, 0o755); err != nil {
		return nil, classifyDiskError(opts.Dir, fmt.Errorf("open cache: %w", err))
	}
	// One process at a time: a second one stops here, before it touches
	// anything, in particular the first one's temp files.
	lock, err := lockDir(opts.Dir)
	if err != nil {
		return nil, classifyDiskError(opts.Dir, err)
	}
	ok := false
	defer func() {
		if !ok {
			lock.release()
		}
	}()
	var opened OpenReport
	// On a disk filled to the last byte the database cannot even be
	// opened (its log's index cannot grow): its reserve makes the room.
	if free, _, ok := diskSpace(opts.Dir); ok && free < reserveLow {
		if n := releaseReserve(opts.Dir); n > 0 {
			opts.Logger.Warn("disk full: gave back the cache's reserve to open it", "bytes", n, "free", free)
		}
	}
	db, aside, err := openDatabase(ctx, opts.Dir, opts.Logger, opts.Now)
	if err != nil {
		return nil, classifyDiskError(opts.Dir, err)
	}
	opened.DatabaseMovedAside = aside
	if opened.Adopted, opened.RemovedFiles, err = adoptBlobFiles(ctx, db, blobs, opts.Logger); err != nil {
		db.Close()
		return nil, classifyDiskError(opts.Dir, fmt.Errorf("open cache %s: %w", opts.Dir, err))
	}
	if opened.RemovedPartials, err = cleanPartials(ctx, db, opts.Dir, opts.Logger); err != nil {
		db.Close()
		return nil, classifyDiskError(opts.Dir, fmt.Errorf("open cache %s: %w", opts.Dir, err))
	}
	c := &Cache{dir: opts.Dir, db: db, log: opts.Logger, inlineMax: opts.InlineMax, maxBytes: opts.MaxBytes, now: opts.Now, stmts: &stmtCache{db: db}}
	c.held = newHeldSet(db, opts.Logger)
	c.store = newStore(db, opts.Dir, opts.Logger, opts.Now)
	c.store.held = c.held
	c.store.claimPartial = c.claimPartial
	c.store.releasePartial = func(h resources.Hash) { c.releasePartial(h, nil) }
	c.store.onCommitError = c.markDamaged
	c.store.onNoRoom = c.noRoom
	c.store.canMakeRoom = c.canMakeRoom
	c.startRoom()
	holdReserve(opts.Dir, tightHeadroom)
	c.opened = opened
	ok = true // from here c.Close releases the lock
	c.lock = lock

	idx, err := loadPackIndex(ctx, db)
	if err != nil {
		c.Close()
		return nil, err
	}
	view, err := packs.Load(ctx, packs.Options{Dirs: opts.Packs, MemoryMax: -1, HashCache: idx}, nil)
	if err != nil {
		c.Close()
		return nil, err
	}
	for _, p := range view.Problems {
		opts.Logger.Warn("local "+p.Summary(), "pack", p.Pack, "path", p.Path, "reason", p.Reason)
	}
	c.packs = view
	var rows []packRow
	view.Files(func(pack, path string, size, mtime int64, h resources.Hash) {
		if known, ok := idx.LookupHash(pack, path, size, mtime); !ok || known != h {
			rows = append(rows, packRow{pack, path, size, mtime, h})
		}
	})
	if len(rows) > 0 {
		c.store.enqueue(op{kind: opPackIndex, rows: rows})
	}
	c.files = &fileTier{stmts: c.stmts, dir: blobs, store: c.store, log: opts.Logger, corrupt: &c.corrupt}
	c.tiers = []Tier{
		&packTier{view: view, log: opts.Logger},
		heldTier{&inlineTier{stmts: c.stmts, store: c.store, log: opts.Logger, corrupt: &c.corrupt}, c.held},
		heldTier{c.files, c.held},
	}
	return c, nil
}

// packIndex is the persisted pack_index table, read once at Open.
type packIndex map[[2]string]packRow

func (p packIndex) LookupHash(pack, path string, size, mtime int64) (resources.Hash, bool) {
	r, ok := p[[2]string{pack, path}]
	if !ok || r.size != size || r.mtime != mtime {
		return resources.Hash{}, false
	}
	return r.hash, true
}

func loadPackIndex(ctx context.Context, db *sql.DB) (packIndex, error) {
	rows, err := db.QueryContext(ctx, "SELECT pack, path, size, mtime, hash FROM pack_index")
	if err != nil {
		return nil, fmt.Errorf("read pack index: %w", err)
	}
	defer rows.Close()
	idx := make(packIndex)
	for rows.Next() {
		var r packRow
		var hb []byte
		if err := rows.Scan(&r.pack, &r.path, &r.size, &r.mtime, &hb); err != nil {
			return nil, fmt.Errorf("read pack index: %w", err)
		}
		if h, ok := scanHash(hb); ok {
			r.hash = h
			idx[[2]string{r.pack, r.path}] = r
		}
	}
	return idx, rows.Err()
}

// OpenReport says what Open repaired.
type OpenReport struct {
	// DatabaseMovedAside is where a damaged database was moved ("" if
	// none was): the index was rebuilt from the blob files.
	DatabaseMovedAside string `json:"database_moved_aside,omitempty"`
	// Adopted blob files had no row but hashed to their name.
	Adopted int `json:"adopted_files"`
	// RemovedFiles had no row and did not hash to their name.
	RemovedFiles int `json:"removed_files"`
	// RemovedPartials were partial files without rows, or rows without
	// their partial file.
	RemovedPartials int `json:"removed_partials,omitempty"`
}

// Opened returns what Open repaired.
func (c *Cache) Opened() OpenReport { return c.opened }

// Dir returns the cache directory.
func (c *Cache) Dir() string { return c.dir }

// InlineMax returns the largest blob stored inline.
func (c *Cache) InlineMax() int64 { return c.inlineMax }

// PackView returns the local packs' view.
func (c *Cache) PackView() *packs.View { return c.packs }

// Lookup finds hashes in the tiers in order and returns the verified hits.
// Hits from the cache tiers whose last_used is older than the touch
// granularity get it updated (batched); recent ones cost no write.
func (c *Cache) Lookup(ctx context.Context, hs []resources.Hash) (map[resources.Hash]Blob, error) {
	hits := make(map[resources.Hash]Blob, len(hs))
	todo := hs
	var touched []resources.Hash
	stale := c.now().Add(-touchGranularity).Unix()
	for _, t := range c.tiers {
		if len(todo) == 0 {
			break
		}
		found, err := t.Lookup(ctx, todo)
		if err != nil {
			c.markDamaged(err)
			return hits, fmt.Errorf("look up %s cache: %w", t.Source(), err)
		}
		rest := todo[:0:0]
		for _, h := range todo {
			if b, ok := found[h]; ok {
				hits[h] = b
				if t.Source() != SourcePack && b.used < stale {
					touched = append(touched, h)
				}
			} else {
				rest = append(rest, h)
			}
		}
		todo = rest
	}
	if len(touched) > 0 {
		c.store.touch(touched)
	}
	return hits, nil
}

// Put verifies data against h and stores it: inline if small, as a blob
// file otherwise. A mismatch is returned at once and nothing is stored;
// otherwise done is called once the data is durable (or failed to be).
// names are recorded as by Name, in the same transaction as the blob.
func (c *Cache) Put(h resources.Hash, data []byte, done func(error), names ...resources.Loc) error {
	if got := resources.Sum(data); got != h {
		return fmt.Errorf("store %s: got %s: %w", h.Short(), got.Short(), ErrHashMismatch)
	}
	if int64(len(data)) <= c.inlineMax {
		o := op{kind: opInline, hash: h, size: int64(len(data)), data: data, done: done}
		c.nameWith(&o, names)
		c.store.enqueue(o)
		return nil
	}
	p, err := c.Create(h, int64(len(data)))
	if err != nil {
		return err
	}
	if _, err := p.Write(data); err != nil {
		p.Abort()
		return err
	}
	return p.Commit(done, names...)
}

// Create starts a blob that arrives in pieces: it is written to a temp file
// next to its final place and hashed as it goes. Its size is reserved on
// disk first, so a full disk fails here, at once, with ErrDiskFull.
func (c *Cache) Create(h resources.Hash, size int64) (*Pending, error) {
	final := blobPath(filepath.Join(c.dir, "blobs"), h)
	if err := os.MkdirAll(filepath.Dir(final), 0o755); err != nil {
		return nil, classifyDiskError(c.dir, fmt.Errorf("create blob %s: %w", h.Short(), err))
	}
	f, err := os.CreateTemp(filepath.Dir(final), ".tmp-"+h.String()+"-*")
	if err != nil {
		return nil, classifyDiskError(c.dir, fmt.Errorf("create blob %s: %w", h.Short(), err))
	}
	if err := reserve(f, size); err != nil {
		f.Close()
		os.Remove(f.Name())
		return nil, classifyDiskError(c.dir, fmt.Errorf("reserve %d bytes for blob %s: %w", size, h.Short(), err))
	}
	return &Pending{c: c, f: f, hash: h, size: size, sum: sha256.New()}, nil
}

// Pending is a blob being received. Write appends; Commit verifies and
// stores; Abort discards. Not safe for concurrent use.
type Pending struct {
	c       *Cache
	f       *os.File
	hash    resources.Hash
	size    int64
	written int64
	flushed int64 // bytes handed to startWriteback
	sum     hash.Hash
}

// writebackEvery is how much a streamed blob accumulates before its pages
// are handed to the kernel for writing.
const writebackEvery = 8 << 20

// Write appends p, refusing to go past the announced size.
func (p *Pending) Write(b []byte) (int, error) {
	if p.written+int64(len(b)) > p.size {
		return 0, fmt.Errorf("write blob %s: %d bytes past its size %d: %w", p.hash.Short(), p.written+int64(len(b))-p.size, p.size, ErrSizeMismatch)
	}
	n, err := p.f.Write(b)
	p.sum.Write(b[:n])
	p.written += int64(n)
	if err != nil {
		return n, classifyDiskError(p.c.dir, fmt.Errorf("write blob %s: %w", p.hash.Short(), err))
	}
	if p.written-p.flushed >= writebackEvery {
		startWriteback(p.f, p.flushed, p.written-p.flushed)
		p.flushed = p.written
	}
	return n, nil
}

// Written returns the bytes written so far.
func (p *Pending) Written() int64 { return p.written }

// Commit verifies size and hash and queues the file to be made durable
// under its final name. On a mismatch the temp file is removed and the
// error returned; done is called only when Commit returns nil. names are
// recorded as by Name, in the same transaction as the blob's row.
func (p *Pending) Commit(done func(error), names ...resources.Loc) error {
	if p.written != p.size {
		p.Abort()
		return fmt.Errorf("store blob %s: %d of %d bytes: %w", p.hash.Short(), p.written, p.size, ErrSizeMismatch)
	}
	var got resources.Hash
	p.sum.Sum(got[:0])
	if got != p.hash {
		p.Abort()
		return fmt.Errorf("store blob %s: got %s: %w", p.hash.Short(), got.Short(), ErrHashMismatch)
	}
	o := op{kind: opFile, hash: p.hash, size: p.size, tmp: p.f, done: done}
	p.c.nameWith(&o, names)
	p.c.store.enqueue(o)
	return nil
}

// Abort discards the blob.
func (p *Pending) Abort() {
	p.f.Close()
	os.Remove(p.f.Name())
}

// Flush waits until every write queued so far is durable.
func (c *Cache) Flush(ctx context.Context) error {
	// Small blobs the store handed to the room loop before the barrier
	// come back after it: flush again once they are queued. They come
	// back tried, never to be handed on again, so this ends.
	for {
		if err := c.store.flush(ctx); err != nil {
			return err
		}
		if waited, err := c.waitRoom(ctx); err != nil || !waited {
			return err
		}
	}
}

// Close closes the open partials (keeping them, as Partial.Close does),
// flushes pending writes and closes the database.
func (c *Cache) Close() error {
	var err error
	c.closeOnce.Do(func() {
		for _, p := range c.openPartials() {
			p.Close()
		}
		c.stopRoom() // while the store runs: the loop waits on it
		if c.held != nil {
			c.held.close()
		}
		if c.store != nil {
			c.store.close()
		}
		if c.packs != nil {
			c.packs.Close()
		}
		c.stmts.close()
		err = c.db.Close()
		// The log, gone with the last connection, may leave room for a
		// reserve given back during the run.
		holdReserve(c.dir, tightHeadroom)
		c.lock.release()
	})
	return err
}
