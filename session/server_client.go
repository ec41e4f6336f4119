package session

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"
	"unique"

	"github.com/google/uuid"
	"github.com/gorilla/websocket"
	"github.com/voxsync/voxsync/compression"
	"github.com/voxsync/voxsync/manifest"
	"github.com/voxsync/voxsync/packets"
	"github.com/voxsync/voxsync/packs"
	"github.com/voxsync/voxsync/resources"
	"github.com/voxsync/voxsync/session/world"
)

// maxQueuedErrors caps ResourceErrors waiting to be written; a client that
// provokes more than this without reading is disconnected.
const maxQueuedErrors = 4096

// Client is one connected game client as the server sees it. Its methods
// are safe for concurrent use; the game server calls Use and Release from
// its own goroutines.
type Client struct {
	srv     *Server
	conn    *websocket.Conn
	log     *slog.Logger
	remote  string
	addr    netip.Prefix // what per-address limits count against
	session uuid.UUID
	hello   packets.Hello
	caps    uint64 // the session's capabilities, as sent in Welcome
	// mirrorBytes: what the client reports it fetched from mirrors.
	mirrorBytes atomic.Uint64
	// helpMirrors: the client may take from this server work that slow
	// mirrors have not got to (decided at join, see Server.join).
	helpMirrors bool

	ctx        context.Context
	cancel     context.CancelFunc
	wake       chan struct{} // cap 1: the writer has work
	writerDone chan struct{}

	mu   sync.Mutex // guards every field below
	view *packs.View
	// bind is what the client uses and was told: its Binds and Losts.
	bind bindings
	errs []packets.ResourceError
	// Requests: queues hold them in order, one queue per priority class;
	// pending maps each request to the generation of its live queue item,
	// so a re-request or a cancel just bumps or deletes it and stale items
	// are skipped. Keyed by hash and range, not entry: a reload makes new
	// entries for the same content.
	queues  [numClasses]reqQueue
	queuedN int // items in all queues, live or stale
	// pending holds whole-resource requests by interned hash (nearly all
	// of them; a client may have thousands, and a handle is a quarter of
	// a hash), parts the range and manifest requests of chunked fetches;
	// nil until a client makes one. See pendLocked.
	pending map[unique.Handle[resources.Hash]]pend
	parts   map[reqKey]pend
	// queuedParts are the keys of queued range and manifest requests, by
	// generation, so that a queue item stays small.
	queuedParts map[uint32]reqKey
	gen         uint32
	// active are the streams being interleaved, at most active_streams
	// per class; only the highest class with any is served.
	active     [numClasses][]*stream
	rr         [numClasses]int // round-robin position in each active list
	nextStream uint32
	regions    map[world.Region]bool // world regions in view
	center     world.Region          // the region the player is in
	hasCenter  bool
	// marker: a BindsDone{markerSeq} is due after the next flush's Binds,
	// for the join (seq 0) or the latest Move.
	marker    bool
	markerSeq uint32
	moved     bool                // a Move has arrived
	moveSeq   uint32              // the newest Move's seq
	bye       *packets.Disconnect // set once: the writer sends it and stops
	// end is why the session ended, from its first cause (a Disconnect
	// either way, a slow socket, a read error), for the one log line.
	end string
	// ending mirrors bye != nil for the reader, which stops acting on a
	// client's packets once the session is ending.
	ending atomic.Bool
	// writeStart is when the writer's current write began (Unix ns), 0
	// between writes; acked is the TCP bytes acknowledged when the progress
	// watchdog last looked (only the watchdog touches it).
	writeStart atomic.Int64
	acked      uint64
	// chunkHdr is the writer's scratch for a ChunkSend header.
	chunkHdr [packets.ChunkHeaderSize]byte
}

// reqKey names one request: a whole resource (n is wholeResource), a
// range of it, or its manifest.
type reqKey struct {
	hash     resources.Hash
	off, n   uint64
	manifest bool
}

// wholeResource is reqKey.n for a request without a range.
const wholeResource = math.MaxUint64

// pend is a pending request's live generation and priority class.
type pend struct {
	gen   uint32
	class uint8
}

// Priority classes: every request of a higher class is served before any
// of a lower one (packets.PriorityNow and friends).
const numClasses = 3

func classOf(priority uint8) uint8 {
	switch {
	case priority >= 128:
		return 2
	case priority >= 1:
		return 1
	}
	return 0
}

// queued is a request waiting for its turn: 16 bytes, as a thousand
// clients may queue a thousand each.
type queued struct {
	entry *packs.Entry
	gen   uint32
	part  bool // a range or manifest request: its key is in Client.queuedParts[gen]
}

// queuedKeyLocked is the request q answers.
func (c *Client) queuedKeyLocked(q queued) reqKey {
	if q.part {
		return c.queuedParts[q.gen]
	}
	return reqKey{hash: q.entry.Hash, n: wholeResource}
}

// stream is a resource, range or manifest being sent. Only the writer
// goroutine touches its content and progress; membership in active is
// under Client.mu.
type stream struct {
	entry     *packs.Entry
	gen       uint32
	part      *reqKey // a range or manifest request; nil for a whole resource
	class     uint8   // the active list it is in
	id        uint32
	content   packs.Content
	enc       []byte // an encoded stream's bytes, sent instead of content
	next, end uint64
	started   bool
	began     time.Time          // first write, for the stream-duration metric
	mf        *manifest.Manifest // a manifest request's chunks
	mfNext    int                // the next manifest chunk to send
}

// key is the request s answers.
func (s *stream) key() reqKey {
	if s.part != nil {
		return *s.part
	}
	return reqKey{hash: s.entry.Hash, n: wholeResource}
}

