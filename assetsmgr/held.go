package assetsmgr

import (
	"context"
	"database/sql"
	"encoding/binary"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/voxsync/voxsync/resources"
)

// heldSet answers "certainly not cached" from memory, so a lookup of a new
// hash (every hot reload, every resource of a cold sync) costs no read
// transaction on the database. It holds the first 8 bytes of every hash
// with a row in inline_blobs or file_blobs, and of every hash the store has
// since been asked to insert; rows removed later stay in it, which only
// costs such a hash a query. It is filled the first time a lookup misses,
// off the lookup's path, so a warm join that only hits never pays for it;
// until it is full, every hash may be held.
type heldSet struct {
	db  *sql.DB
	log *slog.Logger

	start  sync.Once
	ready  atomic.Bool
	mu     sync.Mutex // guards m, closed
	m      map[uint64]struct{}
	closed bool // no fill starts after close

	ctx    context.Context // cancelled by close
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func newHeldSet(db *sql.DB, log *slog.Logger) *heldSet {
	ctx, cancel := context.WithCancel(context.Background())
	return &heldSet{db: db, log: log, m: make(map[uint64]struct{}), ctx: ctx, cancel: cancel}
}

func heldKey(h resources.Hash) uint64 { return binary.LittleEndian.Uint64(h[:8]) }

// add records that h may have a row. The store calls it before inserting,
// so the set is never behind the database.
func (s *heldSet) add(h resources.Hash) {
	s.mu.Lock()
	s.m[heldKey(h)] = struct{}{}
	s.mu.Unlock()
}

// mayHold is false only for a hash that certainly has no row.
func (s *heldSet) mayHold(h resources.Hash) bool {
	if !s.ready.Load() {
		return true
	}
	s.mu.Lock()
	_, ok := s.m[heldKey(h)]
	s.mu.Unlock()
	return ok
}

// fill starts reading every row's hash, once. Rows inserted meanwhile are
// added by the store, so once the scan is done the set covers them all.
func (s *heldSet) fill() {
	s.start.Do(func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.closed {
			return // a lookup racing Close
		}
		s.wg.Go(func() {
			if err := s.scan(); err != nil {
				if s.ctx.Err() == nil {
					s.log.Debug("cache index of held hashes not built; lookups query the database", "err", err)
				}
				return
			}
			s.ready.Store(true)
		})
	})
}

func (s *heldSet) scan() error {
	rows, err := s.db.QueryContext(s.ctx, `SELECT hash FROM inline_blobs UNION ALL SELECT hash FROM file_blobs`)
	if err != nil {
		return err
	}
	defer rows.Close()
	var keys []uint64
	for rows.Next() {
		var b []byte
		if err := rows.Scan(&b); err != nil {
			return err
		}
		if len(b) == len(resources.Hash{}) {
			keys = append(keys, binary.LittleEndian.Uint64(b[:8]))
		}
	}
	if err := rows.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	for _, k := range keys {
		s.m[k] = struct{}{}
	}
	s.mu.Unlock()
	return nil
}

// close stops a scan under way and waits for it.
func (s *heldSet) close() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.cancel()
	s.wg.Wait()
}

// heldTier is a database tier behind the held set: hashes the set rules
// out are misses without a query.
type heldTier struct {
	Tier
	held *heldSet
}

func (t heldTier) Lookup(ctx context.Context, hs []resources.Hash) (map[resources.Hash]Blob, error) {
	maybe := hs[:0:0]
	for _, h := range hs {
		if t.held.mayHold(h) {
			maybe = append(maybe, h)
		}
	}
	if len(maybe) < len(hs) {
		return t.Tier.Lookup(ctx, maybe)
	}
	found, err := t.Tier.Lookup(ctx, hs)
	if err == nil && len(found) < len(hs) {
		t.held.fill() // a miss: from now on misses are worth ruling out
	}
	return found, err
}
