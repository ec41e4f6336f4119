package assetsmgr

import "sync"

// hooks is a set of callbacks that callers register and remove while the
// cache calls them, on its own goroutines.
type hooks[F any] struct {
	mu   sync.Mutex // guards fs, next
	fs   map[int]F
	next int
}

// add registers f until remove is called.
func (c *hooks[F]) add(f F) (remove func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fs == nil {
		c.fs = make(map[int]F)
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

// list returns what is registered, to be called without the lock held: a
// callback may add or remove hooks.
func (c *hooks[F]) list() []F {
	c.mu.Lock()
	defer c.mu.Unlock()
	fs := make([]F, 0, len(c.fs))
	for _, f := range c.fs {
		fs = append(fs, f)
	}
	return fs
}
