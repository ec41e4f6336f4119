package assetsmgr

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/voxsync/voxsync/internal/bytesize"
	"github.com/voxsync/voxsync/manifest"
	"github.com/voxsync/voxsync/resources"
)

// A partial is a large resource being assembled from the chunks of its
// manifest, in Cache/partial/<64 hex of its hash>, with a row in partials
// and one in partial_chunks per chunk held. It survives restarts, and no
// byte of it is trusted before it is verified (manifest.Verify: each chunk
// against the whole resource's SHA-256 state at its start and end, the
// last against the whole hash), so a complete partial is the resource.
//
// Durability: Put writes a verified chunk in place at its offset; every
// partialFlushBytes or partialFlushEvery (and at Close) the file is
// fdatasync'ed and only then are the chunks written before the sync
// recorded, through the store's group commit. After a crash, a recorded
// chunk is on disk; an unrecorded one is fetched again. Bytes in the file
// that no row describes are never read as held.
//
// Every byte is hashed once: a chunk received is verified in memory by
// Put before it is written; a chunk copied from a local blob or partial is
// verified as it is copied; a chunk recorded by an earlier run is read back
// and verified by a goroutine started at open, so that Commit can drop
// what rotted on disk since and have it fetched again.
//
// One Partial per resource at a time per Cache: a second OpenPartial of a
// resource that is open fails with ErrPartialInUse (another process cannot
// have the cache open at all).

// Sentinels for partials.
var (
	// ErrChunksLost: chunks a partial needs are not held (never Put, or
	// dropped because their bytes no longer match): Put Missing() again.
	ErrChunksLost = errors.New("chunks of the resource are missing or were lost; put them again")
	// ErrPartialInUse: the resource's partial is already open in this
	// process (or being removed).
	ErrPartialInUse = errors.New("partial resource already open")
	// ErrLargerThanCache: the resource is larger than the cache's size cap.
	ErrLargerThanCache = errors.New("resource larger than the cache")
)

const (
	// partialDirName is the partials' directory in the cache directory.
	partialDirName = "partial"
	// A partial's file is synced and its chunks recorded once this many
	// bytes were written since the last sync, or this long after the first
	// of them, whichever comes first.
	partialFlushBytes = 2 << 20
	partialFlushEvery = 100 * time.Millisecond
	// partialMaxIdle: GC removes partials not used for this long.
	partialMaxIdle = 7 * 24 * time.Hour
)

type chunkState uint8

const (
	chunkMissing chunkState = iota
	chunkHeld               // Put here, or recorded by an earlier run
	chunkLocal              // copied from a local chunk by OpenPartial
)

// Partial is a large resource being assembled from its chunks; see
// OpenPartial. Put, Missing and Held are safe for concurrent use; Commit,
// Close and Discard end its use, and are called once, by one goroutine.
type Partial struct {
	c    *Cache
	hash resources.Hash
	m    *manifest.Manifest
	path string
	f    *os.File

	mu        sync.Mutex // guards the fields below
	cond      *sync.Cond // on mu: broadcast when the resumed chunks are verified, on a sticky error, at close
	state     []chunkState
	missing   int   // chunks not held
	held      int64 // bytes held
	fromLocal int64 // bytes copied from local chunks
	unsynced  []int // chunks written since the last sync
	unsyncedN int64 // their bytes
	durable   int   // chunks recorded in the database
	err       error // sticky: a sync or a record failed; reopen the partial
	closed    bool
	flushLast bool // with closed: the flusher syncs what is left before it exits
	// Chunks recorded by an earlier run, which the checker reads back and
	// verifies; checked is set when it is done (or stopped), and rotten
	// lists those that failed, for Commit to drop.
	resumed []int
	checked bool
	rotten  []int

	inflight sync.WaitGroup // Puts between their closed check and their return
	flushMu  sync.Mutex     // one flush at a time; lose holds it across a flush and its drop
	dirty    chan struct{}  // wakes the flusher: something to sync
	full     chan struct{}  // wakes the flusher: partialFlushBytes to sync
	stop     chan struct{}  // closed to stop the checker and the flusher
	workers  sync.WaitGroup // the checker and the flusher
}

