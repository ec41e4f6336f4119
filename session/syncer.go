package session

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"net"
	"net/netip"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/gorilla/websocket"
	"github.com/voxsync/voxsync/assetsmgr"
	"github.com/voxsync/voxsync/mirror"
	"github.com/voxsync/voxsync/packets"
	"github.com/voxsync/voxsync/resources"
)

// Sentinels for why a Syncer stopped or a wait ended.
var (
	// ErrBadURL: the server URL cannot be used; Run returns at once.
	ErrBadURL = errors.New("invalid server URL")
	// ErrNotServer: something answered at the URL, but not a voxsync
	// WebSocket endpoint (an HTTP error status, a plain web page, another
	// protocol); Run returns at once.
	ErrNotServer = errors.New("no voxsync server at this URL")
	// ErrRefused: the server refused the session for a reason retrying
	// will not fix (version mismatch, auth); Run returns at once.
	ErrRefused = errors.New("server refused the session")
	// ErrProtocol: the server sent something malformed or out of order.
	ErrProtocol = errors.New("protocol error from server")
	// ErrFailed: WaitSynced found everything settled but some resources
	// failed for good.
	ErrFailed = errors.New("resources failed to load")
	// ErrRunning: Run was called while another Run of the same Syncer
	// runs. One Syncer is one connection; a second Run returns at once.
	ErrRunning = errors.New("Run is already running on this Syncer")
	// ErrNotCached: Open found no copy of the hash: not loaded yet, or
	// gone from the cache (then it is fetched again and Loaded again).
	ErrNotCached = errors.New("not in the cache")
)

// Permanent reports whether err is one that retrying cannot fix: a bad URL,
// no voxsync server at the URL, or a refusal. Run stops at such an error.
func Permanent(err error) bool {
	return errors.Is(err, ErrBadURL) || errors.Is(err, ErrNotServer) || errors.Is(err, ErrRefused)
}

// SyncOptions configure a Syncer.
type SyncOptions struct {
	URL    string // ws://host:port/ws
	Cache  *assetsmgr.Cache
	Client uuid.UUID // zero: a random one
	Token  string
	// Logger gets what went wrong that no event says (a cache that
	// cannot store, a connection lost); nil discards it.
	Logger *slog.Logger
	// OnEvent receives events in order, one at a time, on the goroutine
	// that made the change (the connection's reader, a cache lookup, the
	// cache's store): that work waits until it returns, so it should
	// return quickly and hand heavy work (decoding a large resource) to a
	// goroutine of the game's. WaitSynced returns only once every event
	// of the state it reports has been delivered, so OnEvent must not
	// wait for anything that waits for WaitSynced (WaitSynced itself, or
	// a channel the game drains only after its loading screen).
	OnEvent func(Event)
	// StallTimeout: requests outstanding and nothing received for this
	// long → everything outstanding is requested again. Default 10s.
	StallTimeout time.Duration
	// MaxRetries bounds how often one hash is requested again after a bad
	// stream or a server error before it is reported Failed. Default 5.
	MaxRetries int
	// NoReconnect stops Run at the first disconnect instead of
	// reconnecting with backoff.
	NoReconnect bool
	// NetDialContext, if set, opens the TCP connection (a proxy, a chosen
	// source address); nil uses net.Dialer.
	NetDialContext func(ctx context.Context, network, addr string) (net.Conn, error)
	// NoChunks and NoCompression leave out the chunked and zstd
	// capabilities from Hello: every resource then comes whole and raw.
	NoChunks, NoCompression bool
	// ChunkedMin: resources larger than this are fetched by manifest and
	// chunks (resumable, deltas against cached chunks) when the server
	// offers it. Default 1 MiB.
	ChunkedMin int64
	// Priority gives a newly bound resource's request priority; nil gives
	// packets.PriorityNormal. Need raises one later.
	Priority func(resources.Binding) uint8
	// NoMirrors leaves out the mirrors capability: everything comes from
	// the game server even when it names mirrors.
	NoMirrors bool
	// MirrorParallel is how many requests each mirror serves at once;
	// 0 takes mirror.Options' default.
	MirrorParallel int
}

// Syncer keeps a game client's resources in sync with a server: it follows
// Bind and Lost, loads hashes from the cache, requests misses, assembles
// and verifies streams, and stores them.
type Syncer struct {
	opts SyncOptions
	log  *slog.Logger

	evMu sync.Mutex // serialises OnEvent calls

	mu sync.Mutex // guards the fields below
	// emitting counts batches of events made under mu and not yet
	// delivered to OnEvent. WaitSynced waits for it to be 0: a game that
	// leaves its loading screen when it returns must already have had
	// every Loaded of the state it returned in.
	emitting int
	running  bool // a Run is running

	keys    map[resources.Key]*keyState
	hashes  map[resources.Hash]*hashState
	streams map[uint32]*assembly
	// maxStream is the highest stream id opened this session. Ids are
	// never reused, so a chunk for a lower id not in streams belongs to a
	// stream dropped on purpose and is ignored; one for a higher id was
	// never opened. A number, not a set: a server cannot grow it.
	maxStream  uint32
	stats      Stats
	out        *outbox // the current session's writer queue; nil between sessions
	limits     packets.Limits
	lastRecv   time.Time
	pos        *packets.Move // the last Move, sent again after a reconnect
	moveSeq    uint32        // the last Move's seq
	changed    chan struct{} // closed (and replaced) when the state changes, for WaitSynced
	waiters    int           // WaitSynced calls waiting on changed
	progressed bool
	started    time.Time // Run's start
	// waiting holds hashes to request once fewer than Welcome's max
	// pending requests are outstanding, in order.
	waiting     []resources.Hash
	outstanding int              // hashes sent and still requested or streaming
	cancels     []resources.Hash // to cancel, sent by the caller of detachLocked
	caps        uint64           // the session's capabilities, from Welcome
	// fetching are the hashes fetched by chunks whose manifest is in,
	// highest priority first when requests are sent.
	fetching []resources.Hash
	closing  []*assetsmgr.Partial    // partials to close once the lock is released
	putSem   chan struct{}           // bounds chunk verifications and writes running at once
	buffered int64                   // bytes of buffers of the open streams
	reopened map[resources.Hash]bool // partials opened before in this run
	// mirrors are the session's mirrors and their queue; nil without.
	mirrors *mirrorSession
	// reportedBytes and reportedObjects are what MirrorReports covered.
	reportedBytes   int64
	reportedObjects int
	lastMirrors     []mirror.SourceStats // the last pool's, for Stats between sessions
	pastMirrorWire  int64                // body bytes read by pools no longer in use
	serverPublic    bool                 // the session's game server is on a public address
	mirrorsSeen     bool                 // the session's Mirrors packet arrived (one is used)
	runErr          error                // why Run returned; nil while it runs
	lastErr         error                // why the last connection attempt or session ended
	// Per session: the server's answer is complete once a BindsDone for
	// the latest Move (or the join) arrives. Keys bound before this
	// session that it has not bound again by the first such marker
	// (reconcileSeq) are gone from the server: they are reported Lost.
	stale        map[resources.Key]bool
	reconcileSeq uint32
	reconciled   bool
	wantSeq      uint32 // the marker that completes what was asked: the last Move's seq, or 0
	doneSeq      uint32 // the highest marker this session
	haveDone     bool   // a marker arrived this session
}

type keyState struct {
	b      resources.Binding
	loaded resources.Hash // last hash Loaded for this key
}

