package assetsmgr

import "github.com/voxsync/voxsync/resources"

// corruptHooks are told when an entry whose bytes are verified as they are
// read (inline blobs, unchanged blob files) turns out corrupt and is
// dropped: the caller that looked it up believes it held, and a Syncer
// fetches it again at once instead of at the next join.
type corruptHooks struct{ hooks[func(resources.Hash)] }

func (c *corruptHooks) fire(h resources.Hash) {
	if c == nil {
		return
	}
	for _, f := range c.list() {
		f(h)
	}
}

// OnCorrupt calls f (on the reading goroutine) with the hash of every entry
// that Lookup returned as a hit but whose bytes did not verify when they
// were read: the read failed with ErrHashMismatch or ErrSizeMismatch and
// the entry was dropped. Call the returned function to stop.
func (c *Cache) OnCorrupt(f func(resources.Hash)) (stop func()) { return c.corrupt.add(f) }
