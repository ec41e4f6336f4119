package session

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unique"

	"github.com/gorilla/websocket"
	"github.com/voxsync/voxsync/compression"
	"github.com/voxsync/voxsync/configs"
	"github.com/voxsync/voxsync/mirror"
	"github.com/voxsync/voxsync/packets"
	"github.com/voxsync/voxsync/packs"
	"github.com/voxsync/voxsync/resources"
	"github.com/voxsync/voxsync/session/world"
)

// ServerOptions configure a Server.
type ServerOptions struct {
	Config configs.Server
	// View is the initial pack view; the server takes ownership and closes
	// it (and every later one) when replaced or on Close.
	View *packs.View
	// IDs must be the allocator View was loaded with.
	IDs *packs.IDs
	// World drives world-content uses from Move packets; nil disables it.
	World  *world.World
	Logger *slog.Logger
	// OnJoin, if set, is called after a client's handshake, before its
	// first Bind: a game server adds its own uses here.
	OnJoin func(*Client)
}

// Server serves resource sync sessions at /ws.
type Server struct {
	cfg      configs.Server
	log      *slog.Logger
	world    *world.World
	ids      *packs.IDs
	preload  []resources.Pattern
	onJoin   func(*Client)
	metrics  *ServerMetrics
	upgrader websocket.Upgrader
	limits   packets.Limits
	addrs    *addrLimits
	caps     uint64             // the optional features offered: packets.Cap*
	mirrors  []string           // the mirrors' base URLs, sent to clients with CapMirrors
	joins    []time.Time        // recent joins, up to mirror_help of them (joinedLocked)
	zstd     *compression.Store // compressed forms, shared by every client
	encHeld  atomic.Int64       // bytes of compressed frames held by streams being sent
	bufs     sync.Pool          // *[]byte packet buffers of a chunk's size, for writers
	small    sync.Pool          // *[]byte buffers of smallBuf, for headers and small chunks
	admin    adminState         // for the admin listener: connections, reload history

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup // one per connection handler
	bg     sync.WaitGroup // the server's own goroutines (the progress watchdog, manifest cutting)
	// cutCancel stops cutting the manifests of the view being replaced.
	cutCancel context.CancelFunc

	warnMu sync.Mutex                   // guards warned
	warned map[resources.Hash]time.Time // when a changed file was last warned about

	mu      sync.Mutex // guards view, pre, clients, closed
	view    *packs.View
	pre     *preloadSet // view's keys matching preload
	clients map[*Client]struct{}
	closed  bool
}

// NewServer returns a server over an initial pack view.
func NewServer(opts ServerOptions) (*Server, error) {
	if err := opts.Config.Validate(); err != nil {
		return nil, err
	}
	if opts.View == nil || opts.IDs == nil {
		return nil, errors.New("new server: View and IDs are required")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		cfg:     opts.Config,
		log:     opts.Logger,
		world:   opts.World,
		ids:     opts.IDs,
		onJoin:  opts.OnJoin,
		metrics: newServerMetrics(),
		clients: make(map[*Client]struct{}),
		addrs:   newAddrLimits(opts.Config.MaxClientsPerAddress, opts.Config.AuthFailuresPerMinute),
		limits: packets.Limits{
			MaxChunk:         uint32(opts.Config.ChunkSize),
			MaxPacket:        packets.MaxPacketSize,
			MaxRequestHashes: uint32(opts.Config.MaxRequestHashes),
			MaxPending:       uint32(opts.Config.MaxPendingRequests),
			PingIntervalMs:   uint32(opts.Config.PingInterval.Milliseconds()),
		},
	}
	if opts.Config.Chunked {
		s.caps |= packets.CapChunked
	}
	if opts.Config.Compression {
		s.caps |= packets.CapZstd
		s.zstd = compression.NewStore(opts.Config.CompressionCache)
	}
	for _, m := range opts.Config.Mirrors {
		u, err := mirror.ParseBase(m)
		if err != nil {
			return nil, fmt.Errorf("new server: mirrors: %w", err)
		}
		s.mirrors = append(s.mirrors, u)
	}
	if len(s.mirrors) > 0 {
		s.caps |= packets.CapMirrors
	}
	for _, p := range opts.Config.Preload {
		pat, err := resources.ParsePattern(p)
		if err != nil {
			return nil, fmt.Errorf("new server: preload: %w", err)
		}
		s.preload = append(s.preload, pat)
	}
	s.upgrader = websocket.Upgrader{
		ReadBufferSize: 1024,
		// Small: gorilla's server-side WriteMessage sends one frame with a
		// vectored write of this buffer (the frame header) and the caller's
		// bytes, so a larger buffer only costs memory per blocked writer.
		// Pooled, so an idle connection holds none.
		WriteBufferSize: writeBufferSize,
		WriteBufferPool: &sync.Pool{},
		CheckOrigin:     func(*http.Request) bool { return true }, // game clients are not browsers
	}
	chunkBuf := packets.ChunkHeaderSize + opts.Config.ChunkSize
	s.bufs.New = func() any { b := make([]byte, 0, chunkBuf); return &b }
	s.small.New = func() any { b := make([]byte, 0, smallBuf); return &b }
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.view = opts.View
	s.pre = s.matchPreload(opts.View)
	s.warnIdlePatterns(opts.View)
	s.bg.Go(s.watchProgress)
	s.cutManifests(opts.View)
	s.metrics.reloadResources.Set(float64(opts.View.Len()))
	s.admin.init(opts.View)
	return s, nil
}