type hashState struct {
	size    uint64
	keys    map[resources.Key]bool
	state   hashPhase
	source  assetsmgr.Source
	retries int
	// lastFail is when a failure was last counted in retries.
	lastFail time.Time
	prio     uint8
	// sent: asked of the server in this session (whole, or its manifest);
	// while the hash is also requested or streaming it counts against
	// Welcome's max pending. queued: waiting in Syncer.waiting for room
	// under that limit.
	sent, queued bool
	// atMirror: queued for or being fetched from the mirrors as a whole
	// object (neither sent nor queued for the server meanwhile).
	atMirror bool
	// fetch is the chunked download of a large resource, from its
	// manifest request to its commit; nil for whole streams.
	fetch *chunkFetch
	// quietUntil: failures until then are the rest of a burst (the
	// chunks that were in flight when a fetch was given up).
	quietUntil time.Time
	// skipParts: a Manifest part was refused; the rest of that answer is
	// ignored until a part with first = 0 starts a new one.
	skipParts bool
}

type hashPhase uint8

const (
	phaseLooking   hashPhase = iota // being looked up in the cache
	phaseAwaitBind                  // was outstanding when a session ended; asked again once the next session binds it
	phaseRequested                  // asked for, no stream yet
	phaseStreaming                  // stream open
	phaseStoring                    // verified, being made durable
	phaseLoaded
	phaseFailed
)

// assembly is one stream being received: small ones and chunks in memory,
// large whole ones in a cache temp file.
type assembly struct {
	hash resources.Hash
	size uint64 // the resource's bytes the stream carries (decoded)
	// next and end are the ChunkSend offsets expected: the resource's
	// range, or the encoded frame's [0, encoded length).
	next, end uint64
	encoded   bool
	chunk     int         // the manifest chunk it carries, or -1 for a whole resource
	fetch     *chunkFetch // the fetch a chunk belongs to
	buf       []byte
	pending   *assetsmgr.Pending
}

// NewSyncer returns a Syncer; Run starts it.
func NewSyncer(opts SyncOptions) *Syncer {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.StallTimeout <= 0 {
		opts.StallTimeout = 10 * time.Second
	}
	if opts.MaxRetries <= 0 {
		opts.MaxRetries = 5
	}
	if opts.Client == uuid.Nil {
		opts.Client = uuid.New()
	}
	if opts.ChunkedMin <= 0 {
		opts.ChunkedMin = 1 << 20
	}
	return &Syncer{
		opts:     opts,
		log:      opts.Logger,
		keys:     make(map[resources.Key]*keyState),
		hashes:   make(map[resources.Hash]*hashState),
		streams:  make(map[uint32]*assembly),
		changed:  make(chan struct{}),
		putSem:   make(chan struct{}, maxPuts),
		reopened: make(map[resources.Hash]bool),
	}
}

// Stats returns current counts.
func (s *Syncer) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.statsLocked()
}

func (s *Syncer) statsLocked() Stats {
	st := s.stats
	st.BytesInBand = st.BytesReceived - st.BytesFromMirrors
	if s.mirrors != nil {
		st.Mirrors = s.mirrors.pool.Stats()
	} else {
		st.Mirrors = s.lastMirrors
	}
	// Wire bytes count every body byte read from mirrors, also of
	// objects cut off or refused, as they count every ChunkSend.
	st.WireBytes += s.pastMirrorWire
	if s.mirrors != nil {
		for _, m := range st.Mirrors {
			st.WireBytes += m.Received
		}
	}
	st.Bound = len(s.keys)
	for _, k := range s.keys {
		h := s.hashes[k.b.Hash]
		if h == nil {
			continue
		}
		switch h.state {
		case phaseLoaded:
			st.Loaded++
			switch h.source {
			case assetsmgr.SourcePack:
				st.FromPack++
			case assetsmgr.SourceInline:
				st.FromInline++
			case assetsmgr.SourceBlob:
				st.FromBlob++
			case assetsmgr.SourceNetwork:
				st.FromNetwork++
			}
		case phaseFailed:
			st.Failed++
		}
	}
	return st
}

// BoundHashes returns the hashes bound right now: what a cache Trim must
// keep.
func (s *Syncer) BoundHashes() map[resources.Hash]bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[resources.Hash]bool, len(s.keys))
	for _, k := range s.keys {
		out[k.b.Hash] = true
	}
	return out
}

// Synced reports whether the server has sent every Bind for the join and
// the latest Move (its BindsDone arrived), every bound resource is loaded
// or failed for good, and OnEvent has had every event of getting there
// (as WaitSynced: a game polling it each frame finds what it was told
// about). Zero resources bound can be synced.
func (s *Syncer) Synced() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.syncedLocked() && s.emitting == 0
}

// BindsKnown reports whether the server's BindsDone for the latest Move
// (or the join) has arrived in this session: the set of bound resources is
// complete, though not necessarily loaded.
func (s *Syncer) BindsKnown() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.bindsKnownLocked()
}

func (s *Syncer) bindsKnownLocked() bool {
	return s.haveDone && s.reconciled && s.doneSeq >= s.wantSeq
}

func (s *Syncer) syncedLocked() bool {
	if !s.bindsKnownLocked() {
		return false
	}
	for _, k := range s.keys {
		h := s.hashes[k.b.Hash]
		if h == nil || (h.state != phaseLoaded && h.state != phaseFailed) {
			return false
		}
	}
	return true
}

// WaitSynced waits until Synced holds and OnEvent has had every event of
// getting there: it returns nil once every bound resource is loaded (and
// its Loaded delivered), an error wrapping ErrFailed once the last
// outstanding one fails for good, Run's error if Run stopped (for example
// ErrRefused), or ctx's error.
func (s *Syncer) WaitSynced(ctx context.Context) error {
	for {
		s.mu.Lock()
		// Synced, and every event of getting there delivered: OnEvent
		// runs on the goroutine that made the change, after it unlocks,
		// so the state can be synced a moment before the game has heard.
		ok := s.syncedLocked() && s.emitting == 0
		var st Stats
		if ok {
			// Only then: counting walks every key, and this loop runs at
			// every resource loaded (it was a tenth of a cold sync's CPU).
			s.noteSyncedLocked()
			st = s.statsLocked()
		}
		runErr := s.runErr
		changed := s.changed
		wait := !ok && runErr == nil
		if wait {
			s.waiters++
		}
		s.mu.Unlock()
		switch {
		case ok && st.Failed > 0:
			return fmt.Errorf("%w: %d of %d", ErrFailed, st.Failed, st.Bound)
		case ok:
			return nil
		case runErr != nil:
			return runErr
		}
		select {
		case <-ctx.Done():
		case <-changed:
		}
		s.mu.Lock()
		s.waiters--
		s.mu.Unlock()
		if err := ctx.Err(); err != nil {
			return err
		}
	}
}

// LastError returns why the last connection attempt or session ended, or
// nil: what a person wants to know when a sync times out.
func (s *Syncer) LastError() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastErr
}

// Open returns a loaded resource's bytes from the cache. They are verified
// as they are read: a read that fails with assetsmgr.ErrHashMismatch or
// ErrSizeMismatch (the cached copy was damaged since it was stored) drops
// the copy, and the resource is fetched again and Loaded again, as it is
// when Open finds it gone from the cache.
func (s *Syncer) Open(ctx context.Context, h resources.Hash) (assetsmgr.Blob, error) {
	hits, err := s.opts.Cache.Lookup(ctx, []resources.Hash{h})
	if err != nil {
		return assetsmgr.Blob{}, err
	}
	b, ok := hits[h]
	if !ok {
		// A loaded copy gone from the cache (found corrupt, or removed
		// by hand) is fetched again: the game gets Loaded once it is.
		s.refetch(h)
		return assetsmgr.Blob{}, fmt.Errorf("open %s: %w", h.Short(), ErrNotCached)
	}
	return b, nil
}

// Move reports the player's position; it is sent now if connected and
// again after every reconnect. It returns the Move's seq: the BindsDone
// event with this Seq (or a later one) says the resources for this
// position are all bound, and WaitSynced waits for it.
func (s *Syncer) Move(x, y, z float64) uint32 {
	s.mu.Lock()
	s.moveSeq++
	m := &packets.Move{Seq: s.moveSeq, X: x, Y: y, Z: z}
	s.pos = m
	out := s.out
	if out != nil {
		s.wantSeq = m.Seq
	}
	s.mu.Unlock()
	if out != nil {
		s.send(out, m)
	}
	s.poke()
	return m.Seq
}