func newClient(s *Server, conn *websocket.Conn, remote string) *Client {
	c := &Client{
		srv:        s,
		conn:       conn,
		remote:     remote,
		addr:       addrKey(remote),
		session:    uuid.New(),
		wake:       make(chan struct{}, 1),
		writerDone: make(chan struct{}),
		pending:    make(map[unique.Handle[resources.Hash]]pend),
		regions:    make(map[world.Region]bool),
	}
	c.ctx, c.cancel = context.WithCancel(s.ctx)
	c.log = s.log.With("remote", remote, "session", c.session.String()[:8])
	return c
}

// ID returns the client's UUID from its Hello.
func (c *Client) ID() uuid.UUID { return c.hello.Client }

// Session returns the session UUID the server assigned.
func (c *Client) Session() uuid.UUID { return c.session }

// Use adds a use of loc for this client; the first use sends a Bind
// (none for a preloaded resource, which is in use already).
func (c *Client) Use(l resources.Loc) {
	k := resources.Key{Type: l.Type, ID: c.srv.ids.ID(l)}
	c.mu.Lock()
	c.useLocked(k)
	c.mu.Unlock()
	c.poke()
}

// Release removes a use that Use added; the last sends a Lost unless loc
// is preloaded. Releasing a use that Use did not add is an error: a
// preloaded resource is in use for as long as it matches the preload
// patterns.
func (c *Client) Release(l resources.Loc) error {
	k := resources.Key{Type: l.Type, ID: c.srv.ids.ID(l)}
	c.mu.Lock()
	err := c.releaseLocked(k)
	c.mu.Unlock()
	c.poke()
	return err
}

func (c *Client) useLocked(k resources.Key) {
	if err := c.bind.use(k); err != nil {
		c.log.Error("use resource", "key", k, "err", err)
	}
}

func (c *Client) releaseLocked(k resources.Key) error { return c.bind.release(k) }

// Bound returns how many resources the client has been told about.
func (c *Client) Bound() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.bind.bound
}

// Disconnect ends the session: the client gets a Disconnect with the reason,
// then the connection closes. Later calls do nothing.
func (c *Client) Disconnect(code packets.DisconnectCode, reason string) {
	c.mu.Lock()
	c.byeLocked(code, reason)
	c.mu.Unlock()
	c.poke()
}

func (c *Client) poke() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// viewChanged moves the client to view v and its preload set pre: of the
// keys whose content changed (or that appeared or went), those the client
// uses or was told about are re-checked. The cost is in proportion to what
// changed, not to what the client has bound. Called with the server's lock
// held.
func (c *Client) viewChanged(v *packs.View, pre *preloadSet, changed []resources.Key) {
	c.mu.Lock()
	c.view = v
	work := c.bind.viewChanged(pre, changed)
	c.mu.Unlock()
	if work {
		c.poke()
	}
}

// serve runs the session on the handler goroutine: handshake, then the
// reader loop here and the writer loop on its own goroutine.
func (c *Client) serve() {
	defer c.conn.Close()
	if err := c.handshake(); err != nil {
		c.refuse(err)
		return
	}
	defer c.srv.leave(c)
	joined := time.Now()
	c.log.Info("client connected", "client", c.hello.Client, "version", c.hello.Version)
	if c.srv.onJoin != nil {
		c.srv.onJoin(c)
	}
	go c.writeLoop()
	err := c.readLoop()
	c.cancel()
	// The reader is done (the peer closed, went silent for two ping
	// intervals, or a Disconnect was due): a writer blocked on the socket
	// gets one more second, not write_timeout after write_timeout.
	c.conn.NetConn().SetWriteDeadline(time.Now().Add(time.Second))
	<-c.writerDone
	c.closeStreams()
	c.mu.Lock()
	end := c.end
	c.mu.Unlock()
	if end == "" {
		end = "connection ended: " + err.Error()
	}
	c.log.Info("client disconnected", "reason", end, "after", time.Since(joined).Round(time.Millisecond))
}

// refuse ends a session that never started: the client gets a Disconnect
// with the reason (an errJoin's code, else protocol error).
func (c *Client) refuse(err error) {
	var j errJoin
	code, reason := packets.DisconnectProtocolError, err.Error()
	if errors.As(err, &j) {
		code, reason = j.code, j.reason
	}
	c.log.Info("handshake refused", "code", code, "reason", reason)
	c.srv.metrics.disconnects.WithLabelValues(code.String()).Inc()
	c.writeNow(&packets.Disconnect{Code: code, Reason: packets.TruncateMessage(reason)})
	c.closeGracefully()
}

