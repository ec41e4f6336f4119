package assetsmgr

import (
	"context"
	"os"
	"path/filepath"
	"sync"

	"github.com/voxsync/voxsync/resources"
)

// Small blobs are stored by the store's commit, after Put has returned, so
// a disk without room for them shows as a failed commit, or as one that
// would leave the disk too little room (store.holdBackForRoom), not as
// Put's error: the caller cannot make room and try again as it does for a
// blob file. The cache does it instead: such blobs go to roomLoop, which
// evicts what no keeper keeps, least recently used first, and queues them
// once more; the outcome of that second try is theirs. Evicted inline rows
// free pages inside the database, not on the disk; the blobs queued again
// reuse those pages.

// The cache holds a reserve: a file of reserveSize bytes in its directory
// (reserveName), allocated at Open and at Close when the disk has room for
// it. Once the disk is full, even eviction needs room: deleting rows is a
// commit, which grows the write-ahead log. MakeRoom gives the reserve back
// first, so the eviction, and the blobs waiting after it, can commit; Close
// holds it again, out of the log's space, which sqlite gives back when the
// last connection closes. A disk that another program filled to the last
// byte does not even let the database open (the log's index cannot grow):
// Open gives the reserve back first then.
const (
	reserveName = "reserve"
	reserveSize = 8 << 20
	// reserveLow: with less free than this at Open, the reserve is given
	// back before the database is opened.
	reserveLow = 1 << 20
)

// holdReserve allocates the reserve if it is not already held and the disk
// keeps spare bytes free beside it, and reports whether it is held; on a
// disk without room for it there is none, and no harm.
func holdReserve(dir string, spare int64) bool {
	p := filepath.Join(dir, reserveName)
	if st, err := os.Stat(p); err == nil && st.Size() == reserveSize {
		return true
	}
	if free, _, ok := diskSpace(dir); ok && free-reserveSize < spare {
		return false
	}
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return false
	}
	err = allocate(f, reserveSize)
	f.Close()
	if err != nil {
		os.Remove(p)
		return false
	}
	return true
}

// releaseReserve gives the reserve back to the disk and reports how many
// bytes that freed.
func releaseReserve(dir string) int64 {
	p := filepath.Join(dir, reserveName)
	st, err := os.Stat(p)
	if err != nil || os.Remove(p) != nil {
		return 0
	}
	return st.Size()
}

// writeZeros writes size zero bytes to f, from its start.
func writeZeros(f *os.File, size int64) error {
	zeros := make([]byte, 256<<10)
	for off := int64(0); off < size; {
		n, err := f.WriteAt(zeros[:min(int64(len(zeros)), size-off)], off)
		if err != nil {
			return err
		}
		off += int64(n)
	}
	return nil
}

// roomMargin is evicted, once a room cycle, beyond what the blobs waiting
// need: the b-tree pages their commit writes besides their data.
const roomMargin = 1 << 20

// room holds the blobs waiting for room and the keepers: what must not be
// evicted to make it.
type room struct {
	keepers hooks[func(resources.Hash) bool]

	mu      sync.Mutex // guards the fields below
	waiting []op
	need    int64 // bytes to evict for waiting
	running bool
	idle    chan struct{} // closed when the loop stops running

	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// Keep registers keep as a keeper: while registered, the cache makes room
// for small blobs on a full disk (see MakeRoom), never evicting a hash for
// which any keeper returns true (a Syncer keeps what is bound now). keep
// may be called on any goroutine and must not call the cache. Without a
// keeper, a small blob the disk has no room for fails with ErrDiskFull.
// Call the returned function to stop.
func (c *Cache) Keep(keep func(resources.Hash) bool) (stop func()) {
	return c.room.keepers.add(keep)
}

// kept reports whether a keeper keeps h.
func (r *room) kept(h resources.Hash) bool {
	for _, k := range r.keepers.list() {
		if k(h) {
			return true
		}
	}
	return false
}

// canMakeRoom reports whether noRoom takes ops: a keeper says what is
// bound, and the cache is not closing.
func (c *Cache) canMakeRoom() bool {
	return len(c.room.keepers.list()) > 0 && c.room.ctx != nil && c.room.ctx.Err() == nil
}

// noRoom takes ops, inline blobs the disk had or would have too little room
// for, to try again after need bytes are evicted, and reports whether it
// took them; their done is called once they were tried again. It never
// blocks: it runs on the store's goroutine.
func (c *Cache) noRoom(need int64, ops []op) (took bool) {
	r := &c.room
	r.mu.Lock()
	defer r.mu.Unlock()
	if !c.canMakeRoom() {
		return false
	}
	r.need += need
	for _, o := range ops {
		o.roomTried = true
		r.waiting = append(r.waiting, o)
	}
	if !r.running {
		r.running = true
		r.idle = make(chan struct{})
		r.wg.Go(c.roomLoop)
	}
	return true
}

// waitRoom waits until nothing waits for room (what did is queued in the
// store again), and reports whether anything did.
func (c *Cache) waitRoom(ctx context.Context) (waited bool, err error) {
	r := &c.room
	r.mu.Lock()
	idle, running := r.idle, r.running
	r.mu.Unlock()
	if !running {
		return false, nil
	}
	select {
	case <-idle:
		return true, nil
	case <-ctx.Done():
		return true, ctx.Err()
	}
}

// roomLoop makes room for what waits, once for all of it, as far as it
// can, and queues it again: its commit says whether there was enough. It
// returns when nothing waits. Once the cache is closing, or no keeper is
// left to say what is bound, it makes no room: what waits is queued again
// as it is.
func (c *Cache) roomLoop() {
	r := &c.room
	for {
		r.mu.Lock()
		batch, need := r.waiting, r.need
		r.waiting, r.need = nil, 0
		if len(batch) == 0 {
			r.running = false
			close(r.idle)
			r.mu.Unlock()
			return
		}
		r.mu.Unlock()
		if r.ctx.Err() == nil && len(r.keepers.list()) > 0 {
			if _, _, err := c.MakeRoom(r.ctx, need+roomMargin, r.kept); err != nil && r.ctx.Err() == nil {
				c.log.Warn("cannot make room in the cache", "err", err)
			}
		}
		for _, o := range batch {
			c.store.enqueue(o)
		}
	}
}

// startRoom and stopRoom bracket the cache's life: stopRoom waits for
// the loop, which queues what still waits again, without making room, once
// the cache is closing.
func (c *Cache) startRoom() {
	c.room.ctx, c.room.cancel = context.WithCancel(context.Background())
}

func (c *Cache) stopRoom() {
	r := &c.room
	r.mu.Lock()
	if r.cancel != nil {
		r.cancel()
	}
	r.mu.Unlock()
	r.wg.Wait()
}