// outbox is a session's queue to its writer. Sends give up once the
// session is over, so no goroutine blocks on a writer that has gone.
type outbox struct {
	ch   chan packets.Packet
	done <-chan struct{}
	// Goroutines of the session (cache lookups, delayed retries) are
	// counted in wg, waited for before the session returns; lookups bounds
	// how many lookups run at once.
	lookups chan struct{}
	wg      sync.WaitGroup
}

// send queues p for the writer; it drops p if the session has ended.
func (s *Syncer) send(out *outbox, p packets.Packet) {
	select {
	case out.ch <- p:
	case <-out.done:
	}
}

// progressTick delivers a Progress event if anything progressed, from the
// writer. Only if OnEvent is free: the writer must never wait for the
// game's handler, which may itself be waiting for the writer (a Need or a
// Move from the handler, with the queue only the writer drains full).
// A tick skipped is made up at the next one. Progress does not count for
// WaitSynced.
func (s *Syncer) progressTick() {
	if !s.evMu.TryLock() {
		return
	}
	defer s.evMu.Unlock()
	s.mu.Lock()
	progressed := s.progressed
	var st Stats
	if progressed {
		s.progressed = false
		st = s.statsLocked()
	}
	s.mu.Unlock()
	if progressed && s.opts.OnEvent != nil {
		s.opts.OnEvent(Progress{Stats: st})
	}
}

// holdEvents notes, under mu, a batch of events about to be emitted (by
// emitHeld, once mu is released).
func (s *Syncer) holdEvents(evs []Event) {
	if len(evs) > 0 {
		s.emitting++
	}
}

// unlockAndEmit releases mu, which the caller holds after building evs,
// and delivers them, counted for WaitSynced from before the release.
func (s *Syncer) unlockAndEmit(evs []Event) {
	s.holdEvents(evs)
	s.mu.Unlock()
	s.emitHeld(evs)
}

// emitHeld delivers a batch noted by holdEvents, then lets WaitSynced see
// it delivered.
func (s *Syncer) emitHeld(evs []Event) {
	if len(evs) > 0 {
		// Deferred: a handler that panics (recovered by the game around
		// Run) must not leave WaitSynced waiting for ever.
		defer func() {
			s.mu.Lock()
			s.emitting--
			s.mu.Unlock()
			s.poke()
		}()
	}
	s.emit(evs)
}

func (s *Syncer) emit(evs []Event) {
	// The cache records what each blob was loaded as, for listing and
	// filtering it ("gameclient cache ls"). What came from the network
	// was named in the commit that stored it (namesLocked), and Name
	// finds it recorded; a hit in the cache is named with the store's
	// next batch.
	for _, e := range evs {
		if l, ok := e.(Loaded); ok && l.Source != assetsmgr.SourcePack {
			s.opts.Cache.Name(l.Binding.Hash, resources.Loc{Type: l.Binding.Type, Ref: l.Binding.Ref})
		}
	}
	if len(evs) == 0 || s.opts.OnEvent == nil {
		return
	}
	s.evMu.Lock()
	defer s.evMu.Unlock()
	for _, e := range evs {
		s.opts.OnEvent(e)
	}
}

// namesLocked returns what hs is bound as, to be recorded in the cache
// with its bytes: one commit rather than one for the bytes and one for the
// names once Loaded (see emit).
func (s *Syncer) namesLocked(hs *hashState) []resources.Loc {
	names := make([]resources.Loc, 0, len(hs.keys))
	for k := range hs.keys {
		if ks := s.keys[k]; ks != nil {
			names = append(names, resources.Loc{Type: ks.b.Type, Ref: ks.b.Ref})
		}
	}
	return names
}

// noteSyncedLocked records, once per Run, how long it took to be synced.
func (s *Syncer) noteSyncedLocked() {
	if s.stats.SyncSeconds == 0 && !s.started.IsZero() {
		s.stats.SyncSeconds = time.Since(s.started).Seconds()
	}
}

// poke wakes WaitSynced and notes the first moment everything was loaded.
func (s *Syncer) poke() {
	s.mu.Lock()
	if s.syncedLocked() {
		s.noteSyncedLocked()
	}
	if s.waiters > 0 {
		// Every waiter wakes: a loading screen and, say, a telemetry
		// goroutine both waiting. (A channel of one slot woke one.)
		close(s.changed)
		s.changed = make(chan struct{})
	}
	s.mu.Unlock()
}