// Metrics returns the server's metrics.
func (s *Server) Metrics() *ServerMetrics { return s.metrics }

// Handler returns the game port's HTTP handler: /ws for sessions and
// nothing else. Metrics and status are on AdminHandler.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/ws", s.serveTrackedWS)
	return mux
}

// View returns the current pack view.
func (s *Server) View() *packs.View {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.view
}

// Clients returns the connected clients.
func (s *Server) Clients() []*Client {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*Client, 0, len(s.clients))
	for c := range s.clients {
		out = append(out, c)
	}
	return out
}

func (s *Server) matchPreload(v *packs.View) *preloadSet {
	set := &preloadSet{keys: make(map[resources.Key]unique.Handle[resources.Hash])}
	if len(s.preload) == 0 {
		return set
	}
	for _, e := range v.Entries() {
		for _, p := range s.preload {
			if p.Match(e.Loc) {
				set.keys[resources.Key{Type: e.Type, ID: e.ID}] = e.Content
				break
			}
		}
	}
	return set
}

// warnIdlePatterns says which preload patterns match nothing in v: a
// typo there (nomod:*, textures/*) otherwise preloads nothing without a
// word. Said at start only: a reload that empties a pattern is a
// developer's own doing, and would repeat at every save.
func (s *Server) warnIdlePatterns(v *packs.View) {
	matched := make([]bool, len(s.preload))
	left := len(s.preload)
	for _, e := range v.Entries() {
		for i, p := range s.preload {
			if !matched[i] && p.Match(e.Loc) {
				matched[i] = true
				left--
			}
		}
		if left == 0 {
			return
		}
	}
	for i := range s.preload {
		if !matched[i] { // s.preload holds cfg.Preload parsed, in order
			s.log.Warn("preload pattern matches no resource in the packs", "pattern", s.cfg.Preload[i])
		}
	}
}

// SetView swaps in a new pack view: every client re-checks the resources it
// uses, getting a Bind for each changed hash and a Lost for each resource
// that no longer exists; preload patterns are matched anew. The old view is
// closed.
func (s *Server) SetView(v *packs.View) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		v.Close()
		return
	}
	old := s.view
	s.view = v
	s.pre = s.matchPreload(v)
	// A key enters or leaves the preload set only with its file (the
	// patterns match its name), so what changed covers those too.
	changed := v.ChangedFrom(old)
	for c := range s.clients {
		c.viewChanged(v, s.pre, changed)
	}
	s.cutManifests(v)
	s.mu.Unlock()
	s.metrics.reloadResources.Set(float64(v.Len()))
	r := s.admin.reloaded(old, v)
	s.metrics.reloads.WithLabelValues(r.Outcome).Inc()
	// What a developer who just saved a file wants to see: that it was
	// picked up, by name.
	s.log.Info("packs reloaded", "added", r.Added, "changed", r.Changed, "removed", r.Removed,
		"resources", namesSummary(r.ChangedNames, r.AddedNames, r.RemovedNames, r.Added+r.Changed+r.Removed))
	old.Close()
}