func (c *Client) handshake() error {
	timeout := c.srv.cfg.HandshakeTimeout.Duration
	c.conn.SetReadDeadline(time.Now().Add(timeout))
	var buf bytes.Buffer
	typ, err := readMessage(c.conn, &buf)
	switch {
	case isTimeout(err):
		return fmt.Errorf("no Hello within handshake_timeout (%s)", timeout)
	case err != nil:
		return fmt.Errorf("read Hello: %w", err)
	case typ != websocket.BinaryMessage:
		return errors.New("expected a binary Hello message, got a text message")
	}
	data := buf.Bytes()
	// The version comes first and is read before anything else, so a
	// client of any other version is told so, whatever its Hello holds.
	if v, ok := packets.HelloVersion(data); ok && packets.Type(data[0]) == packets.TypeHello && v != packets.Version {
		return errJoin{packets.DisconnectVersionMismatch, fmt.Sprintf(
			"protocol version mismatch: server speaks version %d, client sent version %d; update the client and server to the same release",
			packets.Version, v)}
	}
	p, err := packets.Decode(data)
	if err != nil {
		return err
	}
	h, ok := p.(*packets.Hello)
	if !ok {
		return fmt.Errorf("expected Hello as the first packet, got %s", p.Type())
	}
	if c.srv.cfg.AuthToken != "" {
		if wait := c.srv.addrs.authBlocked(c.addr); wait > 0 {
			return errJoin{packets.DisconnectAuthFailed, fmt.Sprintf(
				"too many refused tokens from your address; tokens are not checked for another %s", wait.Round(time.Second))}
		}
		if !tokenMatches(h.Token, c.srv.cfg.AuthToken) {
			c.srv.addrs.authFailed(c.addr)
			if h.Token == "" {
				// Said apart: the usual cause is a client not told the
				// token at all, not a wrong one.
				return errJoin{packets.DisconnectAuthFailed, "auth token missing: this server wants one; give the client -token"}
			}
			return errJoin{packets.DisconnectAuthFailed, "auth token refused; check the client's -token against the server's auth_token"}
		}
	}
	c.hello = *h
	if err := c.srv.join(c); err != nil {
		return err
	}
	c.conn.SetReadDeadline(time.Time{})
	c.caps = h.Capabilities & c.srv.caps
	welcome := &packets.Welcome{Version: packets.Version, Session: c.session, Capabilities: c.caps, Limits: c.srv.limits}
	if err := c.writeNow(welcome); err != nil {
		c.srv.leave(c)
		return fmt.Errorf("write welcome: %w", err)
	}
	if c.caps&packets.CapMirrors != 0 {
		if err := c.writeNow(&packets.Mirrors{Help: c.helpMirrors, URLs: c.srv.mirrors}); err != nil {
			c.srv.leave(c)
			return fmt.Errorf("write mirrors: %w", err)
		}
	}
	return nil
}

// writeNow writes one packet; only the handshake (before the writer starts)
// and the writer call it.
func (c *Client) writeNow(p packets.Packet) error {
	return c.writeMessage(packets.Encode(p))
}

// writeMessage writes one encoded packet with a write_timeout deadline,
// marking the write as in progress for the server's progress watchdog,
// which extends the deadline while the peer is still taking bytes: a
// client is slow when it makes no progress for write_timeout, not when one
// message takes that long on a congested link.
func (c *Client) writeMessage(b []byte) error {
	return c.timedWrite(func() error { return c.conn.WriteMessage(websocket.BinaryMessage, b) })
}

// writeParts writes one message of hdr followed by payload through
// gorilla's write buffer: a payload that fits is sent with hdr as one
// frame, and a large one as a frame of its own straight from the caller's
// bytes (then an empty final frame), without a copy.
func (c *Client) writeParts(hdr, payload []byte) error {
	return c.timedWrite(func() error {
		w, err := c.conn.NextWriter(websocket.BinaryMessage)
		if err != nil {
			return err
		}
		if _, err = w.Write(hdr); err == nil {
			_, err = w.Write(payload)
		}
		// gorilla gives every frame the deadline set before the message:
		// had the watchdog extended it while the payload went out (a slow
		// link still taking bytes), the final frame would fail at once.
		c.conn.SetWriteDeadline(c.writeDeadline())
		if cerr := w.Close(); err == nil {
			err = cerr
		}
		return err
	})
}

// timedWrite runs one write under write_timeout (a second once the
// session is over), marking it for the progress watchdog.
func (c *Client) timedWrite(write func() error) error {
	c.writeStart.Store(time.Now().UnixNano())
	c.conn.SetWriteDeadline(c.writeDeadline())
	err := write()
	c.writeStart.Store(0)
	return err
}

// writeDeadline is when a write starting now times out: write_timeout, or
// a second once the session is over (a last word at most).
func (c *Client) writeDeadline() time.Time {
	if c.ctx.Err() != nil {
		return time.Now().Add(time.Second)
	}
	return time.Now().Add(c.srv.cfg.WriteTimeout.Duration)
}

// closeGracefully sends a close frame and gives the peer a moment to read
// what was sent before the socket closes, so a Disconnect is not lost to a
// TCP reset.
func (c *Client) closeGracefully() {
	c.conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
	c.conn.SetReadDeadline(time.Now().Add(time.Second))
	for {
		if _, _, err := c.conn.NextReader(); err != nil {
			return
		}
	}
}

// readLoop reads and handles packets until the connection fails or a
// protocol error ends the session.
//
// Any frame (a packet, a ping or a pong) proves the connection alive and
// extends the read deadline by two ping intervals; the client pings too, so
// an idle healthy session never times out and a frozen one is noticed within
// two intervals. Once the session is ending (a Disconnect is due) packets are
// no longer acted on and the deadline is no longer extended: a client that
// keeps sending after a protocol error is cut off, not served.
func (c *Client) readLoop() error {
	idle := 2 * c.srv.cfg.PingInterval.Duration
	ending := false
	alive := func() {
		if !ending {
			c.conn.SetReadDeadline(time.Now().Add(idle))
		}
	}
	alive()
	c.conn.SetPongHandler(func(string) error { alive(); return nil })
	c.conn.SetPingHandler(func(data string) error {
		alive()
		// WriteControl may be called concurrently with the writer.
		err := c.conn.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(c.srv.cfg.WriteTimeout.Duration))
		if err != nil && !errors.Is(err, websocket.ErrCloseSent) && !isTimeout(err) {
			return err
		}
		return nil
	})
	var buf bytes.Buffer
	for {
		if !ending && c.ending.Load() {
			// Give the writer time to deliver the Disconnect, then stop.
			ending = true
			c.conn.SetReadDeadline(time.Now().Add(c.srv.cfg.WriteTimeout.Duration + time.Second))
		}
		typ, err := readMessage(c.conn, &buf)
		if errors.Is(err, errMessageTooLarge) && !ending {
			c.Disconnect(packets.DisconnectProtocolError, err.Error())
			continue
		}
		if err != nil {
			return err
		}
		alive()
		if ending {
			continue
		}
		if typ != websocket.BinaryMessage {
			c.Disconnect(packets.DisconnectProtocolError, "text messages are not part of the protocol")
			continue
		}
		p, err := packets.Decode(buf.Bytes())
		if err != nil {
			c.Disconnect(packets.DisconnectProtocolError, err.Error())
			continue
		}
		c.handle(p)
		if buf.Cap() > 16<<10 {
			// A join's large requests must not pin their buffer for the
			// rest of the session, on every client.
			buf = bytes.Buffer{}
		}
	}
}