// Run syncs until ctx ends, reconnecting with backoff (200 ms doubling to
// 5 s, with jitter) unless NoReconnect is set or the error is Permanent.
// It may be called again once it has returned (what is bound and loaded
// carries over); called while it runs, it returns ErrRunning.
func (s *Syncer) Run(ctx context.Context) (err error) {
	s.mu.Lock()
	if s.running {
		s.mu.Unlock()
		return ErrRunning
	}
	s.running = true
	s.started = time.Now()
	// A Run after an earlier one returned starts over: WaitSynced waits
	// for this Run's server to say what it binds, not for the last one's
	// error or its synced state.
	s.runErr = nil
	s.reconciled, s.haveDone = false, false
	s.stats.SyncSeconds = 0
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.running = false
		s.runErr = err
		s.mu.Unlock()
		s.poke()
	}()
	if err := CheckURL(s.opts.URL); err != nil {
		s.setLastErr(err)
		return err
	}
	defer s.opts.Cache.OnCorrupt(s.refetch)()
	defer s.opts.Cache.Keep(s.wanted)()
	backoff := 200 * time.Millisecond
	for {
		start := time.Now()
		err := s.session(ctx)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		s.setLastErr(err)
		if Permanent(err) || s.opts.NoReconnect {
			return err
		}
		if time.Since(start) > 10*time.Second {
			backoff = 200 * time.Millisecond
		}
		wait := backoff/2 + rand.N(backoff/2+1)
		s.log.Warn("disconnected; reconnecting", "err", err, "in", wait.Round(time.Millisecond))
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

func (s *Syncer) setLastErr(err error) {
	s.mu.Lock()
	s.lastErr = err
	s.mu.Unlock()
}

// session runs one connection.
func (s *Syncer) session(ctx context.Context) error {
	conn, welcome, err := s.connect(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	s.log.Info("connected", "server", s.opts.URL, "session", welcome.Session)
	interval := time.Duration(welcome.Limits.PingIntervalMs) * time.Millisecond

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	out := &outbox{ch: make(chan packets.Packet, 256), done: ctx.Done(), lookups: make(chan struct{}, runtime.GOMAXPROCS(0))}
	writerDone := make(chan error, 1)
	go func() {
		err := s.writeLoop(ctx, conn, out, interval)
		if err != nil {
			conn.Close() // unblocks the reader
		}
		writerDone <- err
	}()

	// The new session binds everything the client uses, whatever the
	// server is now (the same process, a restarted one with other packs,
	// another server): every key bound before is stale until re-bound, and
	// what is still stale at the marker is Lost. Hashes that were
	// outstanding are asked for again when re-bound, not before: the new
	// server may not have them.
	// A game server on a public address may only point this client at
	// mirrors on public addresses, never at its own machine or LAN.
	serverPublic := false
	if ap, err := netip.ParseAddrPort(conn.RemoteAddr().String()); err == nil {
		serverPublic = mirror.IsPublic(ap.Addr())
	}
	s.mu.Lock()
	s.stats.Sessions++
	s.out = out
	s.serverPublic, s.mirrorsSeen = serverPublic, false
	s.limits = welcome.Limits
	s.caps = welcome.Capabilities
	s.lastRecv = time.Now()
	s.resetStreamsLocked()
	s.stale = make(map[resources.Key]bool, len(s.keys))
	for k := range s.keys {
		s.stale[k] = true
	}
	for _, st := range s.hashes {
		switch st.state {
		case phaseRequested, phaseStreaming:
			st.state = phaseAwaitBind
		case phaseFailed:
			// The new server (or the same one, recovered) may have it:
			// a reconnected client ends like a fresh one.
			st.state, st.retries = phaseAwaitBind, 0
		}
		st.sent, st.queued, st.atMirror = false, false, false // the new session has nothing pending
		s.resetFetchLocked(st)                                // chunks durable so far are resumed from
	}
	s.waiting, s.outstanding, s.cancels = nil, 0, nil
	pos := s.pos
	s.reconcileSeq, s.wantSeq, s.reconciled, s.haveDone, s.doneSeq = 0, 0, false, false, 0
	if pos != nil {
		s.reconcileSeq, s.wantSeq = pos.Seq, pos.Seq
		// Queued under the lock, so no newer Move can go out before it
		// (the queue is new and empty: this cannot block).
		out.ch <- pos
	}
	s.mu.Unlock()

	err = s.readLoop(ctx, conn, out, interval)
	cancel()
	s.stopMirrors(out)
	out.wg.Wait()
	werr := <-writerDone
	s.mu.Lock()
	s.out = nil
	s.resetStreamsLocked()
	s.mu.Unlock()
	s.closePartials()
	if err == nil {
		err = werr
	}
	return err
}

func (s *Syncer) resetStreamsLocked() {
	for id := range s.streams {
		s.dropStreamLocked(id)
	}
	s.maxStream = 0
}

// writeLoop owns the socket's write side: queued packets, pings, and the
// periodic stall check and progress event.
func (s *Syncer) writeLoop(ctx context.Context, conn *websocket.Conn, out *outbox, interval time.Duration) error {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	lastPing, lastReport := time.Now(), time.Now()
	var buf []byte
	for {
		select {
		case <-ctx.Done():
			// Write what is still queued: the reader may have queued a
			// Disconnect with a reason just before the session ended. If
			// not, say goodbye so the server knows this was no failure.
			conn.SetWriteDeadline(time.Now().Add(time.Second))
			bye := false
			for drained := false; !drained; {
				select {
				case p := <-out.ch:
					_, bye = p.(*packets.Disconnect)
					if conn.WriteMessage(websocket.BinaryMessage, packets.Encode(p)) != nil || bye {
						drained = true
					}
				default:
					drained = true
				}
			}
			if !bye {
				if p := s.mirrorReport(); p != nil {
					conn.WriteMessage(websocket.BinaryMessage, packets.Encode(p))
				}
				conn.WriteMessage(websocket.BinaryMessage, packets.Encode(&packets.Disconnect{Code: packets.DisconnectNormal, Reason: "client closing"}))
			}
			conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
			return nil
		case p := <-out.ch:
			buf = packets.Append(buf[:0], p)
			conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
			if err := conn.WriteMessage(websocket.BinaryMessage, buf); err != nil {
				return fmt.Errorf("send %s: %w", p.Type(), err)
			}
			if d, ok := p.(*packets.Disconnect); ok {
				conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
				return fmt.Errorf("%w: %s", ErrProtocol, d.Reason)
			}
		case <-tick.C:
			if time.Since(lastPing) >= interval {
				lastPing = time.Now()
				if err := conn.WriteControl(websocket.PingMessage, nil, time.Now().Add(interval)); err != nil {
					return fmt.Errorf("send ping: %w", err)
				}
			}
			// The writer is its queue's only reader: what it sends itself
			// it writes directly, never into the queue.
			send := s.requestPackets(s.tickRequests())
			if time.Since(lastReport) >= time.Second {
				lastReport = time.Now()
				if p := s.mirrorReport(); p != nil {
					send = append(send, p)
				}
			}
			for _, p := range send {
				buf = packets.Append(buf[:0], p)
				conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
				if err := conn.WriteMessage(websocket.BinaryMessage, buf); err != nil {
					return fmt.Errorf("send %s: %w", p.Type(), err)
				}
			}
			s.progressTick()
		}
	}
}

// tickRequests returns what the writer should request on its tick: what a
// stall makes it ask again, and waiting requests that now fit.
//
// A stall is nothing received for StallTimeout while requests are
// outstanding; then everything outstanding is asked again. Any traffic
// counts as progress: with a long queue on the server a hash may wait its
// turn for a while, and that is not a stall.
func (s *Syncer) tickRequests() []packets.Want {
	s.mu.Lock()
	defer s.mu.Unlock()
	var again []resources.Hash
	var chunks []packets.Want
	if time.Since(s.lastRecv) >= s.opts.StallTimeout {
		for h, st := range s.hashes {
			if (st.state != phaseRequested && st.state != phaseStreaming) || st.atMirror {
				continue
			}
			if f := st.fetch; f != nil && f.m != nil {
				for i := range f.inflight {
					chunks = append(chunks, f.want(h, st.prio, i))
				}
				continue
			}
			again = append(again, h)
		}
		s.lastRecv = time.Now()
		s.stats.Rerequested += len(again) + len(chunks)
		if len(again)+len(chunks) > 0 {
			s.log.Warn("no data from server; requesting again", "hashes", len(again), "chunks", len(chunks), "after", s.opts.StallTimeout)
		}
	}
	return append(chunks, s.requestLocked(again)...)
}

// request asks the server for hs, keeping within Welcome's max pending
// requests: a hash asked again while outstanding is sent at once (the
// server replaces its request); new ones wait in order for room.
func (s *Syncer) request(out *outbox, hs []resources.Hash) {
	s.flushCancels(out) // a cancel must reach the server before what it makes room for
	s.mu.Lock()
	send := s.requestLocked(hs)
	s.mu.Unlock()
	s.sendRequests(out, send)
}

// requestLocked does request's bookkeeping and returns what to send now.
func (s *Syncer) requestLocked(hs []resources.Hash) []packets.Want {
	var send []packets.Want
	for _, h := range hs {
		st := s.hashes[h]
		switch {
		case st == nil || st.queued:
		case st.sent && (st.state == phaseRequested || st.state == phaseStreaming):
			send = append(send, s.firstWantLocked(h, st))
		default:
			st.queued = true
			s.queueLocked(h, st.prio)
		}
	}
	return append(send, s.fillWindowLocked()...)
}

// queueLocked adds h to the hashes waiting for room: last, or if the game
// needs it now (bound so, or raised by Need while it was looked up),
// after only the others it needs now. Appended, a resource the game waits
// for queued behind everything bound before it: at a join, up to
// thousands.
func (s *Syncer) queueLocked(h resources.Hash, prio uint8) {
	if prio < packets.PriorityNow {
		s.waiting = append(s.waiting, h)
		return
	}
	i := 0
	for i < len(s.waiting) && s.prioOf(s.waiting[i]) >= packets.PriorityNow {
		i++
	}
	s.waiting = slices.Insert(s.waiting, i, h)
}

// firstWantLocked is a hash's first request: its manifest when it is
// fetched by chunks, else the whole resource.
func (s *Syncer) firstWantLocked(h resources.Hash, st *hashState) packets.Want {
	if st.fetch == nil && s.caps&packets.CapChunked != 0 && int64(st.size) > s.opts.ChunkedMin {
		st.fetch = newChunkFetch(h)
	}
	return packets.Want{Hash: h, Priority: st.prio, Manifest: st.fetch != nil}
}

// pumpRequests sends waiting requests that now fit under the limit; the
// writer calls it on every tick, as streams finish.
func (s *Syncer) pumpRequests(out *outbox) {
	s.flushCancels(out)
	s.mu.Lock()
	send := s.fillWindowLocked()
	s.mu.Unlock()
	s.sendRequests(out, send)
}

// fillWindowLocked takes waiting requests that fit under max pending and
// marks them sent: first hashes not yet asked for (whole, or their
// manifest), then chunks of the resources fetched by chunks, highest
// priority first, each resource with at most chunkWindow bytes in flight.
func (s *Syncer) fillWindowLocked() []packets.Want {
	s.stealMirrorWorkLocked()
	if len(s.waiting) == 0 && len(s.fetching) == 0 {
		return nil
	}
	room := math.MaxInt
	if max := int(s.limits.MaxPending); max > 0 {
		room = max - s.outstanding
	}
	// Chunks of resources more urgent than the first one waiting go
	// first (Need puts a needed resource at the head of the queue), then
	// the queue, then every other resource's chunks.
	head := -1
	if len(s.waiting) > 0 {
		head = int(s.prioOf(s.waiting[0]))
	}
	send := s.fillChunksLocked(nil, &room, head)
	// Small resources finish one at a time, and refilling the window at
	// each sent a request message per resource (a write here, a read and
	// a wake on the server). Waiting hashes of normal priority or below
	// go out in batches of an eighth of the window instead; the window
	// stays at least seven eighths full, so the server never runs dry.
	// A hash more urgent than that goes at once. The room saved up is not
	// given to chunks of resources no more urgent than the queue's head
	// (those more urgent had theirs above): they would take every slot as
	// it freed, and the queue would wait for whole downloads.
	if max := int(s.limits.MaxPending); max > 0 && len(s.waiting) > 0 && head <= int(packets.PriorityNormal) &&
		room < min(len(s.waiting), max/8) {
		return send
	}
	for len(s.waiting) > 0 && room > 0 {
		h := s.waiting[0]
		s.waiting = s.waiting[1:]
		st := s.hashes[h]
		if st == nil || !st.queued {
			continue
		}
		st.queued = false
		if st.state != phaseRequested && st.state != phaseStreaming {
			continue // loaded, failed or lost while waiting
		}
		st.sent = true
		s.outstanding++
		room--
		send = append(send, s.firstWantLocked(h, st))
	}
	if len(s.waiting) == 0 {
		s.waiting = nil
	}
	return s.fillChunksLocked(send, &room, -1)
}

// fillChunksLocked appends requests for the missing chunks of resources of
// priority above minPrio, highest first, each with at most chunkWindow
// bytes in flight, while room lasts.
func (s *Syncer) fillChunksLocked(send []packets.Want, room *int, minPrio int) []packets.Want {
	if len(s.fetching) == 0 || *room <= 0 {
		return send
	}
	if len(s.fetching) > 1 {
		slices.SortStableFunc(s.fetching, func(a, b resources.Hash) int {
			return cmp.Compare(s.prioOf(b), s.prioOf(a))
		})
	}
	keep := s.fetching[:0]
	for _, h := range s.fetching {
		st := s.hashes[h]
		if st == nil || st.fetch == nil || st.fetch.m == nil || (st.state != phaseRequested && st.state != phaseStreaming) {
			continue
		}
		f := st.fetch
		for int(st.prio) > minPrio && len(f.todo) > 0 && *room > 0 && f.flight < chunkWindow {
			i := f.todo[0]
			f.todo = f.todo[1:]
			f.inflight[i] = true
			f.flight += int64(f.m.Chunks[i].Length)
			s.outstanding++
			*room--
			send = append(send, f.want(h, st.prio, i))
		}
		if len(f.todo) > 0 {
			keep = append(keep, h)
		}
	}
	clear(s.fetching[len(keep):])
	s.fetching = keep
	return send
}

func (s *Syncer) prioOf(h resources.Hash) uint8 {
	if st := s.hashes[h]; st != nil {
		return st.prio
	}
	return 0
}

// settleLocked notes that hs is no longer outstanding on the server
// (streamed in full, failed for good, or cancelled), making room for a
// waiting request.
func (s *Syncer) settleLocked(hs *hashState) {
	if hs.sent {
		hs.sent = false
		s.outstanding--
	}
	if f := hs.fetch; f != nil {
		s.outstanding -= len(f.inflight)
		clear(f.inflight)
		f.flight = 0
	}
}

// sendRequests sends ResourceRequests for ws.
func (s *Syncer) sendRequests(out *outbox, ws []packets.Want) {
	for _, p := range s.requestPackets(ws) {
		s.send(out, p)
	}
}

// requestPackets batches ws into ResourceRequests within the server's
// limits: entries per request, and the packet size.
func (s *Syncer) requestPackets(ws []packets.Want) []packets.Packet {
	if len(ws) == 0 {
		return nil
	}
	s.mu.Lock()
	max := min(int(s.limits.MaxRequestHashes), (int(s.limits.MaxPacket)-11)/packets.MaxWantSize)
	s.mu.Unlock()
	if max <= 0 {
		max = 1
	}
	var out []packets.Packet
	for len(ws) > 0 {
		n := min(len(ws), max)
		out = append(out, &packets.ResourceRequest{Wants: ws[:n:n]})
		ws = ws[n:]
	}
	return out
}

// flushCancels sends the cancels detachLocked collected, in one batch per
// request limit, from the calling goroutine: before any request that the
// room they free lets through, so the server never sees more pending than
// it allows. It also closes the partials given up meanwhile.
func (s *Syncer) flushCancels(out *outbox) {
	s.closePartials()
	s.mu.Lock()
	hs := s.cancels
	s.cancels = nil
	max := max(int(s.limits.MaxRequestHashes), 1)
	s.mu.Unlock()
	for len(hs) > 0 {
		n := min(len(hs), max)
		s.send(out, &packets.ResourceCancel{Hashes: hs[:n]})
		hs = hs[n:]
	}
}

// readLoop reads and handles the server's packets. Any frame, ping and pong
// included, extends the read deadline by two ping intervals: the server
// pings every interval, so only a dead or frozen connection reaches it.
func (s *Syncer) readLoop(ctx context.Context, conn *websocket.Conn, out *outbox, interval time.Duration) error {
	alive := func() {
		if ctx.Err() == nil {
			conn.SetReadDeadline(time.Now().Add(2 * interval))
		}
	}
	// Once the session is over (Run's context ended, or the writer failed)
	// the reader gives the server a second to close, however much it still
	// has queued for a slow link: a -timeout or a signal is honoured then,
	// not after the queue drains.
	stop := context.AfterFunc(ctx, func() { conn.SetReadDeadline(time.Now().Add(time.Second)) })
	defer stop()
	conn.SetPingHandler(func(data string) error {
		alive()
		// Answer from here is allowed: gorilla serialises control writes.
		err := conn.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(interval))
		if err != nil && !errors.Is(err, websocket.ErrCloseSent) && !isTimeout(err) {
			return err
		}
		return nil
	})
	conn.SetPongHandler(func(string) error { alive(); return nil })
	var buf bytes.Buffer
	for {
		alive()
		typ, err := readMessage(conn, &buf)
		if errors.Is(err, errMessageTooLarge) {
			s.send(out, &packets.Disconnect{Code: packets.DisconnectProtocolError, Reason: err.Error()})
			return fmt.Errorf("%w: %w", ErrProtocol, err)
		}
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if isTimeout(err) {
				return fmt.Errorf("connection silent for %s (two ping intervals): %w", 2*interval, err)
			}
			return fmt.Errorf("read: %w", err)
		}
		s.mu.Lock()
		s.lastRecv = time.Now()
		s.mu.Unlock()
		if typ != websocket.BinaryMessage {
			s.send(out, &packets.Disconnect{Code: packets.DisconnectProtocolError, Reason: "text message from server"})
			return fmt.Errorf("%w: text message", ErrProtocol)
		}
		p, err := packets.Decode(buf.Bytes())
		if err != nil {
			s.log.Warn("malformed packet from server; disconnecting", "err", err)
			s.send(out, &packets.Disconnect{Code: packets.DisconnectProtocolError, Reason: packets.TruncateMessage(err.Error())})
			return fmt.Errorf("%w: %w", ErrProtocol, err)
		}
		if err := s.handle(ctx, out, p); err != nil {
			return err
		}
	}
}