// OpenPartial starts or resumes assembling resource h (whole-resource
// SHA-256) described by m. A partial lives in Cache/partial/<hex of h> plus
// sqlite rows; it survives restarts.
//
// On open, chunks already durable for h (same offset, length and hash, from
// an earlier run, even under a different manifest digest) are kept, and
// verified again in the background before Commit; every other chunk of m
// whose hash is found locally — in a cached blob file recorded in the chunk
// index, or in another partial — is copied into place after verifying it
// (a chunk that fails is not copied; its index row is dropped unless its
// bytes are what its name says, when the manifest is what is wrong). Its size is reserved on disk, so a
// full disk fails here with ErrDiskFull; an unwritable cache with
// ErrNotWritable. A second OpenPartial of h while it is open fails with
// ErrPartialInUse.
func (c *Cache) OpenPartial(ctx context.Context, h resources.Hash, m *manifest.Manifest) (*Partial, error) {
	if err := m.Check(); err != nil { // a manifest made without manifest.New
		return nil, fmt.Errorf("open partial %s: %w", h.Short(), err)
	}
	// The whole size is reserved on disk at once: a resource the cache
	// could never keep is refused before taking the space.
	if c.maxBytes > 0 && int64(m.Size) > c.maxBytes {
		return nil, fmt.Errorf("open partial %s: %w: %s is more than the cache's size cap of %s; raise the cap (gameclient -cache-max-mib)",
			h.Short(), ErrLargerThanCache, bytesize.Format(int64(m.Size)), bytesize.Format(c.maxBytes))
	}
	if !c.claimPartial(h) {
		return nil, fmt.Errorf("open partial %s: %w", h.Short(), ErrPartialInUse)
	}
	p, err := c.openPartial(ctx, h, m)
	if err != nil {
		c.releasePartial(h, nil)
		return nil, classifyDiskError(c.dir, fmt.Errorf("open partial %s: %w", h.Short(), err))
	}
	return p, nil
}

func (c *Cache) openPartial(ctx context.Context, h resources.Hash, m *manifest.Manifest) (*Partial, error) {
	// What is queued for h (a Discard, an eviction) is applied before its
	// rows are read.
	if err := c.store.flush(ctx); err != nil {
		return nil, err
	}
	known := true
	var size int64
	err := c.db.QueryRowContext(ctx, "SELECT size FROM partials WHERE hash = ?", h[:]).Scan(&size)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		known = false
	case err != nil:
		c.markDamaged(err)
		return nil, fmt.Errorf("read partial: %w", err)
	}
	var rows []chunkRow
	if known {
		if rows, err = c.partialChunkRows(ctx, h); err != nil {
			return nil, err
		}
	}

	dir := filepath.Join(c.dir, partialDirName)
	if _, err := os.Stat(dir); err != nil {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, err
		}
		if err := syncDir(c.dir); err != nil {
			return nil, err
		}
	}
	path := filepath.Join(dir, h.String())
	_, statErr := os.Stat(path)
	existed := statErr == nil
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			f.Close()
			if !existed {
				os.Remove(path)
			}
		}
	}()
	// Rows are the only record of what the file holds. Without them, or
	// without the file, or for another size, start from nothing.
	reset := !known || !existed || size != int64(m.Size)
	if reset {
		rows = nil
		if err := f.Truncate(0); err != nil {
			return nil, err
		}
	}
	if err := reserve(f, int64(m.Size)); err != nil {
		return nil, fmt.Errorf("reserve %d bytes: %w", m.Size, err)
	}
	if !existed {
		if err := syncDir(dir); err != nil {
			return nil, err
		}
	}

	p := newPartial(c, h, m, path, f)
	var drop []chunkRow
	for _, r := range rows {
		i, found := m.Find(uint64(r.offset), uint64(r.length))
		if found && m.Chunks[i].Hash == r.chunk && p.state[i] == chunkMissing {
			p.state[i] = chunkHeld
			p.missing--
			p.held += r.length
			p.durable++
			p.resumed = append(p.resumed, i)
		} else {
			drop = append(drop, r) // cut otherwise by an earlier manifest
		}
	}
	p.checked = len(p.resumed) == 0
	errc := make(chan error, 1)
	c.store.enqueue(op{kind: opPartialOpen, hash: h, partial: &partialOp{size: int64(m.Size), digest: m.Digest(), reset: reset, rows: drop},
		done: func(err error) { errc <- err }})
	if err := <-errc; err != nil {
		return nil, fmt.Errorf("record partial: %w", err)
	}
	ok = true
	c.setPartial(h, p)
	p.workers.Add(1)
	go p.flushLoop()
	if !p.checked {
		p.workers.Add(1)
		go p.checkResumed()
	}
	if err := p.copyLocal(ctx); err != nil {
		p.Close()
		return nil, err
	}
	return p, nil
}

