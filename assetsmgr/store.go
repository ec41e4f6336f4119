package assetsmgr

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/voxsync/voxsync/resources"
)

type opKind uint8

const (
	opInline opKind = iota + 1
	opFile
	opTouch
	opDeleteInline
	opDeleteFile
	opPackIndex
	opBarrier
	opCompact     // reclaim free pages; between transactions
	opName        // record names of cached blobs
	opFingerprint // record blob files' fingerprints after a re-hash

	// Partials (partial.go).
	opPartialOpen    // create or reset a partial's row, drop rows it does not keep
	opPartialChunks  // record chunks synced to a partial's file; touch it
	opPartialDrop    // forget chunks of a partial (by offset)
	opPartialPlace   // a complete, verified partial becomes a blob: placed like opFile
	opDeletePartial  // forget partials (hashes); their files are removed after
	opDropChunkIndex // forget chunk index rows: every row of hashes (blobs), and refs
)

// placesFile reports whether o moves a file into the blobs directory.
func (o op) placesFile() bool { return o.kind == opFile || o.kind == opPartialPlace }

// partialOp is the part of an op about partials and the chunk index.
type partialOp struct {
	size   int64
	digest resources.Hash // manifest.Digest
	reset  bool           // opPartialOpen: drop every chunk row of the partial first
	// rows: opPartialChunks records them, opPartialPlace indexes them,
	// opPartialDrop and opPartialOpen delete them (by offset).
	rows []chunkRow
	refs []chunkRef // opDropChunkIndex
	path string     // opPartialPlace: the partial file, to put back if the row fails
}

// chunkRow is one chunk of a resource: length bytes at offset.
type chunkRow struct {
	offset, length int64
	chunk          resources.Hash
}

// chunkRef is one chunk index row.
type chunkRef struct{ chunk, blob resources.Hash }

type packRow struct {
	pack, path  string
	size, mtime int64
	hash        resources.Hash
}

type op struct {
	kind    opKind
	hash    resources.Hash
	size    int64
	data    []byte
	tmp     *os.File // opFile: complete, verified, not yet synced
	hashes  []resources.Hash
	rows    []packRow
	compact *CompactResult // opCompact: filled in
	names   []blobName     // opName; opInline, opFile: recorded with the blob
	fps     []string       // opFingerprint: one per hashes entry; opFile: set once placed
	partial *partialOp     // the opPartial* kinds and opDropChunkIndex
	// ifCorrupt (opDeleteInline): delete only rows whose bytes still do
	// not match; a good copy stored since the damage was found stays.
	// (opDeleteFile): the files were salvaged as partials (see salvage).
	ifCorrupt bool
	// roomTried (opInline): its commit failed for want of room once, and
	// room was made (room.go); a second failure is final.
	roomTried bool
	done      func(error)
}

// store applies cache writes on one goroutine, in order, committing
// whatever has queued up as one transaction (group commit): the first write
// waits for one commit, and a burst of writes shares the next.
type store struct {
	db       *sql.DB
	cacheDir string
	dir      string // blobs directory
	log      *slog.Logger
	now      func() time.Time
	// onCommitError, if set, sees every failed commit; set before use.
	onCommitError func(error)
	// onNoRoom, if set, may take the inline ops of a commit that failed
	// with ErrDiskFull, to make room and queue them again (Cache.noRoom);
	// it reports whether it took them. Set before use.
	onNoRoom func(need int64, ops []op) (took bool)
	// canMakeRoom, if set, reports whether onNoRoom would take ops now.
	canMakeRoom func() bool
	// tight is set once a commit found the disk full: from then on
	// batches stay small and each commit is followed by a checkpoint that
	// truncates the write-ahead log, so the log, which a full disk cannot
	// grow, never has to. Only the run goroutine uses it.
	tight bool
	// carry: inline ops holdBackForRoom left for a batch of their own,
	// applied right after the current one. Only the run goroutine uses it.
	carry []op
	wc    *writeConn // the run goroutine's connection; nil until first used
	held  *heldSet   // told of every row inserted; nil: none
	// claimPartial and releasePartial (Cache's) reserve a hash's partial
	// while the store removes it; nil: no partials are removed.
	claimPartial   func(resources.Hash) bool
	releasePartial func(resources.Hash)

	mu     sync.RWMutex // guards closed; held shared while sending on ops
	closed bool
	ops    chan op
	exited chan struct{}

	// Names wait here rather than in ops: Name is called from done
	// callbacks, which run on the store's own goroutine, where a send on a
	// full ops would never be received.
	namesMu sync.Mutex // guards names, touches and the corrupt entries
	names   []blobName
	touches []resources.Hash
	// Entries found corrupt while being read wait here too: a read can
	// run on the store's goroutine (a done callback's Loaded event, whose
	// handler reads another blob).
	corruptInline, corruptFiles, salvagedFiles []resources.Hash
}