func (s *Syncer) handle(ctx context.Context, out *outbox, p packets.Packet) error {
	protocolError := func(reason string) error {
		s.send(out, &packets.Disconnect{Code: packets.DisconnectProtocolError, Reason: packets.TruncateMessage(reason)})
		return fmt.Errorf("%w: %s", ErrProtocol, reason)
	}
	switch p := p.(type) {
	case *packets.Bind:
		if reason := s.bind(ctx, out, p.Entries); reason != "" {
			return protocolError(reason)
		}
	case *packets.Lost:
		s.lost(out, p.Entries)
	case *packets.BindsDone:
		s.bindsDone(out, p.Seq)
	case *packets.InitResSend:
		s.initStream(out, p)
	case *packets.Manifest:
		if s.caps&packets.CapChunked == 0 {
			return protocolError("Manifest in a session without the chunked capability")
		}
		s.manifestPart(ctx, out, p)
	case *packets.ChunkSend:
		s.mu.Lock()
		max := s.limits.MaxChunk
		s.mu.Unlock()
		if max > 0 && len(p.Data) > int(max) {
			return protocolError(fmt.Sprintf("ChunkSend of %d bytes, over the max chunk of %d announced in Welcome", len(p.Data), max))
		}
		s.chunk(out, p)
	case *packets.ResourceError:
		s.resourceError(out, p)
	case *packets.Mirrors:
		if s.caps&packets.CapMirrors == 0 {
			return protocolError("Mirrors in a session without the mirrors capability")
		}
		s.startMirrors(ctx, out, p)
	case *packets.Disconnect:
		err := fmt.Errorf("server disconnected: %s: %s", p.Code, p.Reason)
		if p.Code.Permanent() {
			err = fmt.Errorf("%w: %w", ErrRefused, err)
		}
		return err // logged once, by Run or the caller
	default:
		return protocolError("unexpected " + p.Type().String() + " from server")
	}
	return nil
}

