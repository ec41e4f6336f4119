package session

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/voxsync/voxsync/assetsmgr"
	"github.com/voxsync/voxsync/packets"
	"github.com/voxsync/voxsync/resources"
)

// The scripted server below keeps its pending set exactly as
// server_client.go does (keyed by hash, range, manifest; freed when the
// last packet is written, on ResourceError, or on cancel of the hash) and
// records the largest it ever got.

type rk struct {
	h        resources.Hash
	off, n   uint64
	manifest bool
}

type pendingModel struct {
	mu   sync.Mutex
	set  map[rk]bool
	max  int
	over []string
	lim  int
}

func (m *pendingModel) apply(p packets.Packet) {
	m.mu.Lock()
	defer m.mu.Unlock()
	switch p := p.(type) {
	case *packets.ResourceRequest:
		for _, w := range p.Wants {
			if w.Raise {
				continue
			}
			k := rk{h: w.Hash, n: ^uint64(0), manifest: w.Manifest}
			if w.HasRange {
				k.off, k.n = w.Offset, w.Length
			}
			if !m.set[k] && len(m.set) >= m.lim {
				m.over = append(m.over, fmt.Sprintf("request %+v with %d pending (limit %d)", k.off, len(m.set), m.lim))
			}
			m.set[k] = true
			m.max = max(m.max, len(m.set))
		}
	case *packets.ResourceCancel:
		for _, h := range p.Hashes {
			for k := range m.set {
				if k.h == h {
					delete(m.set, k)
				}
			}
		}
	}
}

func (m *pendingModel) free(k rk) { m.mu.Lock(); delete(m.set, k); m.mu.Unlock() }

// A ResourceError for one chunk of a chunked fetch makes the client give up
// the fetch; the server still holds its other chunks' requests, so the
// client must cancel them before it fills the room: the server must never
// see more than max pending (it would disconnect with "limit exceeded").
func TestChunkErrorKeepsWithinMaxPending(t *testing.T) {
	const maxPending = 8
	fs := newFakeServerLimited(t, packets.CapChunked, maxPending)
	s, _, _, _ := startSyncer(t, fs.url, func(o *SyncOptions) { o.ChunkedMin = 1000; o.StallTimeout = 10 * time.Second })
	_ = s
	c := <-fs.conns
	model := &pendingModel{set: map[rk]bool{}, lim: maxPending}
	next := func() packets.Packet {
		select {
		case p := <-c.in:
			model.apply(p)
			return p
		case <-time.After(2 * time.Second):
			return nil
		}
	}
	big := randomBytes(100_000, 40)
	bb := binding("big.bin", big)
	c.send(&packets.Bind{Entries: []resources.Binding{bb}}, &packets.BindsDone{})
	var req *packets.ResourceRequest
	for req == nil {
		p := next()
		if p == nil {
			t.Fatal("no manifest request")
		}
		req, _ = p.(*packets.ResourceRequest)
	}
	model.free(rk{h: bb.Hash, n: ^uint64(0), manifest: true}) // freed before its last part
	mf, _ := fixedManifest(bb, big, 10_000)
	c.send(mf)
	// The client asks for max pending chunks.
	var chunks []packets.Want
	for len(chunks) < maxPending {
		p := next()
		if p == nil {
			t.Fatalf("only %d chunk requests", len(chunks))
		}
		if r, ok := p.(*packets.ResourceRequest); ok {
			chunks = append(chunks, r.Wants...)
		}
	}
	// Five small resources now wait for room.
	var smalls []resources.Binding
	for i := range 5 {
		d := randomBytes(100, byte(50+i))
		b := binding(fmt.Sprintf("small%d.bin", i), d)
		b.ID = resources.ResourceID(10 + i)
		smalls = append(smalls, b)
	}
	c.send(&packets.Bind{Entries: smalls}, &packets.BindsDone{})
	// The server cannot read the first chunk's file (ErrorInternal): it
	// frees that one request only, as failStream does.
	w := chunks[0]
	model.free(rk{h: w.Hash, off: w.Offset, n: w.Length})
	c.send(&packets.ResourceError{Hash: bb.Hash, Code: packets.ErrorInternal, Message: "server could not read the resource; retry later"})
	for p := next(); p != nil; p = next() {
	}
	model.mu.Lock()
	defer model.mu.Unlock()
	t.Logf("server-side pending peaked at %d (limit %d)", model.max, maxPending)
	if len(model.over) > 0 {
		t.Fatalf("a real server would disconnect with limit exceeded: %v", model.over)
	}
}