func newStore(db *sql.DB, cacheDir string, log *slog.Logger, now func() time.Time) *store {
	s := &store{db: db, cacheDir: cacheDir, dir: filepath.Join(cacheDir, "blobs"), log: log, now: now, ops: make(chan op, 1024), exited: make(chan struct{})}
	go s.run()
	return s
}

// enqueue queues o, blocking while the queue is full. After close, o's done
// gets ErrClosed.
func (s *store) enqueue(o op) {
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		if o.tmp != nil {
			o.tmp.Close()
			if o.kind != opPartialPlace { // a partial stays for the next run
				os.Remove(o.tmp.Name())
			}
		}
		if o.done != nil {
			o.done(ErrClosed)
		}
		return
	}
	s.ops <- o
	s.mu.RUnlock()
}

// name queues n for the next batch without ever blocking. Only the first
// name to wait wakes the store: a warm join names thousands of hits.
func (s *store) name(n blobName) {
	s.namesMu.Lock()
	first := len(s.names) == 0
	s.names = append(s.names, n)
	s.namesMu.Unlock()
	if first {
		s.wake()
	}
}

// touch queues hits to mark used with the next batch, without ever
// blocking, as name does: a lookup must not wait for the store, which may
// itself be waiting for the game (a Put's done callback delivers Loaded),
// while the game's handler looks up (Syncer.Open); a full queue of touches
// then deadlocked the two.
func (s *store) touch(hs []resources.Hash) {
	s.namesMu.Lock()
	first := len(s.touches) == 0
	s.touches = append(s.touches, hs...)
	s.namesMu.Unlock()
	if first {
		s.wake()
	}
}

// salvage takes the file of blob h, found corrupt, out of the blob tier:
// it becomes the file of h's partial, for the refetch to resume from if
// the blob was assembled from chunks (dropCorruptFile's batch turns its chunk
// index rows into the partial's records, every one verified again before
// it counts, so only the damaged chunks are fetched), and is removed if
// that partial is open.
// It reports whether the file was moved, not removed.
func (s *store) salvage(h resources.Hash) (moved bool) {
	p := blobPath(s.dir, h)
	if s.claimPartial != nil && s.claimPartial(h) {
		defer s.releasePartial(h)
		dir := filepath.Join(s.cacheDir, partialDirName)
		if os.MkdirAll(dir, 0o755) == nil && os.Rename(p, filepath.Join(dir, h.String())) == nil {
			return true
		}
	}
	os.Remove(p)
	return false
}

// dropCorruptInline queues the removal of the row of an inline entry whose
// bytes did not match when read, without ever blocking, if they still do
// not match when the batch runs.
func (s *store) dropCorruptInline(h resources.Hash) {
	s.namesMu.Lock()
	s.corruptInline = append(s.corruptInline, h)
	s.namesMu.Unlock()
	s.wake()
}

// dropCorruptFile takes the file of blob h, whose bytes did not match when
// read, out of the blob tier (see salvage) and queues the removal of its
// row without ever blocking; its chunk records become its salvaged
// partial's.
func (s *store) dropCorruptFile(h resources.Hash) {
	moved := s.salvage(h)
	s.namesMu.Lock()
	if moved {
		s.salvagedFiles = append(s.salvagedFiles, h)
	} else {
		s.corruptFiles = append(s.corruptFiles, h)
	}
	s.namesMu.Unlock()
	s.wake()
}

