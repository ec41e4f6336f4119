package session

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/voxsync/voxsync/assetsmgr"
	"github.com/voxsync/voxsync/compression"
	"github.com/voxsync/voxsync/manifest"
	"github.com/voxsync/voxsync/packets"
	"github.com/voxsync/voxsync/resources"
)

// chunkWindow caps the bytes of one resource's chunks requested and not yet
// received. Small enough that little is lost when the client is killed
// (what was in flight, plus what was received and not yet durable), and
// that a newly needed resource's request is not queued behind much; large
// enough to keep a loopback or LAN link busy.
const chunkWindow = 4 << 20

// maxPuts bounds the chunks received and not yet verified and written.
// More than the cores: a worker also waits for its write, and while it
// waits the reader goes on receiving (measured when chunks were hashed
// twice: 2 → 8 took a 512 MiB sync on this 2-core machine from ~550 to
// ~600 MB/s). At most 8 chunks of 1 MiB are held.
const maxPuts = 8

// chunkBufs recycles chunk buffers by size class (powers of two from 64 KiB
// to the 1 MiB chunk cap): a 1 GiB resource is thousands of chunks, and a
// fresh buffer for each cost a tenth of the client's CPU in clearing and
// returning memory.
var chunkBufs [5]sync.Pool

func chunkBufClass(n int) int {
	c := 0
	for size := 64 << 10; size < n && c < len(chunkBufs)-1; size <<= 1 {
		c++
	}
	return c
}

// getChunkBuf returns an empty buffer with room for n bytes.
func getChunkBuf(n int) []byte {
	c := chunkBufClass(n)
	if b, ok := chunkBufs[c].Get().(*[]byte); ok && cap(*b) >= n {
		return (*b)[:0]
	}
	return make([]byte, 0, max(n, (64<<10)<<c))
}

// putChunkBuf recycles b once nothing refers to it.
func putChunkBuf(b []byte) {
	if cap(b) < 64<<10 || cap(b) > manifest.MaxChunkLen {
		return
	}
	c := chunkBufClass(cap(b))
	if (64<<10)<<c != cap(b) {
		return // not one of ours
	}
	chunkBufs[c].Put(&b)
}

// chunkFetch is the download of one large resource by chunks: its manifest
// is collected, the cache's partial copies what is held locally, and the
// missing chunks are requested, verified and written as they arrive.
type chunkFetch struct {
	hash resources.Hash
	// The manifest, collected part by part; m is set once complete.
	total  uint32
	chunks []manifest.Chunk
	m      *manifest.Manifest

	partial  *assetsmgr.Partial // nil until opened
	todo     []int              // chunks to request, in order
	inflight map[int]bool       // requested and not yet fully received
	mirrored map[int]bool       // queued for or being fetched from the mirrors
	flight   int64              // bytes of the inflight chunks
	left     int                // chunks not yet Put
	started  bool               // the partial is being opened or is open
}

func newChunkFetch(h resources.Hash) *chunkFetch {
	return &chunkFetch{hash: h, inflight: make(map[int]bool)}
}

// want is the request for chunk i.
func (f *chunkFetch) want(h resources.Hash, prio uint8, i int) packets.Want {
	c := f.m.Chunks[i]
	return packets.Want{Hash: h, Priority: prio, HasRange: true, Offset: c.Offset, Length: uint64(c.Length)}
}

// resetFetchLocked gives up hs's chunked fetch: its partial is closed
// (keeping the chunks made durable, to resume from) once the lock is
// released, and the next request starts again from the manifest.
func (s *Syncer) resetFetchLocked(hs *hashState) {
	f := hs.fetch
	if f == nil {
		return
	}
	if len(f.inflight) > 0 {
		// The server still holds these requests (a ResourceError ends
		// only the one it answers): withdraw them all before anything
		// takes their room, which flushCancels sends first. Errors for
		// them may still be on their way: part of this failure.
		s.cancels = append(s.cancels, f.hash)
		hs.quietUntil = time.Now().Add(failBurst)
	}
	s.outstanding -= len(f.inflight)
	for id, a := range s.streams {
		if a.fetch == f {
			s.dropStreamLocked(id)
		}
	}
	if f.partial != nil {
		s.closing = append(s.closing, f.partial)
	}
	hs.fetch = nil
}

// closePartials closes the partials given up while the lock was held.
func (s *Syncer) closePartials() {
	s.mu.Lock()
	ps := s.closing
	s.closing = nil
	s.mu.Unlock()
	for _, p := range ps {
		if err := p.Close(); err != nil {
			s.log.Warn("close partial download", "err", err)
		}
	}
}

