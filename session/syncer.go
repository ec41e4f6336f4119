package session

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"runtime"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/gorilla/websocket"
	"github.com/voxsync/voxsync/assetsmgr"
	"github.com/voxsync/voxsync/packets"
	"github.com/voxsync/voxsync/resources"
)

// Sentinels for why a Syncer stopped.
var (
	// ErrRefused: the server refused the session for a reason retrying
	// will not fix (version mismatch, auth).
	ErrRefused = errors.New("server refused the session")
	// ErrProtocol: the server sent something malformed or out of order.
	ErrProtocol = errors.New("protocol error from server")
)

// SyncOptions configure a Syncer.
type SyncOptions struct {
	URL    string // ws://host:port/ws
	Cache  *assetsmgr.Cache
	Client uuid.UUID // zero: a random one
	Token  string
	Logger *slog.Logger
	// OnEvent receives events in order, one at a time, from the Syncer's
	// goroutines; it should return quickly.
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
}

// Syncer keeps a game client's resources in sync with a server: it follows
// Bind and Lost, loads hashes from the cache, requests misses, assembles
// and verifies streams, and stores them.
type Syncer struct {
	opts SyncOptions
	log  *slog.Logger

	evMu sync.Mutex // serialises OnEvent calls

	mu         sync.Mutex // guards the fields below
	keys       map[resources.Key]*keyState
	hashes     map[resources.Hash]*hashState
	streams    map[uint32]*assembly
	discarded  map[uint32]bool // streams dropped on purpose; their chunks are ignored
	stats      Stats
	out        *outbox // the current session's writer queue; nil between sessions
	limits     packets.Limits
	lastRecv   time.Time
	lastBind   time.Time
	pos        *packets.Move
	changed    chan struct{} // cap 1: state changed, for WaitSynced
	progressed bool
	started    time.Time // Run's start
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
}

type hashPhase uint8

const (
	phaseLooking   hashPhase = iota // being looked up in the cache
	phaseRequested                  // asked for, no stream yet
	phaseStreaming                  // stream open
	phaseStoring                    // verified, being made durable
	phaseLoaded
	phaseFailed
)