// wake starts a batch on an idle store; a busy one takes what waits with
// its next batch.
func (s *store) wake() {
	s.mu.RLock()
	if !s.closed {
		select {
		case s.ops <- op{kind: opName}: // wake an idle store
		default: // a busy one takes what waits with its next batch
		}
	}
	s.mu.RUnlock()
}

// flush waits until everything queued before it is applied.
func (s *store) flush(ctx context.Context) error {
	ch := make(chan error, 1)
	s.enqueue(op{kind: opBarrier, done: func(err error) { ch <- err }})
	select {
	case err := <-ch:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *store) close() {
	s.mu.Lock()
	if !s.closed {
		s.closed = true
		close(s.ops)
	}
	s.mu.Unlock()
	<-s.exited
}

func (s *store) run() {
	defer close(s.exited)
	defer s.closeConn()
	for o := range s.ops {
		batch := []op{o}
	drain:
		for len(batch) < 1024 && !(s.tight && batchBytes(batch) >= tightBatchBytes) {
			select {
			case o, ok := <-s.ops:
				if !ok {
					break drain
				}
				batch = append(batch, o)
			default:
				break drain
			}
		}
		s.namesMu.Lock()
		// Drops of corrupt entries first: each was found before any
		// store of a good copy of it that this batch may hold (its
		// refetch), which must come after it, not be deleted by it.
		var drops []op
		if len(s.corruptInline) > 0 {
			drops = append(drops, op{kind: opDeleteInline, hashes: s.corruptInline, ifCorrupt: true})
			s.corruptInline = nil
		}
		if len(s.corruptFiles) > 0 {
			drops = append(drops, op{kind: opDeleteFile, hashes: s.corruptFiles})
			s.corruptFiles = nil
		}
		if len(s.salvagedFiles) > 0 {
			drops = append(drops, op{kind: opDeleteFile, hashes: s.salvagedFiles, ifCorrupt: true})
			s.salvagedFiles = nil
		}
		batch = append(drops, batch...)
		if len(s.touches) > 0 {
			batch = append(batch, op{kind: opTouch, hashes: s.touches})
			s.touches = nil
		}
		if len(s.names) > 0 {
			// Last in the batch: after the rows of the blobs they name.
			batch = append(batch, op{kind: opName, names: s.names})
			s.names = nil
		}
		s.namesMu.Unlock()
		s.apply(batch)
		for len(s.carry) > 0 {
			batch, s.carry = s.carry, nil
			s.apply(batch)
		}
	}
}

func (s *store) apply(batch []op) {
	batch = s.holdBackForRoom(batch)
	errs := make([]error, len(batch))
	s.placeFiles(batch, errs)
	if err := s.commit(batch, errs); err != nil {
		err = classifyDiskError(s.cacheDir, err)
		if s.onCommitError != nil {
			s.onCommitError(err)
		}
		if errors.Is(err, ErrDiskFull) {
			s.tight = true
		}
		s.tryAgainWithRoom(batch, errs, err)
		for i, o := range batch {
			placed := errs[i] == nil
			if placed {
				errs[i] = err
			}
			switch {
			case o.kind == opFile:
				// The row did not commit: take the file back out so no
				// unrecorded blob is left behind.
				os.Remove(blobPath(s.dir, o.hash))
			case o.kind == opPartialPlace && placed:
				s.unplace(o)
			}
		}
	}
	if s.tight {
		s.truncateLog()
	}
	for i, o := range batch {
		if o.kind == opCompact {
			errs[i] = s.compact(o.compact)
		}
	}
	for i, o := range batch {
		if o.done != nil {
			o.done(errs[i])
		}
	}
}

// tightBatchBytes caps the inline bytes of a batch once the disk was
// found full (store.tight): a transaction's pages must fit in the
// write-ahead log's room.
const tightBatchBytes = 1 << 20

// tightHeadroom is the room on disk the cache keeps, when it can, for the
// write-ahead log of its next commits: a batch of at most tightBatchBytes,
// or an eviction; an eighth of the disk on a disk smaller than 32 MiB.
const tightHeadroom = 4 << 20

// roomFloor is the room on disk small blobs never take, so that a cache
// on a full disk can always evict: the log of one delete of deleteBatch
// rows fits. A thirty-second of the disk on a disk smaller than 32 MiB.
const roomFloor = 1 << 20

// keptFree is the headroom and floor (tightHeadroom, roomFloor) on a disk
// of size bytes: at most an eighth and a thirty-second of it.
func keptFree(size int64) (headroom, floor int64) {
	return min(tightHeadroom, size/8), min(roomFloor, size/32)
}

// batchBytes is about what batch writes to the log: its inline data, and
// a page for each row it deletes.
func batchBytes(batch []op) (n int64) {
	for _, o := range batch {
		n += int64(len(o.data))
		if o.kind == opDeleteInline || o.kind == opDeleteFile {
			n += 4096 * int64(len(o.hashes))
		}
	}
	return n
}

// truncateLog checkpoints the write-ahead log into the database and
// truncates it, giving its room back to the disk.
func (s *store) truncateLog() {
	var err error
	if s.wc != nil && !s.wc.open {
		_, err = s.wc.conn.ExecContext(context.Background(), "PRAGMA wal_checkpoint(TRUNCATE)")
	} else {
		_, err = s.db.Exec("PRAGMA wal_checkpoint(TRUNCATE)")
	}
	if err != nil {
		s.log.Debug("cache log not truncated", "err", err)
	}
}

// holdBackForRoom keeps the disk from filling up with small blobs to the
// last byte. A full disk cannot grow the write-ahead log, so it cannot
// commit anything, not even the deletes of an eviction, nor checkpoint the
// log if the database must grow to take it; every later run would fail
// the same way. A commit needs room on the disk twice over: for its pages
// in the log (given back when the log is truncated after it, the store
// being tight from the first time here on), and for the database's growth,
// which pages left free by evicted inline rows spare. So, near a full disk,
// inline ops whose growth would take the disk's last headroom bytes go to
// onNoRoom, to evict that much first; they come back with room made as far
// as could be, and are committed then if the log and the growth keep the
// disk's last floor bytes free (a sync that fits the disk still fits, and
// the next run can still evict). Ops beyond what this
// commit's log has room for are carried to a batch of their own; what
// would not fit even there fails. It returns what stays in batch.
func (s *store) holdBackForRoom(batch []op) []op {
	pages := inlinePagesOf(batch)
	if pages == 0 || s.onNoRoom == nil {
		return batch
	}
	free, size, ok := diskSpace(s.cacheDir)
	headroom, floor := keptFree(size)
	if !ok || free-2*pages >= headroom {
		return batch
	}
	var freePages, pageSize int64
	if s.db.QueryRow("SELECT (SELECT freelist_count FROM pragma_freelist_count), (SELECT page_size FROM pragma_page_size)").Scan(&freePages, &pageSize) != nil {
		return batch
	}
	reuse := freePages * pageSize
	s.tight = true
	canEvict := s.canMakeRoom != nil && s.canMakeRoom()
	var held []op
	var taken int64   // pages of the inline ops kept
	carrying := false // from the first op carried on, every op is: done in order
	out := batch[:0:0]
	for _, o := range batch {
		if carrying {
			s.carry = append(s.carry, o)
			continue
		}
		if o.kind != opInline {
			out = append(out, o)
			continue
		}
		// The log's pages and the growth, until the log is truncated.
		p := taken + inlinePages(o.size)
		grow := max(0, p-reuse)
		left := free - p - grow
		switch {
		case left >= headroom:
			out, taken = append(out, o), p
		case !o.roomTried && grow > 0 && canEvict:
			// Evicting makes pages free, which spare the growth; it
			// does not make room in the log.
			held = append(held, o)
		case left >= floor:
			out, taken = append(out, o), p
		case taken > 0:
			s.carry, carrying = append(s.carry, o), true
		case o.done != nil:
			o.done(&diskError{kind: ErrDiskFull, dir: s.cacheDir, cause: &noRoom{need: p + grow + floor, free: free, kept: floor}})
		}
	}
	if len(held) > 0 {
		// What the held blobs would grow the database by, beside the
		// ones kept.
		need := max(0, taken+inlinePagesOf(held)-reuse) - max(0, taken-reuse)
		if !s.onNoRoom(need, held) {
			// The keeper went meanwhile: judged again, as tried.
			for _, o := range held {
				o.roomTried = true
				s.carry = append(s.carry, o)
			}
		}
	}
	return out
}

// inlinePages is about the bytes of database pages an inline blob of size
// bytes takes.
func inlinePages(size int64) int64 { return size*5/4 + 512 }

// inlinePagesOf is inlinePages of the inline ops of ops.
func inlinePagesOf(ops []op) (n int64) {
	for _, o := range ops {
		if o.kind == opInline {
			n += inlinePages(o.size)
		}
	}
	return n
}

// tryAgainWithRoom hands the inline ops of a batch whose commit failed
// with err to onNoRoom if err is a full disk, and takes the done of those
// it took out of the batch: they are tried once more after room is made.
func (s *store) tryAgainWithRoom(batch []op, errs []error, err error) {
	if s.onNoRoom == nil || !errors.Is(err, ErrDiskFull) {
		return
	}
	var again []op
	var at []int
	for i, o := range batch {
		if o.kind == opInline && !o.roomTried && errs[i] == nil {
			again = append(again, o)
			at = append(at, i)
		}
	}
	if len(again) > 0 && s.onNoRoom(inlinePagesOf(again), again) {
		for _, i := range at {
			batch[i].done = nil
		}
	}
}

// placeFiles makes each new blob file durable under its final name: fsync
// the temp file, rename it into place, fsync the directory. The fsyncs run
// in parallel; the disk does them faster together than one after another.
func (s *store) placeFiles(batch []op, errs []error) {
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	dirs := make(map[string]bool)
	for i, o := range batch {
		if !o.placesFile() {
			continue
		}
		dirs[filepath.Dir(blobPath(s.dir, o.hash))] = true
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			final := blobPath(s.dir, o.hash)
			errs[i] = classifyDiskError(s.cacheDir, placeFile(o.tmp, final, o.kind == opPartialPlace))
			if errs[i] == nil {
				if fi, err := os.Stat(final); err == nil {
					batch[i].fps = []string{fingerprint(fi)}
				}
			}
		}()
	}
	wg.Wait()
	for d := range dirs {
		if err := syncDir(d); err != nil {
			for i, o := range batch {
				if o.placesFile() && filepath.Dir(blobPath(s.dir, o.hash)) == d && errs[i] == nil {
					errs[i] = err
					s.unplace(o)
				}
			}
		}
	}
}

