package session

import (
	"unique"

	"github.com/voxsync/voxsync/packs"
	"github.com/voxsync/voxsync/resources"
)

// preloadSet is the keys of one view that match the server's preload
// patterns, with their content in that view. It is built once per view and
// never changed, so every client shares it: a client that uses the whole
// preload set (nearly every client) holds a pointer where it would
// otherwise hold a use count and a told hash per key — at 1,000 clients
// and thousands of preloaded resources, the largest part of the server's
// memory.
type preloadSet struct {
	keys map[resources.Key]unique.Handle[resources.Hash]
}

func (p *preloadSet) has(k resources.Key) bool {
	_, ok := p.keys[k]
	return ok
}

// noHash in bindings.told means "not told", overriding a base that was.
var noHash unique.Handle[resources.Hash]

// bindings is what one client uses and what it was told about each key,
// so that reconciling the two yields its Binds and Losts. Keys of the
// preload set are used implicitly, and what the client was told about
// them is the base set plus the differences since: a client costs memory
// in proportion to its game-driven uses and to what reloads changed, not
// to the number of preloaded resources. Guarded by Client.mu.
type bindings struct {
	pre  *preloadSet     // the preload set of the client's view: one use of each key
	uses *resources.Uses // uses on top of the preload set (Client.Use, world regions)
	// base is the preload set the client was told in full at its first
	// flush (nil before); told holds the differences from it, noHash
	// meaning a key of base that is no longer told.
	base    *preloadSet
	told    map[resources.Key]unique.Handle[resources.Hash]
	bound   int  // keys told
	bindAll bool // the first flush is due: bind all of pre at once
	dirty   map[resources.Key]struct{}
	// rechecked counts keys reconciled over the session: what a reload or
	// a Move cost this client (tests hold reloads to what changed).
	rechecked int
}

func newBindings(pre *preloadSet) bindings {
	return bindings{
		pre:     pre,
		uses:    resources.NewUses(),
		told:    make(map[resources.Key]unique.Handle[resources.Hash]),
		dirty:   make(map[resources.Key]struct{}),
		bindAll: true,
	}
}

func (b *bindings) inUse(k resources.Key) bool {
	return b.pre.has(k) || b.uses.InUse(k.Type, k.ID)
}

// toldOf returns what the client was last told about k, if anything.
func (b *bindings) toldOf(k resources.Key) (unique.Handle[resources.Hash], bool) {
	if h, ok := b.told[k]; ok {
		return h, h != noHash
	}
	if b.base != nil {
		h, ok := b.base.keys[k]
		return h, ok
	}
	return noHash, false
}

// setTold records that the client was told h about k (or, with ok false,
// that k was lost), keeping only what differs from base.
func (b *bindings) setTold(k resources.Key, h unique.Handle[resources.Hash], ok bool) {
	if _, was := b.toldOf(k); was != ok {
		if ok {
			b.bound++
		} else {
			b.bound--
		}
	}
	var baseH unique.Handle[resources.Hash]
	inBase := false
	if b.base != nil {
		baseH, inBase = b.base.keys[k]
	}
	switch {
	case ok && inBase && baseH == h, !ok && !inBase:
		delete(b.told, k)
	case ok:
		b.told[k] = h
	default:
		b.told[k] = noHash
	}
}

// use adds a game-driven use of k; the first makes k due a recheck.
func (b *bindings) use(k resources.Key) error {
	first, err := b.uses.Use(k.Type, k.ID)
	if first {
		b.dirty[k] = struct{}{}
	}
	return err
}

// release removes a game-driven use of k; the last makes k due a recheck.
func (b *bindings) release(k resources.Key) error {
	last, err := b.uses.Release(k.Type, k.ID)
	if last {
		b.dirty[k] = struct{}{}
	}
	return err
}

// viewChanged moves the bindings to a view's preload set pre: of the keys
// whose content changed, appeared or went, those the client uses (under
// pre) or was told about are due a recheck. It reports whether any are.
func (b *bindings) viewChanged(pre *preloadSet, changed []resources.Key) bool {
	b.pre = pre
	n := len(b.dirty)
	for _, k := range changed {
		if _, told := b.toldOf(k); told || b.inUse(k) {
			b.dirty[k] = struct{}{}
		}
	}
	return len(b.dirty) > n
}

// reconcile turns what is due into Bind and Lost entries for view v, by
// comparing what the client was told with what it uses now.
func (b *bindings) reconcile(v *packs.View) (binds []*packs.Entry, losts []resources.Key) {
	if b.bindAll {
		// The join: every preloaded key, told once as a shared base.
		b.bindAll = false
		binds = make([]*packs.Entry, 0, len(b.pre.keys))
		for k := range b.pre.keys {
			if e, ok := v.Get(k); ok {
				binds = append(binds, e)
			}
		}
		b.base, b.bound = b.pre, len(b.pre.keys)
		b.rechecked += len(b.pre.keys)
	}
	b.rechecked += len(b.dirty)
	for k := range b.dirty {
		told, wasTold := b.toldOf(k)
		e, exists := v.Get(k)
		if exists && b.inUse(k) {
			if !wasTold || told != e.Content {
				binds = append(binds, e)
				b.setTold(k, e.Content, true)
			}
			continue
		}
		if wasTold {
			losts = append(losts, k)
			b.setTold(k, noHash, false)
		}
	}
	if len(b.dirty) > 256 {
		// clear keeps a map's buckets; after thousands of keys that would
		// be an idle client's largest allocation.
		b.dirty = make(map[resources.Key]struct{})
	} else {
		clear(b.dirty)
	}
	return binds, losts
}

// eachTold calls f for every key the client was told about.
func (b *bindings) eachTold(f func(resources.Key, unique.Handle[resources.Hash])) {
	if b.base != nil {
		for k, h := range b.base.keys {
			if _, over := b.told[k]; !over {
				f(k, h)
			}
		}
	}
	for k, h := range b.told {
		if h != noHash {
			f(k, h)
		}
	}
}