// manifestPart collects a part of a manifest asked for; the last one opens
// the cache's partial for the resource on a worker.
func (s *Syncer) manifestPart(ctx context.Context, out *outbox, p *packets.Manifest) {
	s.mu.Lock()
	hs := s.hashes[p.Hash]
	if hs == nil || hs.fetch == nil || hs.fetch.m != nil || hs.state != phaseRequested {
		s.mu.Unlock()
		return // not asked for (any more)
	}
	f := hs.fetch
	if hs.skipParts {
		if p.First != 0 {
			s.mu.Unlock()
			return // the rest of an answer already refused
		}
		hs.skipParts = false
	}
	if p.First == 0 {
		// A first part starts the answer over: the server restarts a
		// manifest request sent again (after a stall) from the beginning.
		f.chunks = f.chunks[:0]
	}
	var why error
	switch {
	case p.Size != hs.size:
		why = fmt.Errorf("manifest of %d bytes for a hash bound with %d", p.Size, hs.size)
	case int(p.First) != len(f.chunks):
		why = fmt.Errorf("manifest part from chunk %d, expected %d", p.First, len(f.chunks))
	case p.First == 0:
		if err := manifest.CheckHeader(p.Size, p.Total); err != nil {
			why = err
		}
		f.total = p.Total
	case p.Total != f.total:
		why = fmt.Errorf("manifest part says %d chunks, the first said %d", p.Total, f.total)
	}
	if why != nil {
		s.resetFetchLocked(hs)
		hs.skipParts = true
		s.failStreamAndUnlock(out, p.Hash, fmt.Errorf("bad manifest: %w", why))
		return
	}
	for _, c := range p.Chunks {
		f.chunks = append(f.chunks, manifest.Chunk{Length: c.Length, Hash: c.Hash, Chain: c.Chain, Carry: c.Carry})
	}
	if len(f.chunks) < int(f.total) {
		s.mu.Unlock()
		return
	}
	m, err := manifest.New(p.Size, f.chunks)
	if err != nil {
		s.resetFetchLocked(hs)
		s.failStreamAndUnlock(out, p.Hash, fmt.Errorf("bad manifest: %w", err))
		return
	}
	f.m, f.chunks = m, nil
	// The manifest request is answered: its room is free.
	if hs.sent {
		hs.sent = false
		s.outstanding--
	}
	f.started = true
	s.mu.Unlock()
	out.wg.Go(func() { s.openPartial(ctx, out, p.Hash, f) })
}

// openPartial opens (or resumes) the cache's partial for a fetch, which
// copies the chunks held locally, and requests the rest.
func (s *Syncer) openPartial(ctx context.Context, out *outbox, h resources.Hash, f *chunkFetch) {
	part, err := withRoom(ctx, s, int64(f.m.Size), func() (*assetsmgr.Partial, error) { return s.opts.Cache.OpenPartial(ctx, h, f.m) })
	s.mu.Lock()
	hs := s.hashes[h]
	if hs == nil || hs.fetch != f {
		s.mu.Unlock()
		if part != nil {
			part.Close()
		}
		return
	}
	if errors.Is(err, assetsmgr.ErrPartialInUse) {
		// Still being closed after a Lost and a new Bind, or held by a
		// cache command: a moment's wait, not a failure.
		s.resetFetchLocked(hs)
		s.mu.Unlock()
		s.retryLater(out, h)
		return
	}
	if err != nil && ctx.Err() != nil {
		// The session is ending (Ctrl-C, the end of Run): not the
		// resource's failure. The next session opens the partial again.
		s.resetFetchLocked(hs)
		s.mu.Unlock()
		return
	}
	if err != nil {
		s.failHashAndUnlock(hs, h, "cannot store resource", err)
		return
	}
	f.partial = part
	f.todo = part.Missing()
	f.left = len(f.todo)
	s.chunksToMirrorsLocked(hs, f)
	held, local := part.Held()
	s.stats.FromLocalChunks += local
	if !s.reopened[h] {
		// Only what an earlier run left: reopened after a reconnect, the
		// partial also holds what this run received.
		s.stats.ChunksResumed += held - local
		s.reopened[h] = true
	}
	s.progressed = true
	if f.left == 0 {
		s.mu.Unlock()
		s.commitFetch(out, h, f)
		return
	}
	hs.state = phaseStreaming
	s.fetching = append(s.fetching, h)
	s.mu.Unlock()
	s.pumpRequests(out)
}

// withRoom runs store, which stores a resource of size bytes in the
// cache, and once more if it found the disk full and makeRoom made room.
func withRoom[T any](ctx context.Context, s *Syncer, size int64, store func() (T, error)) (T, error) {
	v, err := store()
	if errors.Is(err, assetsmgr.ErrDiskFull) && s.makeRoom(ctx, err, size) {
		v, err = store()
	}
	return v, err
}