// unplace takes a placed file whose row did not commit back out of the
// blobs directory: a blob file is removed; a partial goes back to where it
// was, its rows untouched, for the next run (removed if it cannot).
func (s *store) unplace(o op) {
	final := blobPath(s.dir, o.hash)
	if o.kind == opPartialPlace && os.Rename(final, o.partial.path) == nil {
		return
	}
	os.Remove(final)
}

// placeFile syncs tmp and renames it to final. On failure tmp is removed,
// unless keep (a partial: its rows still describe it).
func placeFile(tmp *os.File, final string, keep bool) error {
	name := tmp.Name()
	remove := func() {
		if !keep {
			os.Remove(name)
		}
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		remove()
		return fmt.Errorf("sync blob file: %w", err)
	}
	if err := tmp.Close(); err != nil {
		remove()
		return fmt.Errorf("close blob file: %w", err)
	}
	if err := os.Rename(name, final); err != nil {
		remove()
		return fmt.Errorf("rename blob file into place: %w", err)
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	return nil
}

func (s *store) commit(batch []op, errs []error) error {
	needed := false
	for i, o := range batch {
		if o.kind != opBarrier && o.kind != opCompact && errs[i] == nil {
			needed = true
		}
	}
	if !needed {
		return nil
	}
	now := s.now().Unix()
	tx, err := s.begin(onlyHints(batch, errs))
	if err != nil {
		return fmt.Errorf("store blobs: %w", err)
	}
	defer tx.rollback()
	// Partial files to remove once the commit is durable, claimed until
	// then: of blobs now stored whole, and salvaged files no partial took.
	var stale []resources.Hash
	committed := false
	defer func() {
		for _, h := range stale {
			if committed {
				os.Remove(filepath.Join(s.cacheDir, partialDirName, h.String()))
			}
			s.releasePartial(h)
		}
	}()
	for i, o := range batch {
		if errs[i] != nil {
			continue
		}
		var err error
		if s.held != nil && (o.kind == opInline || o.placesFile()) {
			s.held.add(o.hash)
		}
		switch o.kind {
		case opInline:
			_, err = tx.Exec(`INSERT INTO inline_blobs (hash, size, last_used, data) VALUES (?, ?, ?, ?)
				ON CONFLICT (hash) DO UPDATE SET size = excluded.size, data = excluded.data, last_used = excluded.last_used`,
				o.hash[:], o.size, now, o.data)
			if err == nil {
				err = nameBlob(tx, o.names)
			}
		case opFile, opPartialPlace:
			var fp any // NULL: re-hashed at the next lookup
			if len(o.fps) == 1 && o.fps[0] != "" {
				fp = o.fps[0]
			}
			_, err = tx.Exec(`INSERT OR REPLACE INTO file_blobs (hash, size, last_used, fingerprint) VALUES (?, ?, ?, ?)`, o.hash[:], o.size, now, fp)
			if err == nil {
				err = nameBlob(tx, o.names)
			}
			if err == nil && o.kind == opPartialPlace {
				err = commitPlacedPartial(tx, o)
			}
			if err == nil && o.kind == opFile && s.claimPartial != nil && tx.hasPartial(o.hash) && s.claimPartial(o.hash) {
				// A partial left of h (a chunked download killed, then h
				// fetched whole) is no use any more: its rows go with
				// this commit, its file after.
				stale = append(stale, o.hash)
				err = deletePartialRows(tx, o.hash)
			}
		case opPartialOpen, opPartialChunks, opPartialDrop, opDeletePartial, opDropChunkIndex:
			err = commitPartialOp(tx, o, now)
		case opFingerprint:
			for i, h := range o.hashes {
				if _, err = tx.Exec(`UPDATE file_blobs SET fingerprint = ? WHERE hash = ?`, o.fps[i], h[:]); err != nil {
					break
				}
			}
		case opTouch:
			// Eviction needs recency to minutes, not seconds: rows used
			// lately are not rewritten, and an inline row's rewrite would
			// copy its whole blob into the WAL.
			cutoff := now - int64(touchGranularity/time.Second)
			for _, table := range []string{"inline_blobs", "file_blobs"} {
				if err = execHashes(tx, "UPDATE "+table+" SET last_used = ? WHERE last_used < ? AND hash IN (", o.hashes, now, cutoff); err != nil {
					break
				}
			}
		case opDeleteInline:
			for _, h := range o.hashes {
				if o.ifCorrupt && tx.inlineIntact(h) {
					continue
				}
				if _, err = tx.Exec(`DELETE FROM inline_blobs WHERE hash = ?`, h[:]); err != nil {
					break
				}
				if _, err = tx.Exec(`DELETE FROM blob_names WHERE hash = ?`, h[:]); err != nil {
					break
				}
			}
		case opDeleteFile:
			for _, h := range o.hashes {
				if o.ifCorrupt {
					var kept bool
					if kept, err = salvageRows(tx, h, now); err != nil {
						break
					}
					if !kept && s.claimPartial(h) {
						stale = append(stale, h)
					}
				}
				if _, err = tx.Exec(`DELETE FROM file_blobs WHERE hash = ?`, h[:]); err != nil {
					break
				}
				if _, err = tx.Exec(`DELETE FROM blob_names WHERE hash = ?`, h[:]); err != nil {
					break
				}
				if _, err = tx.Exec(`DELETE FROM chunk_index WHERE blob = ?`, h[:]); err != nil {
					break
				}
			}
		case opName:
			// Names of cache hits, nearly all recorded when their blob
			// was stored: those are looked up together, and only the
			// others inserted. Only for blobs the cache holds: a name for
			// a pack hit or a blob evicted meanwhile would never be
			// removed.
			var missing []blobName
			if missing, err = unrecordedNames(tx, o.names); err != nil {
				break
			}
			for _, n := range missing {
				if _, err = tx.Exec(`INSERT OR IGNORE INTO blob_names (hash, type, ref)
					SELECT ?1, ?2, ?3 WHERE EXISTS (SELECT 1 FROM inline_blobs WHERE hash = ?1) OR EXISTS (SELECT 1 FROM file_blobs WHERE hash = ?1)`,
					n.hash[:], n.loc.Type.String(), n.loc.Ref.String()); err != nil {
					break
				}
			}
		case opPackIndex:
			for _, r := range o.rows {
				if _, err = tx.Exec(`INSERT OR REPLACE INTO pack_index (pack, path, size, mtime, hash) VALUES (?, ?, ?, ?, ?)`,
					r.pack, r.path, r.size, r.mtime, r.hash[:]); err != nil {
					break
				}
			}
		}
		if err != nil {
			return fmt.Errorf("store blobs: %w", err)
		}
	}
	if err := tx.commit(); err != nil {
		return fmt.Errorf("store blobs: commit: %w", err)
	}
	committed = true
	return nil
}

// nameBlob records names given with a blob (Cache.nameWith). The blob's
// row is in the same transaction, so unlike opName they need no check
// that it exists.
func nameBlob(tx *writeConn, names []blobName) error {
	for _, n := range names {
		if _, err := tx.Exec(`INSERT OR IGNORE INTO blob_names (hash, type, ref) VALUES (?, ?, ?)`,
			n.hash[:], n.loc.Type.String(), n.loc.Ref.String()); err != nil {
			return err
		}
	}
	return nil
}

// touchGranularity is how stale last_used may get before a hit updates it.
const touchGranularity = 10 * time.Minute

// writeConn is the store's own database connection, with its statements
// prepared once: parsing the same INSERT for every blob of a sync was a
// fifth of the client's CPU. Transactions are BEGIN IMMEDIATE ... COMMIT
// on it, so the prepared statements are used as they are
// (database/sql's Tx would prepare them again in every transaction).
type writeConn struct {
	conn  *sql.Conn
	stmts map[string]*sql.Stmt
	open  bool // a transaction is open
	full  bool // synchronous=FULL (the database's setting); else NORMAL
}

// onlyHints reports whether every op of a batch to commit only records
// chunks synced to a partial's file. Such a record is a hint: its bytes
// were synced before it, and losing it costs only fetching those chunks
// again. So those commits skip the fsync (synchronous=NORMAL, which in WAL
// mode survives the process being killed, and after a power cut leaves
// the database intact, missing only the last commits): a large download
// records its chunks every 2 MiB, and each fsync held the store, and any
// small resource's commit queued behind it, for a disk flush.
func onlyHints(batch []op, errs []error) bool {
	for i, o := range batch {
		if errs[i] == nil && o.kind != opBarrier && o.kind != opCompact && o.kind != opPartialChunks {
			return false
		}
	}
	return true
}

// begin starts a write transaction on the store's connection, opening it
// first if needed; hints: see onlyHints.
func (s *store) begin(hints bool) (*writeConn, error) {
	ctx := context.Background()
	if s.wc == nil {
		conn, err := s.db.Conn(ctx)
		if err != nil {
			return nil, err
		}
		// The pool's connection may have been left in either mode (a
		// failure after a switch): its mode is set before first use.
		s.wc = &writeConn{conn: conn, stmts: make(map[string]*sql.Stmt), full: hints}
	}
	if hints == s.wc.full {
		// Outside a transaction, as SQLite requires; a later FULL commit
		// syncs the log with every earlier frame in it.
		mode := "PRAGMA synchronous = NORMAL"
		if !hints {
			mode = "PRAGMA synchronous = FULL"
		}
		if _, err := s.wc.conn.ExecContext(ctx, mode); err != nil {
			s.closeConn()
			return nil, err
		}
		s.wc.full = !hints
	}
	if _, err := s.wc.conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		s.closeConn()
		return nil, err
	}
	s.wc.open = true
	return s.wc, nil
}