// maxMirrorReport caps the bytes one MirrorReport may claim: far more than
// any link moves in the second between two reports, far less than what
// would wrap the counters.
const maxMirrorReport = 1 << 36

func (c *Client) handle(p packets.Packet) {
	switch p := p.(type) {
	case *packets.ResourceRequest:
		c.request(p)
	case *packets.ResourceCancel:
		c.cancelHashes(p.Hashes)
	case *packets.Move:
		c.move(p)
	case *packets.MirrorReport:
		if c.caps&packets.CapMirrors == 0 {
			c.Disconnect(packets.DisconnectProtocolError, "MirrorReport in a session without the mirrors capability")
			return
		}
		// Client-reported, for the operator's view of what the mirrors
		// save; nothing else depends on it. A report of more than a
		// client can fetch between two reports is a lie, and dropped.
		if p.Bytes > maxMirrorReport || uint64(p.Objects) > maxMirrorReport>>12 {
			c.log.Debug("implausible MirrorReport ignored", "bytes", p.Bytes, "objects", p.Objects)
			return
		}
		c.srv.metrics.mirrorBytes.Add(float64(p.Bytes))
		c.srv.metrics.mirrorObjects.Add(float64(p.Objects))
		c.mirrorBytes.Add(p.Bytes)
	case *packets.Disconnect:
		c.mu.Lock()
		if c.end == "" {
			c.end = "client sent " + p.Code.String() + ": " + p.Reason
		}
		c.mu.Unlock()
		c.Disconnect(packets.DisconnectNormal, "goodbye")
	default:
		c.Disconnect(packets.DisconnectProtocolError, fmt.Sprintf("unexpected %s from a client", p.Type()))
	}
}

func (c *Client) request(p *packets.ResourceRequest) {
	if len(p.Wants) > c.srv.cfg.MaxRequestHashes {
		c.Disconnect(packets.DisconnectLimitExceeded, fmt.Sprintf(
			"ResourceRequest with %d hashes; the limit announced in Welcome is %d", len(p.Wants), c.srv.cfg.MaxRequestHashes))
		return
	}
	requested := 0
	for _, w := range p.Wants {
		if !w.Raise {
			requested++
		}
	}
	c.srv.metrics.hashesRequested.Add(float64(requested))
	c.mu.Lock()
	defer c.poke()
	defer c.mu.Unlock()
	for _, w := range p.Wants {
		key := reqKey{hash: w.Hash, n: wholeResource, manifest: w.Manifest}
		if w.HasRange {
			key.off, key.n = w.Offset, w.Length
		}
		if w.Manifest && c.caps&packets.CapChunked == 0 {
			c.byeLocked(packets.DisconnectProtocolError, "manifest requested in a session without the chunked capability")
			return
		}
		if w.Raise {
			c.raiseLocked(key, classOf(w.Priority))
			continue
		}
		e, ok := c.view.ByHash(w.Hash)
		switch {
		case !ok:
			c.queueError(w.Hash, packets.ErrorUnknownHash, "no resource with hash "+w.Hash.String())
			continue
		case !c.boundLocked(w.Hash):
			c.queueError(w.Hash, packets.ErrorNotBound, "hash "+w.Hash.String()+" is not bound to this client")
			continue
		case w.HasRange && (w.Offset > uint64(e.Size) || w.Length > uint64(e.Size)-w.Offset):
			c.queueError(w.Hash, packets.ErrorRangeInvalid, fmt.Sprintf("range %d+%d outside %d bytes", w.Offset, w.Length, e.Size))
			continue
		}
		if _, again := c.pendLocked(key); !again && c.pendingLocked() >= c.srv.cfg.MaxPendingRequests {
			c.byeLocked(packets.DisconnectLimitExceeded, fmt.Sprintf("more than %d resources requested and not yet sent", c.srv.cfg.MaxPendingRequests))
			return
		}
		// A re-request replaces a stream in progress: the client discarded
		// what it had, so it gets a new stream from the start. The old
		// queue item or active stream sees its generation is gone.
		c.enqueueLocked(e, key, classOf(w.Priority))
	}
}

// enqueueLocked queues a request under a new generation.
func (c *Client) enqueueLocked(e *packs.Entry, key reqKey, class uint8) {
	c.gen++
	c.setPendLocked(key, pend{gen: c.gen, class: class})
	q := queued{entry: e, gen: c.gen}
	if key.n != wholeResource || key.manifest {
		q.part = true
		if c.queuedParts == nil {
			c.queuedParts = make(map[uint32]reqKey)
		}
		c.queuedParts[c.gen] = key
	}
	c.queues[class].push(q)
	c.queuedN++
	if c.queuedN > 2*c.pendingLocked()+1024 {
		c.compactQueueLocked()
	}
}

// pendLocked looks up a pending request.
func (c *Client) pendLocked(k reqKey) (pend, bool) {
	if k.n == wholeResource && !k.manifest {
		p, ok := c.pending[unique.Make(k.hash)]
		return p, ok
	}
	p, ok := c.parts[k]
	return p, ok
}

func (c *Client) setPendLocked(k reqKey, p pend) {
	if k.n == wholeResource && !k.manifest {
		c.pending[unique.Make(k.hash)] = p
		return
	}
	if c.parts == nil {
		c.parts = make(map[reqKey]pend)
	}
	c.parts[k] = p
}

