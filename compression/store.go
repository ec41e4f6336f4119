package compression

import (
	"container/list"
	"fmt"
	"slices"
	"sync"
)

// Key names one content in a Store: the server uses the SHA-256 of a
// resource and the byte range of one chunk of it (Off 0 and N the whole
// length for a small resource). The Store treats it as opaque.
type Key struct {
	Hash   [32]byte
	Off, N uint64
}

// entryCost is what an entry counts against the budget beyond its
// compressed bytes: the map slot, the list element and the entry itself.
// It keeps a store full of not-worth verdicts bounded too.
const entryCost = 160

// StoreStats is a snapshot of a Store's counters.
type StoreStats struct {
	Entries  int   // contents held: compressed forms and not-worth verdicts
	Bytes    int64 // what they count against the budget: compressed bytes plus a fixed cost per entry
	Hits     int64 // Gets answered from an entry held, or by waiting for another caller's compression
	Misses   int64 // Gets that called raw and compressed
	NotWorth int64 // of the misses, those whose content was not worth compressing
	Evicted  int64 // entries dropped to stay within the budget
	NotTried int64 // Gets answered not worth without reading: the content's first ranges did not compress
}

// Store keeps the compressed form of contents so that each is compressed
// once per server, not once per client. It holds at most its budget, and
// drops the least recently used entries beyond it. It is safe for
// concurrent use.
type Store struct {
	budget int64

	mu      sync.Mutex // guards everything below
	entries map[Key]*storeEntry
	// contents counts the verdicts on ranges of one content (Key.Hash) of
	// at least probeMin bytes: a large resource whose first ranges do not
	// compress is taken not to compress at all, and its other ranges are
	// never read for it. Cleared when it reaches maxContents.
	contents map[[32]byte]*contentVerdicts
	lru      list.List // of *storeEntry that are done and held, most recent first
	bytes    int64     // cost of the entries in lru
	stats    StoreStats
}

type contentVerdicts struct{ worth, notWorth int }

const (
	// giveUpAfter not-worth ranges of a content, none worth it, and the
	// content is not tried any more.
	giveUpAfter = 4
	maxContents = 1 << 16
)

// storeEntry is one content's compressed form or verdict. While raw runs it
// is in flight: done is open, it is in entries (so that callers for the
// same key wait) but not in the LRU list.
type storeEntry struct {
	key  Key
	done chan struct{} // closed once the fields below are set

	compressed []byte // nil when not worth compressing
	ok         bool
	err        error // raw's error; the entry is then not held
	elem       *list.Element
}

func (e *storeEntry) cost() int64 { return int64(len(e.compressed)) + entryCost }

// NewStore returns a Store that keeps at most budget bytes of compressed
// data (plus a small fixed cost per entry). A budget of 0 or less keeps
// nothing but still lets concurrent callers share one compression.
func NewStore(budget int64) *Store {
	return &Store{budget: budget, entries: make(map[Key]*storeEntry), contents: make(map[[32]byte]*contentVerdicts)}
}

// Get returns the compressed form of the content under k, one zstd frame
// for Decompress, calling raw for the content and compressing it only if
// no entry for k is held. Concurrent callers for the same key wait for one
// compression. ok is false when the content is not worth compressing (it
// would not save 10%, starts like a compressed format, or is over MaxSize);
// that verdict is remembered too, without the bytes. An error from raw is
// returned to the callers waiting for that call and is not remembered: the
// next Get calls raw again.
//
// The returned slice is shared: callers must not modify it.
func (s *Store) Get(k Key, raw func() ([]byte, error)) (compressed []byte, ok bool, err error) {
	s.mu.Lock()
	if v := s.contents[k.Hash]; v != nil && v.worth == 0 && v.notWorth >= giveUpAfter {
		s.stats.NotTried++
		s.mu.Unlock()
		return nil, false, nil
	}
	if e, found := s.entries[k]; found {
		s.stats.Hits++
		if e.elem != nil {
			s.lru.MoveToFront(e.elem)
		}
		s.mu.Unlock()
		<-e.done
		return e.compressed, e.ok, e.err
	}
	e := &storeEntry{key: k, done: make(chan struct{})}
	s.entries[k] = e
	s.stats.Misses++
	s.mu.Unlock()

	finished := false
	defer func() {
		if !finished { // raw panicked: let waiters go, hold nothing
			e.err = fmt.Errorf("compressing content %x@%d+%d: reading it panicked", k.Hash[:4], k.Off, k.N)
			s.finish(e)
		}
	}()
	e.compressed, e.ok, e.err = compressContent(k, raw)
	finished = true
	s.finish(e)
	return e.compressed, e.ok, e.err
}

// compressContent reads and compresses one content, keeping a right-sized
// copy of a frame that is worth sending.
func compressContent(k Key, raw func() ([]byte, error)) ([]byte, bool, error) {
	data, err := raw()
	if err != nil {
		return nil, false, fmt.Errorf("reading content %x@%d+%d: %w", k.Hash[:4], k.Off, k.N, err)
	}
	if len(data) > MaxSize || SkipData(data) {
		return nil, false, nil
	}
	out, worth := Compress(nil, data)
	if !worth {
		return nil, false, nil
	}
	return slices.Clone(out), true, nil
}

// finish publishes e to its waiters and, unless raw failed, holds it and
// evicts least recently used entries beyond the budget.
func (s *Store) finish(e *storeEntry) {
	s.mu.Lock()
	defer s.mu.Unlock()
	defer close(e.done)
	if e.err == nil && !e.ok {
		s.stats.NotWorth++
	}
	if e.err == nil && e.key.N >= probeMin {
		if len(s.contents) >= maxContents {
			clear(s.contents)
		}
		v := s.contents[e.key.Hash]
		if v == nil {
			v = &contentVerdicts{}
			s.contents[e.key.Hash] = v
		}
		if e.ok {
			v.worth++
		} else {
			v.notWorth++
		}
	}
	if e.err != nil || e.cost() > s.budget {
		delete(s.entries, e.key)
		return
	}
	e.elem = s.lru.PushFront(e)
	s.bytes += e.cost()
	for s.bytes > s.budget {
		old := s.lru.Remove(s.lru.Back()).(*storeEntry)
		old.elem = nil
		delete(s.entries, old.key)
		s.bytes -= old.cost()
		s.stats.Evicted++
	}
}

// Stats returns a snapshot of the store's counters.
func (s *Store) Stats() StoreStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stats
	st.Entries = s.lru.Len()
	st.Bytes = s.bytes
	return st
}
