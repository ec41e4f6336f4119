package session

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/voxsync/voxsync/assetsmgr"
	"github.com/voxsync/voxsync/manifest"
	"github.com/voxsync/voxsync/mirror"
	"github.com/voxsync/voxsync/packets"
	"github.com/voxsync/voxsync/resources"
)

// The mirrors are the first source of what a session fetches: whole
// resources of up to manifest.MaxChunkLen (published whole) and the chunks
// of large ones. The game server sends manifests, and whatever no mirror
// can serve: an object a mirror lacks, one it fails to send within its
// lease, or queued work while every mirror rests after failures or was
// demoted for corrupt bytes. When the server offers help (Mirrors.Help) it
// also takes work from slow mirrors (stealMirrorWorkLocked). Its uplink is
// what mirrors exist to spare, so it never races a mirror that keeps up.
// Every byte, whatever its source, is verified by the cache as it is
// stored.

// mirrorWork is one object for the mirrors: a whole resource (chunk < 0)
// or chunk `chunk` of a chunked fetch.
type mirrorWork struct {
	hash  resources.Hash
	chunk int
	fetch *chunkFetch
}

// mirrorSession is one session's mirrors and the work queued for them, in
// three priority classes like the server's (now, normal, prefetch).
type mirrorSession struct {
	pool   *mirror.Pool
	help   bool                     // the server serves what slow mirrors have not got to
	queue  [numClasses][]mirrorWork // guarded by Syncer.mu; see queueOf
	wake   chan struct{}            // cap pool.Slots(): work was queued
	closed bool                     // guarded by Syncer.mu; wake is closed with it
	// Guarded by Syncer.mu: work being fetched, since when (the
	// lease the game server may take over); the bytes queued; and the
	// mirrors' measured rate, sampled as in-band work is filled.
	leased      map[mirrorWork]time.Time
	queuedBytes int64
	started     time.Time
	rateAt      time.Time
	rateBytes   int64
	rate        float64 // bytes a second, 0 until measured
}

// workSizeLocked is the bytes of w.
func (s *Syncer) workSizeLocked(w mirrorWork) int64 {
	if w.chunk >= 0 {
		return int64(w.fetch.m.Chunks[w.chunk].Length)
	}
	if hs := s.hashes[w.hash]; hs != nil {
		return int64(hs.size)
	}
	return 0
}

// queueOf is the mirror queue for a priority: the most urgent class first.
func queueOf(p uint8) int { return numClasses - 1 - int(classOf(p)) }

// maxMirrorWorkers caps the requests a client has at mirrors at once, so
// their buffers (≤ 1 MiB each) stay within a few dozen MiB however many
// mirrors a server names.
const maxMirrorWorkers = 32

// startMirrors takes the session's Mirrors packet: its pool of mirrors and
// their workers start. A session has one: a later Mirrors is ignored, so a
// server cannot make a client open pools (and connections) without end or
// wipe out the demotion of a mirror that sent corrupt bytes.
func (s *Syncer) startMirrors(ctx context.Context, out *outbox, p *packets.Mirrors) {
	urls := p.URLs
	s.mu.Lock()
	if s.mirrorsSeen {
		s.mu.Unlock()
		s.log.Warn("server sent a second Mirrors packet; ignored")
		return
	}
	s.mirrorsSeen = true
	public := s.serverPublic
	s.mu.Unlock()
	pool := mirror.NewPool(urls, mirror.Options{Logger: s.log, Parallel: s.opts.MirrorParallel, PublicOnly: public})
	if pool.Len() == 0 {
		if len(urls) > 0 {
			s.log.Warn("no usable mirror; fetching everything from the game server", "mirrors", urls)
		}
		return
	}
	ms := &mirrorSession{pool: pool, help: p.Help, wake: make(chan struct{}, pool.Slots()), leased: make(map[mirrorWork]time.Time), started: time.Now()}
	s.mu.Lock()
	s.mirrors = ms
	s.mu.Unlock()
	s.log.Info("fetching from mirrors and the game server", "mirrors", pool.Len())
	for range min(pool.Slots(), maxMirrorWorkers) {
		out.wg.Go(func() { s.mirrorWorker(ctx, out, ms) })
	}
}