// closeConn drops the store's connection (after an error, or at close).
func (s *store) closeConn() {
	if s.wc == nil {
		return
	}
	for _, st := range s.wc.stmts {
		st.Close()
	}
	// Never hand the pool a connection inside a transaction: it would
	// hold the write lock. Without one, ROLLBACK just fails. Nor one
	// that skips fsyncs: other writers (Compact) use the pool.
	s.wc.conn.ExecContext(context.Background(), "ROLLBACK")
	s.wc.conn.ExecContext(context.Background(), "PRAGMA synchronous = FULL")
	s.wc.conn.Close()
	s.wc = nil
}

// get returns query prepared on the store's connection, preparing it the
// first time.
func (w *writeConn) get(ctx context.Context, query string) (*sql.Stmt, error) {
	if st, ok := w.stmts[query]; ok {
		return st, nil
	}
	st, err := w.conn.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	w.stmts[query] = st
	return st, nil
}

func (w *writeConn) Exec(query string, args ...any) (sql.Result, error) {
	ctx := context.Background()
	st, err := w.get(ctx, query)
	if err != nil {
		return nil, err
	}
	return st.ExecContext(ctx, args...)
}

// QueryRow runs a query on the store's connection with its statement
// prepared once, as Exec does.
func (w *writeConn) QueryRow(query string, args ...any) *sql.Row {
	st, err := w.get(context.Background(), query)
	if err != nil {
		// The error comes back from Scan.
		return w.conn.QueryRowContext(context.Background(), query, args...)
	}
	return st.QueryRowContext(context.Background(), args...)
}