// namesSummary lists the first few names a reload touched and counts the
// rest: a log line a person can read, whatever the reload's size. Changed
// files come first: the one a developer just saved is among them.
func namesSummary(changed, added, removed []string, total int) string {
	if total == 0 {
		return "none" // settings only, or a file back as it was
	}
	const show = 5
	var names []string
	for _, g := range [][]string{changed, added, removed} {
		names = append(names, g[:min(len(g), show-len(names))]...)
	}
	s := strings.Join(names, ", ")
	if more := total - len(names); more > 0 {
		s += fmt.Sprintf(" and %d more", more)
	}
	return s
}

// warnChanged reports whether to log that the file of h changed in place:
// at most once a minute per content.
func (s *Server) warnChanged(h resources.Hash) bool {
	s.warnMu.Lock()
	defer s.warnMu.Unlock()
	if time.Since(s.warned[h]) < time.Minute {
		return false
	}
	if s.warned == nil || len(s.warned) > 1024 {
		s.warned = make(map[resources.Hash]time.Time)
	}
	s.warned[h] = time.Now()
	return true
}

// cutManifests computes the manifests of v's large resources in the
// background, so the first client to ask for one does not wait for it.
// Unchanged files keep theirs from the previous view. Called with s.mu
// held or before the server is shared.
func (s *Server) cutManifests(v *packs.View) {
	if s.cutCancel != nil {
		s.cutCancel()
	}
	if s.caps&packets.CapChunked == 0 {
		return
	}
	ctx, cancel := context.WithCancel(s.ctx)
	s.cutCancel = cancel
	s.bg.Go(func() {
		v.CutAll(ctx, func(e *packs.Entry, err error) {
			if ctx.Err() == nil {
				s.log.Warn("cannot cut resource into chunks; clients will be told to retry", "loc", e.Loc, "err", err)
			}
		})
	})
}

// watchProgress extends the write deadline of clients whose current write
// has been waiting a while but whose peer is still acknowledging bytes, so
// write_timeout drops clients that make no progress, not clients on a
// congested path. One goroutine for the server; a getsockopt per writing
// client per tick.
func (s *Server) watchProgress() {
	timeout := s.cfg.WriteTimeout.Duration
	tick := time.NewTicker(max(timeout/4, 100*time.Millisecond))
	defer tick.Stop()
	var clients []*Client
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-tick.C:
		}
		s.mu.Lock()
		clients = clients[:0]
		for c := range s.clients {
			clients = append(clients, c)
		}
		s.mu.Unlock()
		now := time.Now()
		for _, c := range clients {
			start := c.writeStart.Load()
			if start == 0 || c.ending.Load() || c.ctx.Err() != nil || now.Sub(time.Unix(0, start)) < timeout/4 {
				continue // not writing, ending (its deadline is final), or not yet due
			}
			acked, ok := bytesAcked(c.conn.NetConn())
			if !ok {
				continue
			}
			if acked > c.acked {
				c.conn.NetConn().SetWriteDeadline(now.Add(timeout))
			}
			c.acked = acked
		}
		clear(clients)
	}
}

// Close disconnects every client with a reason and waits for their
// goroutines, at most a few seconds, before cutting the rest off.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	for c := range s.clients {
		c.Disconnect(packets.DisconnectShutdown, "server shutting down")
	}
	s.mu.Unlock()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(3 * time.Second):
		// A writer blocked on a client that stopped reading never sees a
		// context; closing its socket is what unblocks it.
		s.cancel()
		s.mu.Lock()
		for c := range s.clients {
			c.conn.Close()
		}
		s.mu.Unlock()
		<-done
	}
	s.cancel()
	s.bg.Wait()
	s.mu.Lock()
	s.view.Close()
	s.mu.Unlock()
	return nil
}