// mirrorsGone sends what was queued for a pool that is gone to the server.
func (s *Syncer) mirrorsGone(out *outbox, ms *mirrorSession) {
	s.mu.Lock()
	q := ms.queue
	ms.queue = [numClasses][]mirrorWork{}
	s.mu.Unlock()
	for _, c := range q {
		for _, w := range c {
			s.mirrorUnavailable(out, w)
		}
	}
}

func (ms *mirrorSession) len() int {
	n := 0
	for _, q := range ms.queue {
		n += len(q)
	}
	return n
}

// popMirrorWorkLocked takes the most urgent queued work off ms's queue.
func (s *Syncer) popMirrorWorkLocked(ms *mirrorSession) (mirrorWork, bool) {
	for c, q := range ms.queue {
		if len(q) == 0 {
			continue
		}
		w := q[0]
		q[0] = mirrorWork{}
		ms.queue[c] = q[1:]
		if len(ms.queue[c]) == 0 {
			ms.queue[c] = nil
		}
		ms.queuedBytes -= s.workSizeLocked(w)
		return w, true
	}
	return mirrorWork{}, false
}

// signal wakes up to n workers; s.mu is held, so wake is open.
func (ms *mirrorSession) signal(n int) {
	for range n {
		select {
		case ms.wake <- struct{}{}:
		default:
			return
		}
	}
}

// stopMirrors ends the session's mirror workers once the session's
// context is cancelled (which abandons what they are fetching), and keeps
// the pool's counts for Stats.
func (s *Syncer) stopMirrors(out *outbox) {
	s.mu.Lock()
	ms := s.mirrors
	if ms != nil {
		ms.closed = true
		close(ms.wake)
	}
	s.mu.Unlock()
	if ms == nil {
		return
	}
	out.wg.Wait() // the workers are the session's: done when it is
	ms.pool.Close()
	s.mu.Lock()
	s.lastMirrors = ms.pool.Stats()
	for _, m := range s.lastMirrors {
		s.pastMirrorWire += m.Received
	}
	s.mirrors = nil
	s.mu.Unlock()
}

// toMirrorsLocked queues work for the mirrors; false when the session has
// none that will be asked again, and the caller fetches in-band. Work
// queued while every mirror rests is taken by the game server meanwhile.
func (s *Syncer) toMirrorsLocked(prio uint8, ws ...mirrorWork) bool {
	ms := s.mirrors
	if ms == nil || ms.closed {
		return false
	}
	if _, ok := ms.pool.UsableAt(); !ok {
		return false
	}
	c := queueOf(prio)
	ms.queue[c] = append(ms.queue[c], ws...)
	for _, w := range ws {
		ms.queuedBytes += s.workSizeLocked(w)
	}
	ms.signal(len(ws))
	return true
}

// fetchLocked starts fetching h, which is phaseRequested and not yet
// asked anywhere: from the mirrors when they serve it whole, else it
// reports true and the caller requests it from the game server.
func (s *Syncer) fetchLocked(h resources.Hash, hs *hashState) (inBand bool) {
	if s.wholeViaMirrorLocked(hs) && s.toMirrorsLocked(hs.prio, mirrorWork{hash: h, chunk: -1}) {
		hs.atMirror = true
		return false
	}
	return true
}

// wholeViaMirrorLocked reports whether hs is fetched from the mirrors as
// one object: it is published whole (up to manifest.MaxChunkLen) and not
// fetched by chunks.
func (s *Syncer) wholeViaMirrorLocked(hs *hashState) bool {
	return s.mirrors != nil && hs.size <= manifest.MaxChunkLen &&
		!(s.caps&packets.CapChunked != 0 && int64(hs.size) > s.opts.ChunkedMin)
}

// nextMirrorWork returns the most urgent work queued; false once the
// session ends or every mirror was demoted. While every mirror rests after
// failures it waits, and the game server takes queued work meanwhile at its
// own pace (stealMirrorWorkLocked): a mirror's hiccup does not send the
// whole queue to the server.
func (s *Syncer) nextMirrorWork(out *outbox, ms *mirrorSession) (mirrorWork, bool) {
	for {
		at, ok := ms.pool.UsableAt()
		if !ok {
			// Every mirror sent corrupt data: the server serves the rest.
			s.mirrorsGone(out, ms)
			return mirrorWork{}, false
		}
		if d := time.Until(at); d > 0 {
			t := time.NewTimer(d)
			select {
			case <-t.C:
			case <-out.done:
				t.Stop()
				return mirrorWork{}, false
			}
			continue
		}
		s.mu.Lock()
		if ms.closed {
			s.mu.Unlock()
			return mirrorWork{}, false
		}
		if w, ok := s.popMirrorWorkLocked(ms); ok {
			ms.leased[w] = time.Now()
			s.mu.Unlock()
			return w, true
		}
		s.mu.Unlock()
		select {
		case _, ok := <-ms.wake:
			if !ok {
				return mirrorWork{}, false
			}
		case <-out.done:
			return mirrorWork{}, false
		}
	}
}

