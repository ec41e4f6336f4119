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
