package assetsmgr

import (
	"sync"

	"github.com/voxsync/voxsync/resources"
)

// corruptHooks are told when an entry whose bytes are verified as they are
// read (inline blobs, unchanged blob files) turns out corrupt and is
// dropped: the caller that looked it up believes it held, and a Syncer
// fetches it again at once instead of at the next join.
type corruptHooks struct {
	mu   sync.Mutex // guards fs, next
	fs   map[int]func(resources.Hash)
	next int
}

func (c *corruptHooks) add(f func(resources.Hash)) (remove func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fs == nil {
		c.fs = make(map[int]func(resources.Hash))
	}
	id := c.next
	c.next++
	c.fs[id] = f
	return func() {
		c.mu.Lock()
		delete(c.fs, id)
		c.mu.Unlock()
	}
}

func (c *corruptHooks) fire(h resources.Hash) {
	if c == nil {
		return
	}
	c.mu.Lock()
	fs := make([]func(resources.Hash), 0, len(c.fs))
	for _, f := range c.fs {
		fs = append(fs, f)
	}
	c.mu.Unlock()
	for _, f := range fs {
		f(h)
	}
}

// OnCorrupt calls f (on the reading goroutine) with the hash of every entry
// that Lookup returned as a hit but whose bytes did not verify when they
// were read: the read failed with ErrHashMismatch or ErrSizeMismatch and
// the entry was dropped. Call the returned function to stop.
func (c *Cache) OnCorrupt(f func(resources.Hash)) (stop func()) { return c.corrupt.add(f) }