func (s *Syncer) mirrorWorker(ctx context.Context, out *outbox, ms *mirrorSession) {
	for {
		w, ok := s.nextMirrorWork(out, ms)
		if !ok {
			return
		}
		var err error
		if w.chunk < 0 {
			err = s.mirrorWhole(ctx, ms, w)
		} else {
			err = s.mirrorChunk(ctx, out, ms, w)
		}
		s.mu.Lock()
		delete(ms.leased, w)
		s.mu.Unlock()
		switch {
		case err == nil, errors.Is(err, errNotWanted), ctx.Err() != nil:
		case errors.Is(err, mirror.ErrUnavailable):
			s.mirrorUnavailable(out, w)
		default:
			s.mirrorStoreFailed(out, w, err)
		}
	}
}

// errNotWanted: the work is no longer wanted (lost, replaced, fetched
// otherwise) by the time a mirror answered.
var errNotWanted = errors.New("no longer wanted")

// mirrorWhole fetches a whole resource from the mirrors and stores it.
func (s *Syncer) mirrorWhole(ctx context.Context, ms *mirrorSession, w mirrorWork) error {
	s.mu.Lock()
	hs := s.hashes[w.hash]
	if hs == nil || !hs.atMirror || hs.state != phaseRequested {
		s.mu.Unlock()
		return errNotWanted
	}
	size := int64(hs.size)
	s.mu.Unlock()
	return ms.pool.Get(ctx, w.hash, size, nil, func(b []byte) error {
		s.mu.Lock()
		if hs := s.hashes[w.hash]; hs == nil || !hs.atMirror || hs.state != phaseRequested {
			s.mu.Unlock()
			return errNotWanted
		}
		hs.state = phaseStoring
		names := s.namesLocked(hs)
		s.mu.Unlock()
		_, err := withRoom(ctx, s, int64(len(b)), func() (struct{}, error) {
			return struct{}{}, s.opts.Cache.Put(w.hash, b, func(err error) { s.stored(w.hash, err) }, names...)
		})
		s.mu.Lock()
		defer s.mu.Unlock()
		if err != nil {
			if hs := s.hashes[w.hash]; hs != nil && hs.state == phaseStoring {
				hs.state = phaseRequested
			}
			if errors.Is(err, assetsmgr.ErrHashMismatch) {
				return fmt.Errorf("%w: %w", mirror.ErrCorrupt, err)
			}
			return err
		}
		if hs := s.hashes[w.hash]; hs != nil {
			hs.atMirror = false
		}
		s.countMirrorLocked(len(b))
		return nil
	})
}