// bind applies Bind entries. A key bound again with the same name and
// hash changes nothing (after a reconnect, that is most of them); the same
// name with another hash is a replacement; another name under the same id
// is a different resource, so the old one is Lost. It returns a reason for
// a protocol error, or "".
func (s *Syncer) bind(ctx context.Context, out *outbox, entries []resources.Binding) string {
	var evs []Event
	var look, again []resources.Hash
	s.mu.Lock()
	for _, b := range entries {
		if hs := s.hashes[b.Hash]; hs != nil && hs.size != b.Size {
			s.unlockAndEmit(evs)
			return fmt.Sprintf("hash %s bound with size %d, earlier with %d", b.Hash.Short(), b.Size, hs.size)
		}
	}
	for _, b := range entries {
		k := b.Key()
		delete(s.stale, k)
		ks := s.keys[k]
		if ks != nil && ks.b.Ref != b.Ref {
			delete(s.keys, k)
			s.detachLocked(out, k, ks.b.Hash)
			evs = append(evs, Lost{Binding: ks.b})
			ks = nil
		}
		if ks != nil && ks.b.Hash == b.Hash {
			if hs := s.hashes[b.Hash]; hs != nil && hs.state == phaseAwaitBind {
				hs.state = phaseRequested
				if s.fetchLocked(b.Hash, hs) {
					again = append(again, b.Hash)
				}
			}
			continue
		}
		if ks == nil {
			ks = &keyState{}
			s.keys[k] = ks
		} else {
			s.detachLocked(out, k, ks.b.Hash)
		}
		ks.b = b
		evs = append(evs, Bound{Binding: b})
		hs := s.hashes[b.Hash]
		if hs == nil {
			hs = &hashState{size: b.Size, keys: make(map[resources.Key]bool), state: phaseLooking, prio: packets.PriorityNormal}
			if s.opts.Priority != nil {
				hs.prio = s.opts.Priority(b)
			}
			s.hashes[b.Hash] = hs
			look = append(look, b.Hash)
		}
		hs.keys[k] = true
		switch hs.state {
		case phaseLoaded:
			evs = append(evs, s.loadedLocked(k, hs))
		case phaseAwaitBind:
			hs.state = phaseRequested
			if s.fetchLocked(b.Hash, hs) {
				again = append(again, b.Hash)
			}
		}
	}
	s.progressed = true
	s.unlockAndEmit(evs)
	s.poke()
	s.request(out, again)
	if len(look) == 0 {
		return ""
	}
	// Look up on a worker so the reader goes on decoding: a join's Binds
	// arrive in several packets, and their lookups (reading and verifying
	// thousands of cached blobs) then run on all cores at once.
	select {
	case out.lookups <- struct{}{}:
	case <-out.done:
		return ""
	}
	out.wg.Go(func() {
		defer func() { <-out.lookups }()
		s.lookup(ctx, out, look)
	})
	return ""
}

// bindsDone handles the server's marker: at the first one that answers
// what this session asked (the join, or the Move sent again after a
// reconnect), keys from before the session that were not bound again are
// gone from the server and reported Lost.
func (s *Syncer) bindsDone(out *outbox, seq uint32) {
	var evs []Event
	s.mu.Lock()
	if !s.reconciled && seq >= s.reconcileSeq {
		s.reconciled = true
		for k := range s.stale {
			ks := s.keys[k]
			if ks == nil {
				continue
			}
			delete(s.keys, k)
			s.detachLocked(out, k, ks.b.Hash)
			evs = append(evs, Lost{Binding: ks.b})
		}
		s.stale = nil
	}
	if !s.haveDone || seq > s.doneSeq {
		s.haveDone, s.doneSeq = true, seq
	}
	evs = append(evs, BindsDone{Seq: seq, Complete: s.bindsKnownLocked(), Bound: len(s.keys)})
	s.progressed = true
	s.unlockAndEmit(evs)
	s.poke()
	s.pumpRequests(out) // sends the cancels of what was Lost first
}

// lookup finds newly bound hashes in the cache; hits are Loaded, misses
// requested.
func (s *Syncer) lookup(ctx context.Context, out *outbox, look []resources.Hash) {
	hits, err := s.opts.Cache.Lookup(ctx, look)
	if err != nil {
		s.log.Error("cache lookup failed; fetching from the server", "err", err)
	}
	var evs []Event
	var miss []resources.Hash
	s.mu.Lock()
	for _, h := range look {
		hs := s.hashes[h]
		if hs == nil || hs.state != phaseLooking {
			continue // lost meanwhile
		}
		if b, ok := hits[h]; ok && uint64(b.Size) == hs.size {
			hs.state, hs.source = phaseLoaded, b.Source
			for k := range hs.keys {
				evs = append(evs, s.loadedLocked(k, hs))
			}
			continue
		}
		hs.state = phaseRequested
		s.stats.Requested++
		if s.fetchLocked(h, hs) {
			miss = append(miss, h)
		}
	}
	s.unlockAndEmit(evs)
	s.poke()
	s.request(out, miss)
}

// refetch fetches again a loaded hash whose cached bytes did not verify
// when the game read them (the cache dropped the entry, see
// assetsmgr.Cache.OnCorrupt): the game gets Loaded again once a good copy
// is stored. Between sessions it is asked for once the next one binds it.
func (s *Syncer) refetch(h resources.Hash) {
	s.mu.Lock()
	hs := s.hashes[h]
	if hs == nil || hs.state != phaseLoaded || hs.source == assetsmgr.SourcePack {
		// Not loaded, or loaded from the player's own packs: the cache's
		// copy is not the one in use.
		s.mu.Unlock()
		return
	}
	s.log.Warn("cached copy damaged or gone; fetching it again", "hash", h.Short())
	hs.state, hs.retries = phaseRequested, 0 // a new fetch, not a failed one
	s.stats.Rerequested++
	out := s.out
	var miss []resources.Hash
	if out != nil && s.fetchLocked(h, hs) {
		miss = append(miss, h)
	}
	s.mu.Unlock()
	s.poke()
	if len(miss) > 0 {
		s.request(out, miss)
	}
}