// makeRoom, after the disk had no room (full, an ErrDiskFull) for a
// resource of size bytes, evicts from the cache what no key bound now
// uses, least recently used first, as much as the disk was short of (or
// size, if full does not say), and reports whether anything went (then
// the caller tries once more). Without it, a disk with room for one copy
// of a large resource could never take its next version: the old one, no
// longer bound, would stay until the cache passed its size cap.
func (s *Syncer) makeRoom(ctx context.Context, full error, size int64) bool {
	need := assetsmgr.Shortfall(full)
	if need == 0 {
		need = size
	}
	n, freed, err := s.opts.Cache.MakeRoom(ctx, need, s.wanted)
	if err != nil {
		s.log.Warn("cannot make room in the cache", "err", err)
	}
	return n > 0 || freed > 0 // the cache has logged what went
}

// isDiskError reports whether err is a disk condition a player has to act
// on (the cache's disk full or not writable): failing the resource says
// so, where fetching it again would only fail again.
func isDiskError(err error) bool {
	return errors.Is(err, assetsmgr.ErrNotWritable) || errors.Is(err, assetsmgr.ErrDiskFull)
}

// wanted reports whether h is bound now (or still in use by a stream), so
// never evicted to make room.
func (s *Syncer) wanted(h resources.Hash) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.hashes[h] != nil
}

// failBurst: failures of a chunked resource within this long of the last
// one counted are one failure. Its chunks in flight fail together when, for
// example, its file changed on the server; the retries are for trying
// again later, not for the chunks that were already on their way.
const failBurst = 100 * time.Millisecond

// countFailureLocked counts a failure of hs towards MaxRetries and reports
// whether it is over the limit. burst: the failure may be one of several
// requests failing together (chunks in flight); those within failBurst of
// the last counted failure, or answering a fetch just given up, count once.
func (s *Syncer) countFailureLocked(hs *hashState, burst bool) bool {
	now := time.Now()
	if now.Before(hs.quietUntil) || (burst && now.Sub(hs.lastFail) < failBurst) {
		return hs.retries > s.opts.MaxRetries
	}
	hs.retries++
	hs.lastFail = now
	return hs.retries > s.opts.MaxRetries
}

// failHashAndUnlock gives up hash h for good (s.mu held): for errors that
// retrying cannot fix (the disk, a server that keeps lying) or after the
// last retry. It releases the lock, logs why, and reports every key Failed.
func (s *Syncer) failHashAndUnlock(hs *hashState, h resources.Hash, what string, err error) {
	s.resetFetchLocked(hs)
	hs.state = phaseFailed
	s.settleLocked(hs)
	var evs []Event
	for k := range hs.keys {
		evs = append(evs, Failed{Binding: s.keys[k].b, Err: err})
	}
	tries := hs.retries
	s.holdEvents(evs)
	s.mu.Unlock()
	s.log.Error(what, "hash", h.Short(), "err", err, "tries", tries)
	s.emitHeld(evs)
	s.poke()
}

// chunkReceived takes a chunk stream's complete bytes off the reader: the
// decoding, verification and write run on a worker, at most putSem at
// once, so the reader goes on receiving while the other cores verify.
func (s *Syncer) chunkReceived(out *outbox, a *assembly) {
	select {
	case s.putSem <- struct{}{}:
	case <-out.done:
		return
	}
	out.wg.Go(func() {
		defer func() { <-s.putSem }()
		data := a.buf
		var err error
		if a.encoded {
			data, err = s.decode(a)
			putChunkBuf(a.buf)
		}
		if err == nil {
			err = a.fetch.partial.Put(a.chunk, data) // keeps no reference
		}
		putChunkBuf(data)
		s.chunkStored(out, a, err)
	})
}

// decode decompresses an encoded stream's frame to exactly its declared
// length; only what decodes counts as received resource bytes.
func (s *Syncer) decode(a *assembly) ([]byte, error) {
	var dst []byte
	if a.chunk >= 0 {
		dst = getChunkBuf(int(a.size))
	}
	data, err := compression.Decompress(dst, a.buf, int(a.size))
	if err != nil {
		return nil, fmt.Errorf("decode %d-byte zstd frame: %w", len(a.buf), err)
	}
	s.mu.Lock()
	s.stats.BytesReceived += int64(len(data))
	s.mu.Unlock()
	return data, nil
}