// mirrorChunk fetches one chunk of a chunked fetch from the mirrors and
// writes it to the fetch's partial, which verifies it.
func (s *Syncer) mirrorChunk(ctx context.Context, out *outbox, ms *mirrorSession, w mirrorWork) error {
	s.mu.Lock()
	hs := s.hashes[w.hash]
	f := w.fetch
	if hs == nil || hs.fetch != f || !f.mirrored[w.chunk] || f.partial == nil {
		s.mu.Unlock()
		return errNotWanted
	}
	c := f.m.Chunks[w.chunk]
	part := f.partial
	s.mu.Unlock()
	buf := getChunkBuf(int(c.Length))
	defer putChunkBuf(buf)
	err := ms.pool.Get(ctx, c.Hash, int64(c.Length), buf, func(b []byte) error {
		s.mu.Lock()
		wanted := f.mirrored[w.chunk]
		s.mu.Unlock()
		if !wanted {
			return errNotWanted // the game server took it over
		}
		if err := part.Put(w.chunk, b); err != nil {
			// A mirror serves objects by name: bytes that are the chunk
			// its name says but do not verify under the game server's
			// manifest are the manifest's fault, counted against the
			// resource, not the mirror.
			if errors.Is(err, assetsmgr.ErrSizeMismatch) || errors.Is(err, assetsmgr.ErrHashMismatch) && resources.Sum(b) != c.Hash {
				return fmt.Errorf("%w: %w", mirror.ErrCorrupt, err)
			}
			return err
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		if !f.mirrored[w.chunk] {
			// Taken over meanwhile: the same verified bytes are
			// written; the game server's copy completes the chunk.
			return errNotWanted
		}
		delete(f.mirrored, w.chunk)
		s.countMirrorLocked(len(b))
		return nil
	})
	if err == nil {
		s.chunkStored(out, &assembly{hash: w.hash, chunk: w.chunk, fetch: f}, nil)
	}
	return err
}

func (s *Syncer) countMirrorLocked(n int) {
	s.stats.BytesFromMirrors += int64(n)
	s.stats.BytesReceived += int64(n)
	s.stats.MirrorObjects++
	s.progressed = true
}

// mirrorUnavailable sends work no mirror could serve to the game server.
func (s *Syncer) mirrorUnavailable(out *outbox, w mirrorWork) {
	s.mu.Lock()
	hs := s.hashes[w.hash]
	if hs == nil {
		s.mu.Unlock()
		return
	}
	if w.chunk < 0 {
		if !hs.atMirror || hs.state != phaseRequested {
			s.mu.Unlock()
			return
		}
		hs.atMirror = false
		s.mu.Unlock()
		s.request(out, []resources.Hash{w.hash})
		return
	}
	f := w.fetch
	if hs.fetch != f || !f.mirrored[w.chunk] {
		s.mu.Unlock()
		return
	}
	s.chunkInBandLocked(f, w.chunk)
	s.mu.Unlock()
	s.pumpRequests(out)
}

// chunkInBandLocked moves chunk i of f from the mirrors to the game
// server's list of chunks to request.
func (s *Syncer) chunkInBandLocked(f *chunkFetch, i int) {
	delete(f.mirrored, i)
	f.todo = append(f.todo, i)
	if !slices.Contains(s.fetching, f.hash) {
		s.fetching = append(s.fetching, f.hash)
	}
}

// mirrorStoreFailed handles bytes a mirror served that the cache could not
// keep (a full or read-only disk): the resource fails as for any source.
func (s *Syncer) mirrorStoreFailed(out *outbox, w mirrorWork, err error) {
	if w.chunk >= 0 {
		s.mu.Lock()
		delete(w.fetch.mirrored, w.chunk)
		s.mu.Unlock()
		s.chunkStored(out, &assembly{hash: w.hash, chunk: w.chunk, fetch: w.fetch}, err)
		return
	}
	s.mu.Lock()
	hs := s.hashes[w.hash]
	if hs == nil || !hs.atMirror {
		s.mu.Unlock()
		return
	}
	hs.atMirror = false
	s.failHashAndUnlock(hs, w.hash, "cannot store resource", err)
}

// stealMirrorWorkLocked lets the game server take work from the mirrors
// when its own backlog (requests waiting for room, chunks not yet
// requested) runs low, up to stealBytes at a time, most urgent first:
//
//   - queued work, while every mirror rests after failures, or while the
//     mirrors are slow: at their measured rate the queue would take more
//     than slowMirrors (a mirror far away, or overloaded);
//   - work a mirror has had for over takeoverAfter, once nothing is queued
//     (the end of a sync: one stuck request must not hold it up for its
//     whole lease). The mirror's answer, if it comes, is then discarded.
//
// The caller is filling the in-band window, which it does as in-band work
// completes and on every tick, so the server takes work at the pace it
// serves it, and what it has not taken is still the mirrors'. A healthy
// mirror is never raced: the server's uplink is what mirrors spare.
func (s *Syncer) stealMirrorWorkLocked() {
	ms := s.mirrors
	if ms == nil || ms.closed {
		return
	}
	now := time.Now()
	if ms.rateAt.IsZero() {
		ms.rateAt, ms.rateBytes = now, s.stats.BytesFromMirrors
	} else if d := now.Sub(ms.rateAt); d >= 250*time.Millisecond {
		r := float64(s.stats.BytesFromMirrors-ms.rateBytes) / d.Seconds()
		ms.rate = (ms.rate + r) / 2
		ms.rateAt, ms.rateBytes = now, s.stats.BytesFromMirrors
	}
	backlog := len(s.waiting)
	for _, h := range s.fetching {
		if hs := s.hashes[h]; hs != nil && hs.fetch != nil {
			backlog += len(hs.fetch.todo)
		}
	}
	if backlog >= stealBelow {
		return
	}
	var moved int64
	if ms.len() > 0 {
		slow := ms.help && now.Sub(ms.started) >= slowMirrors &&
			float64(ms.queuedBytes) > ms.rate*slowMirrors.Seconds()
		if !slow && ms.pool.Usable() {
			return
		}
		for moved < stealBytes {
			w, ok := s.popMirrorWorkLocked(ms)
			if !ok {
				break
			}
			if s.takeWorkLocked(w) {
				moved += s.workSizeLocked(w)
			}
		}
		return
	}
	if s.outstanding > 0 || !ms.help {
		return
	}
	for w, since := range ms.leased {
		if moved >= stealBytes {
			break
		}
		if now.Sub(since) < takeoverAfter {
			continue
		}
		delete(ms.leased, w)
		if s.takeWorkLocked(w) {
			moved += s.workSizeLocked(w)
		}
	}
}

// takeWorkLocked moves mirror work to the game server's lists; false if it
// is no longer wanted.
func (s *Syncer) takeWorkLocked(w mirrorWork) bool {
	hs := s.hashes[w.hash]
	if hs == nil {
		return false
	}
	if w.chunk < 0 {
		if !hs.atMirror || hs.state != phaseRequested {
			return false
		}
		hs.atMirror, hs.queued = false, true
		s.queueLocked(w.hash, hs.prio)
		return true
	}
	if hs.fetch != w.fetch || !w.fetch.mirrored[w.chunk] {
		return false
	}
	s.chunkInBandLocked(w.fetch, w.chunk)
	return true
}

// How the game server helps the mirrors: it takes stealBytes at a time
// (about its chunk window) when its own backlog is under stealBelow; queued
// work when the mirrors would take over slowMirrors to drain their queue;
// work in flight at a mirror for over takeoverAfter once nothing is queued.
const (
	stealBytes    = chunkWindow
	stealBelow    = 32
	slowMirrors   = 2 * time.Second
	takeoverAfter = time.Second
)

// chunksToMirrorsLocked hands a chunked fetch's missing chunks to the
// mirrors, if the session has any usable.
func (s *Syncer) chunksToMirrorsLocked(hs *hashState, f *chunkFetch) {
	if s.mirrors == nil || len(f.todo) == 0 {
		return
	}
	ws := make([]mirrorWork, len(f.todo))
	for i, c := range f.todo {
		ws[i] = mirrorWork{hash: f.hash, chunk: c, fetch: f}
	}
	if !s.toMirrorsLocked(hs.prio, ws...) {
		return
	}
	if f.mirrored == nil {
		f.mirrored = make(map[int]bool, len(f.todo))
	}
	for _, c := range f.todo {
		f.mirrored[c] = true
	}
	f.todo = nil
}

// raiseMirrorLocked moves h's queued mirror work to the needed-now class.
func (s *Syncer) raiseMirrorLocked(h resources.Hash) {
	ms := s.mirrors
	if ms == nil {
		return
	}
	for c := 1; c < len(ms.queue); c++ {
		keep := ms.queue[c][:0]
		for _, w := range ms.queue[c] {
			if w.hash == h {
				ms.queue[0] = append(ms.queue[0], w)
			} else {
				keep = append(keep, w)
			}
		}
		clear(ms.queue[c][len(keep):])
		ms.queue[c] = keep
	}
}

// mirrorReport is what to tell the server about the mirrors' work since
// the last report; nil if nothing new.
func (s *Syncer) mirrorReport() *packets.MirrorReport {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.caps&packets.CapMirrors == 0 || s.stats.BytesFromMirrors == s.reportedBytes {
		return nil
	}
	p := &packets.MirrorReport{
		Bytes:   uint64(s.stats.BytesFromMirrors - s.reportedBytes),
		Objects: uint32(s.stats.MirrorObjects - s.reportedObjects),
	}
	s.reportedBytes, s.reportedObjects = s.stats.BytesFromMirrors, s.stats.MirrorObjects
	return p
}