// loadedLocked records that key k has its hash loaded and returns the event.
func (s *Syncer) loadedLocked(k resources.Key, hs *hashState) Event {
	ks := s.keys[k]
	ev := Loaded{Binding: ks.b, Source: hs.source}
	if !ks.loaded.IsZero() && ks.loaded != ks.b.Hash {
		ev.Replaces = ks.loaded
	}
	ks.loaded = ks.b.Hash
	return ev
}

// detachLocked removes key k from hash h's users; a hash nobody uses any
// more is cancelled if in flight and forgotten.
func (s *Syncer) detachLocked(out *outbox, k resources.Key, h resources.Hash) {
	hs := s.hashes[h]
	if hs == nil {
		return
	}
	delete(hs.keys, k)
	if len(hs.keys) > 0 {
		return
	}
	if hs.state == phaseRequested || hs.state == phaseStreaming {
		for id, a := range s.streams {
			if a.hash == h {
				s.dropStreamLocked(id)
			}
		}
		// The lock is held: the caller sends it (flushCancels) before any
		// request that takes the room it frees.
		if hs.sent || (hs.fetch != nil && len(hs.fetch.inflight) > 0) {
			s.cancels = append(s.cancels, h)
		}
		s.settleLocked(hs)
		s.resetFetchLocked(hs)
	}
	if hs.state != phaseStoring {
		delete(s.hashes, h)
	}
}

func (s *Syncer) lost(out *outbox, keys []resources.Key) {
	var evs []Event
	s.mu.Lock()
	for _, k := range keys {
		ks := s.keys[k]
		if ks == nil {
			continue // never bound: harmless
		}
		delete(s.keys, k)
		s.detachLocked(out, k, ks.b.Hash)
		evs = append(evs, Lost{Binding: ks.b})
	}
	s.progressed = true
	s.unlockAndEmit(evs)
	s.poke()
	s.pumpRequests(out)
}

// maxBuffered caps the bytes of stream buffers the client holds at once
// (small resources, chunks and encoded streams are assembled in memory).
// The reference server interleaves 16 streams per priority class, at most
// 1 MiB each; a server that opens more streams than fit is not followed:
// their chunks are ignored, and the requests are asked again after a stall.
const maxBuffered = 64 << 20

// addStreamLocked opens stream id, counting its buffer.
func (s *Syncer) addStreamLocked(id uint32, a *assembly) {
	s.streams[id] = a
	s.buffered += int64(cap(a.buf))
}

// forgetStreamLocked closes stream id, whose buffer is handed on.
func (s *Syncer) forgetStreamLocked(id uint32) {
	if a := s.streams[id]; a != nil {
		s.buffered -= int64(cap(a.buf))
		delete(s.streams, id)
	}
}

// dropStreamLocked closes stream id and discards what it received.
func (s *Syncer) dropStreamLocked(id uint32) {
	a := s.streams[id]
	if a == nil {
		return
	}
	if a.pending != nil {
		a.pending.Abort()
	}
	s.forgetStreamLocked(id)
	if a.chunk >= 0 {
		putChunkBuf(a.buf)
	}
}

// streamFailed discards a stream and asks for its hash again, up to
// MaxRetries times, after which the hash is Failed.
func (s *Syncer) streamFailedLocked(h resources.Hash, why error) (again bool, evs []Event) {
	s.stats.StreamErrors++
	hs := s.hashes[h]
	if hs == nil {
		return false, nil
	}
	over := s.countFailureLocked(hs, hs.fetch != nil && len(hs.fetch.inflight) > 0)
	s.resetFetchLocked(hs) // a chunked fetch starts again from its manifest
	if over {
		hs.state = phaseFailed
		s.settleLocked(hs)
		s.log.Error("resource failed", "hash", h.Short(), "err", why, "tries", hs.retries)
		for k := range hs.keys {
			evs = append(evs, Failed{Binding: s.keys[k].b, Err: why})
		}
		return false, evs
	}
	s.log.Warn("bad stream; requesting again", "hash", h.Short(), "err", why, "try", hs.retries)
	hs.state = phaseRequested
	s.stats.Rerequested++
	return true, nil
}

// failStreamAndUnlock records a bad stream for h (s.mu held), releases the
// lock, and reports the failure or asks for h again.
func (s *Syncer) failStreamAndUnlock(out *outbox, h resources.Hash, why error) {
	again, evs := s.streamFailedLocked(h, why)
	s.unlockAndEmit(evs)
	s.poke() // a failure may be the last thing WaitSynced waits for
	s.pumpRequests(out)
	if again {
		s.request(out, []resources.Hash{h})
	}
}

func (s *Syncer) initStream(out *outbox, p *packets.InitResSend) {
	s.mu.Lock()
	s.maxStream = max(s.maxStream, p.Stream)
	hs := s.hashes[p.Hash]
	if hs == nil || (hs.state != phaseRequested && hs.state != phaseStreaming) || hs.atMirror {
		// Not wanted (any more), or not asked of the server (the
		// mirrors have it): ignore its chunks.
		s.mu.Unlock()
		return
	}
	if p.Encoding != packets.EncodingRaw && s.caps&packets.CapZstd == 0 {
		why := fmt.Errorf("stream encoded %s in a session without it", p.Encoding)
		s.resetFetchLocked(hs)
		s.failStreamAndUnlock(out, p.Hash, why)
		return
	}
	a := &assembly{hash: p.Hash, size: p.Length, next: p.Offset, end: p.Offset + p.Length, chunk: -1}
	if p.Encoding != packets.EncodingRaw {
		a.encoded, a.next, a.end = true, 0, p.EncodedLength
	}
	inMemory := hs.fetch != nil || a.encoded || int64(p.Size) <= s.opts.Cache.InlineMax()
	if inMemory && s.buffered+int64(a.end-a.next) > maxBuffered {
		s.stats.StreamErrors++
		s.mu.Unlock()
		s.log.Warn("server opened more streams than the client holds at once; ignoring one", "hash", p.Hash.Short(), "held", s.buffered)
		return
	}
	if f := hs.fetch; f != nil {
		// A chunk of a resource fetched by chunks: it must be one asked
		// for. Another (one cancelled, or asked of an earlier session) is
		// ignored.
		i, ok := -1, false
		if f.m != nil {
			i, ok = f.m.Find(p.Offset, p.Length)
		}
		if !ok || !f.inflight[i] || p.Size != hs.size {
			s.mu.Unlock()
			return
		}
		for id, o := range s.streams {
			if o.fetch == f && o.chunk == i {
				s.dropStreamLocked(id) // replaced by the new stream
			}
		}
		if _, dup := s.streams[p.Stream]; dup {
			s.dropStreamLocked(p.Stream)
			s.mu.Unlock()
			return
		}
		a.chunk, a.fetch = i, f
		a.buf = getChunkBuf(int(a.end - a.next))
		s.addStreamLocked(p.Stream, a)
		s.mu.Unlock()
		return
	}
	// A new stream for the same hash replaces the old one.
	for id, o := range s.streams {
		if o.hash == p.Hash {
			s.dropStreamLocked(id)
		}
	}
	if other, dup := s.streams[p.Stream]; dup {
		// Ids are never reused: the server is confused about both streams.
		s.dropStreamLocked(p.Stream)
		why := fmt.Errorf("stream id %d reused", p.Stream)
		againOther, evs := s.streamFailedLocked(other.hash, why)
		s.unlockAndEmit(evs)
		if againOther {
			s.request(out, []resources.Hash{other.hash})
		}
		s.mu.Lock()
		s.failStreamAndUnlock(out, p.Hash, why)
		return
	}
	if p.Size != hs.size || p.Offset != 0 || p.Length != p.Size {
		var why error
		switch {
		case p.Size != hs.size:
			why = fmt.Errorf("stream of %d bytes for a hash bound with %d", p.Size, hs.size)
		default:
			why = fmt.Errorf("stream of range %d+%d, but the whole resource was requested", p.Offset, p.Length)
		}
		s.failStreamAndUnlock(out, p.Hash, why)
		return
	}
	// Encoded streams are at most MaxEncodedLength: held in memory whole.
	if inMemory {
		a.buf = make([]byte, 0, a.end)
	}
	hs.state = phaseStreaming
	s.addStreamLocked(p.Stream, a)
	s.mu.Unlock()
	if a.buf == nil {
		pend, err := withRoom(context.Background(), s, int64(p.Size), func() (*assetsmgr.Pending, error) { return s.opts.Cache.Create(p.Hash, int64(p.Size)) })
		s.mu.Lock()
		if err != nil {
			// A disk problem is not the server's fault: fail the hash
			// with a clear error rather than re-request forever.
			s.dropStreamLocked(p.Stream)
			s.failHashAndUnlock(hs, p.Hash, "cannot store resource", err)
			return
		}
		if s.streams[p.Stream] == a {
			a.pending = pend
		} else {
			pend.Abort()
		}
		s.mu.Unlock()
	}
}