func newPartial(c *Cache, h resources.Hash, m *manifest.Manifest, path string, f *os.File) *Partial {
	p := &Partial{
		c: c, hash: h, m: m, path: path, f: f,
		state:   make([]chunkState, len(m.Chunks)),
		missing: len(m.Chunks),
		dirty:   make(chan struct{}, 1),
		full:    make(chan struct{}, 1),
		stop:    make(chan struct{}),
	}
	p.cond = sync.NewCond(&p.mu)
	return p
}

// partialChunkRows reads the recorded chunks of partial h.
func (c *Cache) partialChunkRows(ctx context.Context, h resources.Hash) ([]chunkRow, error) {
	rows, err := c.db.QueryContext(ctx, "SELECT offset, length, chunk FROM partial_chunks WHERE hash = ? ORDER BY offset", h[:])
	if err != nil {
		c.markDamaged(err)
		return nil, fmt.Errorf("read partial chunks: %w", err)
	}
	defer rows.Close()
	var out []chunkRow
	for rows.Next() {
		var r chunkRow
		var cb []byte
		if err := rows.Scan(&r.offset, &r.length, &cb); err != nil {
			return nil, fmt.Errorf("read partial chunks: %w", err)
		}
		if ch, ok := scanHash(cb); ok {
			r.chunk = ch
			out = append(out, r)
		}
	}
	if err := rows.Err(); err != nil {
		c.markDamaged(err)
		return nil, fmt.Errorf("read partial chunks: %w", err)
	}
	return out, nil
}

// Missing returns the indexes of m.Chunks not yet held, in order.
func (p *Partial) Missing() []int {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]int, 0, p.missing)
	for i, s := range p.state {
		if s == chunkMissing {
			out = append(out, i)
		}
	}
	return out
}

// Held reports the bytes held, and how many of them this OpenPartial
// copied from local chunks rather than received through Put (the client's
// from_local_chunks). Chunks resumed from an earlier run count as held,
// not as local.
func (p *Partial) Held() (held, fromLocal int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.held, p.fromLocal
}

// Put verifies data as chunk i (manifest.Verify: an error wrapping
// ErrHashMismatch or ErrSizeMismatch, nothing written), writes it at its
// offset and marks it held. A chunk already held is not written again.
// Durability is batched (see the comment at the top of partial.go): after
// a crash, a chunk is held only if its bytes were synced before it was
// recorded. Safe for concurrent use.
func (p *Partial) Put(i int, data []byte) error {
	if i < 0 || i >= len(p.m.Chunks) {
		return fmt.Errorf("put chunk %d of %s: the manifest has %d chunks", i, p.hash.Short(), len(p.m.Chunks))
	}
	ch := p.m.Chunks[i]
	if len(data) != int(ch.Length) {
		return fmt.Errorf("put chunk %d of %s: %d bytes, want %d: %w", i, p.hash.Short(), len(data), ch.Length, ErrSizeMismatch)
	}
	if err := p.m.Verify(p.hash, i, data); err != nil {
		return fmt.Errorf("put chunk %d of %s: %v: %w", i, p.hash.Short(), err, ErrHashMismatch)
	}
	return p.write(i, data, chunkHeld)
}

// write stores verified data as chunk i.
func (p *Partial) write(i int, data []byte, as chunkState) error {
	p.mu.Lock()
	if err := p.usableLocked(); err != nil {
		p.mu.Unlock()
		return fmt.Errorf("put chunk %d of %s: %w", i, p.hash.Short(), err)
	}
	if p.state[i] != chunkMissing {
		p.mu.Unlock()
		return nil
	}
	p.inflight.Add(1)
	p.mu.Unlock()
	defer p.inflight.Done()

	// Two Puts of one chunk may both write it: the same verified bytes.
	if _, err := p.f.WriteAt(data, int64(p.m.Chunks[i].Offset)); err != nil {
		return classifyDiskError(p.c.dir, fmt.Errorf("put chunk %d of %s: %w", i, p.hash.Short(), err))
	}
	p.mu.Lock()
	if p.state[i] != chunkMissing {
		p.mu.Unlock()
		return nil
	}
	n := int64(len(data))
	p.state[i] = as
	p.missing--
	p.held += n
	if as == chunkLocal {
		p.fromLocal += n
	}
	first := len(p.unsynced) == 0
	p.unsynced = append(p.unsynced, i)
	p.unsyncedN += n
	full := p.unsyncedN >= partialFlushBytes
	p.mu.Unlock()
	if first {
		signal(p.dirty)
	}
	if full {
		signal(p.full)
	}
	return nil
}

