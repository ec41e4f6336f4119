package session

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"github.com/voxsync/voxsync/configs"
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
	bufs     sync.Pool  // *[]byte packet buffers of a chunk's size, for writers
	admin    adminState // for the admin listener: connections, reload history

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup // one per connection handler

	mu         sync.Mutex // guards view, preloadSet, clients, closed
	view       *packs.View
	preloadSet map[resources.Key]bool // keys of view entries matching preload
	clients    map[*Client]struct{}
	closed     bool
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
		limits: packets.Limits{
			MaxChunk:         uint32(opts.Config.ChunkSize),
			MaxPacket:        packets.MaxPacketSize,
			MaxRequestHashes: uint32(opts.Config.MaxRequestHashes),
			MaxPending:       uint32(opts.Config.MaxPendingRequests),
			PingIntervalMs:   uint32(opts.Config.PingInterval.Milliseconds()),
		},
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
		// Large enough that a full chunk goes out as one frame in one
		// write; pooled, so an idle connection holds no write buffer.
		WriteBufferSize: opts.Config.ChunkSize + 64,
		WriteBufferPool: &sync.Pool{},
		CheckOrigin:     func(*http.Request) bool { return true }, // game clients are not browsers
	}
	chunkBuf := packets.ChunkHeaderSize + opts.Config.ChunkSize
	s.bufs.New = func() any { b := make([]byte, 0, chunkBuf); return &b }
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.view = opts.View
	s.preloadSet = s.matchPreload(opts.View)
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

func (s *Server) matchPreload(v *packs.View) map[resources.Key]bool {
	set := make(map[resources.Key]bool)
	if len(s.preload) == 0 {
		return set
	}
	for _, e := range v.Entries() {
		for _, p := range s.preload {
			if p.Match(e.Loc) {
				set[resources.Key{Type: e.Type, ID: e.ID}] = true
				break
			}
		}
	}
	return set
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
	oldPre := s.preloadSet
	s.view = v
	s.preloadSet = s.matchPreload(v)
	var added, removed []resources.Key
	for k := range s.preloadSet {
		if !oldPre[k] {
			added = append(added, k)
		}
	}
	for k := range oldPre {
		if !s.preloadSet[k] {
			removed = append(removed, k)
		}
	}
	for c := range s.clients {
		c.viewChanged(v, added, removed)
	}
	s.mu.Unlock()
	s.metrics.reloadResources.Set(float64(v.Len()))
	s.metrics.reloads.WithLabelValues(s.admin.reloaded(old, v)).Inc()
	old.Close()
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
	c := newClient(s, conn, r.RemoteAddr)
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
	c.mu.Lock()
	c.view = s.view
	c.marker = true // the join's Binds end with BindsDone{0}
	for k := range s.preloadSet {
		c.useLocked(k)
	}
	c.mu.Unlock()
	s.metrics.clients.Inc()
	s.metrics.sessions.Inc()
	return nil
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