func (c *Client) deletePendLocked(k reqKey) {
	if k.n == wholeResource && !k.manifest {
		delete(c.pending, unique.Make(k.hash))
		return
	}
	delete(c.parts, k)
}

// pendingLocked counts the pending requests, as max_pending_requests does.
func (c *Client) pendingLocked() int { return len(c.pending) + len(c.parts) }

// raiseLocked moves a pending request to a higher class: a stream already
// being sent keeps its place and progress in the higher class's turns; one
// still queued is queued again there. Anything else is ignored: the
// request may have completed while the raise was on its way.
func (c *Client) raiseLocked(key reqKey, class uint8) {
	p, ok := c.pendLocked(key)
	if !ok || class <= p.class {
		return
	}
	for cls := range c.active {
		for i, s := range c.active[cls] {
			if s.gen == p.gen && s.key() == key {
				c.active[cls] = slices.Delete(c.active[cls], i, i+1)
				s.class = class
				c.active[class] = append(c.active[class], s)
				c.setPendLocked(key, pend{gen: p.gen, class: class})
				return
			}
		}
	}
	e, ok := c.view.ByHash(key.hash)
	if !ok {
		return // removed by a reload: the queued item will say so
	}
	c.enqueueLocked(e, key, class)
}

// compactQueueLocked drops queue items that a re-request or cancel made
// stale. Called when stale items outnumber live ones, so a client that
// requests the same hash over and over holds at most about twice its
// pending requests in the queue, at amortised constant cost.
func (c *Client) compactQueueLocked() {
	c.queuedN = 0
	for cls := range c.queues {
		c.queues[cls].filter(func(q queued) bool {
			live := c.liveLocked(c.queuedKeyLocked(q), q.gen)
			if !live && q.part {
				delete(c.queuedParts, q.gen)
			}
			return live
		})
		c.queuedN += c.queues[cls].len()
	}
}

// boundLocked reports whether any resource with hash h is bound to the
// client as that hash.
func (c *Client) boundLocked(h resources.Hash) bool {
	for _, k := range c.view.KeysWithHash(h) {
		if told, ok := c.bind.toldOf(k); ok && told.Value() == h {
			return true
		}
	}
	return false
}

// liveLocked reports whether the request k of generation gen is still
// wanted.
func (c *Client) liveLocked(k reqKey, gen uint32) bool {
	p, ok := c.pendLocked(k)
	return ok && p.gen == gen
}

func (c *Client) byeLocked(code packets.DisconnectCode, reason string) {
	if c.end == "" {
		c.end = "server sent " + code.String() + ": " + reason
	}
	if c.bye == nil {
		c.bye = &packets.Disconnect{Code: code, Reason: packets.TruncateMessage(reason)}
		c.ending.Store(true)
	}
}

func (c *Client) queueError(h resources.Hash, code packets.ErrorCode, msg string) {
	if len(c.errs) >= maxQueuedErrors {
		c.byeLocked(packets.DisconnectLimitExceeded, "too many failed requests waiting to be answered")
		return
	}
	c.errs = append(c.errs, packets.ResourceError{Hash: h, Code: code, Message: packets.TruncateMessage(msg)})
}

func (c *Client) cancelHashes(hs []resources.Hash) {
	if len(hs) > c.srv.cfg.MaxRequestHashes {
		c.Disconnect(packets.DisconnectLimitExceeded, fmt.Sprintf("ResourceCancel with %d hashes; the limit is %d", len(hs), c.srv.cfg.MaxRequestHashes))
		return
	}
	c.mu.Lock()
	// A cancel withdraws every request for the hash: whole, ranges and
	// manifest. Pending is small (max_pending_requests), so one pass over
	// it costs less than indexing requests by hash.
	cancel := make(map[resources.Hash]bool, len(hs))
	for _, h := range hs {
		cancel[h] = true
	}
	for _, h := range hs {
		delete(c.pending, unique.Make(h))
	}
	for k := range c.parts {
		if cancel[k.hash] {
			delete(c.parts, k)
		}
	}
	c.mu.Unlock()
}

func (c *Client) move(m *packets.Move) {
	c.mu.Lock()
	// Seqs only increase (serial-number order, so they may wrap): an older
	// Move arriving late must not move the player back or take over the
	// newer one's marker.
	stale := c.moved && int32(m.Seq-c.moveSeq) <= 0
	if !stale {
		c.moved, c.moveSeq = true, m.Seq
	}
	c.mu.Unlock()
	if stale {
		return
	}
	w := c.srv.world
	if w == nil {
		c.mu.Lock()
		c.markLocked(m.Seq)
		c.mu.Unlock()
		c.poke()
		return
	}
	center := w.RegionAt(m.X, m.Z)
	c.mu.Lock()
	same := c.hasCenter && c.center == center
	c.center, c.hasCenter = center, true
	if same {
		// Moving within a region changes nothing: a Move flood costs
		// little, and the answer is just the marker.
		c.markLocked(m.Seq)
	}
	c.mu.Unlock()
	if same {
		c.poke()
		return
	}
	now := make(map[world.Region]bool)
	for _, r := range w.View(center, c.srv.cfg.ViewDistance) {
		now[r] = true
	}
	c.mu.Lock()
	for r := range now {
		if !c.regions[r] {
			for _, l := range w.Resources(r) {
				c.useLocked(resources.Key{Type: l.Type, ID: c.srv.ids.ID(l)})
			}
		}
	}
	for r := range c.regions {
		if !now[r] {
			for _, l := range w.Resources(r) {
				if err := c.releaseLocked(resources.Key{Type: l.Type, ID: c.srv.ids.ID(l)}); err != nil {
					c.log.Error("release world resource", "loc", l, "err", err)
				}
			}
		}
	}
	c.regions = now
	c.markLocked(m.Seq)
	c.mu.Unlock()
	c.poke()
}