var _ = assetsmgr.ErrChunksLost
var _ = context.Background

// A chunked resource's chunks in flight fail together when its file changed
// on the server: a burst of ResourceErrors is one retry (docs/protocol.md),
// also after the first one has given up the fetch.
func TestChunkErrorBurstCountsAsOne(t *testing.T) {
	fs := newFakeServerLimited(t, packets.CapChunked, 65536)
	_, rec, _, _ := startSyncer(t, fs.url, func(o *SyncOptions) { o.ChunkedMin = 1000; o.MaxRetries = 3 })
	c := <-fs.conns
	big := randomBytes(100_000, 41)
	bb := binding("big.bin", big)
	c.send(&packets.Bind{Entries: []resources.Binding{bb}}, &packets.BindsDone{})
	expect[*packets.ResourceRequest](c) // manifest
	mf, _ := fixedManifest(bb, big, 10_000)
	c.send(mf)
	var n int
	for n < 10 {
		n += len(expect[*packets.ResourceRequest](c).Wants)
	}
	// The file changed on the server: every chunk in flight fails at once.
	for range n {
		c.send(&packets.ResourceError{Hash: bb.Hash, Code: packets.ErrorInternal, Message: "the resource changed on the server's disk"})
	}
	deadline := time.After(2 * time.Second)
	for {
		select {
		case e := <-rec.ch:
			if f, ok := e.(Failed); ok {
				t.Fatalf("one burst of %d chunk errors failed the resource: %v", n, f.Err)
			}
		case <-deadline:
			return
		}
	}
}

// A resource the game needs now gets its chunks requested before prefetch
// resources waiting for room under max pending.
func TestNeededChunksGoBeforeWaitingPrefetch(t *testing.T) {
	const maxPending = 4
	fs := newFakeServerLimited(t, packets.CapChunked, maxPending)
	big := randomBytes(100_000, 42)
	bb := binding("big.bin", big)
	s, _, _, _ := startSyncer(t, fs.url, func(o *SyncOptions) {
		o.ChunkedMin = 1000
		o.StallTimeout = time.Minute
		o.Priority = func(b resources.Binding) uint8 {
			if b.Hash == bb.Hash {
				return packets.PriorityNormal
			}
			return packets.PriorityPrefetch
		}
	})
	c := <-fs.conns
	c.send(&packets.Bind{Entries: []resources.Binding{bb}}, &packets.BindsDone{})
	expect[*packets.ResourceRequest](c) // the manifest
	smalls := map[resources.Hash][]byte{}
	var bs []resources.Binding
	for i := range 20 {
		d := randomBytes(100, byte(60+i))
		b := binding(fmt.Sprintf("small%d.bin", i), d)
		b.ID = resources.ResourceID(10 + i)
		bs = append(bs, b)
		smalls[b.Hash] = d
	}
	c.send(&packets.Bind{Entries: bs})
	var sent []packets.Want
	for len(sent) < maxPending-1 {
		sent = append(sent, expect[*packets.ResourceRequest](c).Wants...)
	}
	s.Need(bb.Key())
	mf, _ := fixedManifest(bb, big, 10_000)
	c.send(mf) // frees the manifest's slot
	id := uint32(1)
	for range 6 {
		r := expect[*packets.ResourceRequest](c)
		for _, w := range r.Wants {
			if w.Raise {
				continue
			}
			if w.HasRange {
				return // a chunk of the needed resource got the room
			}
			t.Logf("free slot went to a prefetch resource (priority %d) while the needed-now resource's chunks wait", w.Priority)
			// answer one waiting small resource; its slot frees
			d := smalls[w.Hash]
			for _, b := range bs {
				if b.Hash == w.Hash {
					id++
					c.stream(id, b, d, 100)
				}
			}
		}
	}
	t.Fatal("6 freed slots in a row went to prefetch resources; no chunk of the needed-now resource was requested")
}