// usableLocked says why the partial cannot be used, if it cannot.
func (p *Partial) usableLocked() error {
	if p.closed {
		return fmt.Errorf("partial closed: %w", ErrClosed)
	}
	return p.err
}

// signal wakes whoever waits on ch without ever blocking.
func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// flushLoop syncs and records the chunks written, partialFlushEvery after
// the first of them or as soon as partialFlushBytes are waiting.
func (p *Partial) flushLoop() {
	defer p.workers.Done()
	for {
		select {
		case <-p.dirty:
		case <-p.stop:
			p.finalFlush()
			return
		}
		t := time.NewTimer(partialFlushEvery)
		select {
		case <-p.full:
		case <-t.C:
		case <-p.stop:
		}
		t.Stop()
		p.flushMu.Lock()
		p.flushLocked()
		p.flushMu.Unlock()
	}
}

func (p *Partial) finalFlush() {
	p.mu.Lock()
	last := p.flushLast
	p.mu.Unlock()
	if last {
		p.flushMu.Lock()
		p.flushLocked()
		p.flushMu.Unlock()
	}
}

// flushLocked syncs the file and then records the chunks written before
// the sync. A failure is sticky: what was not recorded is untrusted, and
// the partial must be reopened. flushMu is held.
func (p *Partial) flushLocked() {
	p.mu.Lock()
	list := p.unsynced
	p.unsynced, p.unsyncedN = nil, 0
	failed := p.err != nil
	p.mu.Unlock()
	if len(list) == 0 || failed {
		return
	}
	fail := func(err error) {
		p.c.log.Error("partial resource not saved; it continues from what was saved when it is reopened", "hash", p.hash.Short(), "err", err)
		p.mu.Lock()
		if p.err == nil {
			p.err = err
		}
		p.cond.Broadcast()
		p.mu.Unlock()
	}
	if err := datasync(p.f); err != nil {
		fail(classifyDiskError(p.c.dir, fmt.Errorf("sync partial %s: %w", p.hash.Short(), err)))
		return
	}
	rows := make([]chunkRow, len(list))
	for k, i := range list {
		rows[k] = rowOf(p.m.Chunks[i])
	}
	errc := make(chan error, 1)
	p.c.store.enqueue(op{kind: opPartialChunks, hash: p.hash, partial: &partialOp{rows: rows}, done: func(err error) { errc <- err }})
	if err := <-errc; err != nil {
		fail(fmt.Errorf("record chunks of partial %s: %w", p.hash.Short(), err))
		return
	}
	p.mu.Lock()
	p.durable += len(list)
	n := p.durable
	p.mu.Unlock()
	if hook := p.c.partialFlushed; hook != nil {
		hook(p.hash, n)
	}
}

func rowOf(ch manifest.Chunk) chunkRow {
	return chunkRow{offset: int64(ch.Offset), length: int64(ch.Length), chunk: ch.Hash}
}

// checkResumed reads back and verifies, in order, the chunks an earlier
// run recorded: the bytes were verified when they arrived, but the file may
// have changed since. Those that fail are left in rotten for Commit.
func (p *Partial) checkResumed() {
	defer p.workers.Done()
	var rotten []int
	buf := make([]byte, 0, manifest.MaxChunkLen)
	for _, i := range p.resumed {
		select {
		case <-p.stop:
			return // checked stays false: nothing can Commit any more
		default:
		}
		ch := p.m.Chunks[i]
		b := buf[:ch.Length]
		if _, err := p.f.ReadAt(b, int64(ch.Offset)); err != nil || p.m.Verify(p.hash, i, b) != nil {
			rotten = append(rotten, i)
		}
	}
	p.mu.Lock()
	p.checked, p.rotten = true, rotten
	p.cond.Broadcast()
	p.mu.Unlock()
}

