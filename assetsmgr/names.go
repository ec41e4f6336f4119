package assetsmgr

import (
	"github.com/voxsync/voxsync/resources"
)

type blobName struct {
	hash resources.Hash
	loc  resources.Loc
}

// Name records that the cached blob h was loaded as loc (type and
// domain:key), for listing and filtering the cache. Call it when a
// resource is loaded; it is queued and batched, and ignored for blobs the
// cache does not hold (pack hits). Each name is written once per Cache.
func (c *Cache) Name(h resources.Hash, loc resources.Loc) {
	n := blobName{h, loc}
	c.namesMu.Lock()
	if c.named[n] {
		c.namesMu.Unlock()
		return
	}
	if c.named == nil {
		c.named = make(map[blobName]bool)
	}
	c.named[n] = true
	c.namesMu.Unlock()
	c.store.name(n)
}

// nameWith has the store op o, which stores a blob, record names with it:
// one commit, where Name after the blob's done would cost a second one (a
// second fsync for every hot-reloaded resource). They count as written
// once o commits.
func (c *Cache) nameWith(o *op, locs []resources.Loc) {
	if len(locs) == 0 {
		return
	}
	// Every name, even one written before in this process: the blob may
	// be stored again after an eviction or a corrupt copy's drop, which
	// took its names with it.
	for _, loc := range locs {
		o.names = append(o.names, blobName{o.hash, loc})
	}
	done := o.done
	o.done = func(err error) {
		if err == nil {
			c.namesMu.Lock()
			if c.named == nil {
				c.named = make(map[blobName]bool)
			}
			for _, n := range o.names {
				c.named[n] = true
			}
			c.namesMu.Unlock()
		}
		if done != nil {
			done(err)
		}
	}
}