// markLocked makes a BindsDone{seq} due after the Binds and Losts that are
// dirty now. A later Move's marker replaces an unsent one: it completes
// everything before it too.
func (c *Client) markLocked(seq uint32) {
	c.marker, c.markerSeq = true, seq
}

// reconcileLocked turns what is due into Bind and Lost entries.
func (c *Client) reconcileLocked() (binds []*packs.Entry, losts []resources.Key) {
	return c.bind.reconcile(c.view)
}

// writeLoop owns the socket's write side until the session ends.
func (c *Client) writeLoop() {
	defer close(c.writerDone)
	ping := time.NewTicker(c.srv.cfg.PingInterval.Duration)
	defer ping.Stop()
	for {
		if err := c.flush(); err != nil {
			c.endWrites(err)
			return
		}
		select {
		case <-c.ctx.Done():
			return
		case <-c.wake:
		case <-ping.C:
			if err := c.conn.WriteControl(websocket.PingMessage, nil, time.Now().Add(c.srv.cfg.WriteTimeout.Duration)); err != nil {
				c.endWrites(err)
				return
			}
		}
	}
}

// endWrites ends the session from the writer's side.
func (c *Client) endWrites(err error) {
	var bye *byeError
	switch {
	case errors.As(err, &bye):
		c.srv.metrics.disconnects.WithLabelValues(bye.d.Code.String()).Inc()
		c.conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
		// Let the reader see the peer's close, or give up after a second.
		c.conn.SetReadDeadline(time.Now().Add(time.Second))
	case isTimeout(err):
		c.srv.metrics.disconnects.WithLabelValues(packets.DisconnectSlowClient.String()).Inc()
		c.mu.Lock()
		if c.end == "" {
			c.end = fmt.Sprintf("slow client: took no bytes for write_timeout (%s)", c.srv.cfg.WriteTimeout.Duration)
		}
		c.mu.Unlock()
		c.conn.Close() // the socket is full: no Disconnect can get through
	default:
		c.log.Debug("write failed", "err", err)
		c.conn.Close()
	}
}

type byeError struct{ d *packets.Disconnect }

func (e *byeError) Error() string { return "disconnect: " + e.d.Reason }

func isTimeout(err error) bool {
	var ne interface{ Timeout() bool }
	return errors.As(err, &ne) && ne.Timeout()
}

// flush writes everything pending: first Disconnect, errors, Binds and
// Losts, then one chunk per active stream in turn, re-checking control
// packets between chunks so a Bind is never stuck behind a large file.
func (c *Client) flush() error {
	for {
		if err := c.ctx.Err(); err != nil {
			return err // the reader has ended the session
		}
		c.mu.Lock()
		bye := c.bye
		binds, losts := c.reconcileLocked()
		errs := c.errs
		c.errs = nil
		var marker *packets.BindsDone
		if c.marker {
			marker = &packets.BindsDone{Seq: c.markerSeq}
			c.marker = false
		}
		c.mu.Unlock()

		if bye != nil {
			if err := c.writeNow(bye); err != nil {
				return err
			}
			return &byeError{bye}
		}
		if err := c.writeControl(binds, losts, errs, marker); err != nil {
			return err
		}
		more, err := c.sendChunk()
		if err != nil {
			return err
		}
		if !more && len(binds)+len(losts)+len(errs) == 0 && marker == nil {
			return nil
		}
	}
}

// bindBatch is the most entries this server puts in one Bind: ~40 KB
// encoded, so a batch fits the pooled chunk buffer and a join with
// thousands of resources never builds one large packet per client.
const bindBatch = 512

func (c *Client) writeControl(binds []*packs.Entry, losts []resources.Key, errs []packets.ResourceError, marker *packets.BindsDone) error {
	if len(binds)+len(losts)+len(errs) == 0 && marker == nil {
		return nil
	}
	buf := c.srv.packetBuf()
	defer c.srv.putPacketBuf(buf)
	write := func(p packets.Packet) error {
		*buf = packets.Append((*buf)[:0], p)
		return c.writeMessage(*buf)
	}
	// Losts first: a client replacing one resource by another frees before
	// it loads.
	for len(losts) > 0 {
		n := min(len(losts), packets.MaxLostEntries)
		if err := write(&packets.Lost{Entries: losts[:n]}); err != nil {
			return err
		}
		c.srv.metrics.losts.Add(float64(n))
		losts = losts[n:]
	}
	var batch []resources.Binding
	for len(binds) > 0 {
		n := min(len(binds), bindBatch)
		batch = batch[:0]
		for _, e := range binds[:n] {
			batch = append(batch, e.Binding())
		}
		if err := write(&packets.Bind{Entries: batch}); err != nil {
			return err
		}
		c.srv.metrics.binds.Add(float64(n))
		binds = binds[n:]
	}
	if marker != nil {
		if err := write(marker); err != nil {
			return err
		}
	}
	for i := range errs {
		if err := write(&errs[i]); err != nil {
			return err
		}
		c.srv.metrics.resourceErrors.WithLabelValues(errs[i].Code.String()).Inc()
	}
	return nil
}