// Commit, once every chunk is held and those resumed from an earlier run
// are verified again, places the file as the blob for h (the same atomic
// rename and row as Create's blobs, so Lookup finds it), records every
// chunk in the chunk index and forgets the partial; done(err) is called
// once that is durable, and only if Commit returned nil. names are
// recorded as by Name, in the same transaction as the blob's row.
//
// If chunks are not held, or resumed chunks no longer verify (they are
// dropped), Commit returns an error wrapping ErrChunksLost: Put Missing()
// again and call Commit again. Other errors (a failed sync or record)
// leave the partial to be closed and reopened.
func (p *Partial) Commit(done func(error), names ...resources.Loc) error {
	p.mu.Lock()
	if err := p.usableLocked(); err != nil {
		p.mu.Unlock()
		return fmt.Errorf("commit %s: %w", p.hash.Short(), err)
	}
	if p.missing > 0 {
		n := p.missing
		p.mu.Unlock()
		return fmt.Errorf("commit %s: %d of %d chunks not held: %w", p.hash.Short(), n, len(p.m.Chunks), ErrChunksLost)
	}
	for !p.checked && !p.closed && p.err == nil {
		p.cond.Wait()
	}
	if err := p.usableLocked(); err != nil {
		p.mu.Unlock()
		return fmt.Errorf("commit %s: %w", p.hash.Short(), err)
	}
	lost := p.rotten
	p.rotten = nil
	p.mu.Unlock()
	if len(lost) == 0 {
		return p.place(done, names)
	}
	var bytes int64
	for _, i := range lost {
		bytes += int64(p.m.Chunks[i].Length)
	}
	p.c.log.Warn("chunks of a partial resource saved earlier no longer verify; dropped, to be fetched again",
		"hash", p.hash.Short(), "chunks", len(lost), "bytes", bytes)
	if err := p.lose(lost); err != nil {
		return fmt.Errorf("commit %s: drop %d chunks that no longer verify: %w", p.hash.Short(), len(lost), err)
	}
	return fmt.Errorf("commit %s: %d chunks (%d bytes) saved earlier no longer verify and were dropped: %w", p.hash.Short(), len(lost), bytes, ErrChunksLost)
}

// place hands the complete, verified file to the store to become a blob.
func (p *Partial) place(done func(error), names []resources.Loc) error {
	p.shutdown(false) // rows of the last chunks are not needed: the partial's rows go
	size := int64(p.m.Size)
	err := os.MkdirAll(filepath.Dir(blobPath(filepath.Join(p.c.dir, "blobs"), p.hash)), 0o755)
	if err == nil {
		err = p.f.Truncate(size)
	}
	if err != nil {
		p.f.Close()
		p.c.releasePartial(p.hash, p)
		return classifyDiskError(p.c.dir, fmt.Errorf("commit %s: %w", p.hash.Short(), err))
	}
	rows := make([]chunkRow, len(p.m.Chunks))
	for i, ch := range p.m.Chunks {
		rows[i] = rowOf(ch)
	}
	o := op{kind: opPartialPlace, hash: p.hash, size: size, tmp: p.f, partial: &partialOp{rows: rows, path: p.path},
		done: func(err error) {
			p.c.releasePartial(p.hash, p)
			if done != nil {
				done(err)
			}
		}}
	p.c.nameWith(&o, names)
	p.c.store.enqueue(o)
	return nil
}

// lose marks held chunks missing and deletes their rows.
func (p *Partial) lose(idx []int) error {
	p.flushMu.Lock()
	defer p.flushMu.Unlock()
	p.flushLocked() // so no flush records a lost chunk after its row is deleted
	p.mu.Lock()
	rows := make([]chunkRow, 0, len(idx))
	for _, i := range idx {
		if p.state[i] == chunkMissing {
			continue
		}
		ch := p.m.Chunks[i]
		if p.state[i] == chunkLocal {
			p.fromLocal -= int64(ch.Length)
		}
		p.state[i] = chunkMissing
		p.missing++
		p.held -= int64(ch.Length)
		rows = append(rows, rowOf(ch))
	}
	p.durable = max(0, p.durable-len(rows))
	err := p.err
	p.mu.Unlock()
	if err != nil {
		return err
	}
	errc := make(chan error, 1)
	p.c.store.enqueue(op{kind: opPartialDrop, hash: p.hash, partial: &partialOp{rows: rows}, done: func(err error) { errc <- err }})
	return <-errc
}