// unrecordedNames returns the names of ns that blob_names does not hold.
func unrecordedNames(tx *writeConn, ns []blobName) ([]blobName, error) {
	want := make(map[blobName]bool, len(ns))
	var hs []resources.Hash
	seen := make(map[resources.Hash]bool, len(ns))
	for _, n := range ns {
		want[n] = true
		if !seen[n.hash] {
			seen[n.hash] = true
			hs = append(hs, n.hash)
		}
	}
	err := queryHashes(context.Background(), tx, "SELECT hash, type, ref FROM blob_names WHERE hash IN (", hs, func(r *sql.Rows) error {
		var hb []byte
		var ts, rs string
		if err := r.Scan(&hb, &ts, &rs); err != nil {
			return err
		}
		h, hok := scanHash(hb)
		if l, lok := scanName(ts, rs); hok && lok {
			delete(want, blobName{h, l})
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	var missing []blobName
	for _, n := range ns {
		if want[n] {
			delete(want, n) // once, if ns names it twice
			missing = append(missing, n)
		}
	}
	return missing, nil
}

// hasPartial reports whether a partial of h is recorded.
func (w *writeConn) hasPartial(h resources.Hash) bool {
	var one int
	return w.QueryRow(`SELECT 1 FROM partials WHERE hash = ?`, h[:]).Scan(&one) == nil
}

// inlineIntact reports whether h's inline row is there and its bytes
// match: a copy stored again after a read found the old one corrupt.
func (w *writeConn) inlineIntact(h resources.Hash) bool {
	var size int64
	var data []byte
	err := w.QueryRow(`SELECT size, data FROM inline_blobs WHERE hash = ?`, h[:]).Scan(&size, &data)
	return err == nil && checkInline(data, size, h) == nil
}

func (w *writeConn) commit() error {
	if _, err := w.conn.ExecContext(context.Background(), "COMMIT"); err != nil {
		return err
	}
	w.open = false
	return nil
}

// rollback ends a transaction that did not commit; a no-op after commit.
func (w *writeConn) rollback() {
	if w.open {
		w.conn.ExecContext(context.Background(), "ROLLBACK")
		w.open = false
	}
}

// execHashes runs an update that ends in "IN (" over hashes in batches,
// with args before the hashes. Lists are padded to a power of two
// (repeating a hash changes nothing) so a few prepared statements serve.
func execHashes(tx *writeConn, query string, hashes []resources.Hash, args ...any) error {
	const batch = 512
	for len(hashes) > 0 {
		n := min(len(hashes), batch)
		padded := 1
		for padded < n {
			padded *= 2
		}
		all := append(append(make([]any, 0, len(args)+padded), args...), hashArgs(hashes[:n])...)
		for len(all) < len(args)+padded {
			all = append(all, all[len(all)-1])
		}
		if _, err := tx.Exec(query+strings.Repeat("?,", padded-1)+"?)", all...); err != nil {
			return err
		}
		hashes = hashes[n:]
	}
	return nil
}