func (s *Syncer) chunk(out *outbox, p *packets.ChunkSend) {
	s.mu.Lock()
	s.stats.WireBytes += int64(len(p.Data))
	s.progressed = true
	a := s.streams[p.Stream]
	if a == nil {
		if p.Stream > s.maxStream {
			s.stats.StreamErrors++
			s.log.Warn("chunk for an unknown stream ignored", "stream", p.Stream)
		}
		s.mu.Unlock()
		return
	}
	var why error
	switch {
	case p.Offset != a.next:
		why = fmt.Errorf("chunk at offset %d, expected %d", p.Offset, a.next)
	case p.Offset+uint64(len(p.Data)) > a.end:
		why = fmt.Errorf("chunk past the end: %d+%d of %d bytes", p.Offset, len(p.Data), a.end)
	case p.Last != (p.Offset+uint64(len(p.Data)) == a.end):
		why = fmt.Errorf("last-chunk flag %v at %d+%d of %d bytes", p.Last, p.Offset, len(p.Data), a.end)
	}
	if why == nil && a.buf == nil && a.pending == nil {
		why = errors.New("no file to write the stream to")
	}
	if why == nil && a.pending != nil {
		if _, err := a.pending.Write(p.Data); err != nil {
			why = err
		}
	}
	if why != nil {
		s.dropStreamLocked(p.Stream)
		if a.fetch != nil {
			s.chunkFailedAndUnlock(out, a, why)
			return
		}
		if hs := s.hashes[a.hash]; hs != nil && isDiskError(why) {
			// Not the server's fault: fetching it again would not help.
			s.failHashAndUnlock(hs, a.hash, "cannot store resource", why)
			return
		}
		s.failStreamAndUnlock(out, a.hash, why)
		return
	}
	if a.buf != nil {
		a.buf = append(a.buf, p.Data...)
	}
	a.next += uint64(len(p.Data))
	if !a.encoded {
		s.stats.BytesReceived += int64(len(p.Data))
	}
	if a.next < a.end {
		s.mu.Unlock()
		return
	}
	s.forgetStreamLocked(p.Stream)
	if f := a.fetch; f != nil {
		// One chunk in: its request's room is free.
		if f.inflight[a.chunk] {
			delete(f.inflight, a.chunk)
			f.flight -= int64(f.m.Chunks[a.chunk].Length)
			s.outstanding--
		}
		s.mu.Unlock()
		s.pumpRequests(out)
		s.chunkReceived(out, a)
		return
	}
	hs := s.hashes[a.hash]
	hs.state = phaseStoring
	s.settleLocked(hs)
	names := s.namesLocked(hs)
	s.mu.Unlock()
	s.pumpRequests(out)

	done := func(err error) { s.stored(a.hash, err) }
	data, err := a.buf, error(nil)
	if a.encoded {
		data, err = s.decode(a)
	}
	switch {
	case err != nil:
	case a.pending != nil:
		err = a.pending.Commit(done, names...)
	case int64(len(data)) <= s.opts.Cache.InlineMax():
		err = s.opts.Cache.Put(a.hash, data, done, names...)
	default:
		// Decoded past the inline size: write it out as a blob file.
		var pend *assetsmgr.Pending
		pend, err = withRoom(context.Background(), s, int64(len(data)), func() (*assetsmgr.Pending, error) { return s.opts.Cache.Create(a.hash, int64(len(data))) })
		if err == nil {
			if _, err = pend.Write(data); err == nil {
				err = pend.Commit(done, names...)
			} else {
				pend.Abort()
			}
		}
	}
	if err != nil {
		s.mu.Lock()
		if hs := s.hashes[a.hash]; hs != nil && hs.state == phaseStoring && isDiskError(err) {
			// Not the server's fault: fetching it again would not help.
			s.failHashAndUnlock(hs, a.hash, "cannot store resource", err)
			return
		}
		// Verification failed: the server sent other bytes than bound.
		s.failStreamAndUnlock(out, a.hash, err)
	}
}

// chunkFailedAndUnlock records a bad chunk stream (s.mu held) and asks for
// the chunk again, up to MaxRetries bad streams per resource.
func (s *Syncer) chunkFailedAndUnlock(out *outbox, a *assembly, why error) {
	hs := s.hashes[a.hash]
	s.stats.StreamErrors++
	if hs == nil || hs.fetch != a.fetch {
		s.mu.Unlock()
		return
	}
	if s.countFailureLocked(hs, true) {
		s.failHashAndUnlock(hs, a.hash, "resource failed", fmt.Errorf("chunk %d: %w", a.chunk, why))
		return
	}
	s.log.Warn("bad chunk stream; requesting again", "hash", a.hash.Short(), "chunk", a.chunk, "err", why, "try", hs.retries)
	s.stats.Rerequested++
	w := a.fetch.want(a.hash, hs.prio, a.chunk) // still in flight: the server replaces it
	s.mu.Unlock()
	s.sendRequests(out, []packets.Want{w})
}

// stored is called by the cache once a verified resource is durable.
func (s *Syncer) stored(h resources.Hash, err error) {
	var evs []Event
	s.mu.Lock()
	hs := s.hashes[h]
	switch {
	case hs == nil:
	case err != nil:
		hs.state = phaseFailed
		s.log.Error("cannot store resource", "hash", h.Short(), "err", err)
		for k := range hs.keys {
			evs = append(evs, Failed{Binding: s.keys[k].b, Err: err})
		}
	case len(hs.keys) == 0:
		delete(s.hashes, h) // lost while storing; it is cached for next time
	default:
		hs.state, hs.source = phaseLoaded, assetsmgr.SourceNetwork
		for k := range hs.keys {
			evs = append(evs, s.loadedLocked(k, hs))
		}
	}
	s.progressed = true
	s.unlockAndEmit(evs)
	s.poke()
}

func (s *Syncer) resourceError(out *outbox, p *packets.ResourceError) {
	s.mu.Lock()
	hs := s.hashes[p.Hash]
	if hs == nil || (hs.state != phaseRequested && hs.state != phaseStreaming) || hs.atMirror {
		s.mu.Unlock()
		return // not wanted any more (e.g. replaced by a reload), or not asked of the server
	}
	for id, a := range s.streams {
		if a.hash == p.Hash {
			s.dropStreamLocked(id)
		}
	}
	why := fmt.Errorf("server: %s: %s", p.Code, p.Message)
	var again bool
	var evs []Event
	switch p.Code {
	case packets.ErrorRangeInvalid, packets.ErrorTooLarge:
		hs.retries = s.opts.MaxRetries // will not get better
	}
	again, evs = s.streamFailedLocked(p.Hash, why)
	s.unlockAndEmit(evs)
	s.poke()
	s.pumpRequests(out)
	if again {
		// The server may be mid-reload: give it a moment.
		out.wg.Go(func() {
			select {
			case <-time.After(200 * time.Millisecond):
				s.request(out, []resources.Hash{p.Hash})
			case <-out.done:
			}
		})
	}
}