// sendChunk sends the next chunk of the next active stream, starting queued
// streams as slots free up. It reports whether streams remain.
func (c *Client) sendChunk() (more bool, err error) {
	c.mu.Lock()
	var s *stream
	var cls int
	for s == nil {
		for cls = numClasses - 1; cls >= 0; cls-- {
			for len(c.active[cls]) < c.srv.cfg.ActiveStreams && c.queues[cls].len() > 0 {
				q := c.queues[cls].pop()
				c.queuedN--
				key := c.queuedKeyLocked(q)
				if q.part {
					delete(c.queuedParts, q.gen)
				}
				if c.liveLocked(key, q.gen) {
					s := &stream{entry: q.entry, gen: q.gen, class: uint8(cls)}
					if q.part {
						s.part = &key
					}
					c.active[cls] = append(c.active[cls], s)
				}
			}
		}
		// Only the highest class with streams is served: a needed-now
		// request overtakes every prefetch at the next turn.
		for cls = numClasses - 1; cls >= 0 && len(c.active[cls]) == 0; cls-- {
		}
		if cls < 0 {
			c.mu.Unlock()
			return false, nil
		}
		active := c.active[cls]
		c.rr[cls] %= len(active)
		s = active[c.rr[cls]]
		if !c.liveLocked(s.key(), s.gen) {
			c.active[cls] = slices.Delete(active, c.rr[cls], c.rr[cls]+1)
			c.closeContent(s)
			s = nil
			continue
		}
		if !s.started && s.entry.View() != c.view {
			// Requested before a reload: send what the current view has
			// under that hash, if anything.
			e, ok := c.view.ByHash(s.entry.Hash)
			if !ok {
				c.active[cls] = slices.Delete(active, c.rr[cls], c.rr[cls]+1)
				c.deletePendLocked(s.key())
				c.queueError(s.entry.Hash, packets.ErrorUnknownHash, "resource "+s.entry.Hash.String()+" was removed from the server's packs")
				s = nil
				continue
			}
			s.entry = e // same hash: its pending entry stands
		}
		if s.id == 0 && (s.part == nil || !s.part.manifest) {
			if c.nextStream == math.MaxUint32 {
				// Stream ids are never reused within a session.
				c.byeLocked(packets.DisconnectInternal, "stream ids exhausted; reconnect")
				c.mu.Unlock()
				c.poke()
				return false, nil
			}
			c.nextStream++
			s.id = c.nextStream
		}
	}
	c.rr[cls]++
	c.mu.Unlock()

	var last bool
	if s.part != nil && s.part.manifest {
		last, err = c.writeManifestPart(s)
	} else {
		last, err = c.writeStreamChunk(s)
	}
	if err != nil {
		return false, err
	}
	if last {
		c.mu.Lock()
		if i := slices.Index(c.active[s.class], s); i >= 0 {
			c.active[s.class] = slices.Delete(c.active[s.class], i, i+1)
		}
		if c.liveLocked(s.key(), s.gen) {
			c.deletePendLocked(s.key()) // a read error ended it; the last write already freed it otherwise
		}
		c.mu.Unlock()
		c.closeContent(s)
		if s.part == nil || !s.part.manifest {
			c.srv.metrics.streamDone(s.began)
		}
	}
	return true, nil
}

func (c *Client) closeContent(s *stream) {
	if s.content != nil {
		s.content.Close()
		s.content = nil
	}
	if s.enc != nil {
		c.srv.encHeld.Add(-int64(len(s.enc)))
		s.enc = nil
	}
}

// failStream answers a request the server could not read with a retryable
// error; the caller ends the stream.
func (c *Client) failStream(s *stream, what string, err error) {
	e := s.entry
	msg := "server could not read the resource; retry later"
	if errors.Is(err, packs.ErrChanged) {
		// Every stream of the file fails the same way until a reload:
		// say so once a minute, not once per chunk per client.
		msg = "the resource changed on the server's disk since it was indexed; retry after the server reloads it"
		if c.srv.warnChanged(e.Hash) {
			c.log.Warn("pack file changed in place since it was indexed; it is not served until the packs are reloaded (hot_reload does it within reload_debounce; or restart)", "loc", e.Loc, "path", e.Path, "pack", e.Pack.String())
		}
	} else {
		c.log.Error(what, "loc", e.Loc, "hash", e.Hash.Short(), "offset", s.next, "err", err)
	}
	c.mu.Lock()
	c.queueError(e.Hash, packets.ErrorInternal, msg)
	c.mu.Unlock()
}

// freeLast ends a request's pending state before its last packet is
// written: once the client has that packet it may ask for another in its
// place, and that request must find the room free.
func (c *Client) freeLast(s *stream) {
	c.mu.Lock()
	if c.liveLocked(s.key(), s.gen) {
		c.deletePendLocked(s.key())
	}
	c.mu.Unlock()
}

// writeManifestPart writes the next part of a manifest, as many chunks as
// fit one packet. It reports whether that was the last part.
func (c *Client) writeManifestPart(s *stream) (last bool, err error) {
	e := s.entry
	if !s.started {
		s.started = true
		m, err := e.Manifest(c.ctx)
		if err != nil {
			c.failStream(s, "cut resource", err)
			return true, nil
		}
		s.mf = m
	}
	per := min(packets.MaxManifestEntries, (int(c.srv.limits.MaxPacket)-packets.ManifestHeaderSize)/packets.ManifestEntryMax)
	n := min(len(s.mf.Chunks)-s.mfNext, per)
	part := &packets.Manifest{Hash: e.Hash, Size: s.mf.Size, Total: uint32(len(s.mf.Chunks)), First: uint32(s.mfNext), Chunks: make([]packets.ManifestChunk, n)}
	for i, ch := range s.mf.Chunks[s.mfNext : s.mfNext+n] {
		part.Chunks[i] = packets.ManifestChunk{Length: ch.Length, Hash: ch.Hash, Chain: ch.Chain, Carry: ch.Carry}
	}
	last = s.mfNext+n == len(s.mf.Chunks)
	if last {
		c.freeLast(s)
		c.srv.metrics.manifestsSent.Inc()
	}
	buf := c.srv.packetBuf()
	*buf = packets.Append((*buf)[:0], part)
	err = c.writeMessage(*buf)
	c.srv.putPacketBuf(buf)
	if err != nil {
		return false, err
	}
	s.mfNext += n
	return last, nil
}

