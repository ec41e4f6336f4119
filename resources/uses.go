package resources

import "fmt"

// Uses counts one client's uses of resources (the design's ResUses). The
// session calls Use and Release as content enters and leaves the client's
// world; the first use of a (type, id) is when a Bind is due and the last
// release is when a Lost is due.
//
// Uses is not safe for concurrent use; the session that owns it serialises
// access.
type Uses struct {
	counts [NumTypes]map[ResourceID]uint32
}

// NewUses returns an empty use table.
func NewUses() *Uses {
	u := &Uses{}
	for i := range u.counts {
		u.counts[i] = make(map[ResourceID]uint32)
	}
	return u
}

// Use adds one use of (t, id) and reports whether it was the first (0→1).
func (u *Uses) Use(t Type, id ResourceID) (first bool, err error) {
	if !t.Valid() {
		return false, fmt.Errorf("use %s: %w", Key{t, id}, ErrInvalidType)
	}
	n := u.counts[t][id]
	if n == ^uint32(0) {
		return false, fmt.Errorf("use %s: use count overflow", Key{t, id})
	}
	u.counts[t][id] = n + 1
	return n == 0, nil
}

// Release removes one use of (t, id) and reports whether it was the last
// (1→0). Releasing something not in use is an error and changes nothing: a
// negative count would hide a bookkeeping bug and send a Lost twice.
func (u *Uses) Release(t Type, id ResourceID) (last bool, err error) {
	if !t.Valid() {
		return false, fmt.Errorf("release %s: %w", Key{t, id}, ErrInvalidType)
	}
	n, ok := u.counts[t][id]
	if !ok {
		return false, fmt.Errorf("release %s: %w", Key{t, id}, ErrNotInUse)
	}
	if n == 1 {
		delete(u.counts[t], id)
		return true, nil
	}
	u.counts[t][id] = n - 1
	return false, nil
}

// Count returns the current number of uses of (t, id).
func (u *Uses) Count(t Type, id ResourceID) uint32 {
	if !t.Valid() {
		return 0
	}
	return u.counts[t][id]
}

// InUse reports whether (t, id) has at least one use.
func (u *Uses) InUse(t Type, id ResourceID) bool { return u.Count(t, id) > 0 }

// Len returns the number of distinct (type, id) pairs in use.
func (u *Uses) Len() int {
	n := 0
	for _, m := range u.counts {
		n += len(m)
	}
	return n
}

// Each calls f for every (type, id) in use, in no particular order.
func (u *Uses) Each(f func(Key)) {
	for t, m := range u.counts {
		for id := range m {
			f(Key{Type(t), id})
		}
	}
}