// ServeWS upgrades a request to a session.
func (s *Server) ServeWS(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	closed := s.closed
	if !closed {
		s.wg.Add(1)
	}
	s.mu.Unlock()
	if closed {
		http.Error(w, "server shutting down", http.StatusServiceUnavailable)
		return
	}
	defer s.wg.Done()
	conn, err := s.upgrader.Upgrade(w, r, nil)
	if err != nil {
		return // Upgrade has answered with an HTTP error
	}
	limitUnsent(conn.NetConn())
	c := newClient(s, conn, r.RemoteAddr)
	// Counted from the upgrade, so connections that never finish their
	// handshake count too.
	if !s.addrs.acquire(c.addr) {
		defer conn.Close()
		c.refuse(errJoin{packets.DisconnectLimitExceeded, fmt.Sprintf(
			"too many connections from your address (max_clients_per_address = %d); close other clients on this address and try again", s.cfg.MaxClientsPerAddress)})
		return
	}
	defer s.addrs.release(c.addr)
	c.serve()
}

// join registers a handshaken client and gives it its preload uses.
func (s *Server) join(c *Client) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errJoin{packets.DisconnectShutdown, "server shutting down"}
	}
	if len(s.clients) >= s.cfg.MaxClients {
		return errJoin{packets.DisconnectLimitExceeded, fmt.Sprintf("server full (%d clients); try again later", s.cfg.MaxClients)}
	}
	s.clients[c] = struct{}{}
	c.helpMirrors = s.joinedLocked(time.Now()) < s.cfg.MirrorHelp
	c.mu.Lock()
	c.view = s.view
	c.marker = true // the join's Binds end with BindsDone{0}
	c.bind = newBindings(s.pre)
	c.mu.Unlock()
	s.metrics.clients.Inc()
	s.metrics.sessions.Inc()
	return nil
}

// joinedLocked records a join at now and returns how many others joined
// in the minute before. Helping slow mirrors is for a player joining on
// its own; in a join storm the server's uplink is what mirrors spare.
func (s *Server) joinedLocked(now time.Time) int {
	keep := s.joins[:0]
	for _, t := range s.joins {
		if now.Sub(t) < time.Minute {
			keep = append(keep, t)
		}
	}
	n := len(keep)
	if s.cfg.MirrorHelp > 0 {
		keep = append(keep, now)
		if len(keep) > s.cfg.MirrorHelp {
			// The latest mirror_help joins are enough to decide.
			keep = append(keep[:0], keep[len(keep)-s.cfg.MirrorHelp:]...)
		}
	}
	s.joins = keep
	return n
}

func (s *Server) leave(c *Client) {
	s.mu.Lock()
	_, ok := s.clients[c]
	delete(s.clients, c)
	s.mu.Unlock()
	if ok {
		s.metrics.clients.Dec()
	}
}

type errJoin struct {
	code   packets.DisconnectCode
	reason string
}

func (e errJoin) Error() string { return e.reason }

// writeBufferSize is gorilla's write buffer per connection, borrowed from
// a pool only while a message is written.
const writeBufferSize = 4096

// smallBuf is the capacity of the small packet buffers: a ChunkSend header
// and a chunk of up to smallPayload, or an InitResSend.
const smallBuf = 512 + smallPayload

// packetBuf lends a packet buffer of a chunk's size. Writers borrow one
// only while they encode, read into and write one packet, so an idle
// client, or one blocked writing bytes held in memory, holds none.
func (s *Server) packetBuf() *[]byte { return s.bufs.Get().(*[]byte) }

// putPacketBuf returns a buffer from packetBuf. One that grew past a chunk
// (a large Bind) is left for the GC rather than pooled.
func (s *Server) putPacketBuf(bp *[]byte) {
	if cap(*bp) <= packets.ChunkHeaderSize+s.cfg.ChunkSize {
		*bp = (*bp)[:0]
		s.bufs.Put(bp)
	}
}

func (s *Server) smallBuf() *[]byte { return s.small.Get().(*[]byte) }

func (s *Server) putSmallBuf(bp *[]byte) {
	if cap(*bp) <= smallBuf {
		*bp = (*bp)[:0]
		s.small.Put(bp)
	}
}