// assembly is one stream being received: small ones in memory, large ones
// in a cache temp file.
type assembly struct {
	hash    resources.Hash
	size    uint64
	next    uint64
	buf     []byte
	pending *assetsmgr.Pending
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
	return &Syncer{
		opts:      opts,
		log:       opts.Logger,
		keys:      make(map[resources.Key]*keyState),
		hashes:    make(map[resources.Hash]*hashState),
		streams:   make(map[uint32]*assembly),
		discarded: make(map[uint32]bool),
		changed:   make(chan struct{}, 1),
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

// Synced reports whether at least one resource is bound and every bound
// resource is loaded or failed for good.
func (s *Syncer) Synced() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.syncedLocked()
}

func (s *Syncer) syncedLocked() bool {
	if len(s.keys) == 0 {
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

// WaitSynced waits until Synced holds and no Bind has arrived for settle,
// so a burst of Binds still in flight is not mistaken for the end.
func (s *Syncer) WaitSynced(ctx context.Context, settle time.Duration) error {
	for {
		s.mu.Lock()
		ok := s.syncedLocked()
		wait := settle - time.Since(s.lastBind)
		s.mu.Unlock()
		if ok && wait <= 0 {
			return nil
		}
		var timer <-chan time.Time
		if ok {
			timer = time.After(wait)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-s.changed:
		case <-timer:
		}
	}
}

// Open returns a loaded resource's bytes from the cache.
func (s *Syncer) Open(ctx context.Context, h resources.Hash) (assetsmgr.Blob, error) {
	hits, err := s.opts.Cache.Lookup(ctx, []resources.Hash{h})
	if err != nil {
		return assetsmgr.Blob{}, err
	}
	b, ok := hits[h]
	if !ok {
		return assetsmgr.Blob{}, fmt.Errorf("open %s: not in the cache", h.Short())
	}
	return b, nil
}

// Move reports the player's position; it is sent now if connected and
// again after every reconnect.
func (s *Syncer) Move(x, y, z float64) {
	m := &packets.Move{X: x, Y: y, Z: z}
	s.mu.Lock()
	s.pos = m
	out := s.out
	s.mu.Unlock()
	if out != nil {
		s.send(out, m)
	}
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

func (s *Syncer) emit(evs []Event) {
	if len(evs) == 0 || s.opts.OnEvent == nil {
		return
	}
	s.evMu.Lock()
	defer s.evMu.Unlock()
	for _, e := range evs {
		s.opts.OnEvent(e)
	}
}

// poke wakes WaitSynced and notes the first moment everything was loaded.
func (s *Syncer) poke() {
	s.mu.Lock()
	if s.stats.SyncSeconds == 0 && !s.started.IsZero() && s.syncedLocked() {
		s.stats.SyncSeconds = time.Since(s.started).Seconds()
	}
	s.mu.Unlock()
	select {
	case s.changed <- struct{}{}:
	default:
	}
}

// Run syncs until ctx ends, reconnecting with backoff (200 ms doubling to
// 5 s, with jitter) unless NoReconnect is set or the server refused.
func (s *Syncer) Run(ctx context.Context) error {
	s.mu.Lock()
	s.started = time.Now()
	s.mu.Unlock()
	backoff := 200 * time.Millisecond
	for {
		start := time.Now()
		err := s.session(ctx)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if errors.Is(err, ErrRefused) || s.opts.NoReconnect {
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

// session runs one connection.
func (s *Syncer) session(ctx context.Context) error {
	dialer := websocket.Dialer{HandshakeTimeout: 10 * time.Second, ReadBufferSize: 64 << 10, WriteBufferSize: 16 << 10}
	conn, resp, err := dialer.DialContext(ctx, s.opts.URL, nil)
	if err != nil {
		if resp != nil && resp.StatusCode != http.StatusSwitchingProtocols {
			return fmt.Errorf("connect to %s: HTTP %s", s.opts.URL, resp.Status)
		}
		return fmt.Errorf("connect to %s: %w", s.opts.URL, err)
	}
	defer conn.Close()
	conn.SetReadLimit(packets.MaxPacketSize)

	conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if err := conn.WriteMessage(websocket.BinaryMessage, packets.Encode(&packets.Hello{Version: packets.Version, Client: s.opts.Client, Token: s.opts.Token})); err != nil {
		return fmt.Errorf("send hello: %w", err)
	}
	conn.SetReadDeadline(time.Now().Add(15 * time.Second))
	_, data, err := conn.ReadMessage()
	if err != nil {
		return fmt.Errorf("read welcome: %w", err)
	}
	p, err := packets.Decode(data)
	if err != nil {
		return fmt.Errorf("read welcome: %w: %w", ErrProtocol, err)
	}
	switch p := p.(type) {
	case *packets.Welcome:
		s.mu.Lock()
		s.limits = p.Limits
		s.mu.Unlock()
		s.log.Info("connected", "server", s.opts.URL, "session", p.Session)
	case *packets.Disconnect:
		err := fmt.Errorf("server said %s: %s", p.Code, p.Reason)
		if p.Code == packets.DisconnectVersionMismatch || p.Code == packets.DisconnectAuthFailed {
			return fmt.Errorf("%w: %w", ErrRefused, err)
		}
		return err
	default:
		return fmt.Errorf("%w: expected Welcome, got %s", ErrProtocol, p.Type())
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	out := &outbox{ch: make(chan packets.Packet, 256), done: ctx.Done(), lookups: make(chan struct{}, runtime.GOMAXPROCS(0))}
	writerDone := make(chan error, 1)
	go func() {
		err := s.writeLoop(ctx, conn, out)
		if err != nil {
			conn.Close() // unblocks the reader
		}
		writerDone <- err
	}()

	// Everything outstanding from an earlier session is asked for again;
	// the new session's Binds only cover what changed.
	s.mu.Lock()
	s.stats.Sessions++
	s.out = out
	s.lastRecv = time.Now()
	s.resetStreamsLocked()
	var again []resources.Hash
	for h, st := range s.hashes {
		if st.state == phaseRequested || st.state == phaseStreaming {
			st.state = phaseRequested
			again = append(again, h)
		}
	}
	pos := s.pos
	s.mu.Unlock()
	if pos != nil {
		s.send(out, pos)
	}
	s.request(out, again)

	err = s.readLoop(ctx, conn, out)
	cancel()
	out.wg.Wait()
	werr := <-writerDone
	s.mu.Lock()
	s.out = nil
	s.resetStreamsLocked()
	s.mu.Unlock()
	if err == nil {
		err = werr
	}
	return err
}

func (s *Syncer) resetStreamsLocked() {
	for id, a := range s.streams {
		if a.pending != nil {
			a.pending.Abort()
		}
		delete(s.streams, id)
	}
	clear(s.discarded)
}

// writeLoop owns the socket's write side: queued packets, pings, and the
// periodic stall check and progress event.
func (s *Syncer) writeLoop(ctx context.Context, conn *websocket.Conn, out *outbox) error {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	lastPing := time.Now()
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
			if time.Since(lastPing) > 15*time.Second {
				lastPing = time.Now()
				if err := conn.WriteControl(websocket.PingMessage, nil, time.Now().Add(10*time.Second)); err != nil {
					return err
				}
			}
			s.checkStall(out)
			s.mu.Lock()
			var ev []Event
			if s.progressed {
				s.progressed = false
				ev = append(ev, Progress{Stats: s.statsLocked()})
			}
			s.mu.Unlock()
			s.emit(ev)
		}
	}
}

// checkStall re-requests everything outstanding when nothing has arrived
// for StallTimeout. Any traffic counts as progress: with a long queue on
// the server a hash may wait its turn for a while, and that is not a stall.
func (s *Syncer) checkStall(out *outbox) {
	s.mu.Lock()
	if time.Since(s.lastRecv) < s.opts.StallTimeout {
		s.mu.Unlock()
		return
	}
	var again []resources.Hash
	for h, st := range s.hashes {
		if st.state == phaseRequested || st.state == phaseStreaming {
			again = append(again, h)
		}
	}
	s.lastRecv = time.Now()
	s.stats.Rerequested += len(again)
	s.mu.Unlock()
	if len(again) > 0 {
		s.log.Warn("no data from server; requesting again", "hashes", len(again), "after", s.opts.StallTimeout)
		s.request(out, again)
	}
}

// request sends ResourceRequests for hs in batches within the server's limit.
func (s *Syncer) request(out *outbox, hs []resources.Hash) {
	s.mu.Lock()
	max := int(s.limits.MaxRequestHashes)
	s.mu.Unlock()
	if max <= 0 {
		max = 1
	}
	for len(hs) > 0 {
		n := min(len(hs), max)
		r := &packets.ResourceRequest{Wants: make([]packets.Want, n)}
		for i := range n {
			r.Wants[i].Hash = hs[i]
		}
		s.send(out, r)
		hs = hs[n:]
	}
}

func (s *Syncer) readLoop(ctx context.Context, conn *websocket.Conn, out *outbox) error {
	conn.SetPingHandler(func(data string) error {
		// Answer from here is allowed: gorilla serialises control writes.
		return conn.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(10*time.Second))
	})
	var buf bytes.Buffer
	for {
		conn.SetReadDeadline(time.Now().Add(60 * time.Second))
		typ, r, err := conn.NextReader()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("read: %w", err)
		}
		buf.Reset()
		if _, err := buf.ReadFrom(r); err != nil {
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
	switch p := p.(type) {
	case *packets.Bind:
		s.bind(ctx, out, p.Entries)
	case *packets.Lost:
		s.lost(out, p.Entries)
	case *packets.InitResSend:
		s.initStream(out, p)
	case *packets.ChunkSend:
		s.chunk(out, p)
	case *packets.ResourceError:
		s.resourceError(out, p)
	case *packets.Disconnect:
		err := fmt.Errorf("server disconnected: %s: %s", p.Code, p.Reason)
		if p.Code == packets.DisconnectVersionMismatch || p.Code == packets.DisconnectAuthFailed {
			err = fmt.Errorf("%w: %w", ErrRefused, err)
		}
		s.log.Info("server disconnected", "code", p.Code, "reason", p.Reason)
		return err
	default:
		s.send(out, &packets.Disconnect{Code: packets.DisconnectProtocolError, Reason: "unexpected " + p.Type().String() + " from server"})
		return fmt.Errorf("%w: unexpected %s", ErrProtocol, p.Type())
	}
	return nil
}

func (s *Syncer) bind(ctx context.Context, out *outbox, entries []resources.Binding) {
	var evs []Event
	var look []resources.Hash
	s.mu.Lock()
	s.lastBind = time.Now()
	for _, b := range entries {
		k := b.Key()
		ks := s.keys[k]
		if ks != nil && ks.b.Hash == b.Hash && ks.b.Ref == b.Ref {
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
			hs = &hashState{size: b.Size, keys: make(map[resources.Key]bool), state: phaseLooking}
			s.hashes[b.Hash] = hs
			look = append(look, b.Hash)
		}
		hs.keys[k] = true
		if hs.state == phaseLoaded {
			evs = append(evs, s.loadedLocked(k, hs))
		}
	}
	s.progressed = true
	s.mu.Unlock()
	s.emit(evs)
	s.poke()
	if len(look) == 0 {
		return
	}
	// Look up on a worker so the reader goes on decoding: a join's Binds
	// arrive in several packets, and their lookups (reading and verifying
	// thousands of cached blobs) then run on all cores at once.
	out.lookups <- struct{}{}
	out.wg.Go(func() {
		defer func() { <-out.lookups }()
		s.lookup(ctx, out, look)
	})
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
		miss = append(miss, h)
	}
	s.stats.Requested += len(miss)
	s.mu.Unlock()
	s.emit(evs)
	s.poke()
	s.request(out, miss)
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
		// The lock is held: send from a goroutine the session waits for.
		out.wg.Go(func() { s.send(out, &packets.ResourceCancel{Hashes: []resources.Hash{h}}) })
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
	s.mu.Unlock()
	s.emit(evs)
	s.poke()
}

func (s *Syncer) dropStreamLocked(id uint32) {
	if a := s.streams[id]; a != nil && a.pending != nil {
		a.pending.Abort()
	}
	delete(s.streams, id)
	s.discarded[id] = true
}

// streamFailed discards a stream and asks for its hash again, up to
// MaxRetries times, after which the hash is Failed.
func (s *Syncer) streamFailedLocked(h resources.Hash, why error) (again bool, evs []Event) {
	s.stats.StreamErrors++
	hs := s.hashes[h]
	if hs == nil {
		return false, nil
	}
	hs.retries++
	if hs.retries > s.opts.MaxRetries {
		hs.state = phaseFailed
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
	s.mu.Unlock()
	s.emit(evs)
	if again {
		s.request(out, []resources.Hash{h})
	}
}

func (s *Syncer) initStream(out *outbox, p *packets.InitResSend) {
	s.mu.Lock()
	hs := s.hashes[p.Hash]
	if hs == nil || (hs.state != phaseRequested && hs.state != phaseStreaming) {
		// Not wanted (any more): ignore its chunks.
		s.discarded[p.Stream] = true
		s.mu.Unlock()
		return
	}
	// A new stream for the same hash replaces the old one.
	for id, a := range s.streams {
		if a.hash == p.Hash {
			s.dropStreamLocked(id)
		}
	}
	if _, dup := s.streams[p.Stream]; dup || p.Size != hs.size {
		var why error
		if p.Size != hs.size {
			why = fmt.Errorf("stream of %d bytes for a hash bound with %d", p.Size, hs.size)
		} else {
			why = fmt.Errorf("stream id %d reused", p.Stream)
		}
		s.discarded[p.Stream] = true
		s.failStreamAndUnlock(out, p.Hash, why)
		return
	}
	a := &assembly{hash: p.Hash, size: p.Size}
	if int64(p.Size) <= s.opts.Cache.InlineMax() {
		a.buf = make([]byte, 0, p.Size)
	}
	hs.state = phaseStreaming
	delete(s.discarded, p.Stream)
	s.streams[p.Stream] = a
	s.mu.Unlock()
	if a.buf == nil {
		pend, err := s.opts.Cache.Create(p.Hash, int64(p.Size))
		s.mu.Lock()
		if err != nil {
			// A disk problem is not the server's fault: fail the hash
			// with a clear error rather than re-request forever.
			s.dropStreamLocked(p.Stream)
			hs.state = phaseFailed
			var evs []Event
			for k := range hs.keys {
				evs = append(evs, Failed{Binding: s.keys[k].b, Err: err})
			}
			s.mu.Unlock()
			s.log.Error("cannot store resource", "hash", p.Hash.Short(), "err", err)
			s.emit(evs)
			s.poke()
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
	s.stats.BytesReceived += int64(len(p.Data))
	s.progressed = true
	a := s.streams[p.Stream]
	if a == nil {
		if !s.discarded[p.Stream] {
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
	case p.Offset+uint64(len(p.Data)) > a.size:
		why = fmt.Errorf("chunk past the end: %d+%d of %d bytes", p.Offset, len(p.Data), a.size)
	case p.Last != (p.Offset+uint64(len(p.Data)) == a.size):
		why = fmt.Errorf("last-chunk flag %v at %d+%d of %d bytes", p.Last, p.Offset, len(p.Data), a.size)
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
		s.failStreamAndUnlock(out, a.hash, why)
		return
	}
	if a.buf != nil {
		a.buf = append(a.buf, p.Data...)
	}
	a.next += uint64(len(p.Data))
	if a.next < a.size {
		s.mu.Unlock()
		return
	}
	delete(s.streams, p.Stream)
	hs := s.hashes[a.hash]
	hs.state = phaseStoring
	s.mu.Unlock()

	done := func(err error) { s.stored(a.hash, err) }
	var err error
	if a.buf != nil {
		err = s.opts.Cache.Put(a.hash, a.buf, done)
	} else {
		err = a.pending.Commit(done)
	}
	if err != nil {
		// Verification failed: the server sent other bytes than bound.
		s.mu.Lock()
		s.failStreamAndUnlock(out, a.hash, err)
	}
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
	s.mu.Unlock()
	s.emit(evs)
	s.poke()
}

func (s *Syncer) resourceError(out *outbox, p *packets.ResourceError) {
	s.mu.Lock()
	hs := s.hashes[p.Hash]
	if hs == nil || (hs.state != phaseRequested && hs.state != phaseStreaming) {
		s.mu.Unlock()
		return // not wanted any more (e.g. replaced by a reload)
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
	s.mu.Unlock()
	s.emit(evs)
	s.poke()
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