// chunkStored records a chunk written (or refused); the last one commits.
func (s *Syncer) chunkStored(out *outbox, a *assembly, err error) {
	s.mu.Lock()
	hs := s.hashes[a.hash]
	f := a.fetch
	if hs == nil || hs.fetch != f {
		s.mu.Unlock()
		return
	}
	if err != nil {
		if isDiskError(err) {
			s.failHashAndUnlock(hs, a.hash, "cannot store resource", err)
			return
		}
		s.stats.StreamErrors++
		if s.countFailureLocked(hs, true) {
			s.failHashAndUnlock(hs, a.hash, "resource failed", fmt.Errorf("chunk %d: %w", a.chunk, err))
			return
		}
		s.log.Warn("bad chunk; requesting again", "hash", a.hash.Short(), "chunk", a.chunk, "err", err, "try", hs.retries)
		s.stats.Rerequested++
		f.todo = append([]int{a.chunk}, f.todo...)
		if !slices.Contains(s.fetching, a.hash) {
			s.fetching = append(s.fetching, a.hash)
		}
		s.mu.Unlock()
		s.pumpRequests(out)
		return
	}
	f.left--
	s.progressed = true
	done := f.left == 0
	s.mu.Unlock()
	if done {
		s.commitFetch(out, a.hash, f)
	}
}

// commitFetch makes a complete partial the resource's blob (every chunk
// verified, and with them the whole hash). Chunks found rotten on disk are
// fetched again; other failures count as a failed stream.
func (s *Syncer) commitFetch(out *outbox, h resources.Hash, f *chunkFetch) {
	s.mu.Lock()
	hs := s.hashes[h]
	if hs == nil || hs.fetch != f {
		s.mu.Unlock()
		return
	}
	hs.state = phaseStoring
	s.settleLocked(hs)
	names := s.namesLocked(hs)
	s.mu.Unlock()
	s.pumpRequests(out)
	heldBefore, _ := f.partial.Held()
	err := f.partial.Commit(func(err error) {
		s.mu.Lock()
		if hs := s.hashes[h]; hs != nil && hs.fetch == f {
			hs.fetch = nil
		}
		s.mu.Unlock()
		s.stored(h, err)
	}, names...)
	if err == nil {
		return
	}
	s.mu.Lock()
	if hs := s.hashes[h]; hs == nil || hs.fetch != f {
		s.mu.Unlock()
		return
	}
	if errors.Is(err, assetsmgr.ErrChunksLost) {
		// The cache has logged what it dropped: chunks saved by an
		// earlier run that no longer verify. They were counted as
		// resumed; now they are fetched again.
		s.log.Debug("fetching chunks again", "hash", h.Short(), "err", err)
		held, _ := f.partial.Held()
		s.stats.ChunksResumed = max(0, s.stats.ChunksResumed-(heldBefore-held))
		f.todo = f.partial.Missing()
		f.left = len(f.todo)
		s.stats.Rerequested += len(f.todo)
		hs.state = phaseStreaming
		s.fetching = append(s.fetching, h)
		s.mu.Unlock()
		s.pumpRequests(out)
		return
	}
	if isDiskError(err) {
		s.failHashAndUnlock(hs, h, "cannot store resource", err)
		return
	}
	s.resetFetchLocked(hs)
	hs.state = phaseStreaming // as streamFailedLocked expects
	s.failStreamAndUnlock(out, h, err)
}

// retryLater asks for h again after 200 ms (the session permitting).
func (s *Syncer) retryLater(out *outbox, h resources.Hash) {
	out.wg.Go(func() {
		select {
		case <-time.After(200 * time.Millisecond):
			s.request(out, []resources.Hash{h})
		case <-out.done:
		}
	})
}

// Need marks the resource bound under k as needed now: its requests, and
// those of its chunks, are raised to packets.PriorityNow, overtaking every
// other request. A game calls it when it touches a resource that is not
// loaded yet.
func (s *Syncer) Need(k resources.Key) {
	s.mu.Lock()
	ks := s.keys[k]
	if ks == nil {
		s.mu.Unlock()
		return
	}
	h := ks.b.Hash
	hs := s.hashes[h]
	out := s.out
	if hs == nil || hs.prio >= packets.PriorityNow {
		s.mu.Unlock()
		return
	}
	hs.prio = packets.PriorityNow
	var raise []packets.Want
	if hs.sent {
		w := packets.Want{Hash: h, Priority: hs.prio, Manifest: hs.fetch != nil, Raise: true}
		raise = append(raise, w)
	}
	if f := hs.fetch; f != nil && f.m != nil {
		for i := range f.inflight {
			w := f.want(h, hs.prio, i)
			w.Raise = true
			raise = append(raise, w)
		}
	}
	s.raiseMirrorLocked(h)
	if hs.queued {
		// Not asked yet: jump the queue of hashes waiting for room.
		if i := slices.Index(s.waiting, h); i > 0 {
			s.waiting = slices.Insert(slices.Delete(s.waiting, i, i+1), 0, h)
		}
	}
	s.mu.Unlock()
	if out != nil {
		s.sendRequests(out, raise)
		s.pumpRequests(out)
	}
}