// shutdown stops new Puts, waits for those under way, and stops the checker
// and the flusher (which syncs and records what is left if flush). It
// reports false if the partial was already shut down.
func (p *Partial) shutdown(flush bool) bool {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return false
	}
	p.closed, p.flushLast = true, flush
	p.cond.Broadcast()
	p.mu.Unlock()
	p.inflight.Wait()
	close(p.stop)
	p.workers.Wait()
	return true
}

// Close stops using the partial and keeps its durable state for a later
// OpenPartial: what is held is synced and recorded first. It returns the
// error that made the partial unusable, if one did. Close after Commit,
// Discard or Close does nothing.
func (p *Partial) Close() error {
	if !p.shutdown(true) {
		return nil
	}
	p.mu.Lock()
	err := p.err
	p.mu.Unlock()
	errc := make(chan error, 1)
	p.c.store.enqueue(op{kind: opPartialChunks, hash: p.hash, partial: &partialOp{}, done: func(err error) { errc <- err }}) // touch
	if terr := <-errc; err == nil && terr != nil {
		err = fmt.Errorf("close partial %s: %w", p.hash.Short(), terr)
	}
	if cerr := p.f.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("close partial %s: %w", p.hash.Short(), cerr)
	}
	p.c.releasePartial(p.hash, p)
	return err
}

// Discard deletes the partial's rows and file. Discard after Commit, Close
// or Discard does nothing.
func (p *Partial) Discard() {
	if !p.shutdown(false) {
		return
	}
	p.f.Close()
	// Rows first: a crash in between leaves a file without rows, which
	// the next Open removes.
	errc := make(chan error, 1)
	p.c.store.enqueue(op{kind: opDeletePartial, hashes: []resources.Hash{p.hash}, done: func(err error) { errc <- err }})
	if err := <-errc; err != nil {
		p.c.log.Warn("partial resource discarded, but its rows remain until the cache is opened again", "hash", p.hash.Short(), "err", err)
	}
	os.Remove(p.path)
	p.c.releasePartial(p.hash, p)
}

// claimPartial reserves h for an OpenPartial or a removal, or reports
// false if it is taken.
func (c *Cache) claimPartial(h resources.Hash) bool {
	c.partialsMu.Lock()
	defer c.partialsMu.Unlock()
	if _, taken := c.partials[h]; taken {
		return false
	}
	if c.partials == nil {
		c.partials = make(map[resources.Hash]*Partial)
	}
	c.partials[h] = nil
	return true
}

func (c *Cache) setPartial(h resources.Hash, p *Partial) {
	c.partialsMu.Lock()
	c.partials[h] = p
	c.partialsMu.Unlock()
}

// releasePartial gives h back if p (nil: a bare claim) holds it.
func (c *Cache) releasePartial(h resources.Hash, p *Partial) {
	c.partialsMu.Lock()
	defer c.partialsMu.Unlock()
	if cur, ok := c.partials[h]; ok && cur == p {
		delete(c.partials, h)
	}
}

// partialTaken reports whether h's partial is open or claimed.
func (c *Cache) partialTaken(h resources.Hash) bool {
	c.partialsMu.Lock()
	defer c.partialsMu.Unlock()
	_, taken := c.partials[h]
	return taken
}

// openPartials returns the partials open now.
func (c *Cache) openPartials() []*Partial {
	c.partialsMu.Lock()
	defer c.partialsMu.Unlock()
	var out []*Partial
	for _, p := range c.partials {
		if p != nil {
			out = append(out, p)
		}
	}
	return out
}

// removePartials deletes the rows and then the files of the partials hs
// that are not open, and returns the ones removed.
func (c *Cache) removePartials(ctx context.Context, hs []resources.Hash) ([]resources.Hash, error) {
	var claimed []resources.Hash
	for _, h := range hs {
		if c.claimPartial(h) {
			claimed = append(claimed, h)
		}
	}
	if len(claimed) == 0 {
		return nil, nil
	}
	defer func() {
		for _, h := range claimed {
			c.releasePartial(h, nil)
		}
	}()
	errc := make(chan error, 1)
	c.store.enqueue(op{kind: opDeletePartial, hashes: claimed, done: func(err error) { errc <- err }})
	select {
	case err := <-errc:
		if err != nil {
			return nil, fmt.Errorf("remove partial resources: %w", err)
		}
	case <-ctx.Done():
		// The delete still runs; the files go at the next Open.
		return nil, ctx.Err()
	}
	for _, h := range claimed {
		os.Remove(filepath.Join(c.dir, partialDirName, h.String()))
	}
	return claimed, nil
}