// writeStreamChunk writes InitResSend on a stream's first turn and one
// ChunkSend on every turn. It reports whether that was the last chunk.
func (c *Client) writeStreamChunk(s *stream) (last bool, err error) {
	e := s.entry
	if !s.started {
		s.started, s.began = true, time.Now()
		c.srv.metrics.streamStarted(e.InMemory())
		off, n := uint64(0), uint64(e.Size)
		if s.part != nil {
			off, n = s.part.off, s.part.n
		}
		content, err := e.Open()
		if err != nil {
			c.failStream(s, "open resource", err)
			return true, nil
		}
		s.content = content
		init := &packets.InitResSend{
			Stream: s.id, Hash: e.Hash, Size: uint64(e.Size), Offset: off, Length: n,
			AssetType: e.Type, ID: e.ID, Ref: e.Ref, Encoding: packets.EncodingRaw,
		}
		s.next, s.end = off, off+n
		if enc, err := c.encoded(s, off, n); err != nil {
			c.failStream(s, "read resource", err)
			return true, nil
		} else if enc != nil {
			// The stream carries the frame: offsets count its bytes.
			s.enc, s.next, s.end = enc, 0, uint64(len(enc))
			init.Encoding, init.EncodedLength = packets.EncodingZstd, uint64(len(enc))
			c.srv.metrics.bytesSaved.Add(float64(n - uint64(len(enc))))
		}
		buf := c.srv.smallBuf()
		*buf = packets.Append((*buf)[:0], init)
		err = c.writeMessage(*buf)
		c.srv.putSmallBuf(buf)
		if err != nil {
			return false, err
		}
	}
	n := min(s.end-s.next, uint64(c.srv.cfg.ChunkSize))
	last = s.next+n == s.end
	hdr := packets.ChunkSend{Stream: s.id, Offset: s.next, Last: last}
	payload := s.enc
	if payload == nil {
		payload = packs.Bytes(s.content)
	}
	if payload != nil {
		if last {
			c.freeLast(s)
		}
		err = c.writeInMemory(&hdr, payload[s.next:s.next+n])
	} else {
		buf := c.srv.packetBuf()
		*buf = packets.Append((*buf)[:0], &hdr)
		at := len(*buf)
		*buf = (*buf)[:at+int(n)]
		got, rerr := s.content.ReadAt((*buf)[at:], int64(s.next))
		if rerr != nil && !(rerr == io.EOF && uint64(got) == n) {
			// The file shrank or vanished under us: tell the client
			// instead of sending short data.
			c.srv.putPacketBuf(buf)
			c.failStream(s, "read resource", rerr)
			return true, nil
		}
		if last {
			c.freeLast(s)
		}
		err = c.writeMessage(*buf)
		c.srv.putPacketBuf(buf)
	}
	if err != nil {
		return false, err
	}
	c.srv.metrics.bytesSent.Add(float64(n))
	s.next += n
	return last, nil
}

// smallPayload is the largest chunk held in memory that is copied behind
// its header into one small buffer and written with one system call;
// larger ones are written from where they are (writeParts). It is where
// gorilla stops copying a write into its buffer (twice the buffer and a
// frame header): a payload it copied would go out as several frames, each
// given the deadline set before the message.
const smallPayload = 2 * (writeBufferSize + 14)

// writeInMemory writes a ChunkSend whose payload is held in memory. A
// payload that fits gorilla's write buffer with its header goes through
// it as one frame; a larger one is copied into a small buffer up to
// smallPayload, and written from where it is beyond that. Either way a
// writer blocked on a full socket holds at most a small buffer.
func (c *Client) writeInMemory(hdr *packets.ChunkSend, payload []byte) error {
	h := packets.Append(c.chunkHdr[:0], hdr)
	if len(payload) <= writeBufferSize-len(h) || len(payload) > smallPayload {
		return c.writeParts(h, payload)
	}
	buf := c.srv.smallBuf()
	defer c.srv.putSmallBuf(buf)
	*buf = append(append((*buf)[:0], h...), payload...)
	return c.writeMessage(*buf)
}

// encoded returns the zstd form of a stream's bytes when the session
// negotiated zstd and it saves at least 10%, else nil. Known-compressed
// formats are not tried, and each content is compressed once per server
// (the store keeps the result), not once per client.
func (c *Client) encoded(s *stream, off, n uint64) ([]byte, error) {
	e := s.entry
	if c.caps&packets.CapZstd == 0 || n == 0 || n > packets.MaxEncodedLength || compression.Skip(e.Ref.Key) {
		return nil, nil
	}
	// Only what many clients ask for the same way is worth keeping
	// compressed: whole resources and the chunks of their manifests.
	// Arbitrary ranges are sent raw, or one client asking for many would
	// cost the server a compression each.
	if s.part != nil && !e.IsChunk(off, n) {
		return nil, nil
	}
	z, ok, err := c.srv.zstd.Get(compression.Key{Hash: e.Hash, Off: off, N: n}, func() ([]byte, error) {
		raw := make([]byte, n)
		got, err := s.content.ReadAt(raw, int64(off))
		if err != nil && !(err == io.EOF && uint64(got) == n) {
			return nil, err
		}
		return raw, nil
	})
	if err != nil || !ok {
		return nil, err
	}
	// A stream holds its frame until sent, even after the store let it
	// go: streams to slow clients may hold at most compression_cache in
	// all; past that, they are sent raw.
	if c.srv.encHeld.Add(int64(len(z))) > c.srv.cfg.CompressionCache {
		c.srv.encHeld.Add(-int64(len(z)))
		return nil, nil
	}
	return z, nil
}

func (c *Client) closeStreams() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for cls := range c.active {
		for _, s := range c.active[cls] {
			c.closeContent(s)
		}
		c.active[cls] = nil
		c.queues[cls].reset()
	}
	c.queuedN = 0
	c.queuedParts = nil
	clear(c.pending)
	c.parts = nil
}