// Small resources waiting for room under max pending are asked for in
// batches of an eighth of the window as slots free, not in one request
// packet per resource; a waiting resource the game needs now is asked for
// at once, batch or not.
func TestWaitingRequestsGoInBatches(t *testing.T) {
	const maxPending, total = 64, 300
	fs := newFakeServerLimited(t, 0, maxPending)
	s, _, _, _ := startSyncer(t, fs.url, nil)
	c := <-fs.conns
	// tryRecv returns the next packet from the client within d.
	tryRecv := func(d time.Duration) (packets.Packet, bool) {
		if d == 0 {
			select {
			case p := <-c.in:
				return p, true
			default:
				return nil, false
			}
		}
		select {
		case p := <-c.in:
			return p, true
		case <-time.After(d):
			return nil, false
		}
	}
	bs, byHash, data := smallBindings("r", total, 1)
	c.send(&packets.Bind{Entries: bs}, &packets.BindsDone{})
	var asked []packets.Want
	requests := 0
	for len(asked) < maxPending {
		asked = append(asked, expect[*packets.ResourceRequest](c).Wants...)
		requests++
	}
	id := uint32(0)
	answer := func() {
		w := asked[0]
		asked = asked[1:]
		id++
		c.stream(id, byHash[w.Hash], data[w.Hash], 100)
	}

	// One slot free: less than a batch, so nothing is asked...
	answer()
	if p, ok := tryRecv(200 * time.Millisecond); ok {
		if _, isReq := p.(*packets.ResourceRequest); isReq {
			t.Fatalf("one slot free: the client asked for more at once, want it to wait for a batch")
		}
	}
	// ...unless the game needs a waiting resource now.
	needed := bs[total-1]
	s.Need(needed.Key())
	r := expect[*packets.ResourceRequest](c)
	requests++
	if len(r.Wants) != 1 || r.Wants[0].Hash != needed.Hash {
		t.Fatalf("after Need: request for %d hashes, want only the needed one", len(r.Wants))
	}
	asked = append(asked, r.Wants...)

	for loaded := 1; loaded < total; {
		if len(asked) == 0 {
			asked = append(asked, expect[*packets.ResourceRequest](c).Wants...)
			requests++
			continue
		}
		answer()
		loaded++
	drain:
		for {
			p, ok := tryRecv(0)
			if !ok {
				break drain
			}
			if r, ok := p.(*packets.ResourceRequest); ok {
				asked = append(asked, r.Wants...)
				requests++
			}
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.WaitSynced(ctx); err != nil {
		t.Fatalf("not synced: %v", err)
	}
	// One per resource beyond the window would be 236; in batches of 8
	// it is ~30.
	if max := 2 + (total-maxPending)/(maxPending/8) + 5; requests > max {
		t.Errorf("%d request packets for %d resources under a window of %d, want at most %d", requests, total, maxPending, max)
	}
	t.Logf("%d request packets for %d resources", requests, total)
}

// Small resources waiting for room are not held back behind a chunked
// download of the same priority while requests wait for a batch (a
// reviewer's test). The server answers requests one at a time, oldest
// first; the test counts the chunk requests the client makes before the
// first small resource that had to wait for room is asked for.
func TestWaitingHashesNotStarvedByChunks(t *testing.T) {
	const maxPending, smalls, nChunks = 16, 40, 100
	fs := newFakeServerLimited(t, packets.CapChunked, maxPending)
	s, _, _, _ := startSyncer(t, fs.url, func(o *SyncOptions) { o.ChunkedMin = 1000; o.StallTimeout = time.Minute })
	c := <-fs.conns
	big := randomBytes(nChunks*4096, 77)
	bb := binding("big.bin", big)
	c.send(&packets.Bind{Entries: []resources.Binding{bb}})
	if w := expect[*packets.ResourceRequest](c).Wants; len(w) != 1 || !w[0].Manifest {
		t.Fatalf("want the manifest request first, got %+v", w)
	}
	bs, byHash, data := smallBindings("s", smalls, 10)
	c.send(&packets.Bind{Entries: bs}, &packets.BindsDone{})
	var queue []packets.Want // asked, not yet answered, oldest first
	smallsAsked, chunksAsked, chunksBeforeWaiting := 0, 0, -1
	take := func(p packets.Packet) {
		r, ok := p.(*packets.ResourceRequest)
		if !ok {
			return
		}
		for _, w := range r.Wants {
			if w.Raise {
				continue
			}
			queue = append(queue, w)
			if w.HasRange {
				chunksAsked++
			} else if !w.Manifest {
				smallsAsked++
				if smallsAsked == maxPending && chunksBeforeWaiting < 0 {
					chunksBeforeWaiting = chunksAsked
				}
			}
		}
	}
	for len(queue) < maxPending-1 {
		take(expect[*packets.ResourceRequest](c))
	}
	mf, _ := fixedManifest(bb, big, 4096)
	c.send(mf) // answers the manifest: its slot is free
	id := uint32(0)
	for answered := 0; answered < smalls+nChunks; answered++ {
		// Take what the client asks meanwhile: everything until it
		// pauses for 5 ms, or until its first request (within 2 s) if
		// there is nothing to answer.
	drain:
		for {
			wait := 5 * time.Millisecond
			if len(queue) == 0 {
				wait = 2 * time.Second
			}
			select {
			case p := <-c.in:
				take(p)
			case <-time.After(wait):
				break drain
			}
		}
		if len(queue) == 0 {
			t.Fatalf("stalled after %d answers: nothing asked (smalls asked %d, chunks asked %d, stats %+v)", answered, smallsAsked, chunksAsked, s.Stats())
		}
		w := queue[0]
		queue = queue[1:]
		id++
		if w.Manifest {
			c.send(mf)
			answered--
			continue
		}
		if w.HasRange {
			c.send(&packets.InitResSend{Stream: id, Hash: bb.Hash, Size: bb.Size, Offset: w.Offset, Length: w.Length, Ref: bb.Ref},
				&packets.ChunkSend{Stream: id, Offset: w.Offset, Last: true, Data: big[w.Offset : w.Offset+w.Length]})
		} else {
			c.stream(id, byHash[w.Hash], data[w.Hash], 100)
		}
	}
	t.Logf("chunk requests before the first waiting small resource was asked for: %d of %d", chunksBeforeWaiting, nChunks)
	if chunksBeforeWaiting < 0 || chunksBeforeWaiting > maxPending {
		t.Errorf("the %d small resources that waited for room were asked for only after %d of the big resource's %d chunks (same priority): starved by chunks", smalls-maxPending+1, chunksBeforeWaiting, nChunks)
	}
}

// A hash the game needs now that misses the cache after its lookup (bound
// needed-now, or raised by Need while it was looked up) goes ahead of the
// hashes waiting for room, not behind them.
func TestNeededNowAfterLookupJumpsTheQueue(t *testing.T) {
	const maxPending, total = 16, 100
	bs, _, _ := smallBindings("q", total, 1)
	urgent := bs[total-1].Hash // bound last, after every other
	fs := newFakeServerLimited(t, 0, maxPending)
	startSyncer(t, fs.url, func(o *SyncOptions) {
		o.Priority = func(b resources.Binding) uint8 {
			if b.Hash == urgent {
				return packets.PriorityNow
			}
			return packets.PriorityNormal
		}
	})
	c := <-fs.conns
	c.send(&packets.Bind{Entries: bs}, &packets.BindsDone{})
	var asked []packets.Want
	for len(asked) < maxPending {
		asked = append(asked, expect[*packets.ResourceRequest](c).Wants...)
	}
	for _, w := range asked {
		if w.Hash == urgent {
			if w.Priority != packets.PriorityNow {
				t.Fatalf("needed-now hash asked at priority %d", w.Priority)
			}
			return
		}
	}
	t.Fatalf("the needed-now hash, bound last, was not among the first %d requests: it waits behind %d others", maxPending, total-maxPending)
}

// smallBindings makes n distinct 100-byte resources named prefix0.bin …,
// with ids from firstID, and returns their bindings in order, by hash, and
// their bytes by hash.
func smallBindings(prefix string, n, firstID int) ([]resources.Binding, map[resources.Hash]resources.Binding, map[resources.Hash][]byte) {
	var bs []resources.Binding
	byHash := map[resources.Hash]resources.Binding{}
	data := map[resources.Hash][]byte{}
	for i := range n {
		d := randomBytes(100, byte(i))
		d[0], d[1] = byte(i), byte(i>>8)
		b := binding(fmt.Sprintf("%s%d.bin", prefix, i), d)
		b.ID = resources.ResourceID(firstID + i)
		bs = append(bs, b)
		byHash[b.Hash], data[b.Hash] = b, d
	}
	return bs, byHash, data
}
