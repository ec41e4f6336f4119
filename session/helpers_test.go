package session

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/gorilla/websocket"
	"github.com/voxsync/voxsync/configs"
	"github.com/voxsync/voxsync/packets"
	"github.com/voxsync/voxsync/packs"
	"github.com/voxsync/voxsync/resources"
	"github.com/voxsync/voxsync/session/world"
)

// testServer is a real Server behind a real httptest.Server.
type testServer struct {
	*Server
	http    *httptest.Server
	admin   *httptest.Server // the admin listener: /metrics, /status, …
	url     string
	watcher *packs.Watcher
}

type serverSetup struct {
	cfg       func(*configs.Server)
	dirs      []string
	world     bool
	onJoin    func(*Client)
	hotReload bool      // watch dirs with a real fsnotify Watcher
	addr      string    // listen here (to restart a server at the same URL); empty: any port
	log       io.Writer // the server's log, as text, at Info; nil: none (or stderr with -v)
}

func startServer(t testing.TB, setup serverSetup) *testServer {
	t.Helper()
	cfg := configs.DefaultServer()
	cfg.Packs = setup.dirs
	cfg.PingInterval = configs.Duration{Duration: 5 * time.Second}
	if setup.cfg != nil {
		setup.cfg(&cfg)
	}
	ids := packs.NewIDs()
	loadOpts := packs.Options{
		Dirs: cfg.Packs, Builtin: cfg.BuiltinPack, MaxFileSize: cfg.MaxFileSize,
		MemoryMax: cfg.MemoryMax, MemoryBudget: cfg.MemoryBudget, IDs: ids,
	}
	v, err := packs.Load(context.Background(), loadOpts, nil)
	if err != nil {
		t.Fatal(err)
	}
	var w *world.World
	if setup.world {
		def, err := configs.LoadWorld("")
		if err != nil {
			t.Fatal(err)
		}
		if w, err = world.New(def); err != nil {
			t.Fatal(err)
		}
	}
	log := slog.New(slog.DiscardHandler)
	switch {
	case setup.log != nil:
		log = slog.New(slog.NewTextHandler(setup.log, nil))
	case testing.Verbose():
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	s, err := NewServer(ServerOptions{Config: cfg, View: v, IDs: ids, World: w, Logger: log, OnJoin: setup.onJoin})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewUnstartedServer(s.Handler())
	if setup.addr != "" {
		hs.Listener.Close()
		ln, err := net.Listen("tcp", setup.addr)
		if err != nil {
			t.Fatal(err)
		}
		hs.Listener = ln
	}
	hs.Start()
	ts := &testServer{Server: s, http: hs, admin: httptest.NewServer(s.AdminHandler()), url: "ws" + strings.TrimPrefix(hs.URL, "http") + "/ws"}
	if setup.hotReload {
		ts.watcher, err = packs.NewWatcher(v, packs.WatchOptions{Load: loadOpts, Debounce: cfg.ReloadDebounce.Duration, Logger: log, Apply: s.SetView})
		if err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(ts.stop)
	return ts
}

// stop shuts the server down as SIGTERM would: clients get a Disconnect.
func (ts *testServer) stop() {
	if ts.watcher != nil {
		ts.watcher.Close()
	}
	ts.Server.Close()
	ts.http.Close()
	ts.admin.Close()
}

// rawClient speaks the protocol packet by packet, for tests that need to
// misbehave or look at exact packets. A background reader feeds in, because
// a gorilla connection is unusable after a read times out.
type rawClient struct {
	t       testing.TB
	conn    *websocket.Conn
	in      chan packets.Packet
	readErr chan error // receives the reader's final error
	reading bool
}

func dial(t testing.TB, url string) *rawClient {
	t.Helper()
	return dialFrom(t, url, "")
}

// dialFrom dials from a local loopback address such as 127.0.0.2 (any
// when empty), to test per-address limits.
func dialFrom(t testing.TB, url, from string) *rawClient {
	t.Helper()
	d := *websocket.DefaultDialer
	if from != "" {
		d.NetDialContext = (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}).DialContext
	}
	conn, _, err := d.Dial(url, nil)
	if err != nil {
		t.Fatal(err)
	}
	conn.SetReadLimit(packets.MaxPacketSize)
	t.Cleanup(func() { conn.Close() })
	return &rawClient{t: t, conn: conn, in: make(chan packets.Packet, 16), readErr: make(chan error, 1)}
}

// startReading starts the background reader; a client that never calls
// recv never reads from the socket at all.
func (c *rawClient) startReading() {
	if c.reading {
		return
	}
	c.reading = true
	go func() {
		for {
			_, data, err := c.conn.ReadMessage()
			if err != nil {
				c.readErr <- err
				close(c.in)
				return
			}
			p, err := packets.Decode(data)
			if err != nil {
				c.readErr <- err
				close(c.in)
				return
			}
			c.in <- p
		}
	}()
}

// join dials and completes the handshake.
func join(t testing.TB, url string) (*rawClient, *packets.Welcome) {
	t.Helper()
	c := dial(t, url)
	c.send(&packets.Hello{Version: packets.Version, Client: uuid.New()})
	w, ok := c.recv().(*packets.Welcome)
	if !ok {
		t.Fatalf("expected Welcome")
	}
	return c, w
}

func (c *rawClient) send(p packets.Packet) {
	c.t.Helper()
	c.sendRaw(packets.Encode(p))
}

func (c *rawClient) sendRaw(b []byte) {
	c.t.Helper()
	if err := c.conn.WriteMessage(websocket.BinaryMessage, b); err != nil {
		c.t.Fatalf("send: %v", err)
	}
}

func (c *rawClient) recv() packets.Packet {
	c.t.Helper()
	p, err := c.tryRecv(10 * time.Second)
	if err != nil {
		c.t.Fatalf("recv: %v", err)
	}
	return p
}

// errNothing is tryRecv's answer when nothing arrived in time; the
// connection stays usable.
var errNothing = errors.New("nothing received")

func (c *rawClient) tryRecv(d time.Duration) (packets.Packet, error) {
	c.startReading()
	select {
	case p, ok := <-c.in:
		if !ok {
			err := <-c.readErr
			c.readErr <- err
			return nil, err
		}
		return p, nil
	case <-time.After(d):
		return nil, errNothing
	}
}

// expectDisconnect reads until a Disconnect arrives and returns it.
func (c *rawClient) expectDisconnect() *packets.Disconnect {
	c.t.Helper()
	for {
		p, err := c.tryRecv(10 * time.Second)
		if err != nil {
			c.t.Fatalf("connection ended without a Disconnect: %v", err)
		}
		if d, ok := p.(*packets.Disconnect); ok {
			return d
		}
	}
}

// binds reads Bind packets until n entries arrived.
func (c *rawClient) binds(n int) map[resources.Key]resources.Binding {
	c.t.Helper()
	out := map[resources.Key]resources.Binding{}
	for len(out) < n {
		switch p := c.recv().(type) {
		case *packets.Bind:
			for _, e := range p.Entries {
				out[e.Key()] = e
			}
		default:
			c.t.Fatalf("expected Bind, got %s", p.Type())
		}
	}
	return out
}

// untilDone collects Bind and Lost entries until BindsDone{seq}; anything
// else before it fails the test.
func (c *rawClient) untilDone(seq uint32) (bound map[resources.Key]resources.Binding, lost map[resources.Key]bool) {
	c.t.Helper()
	bound, lost = map[resources.Key]resources.Binding{}, map[resources.Key]bool{}
	for {
		switch p := c.recv().(type) {
		case *packets.Bind:
			for _, e := range p.Entries {
				bound[e.Key()] = e
			}
		case *packets.Lost:
			for _, k := range p.Entries {
				lost[k] = true
			}
		case *packets.BindsDone:
			if p.Seq == seq {
				return bound, lost
			}
			if p.Seq > seq {
				c.t.Fatalf("BindsDone{%d} while waiting for BindsDone{%d}", p.Seq, seq)
			}
		default:
			c.t.Fatalf("expected Bind, Lost or BindsDone, got %s", p.Type())
		}
	}
}

// download collects streams until every hash in want is complete or errored.
type download struct {
	data   map[resources.Hash][]byte
	errors map[resources.Hash]*packets.ResourceError
	order  []resources.Hash // completion order
	other  []packets.Packet
}

func (c *rawClient) download(want map[resources.Hash]bool) *download {
	c.t.Helper()
	d := &download{data: map[resources.Hash][]byte{}, errors: map[resources.Hash]*packets.ResourceError{}}
	streams := map[uint32]*packets.InitResSend{}
	bufs := map[uint32][]byte{}
	for len(d.data)+len(d.errors) < len(want) {
		switch p := c.recv().(type) {
		case *packets.InitResSend:
			streams[p.Stream] = p
			bufs[p.Stream] = nil
		case *packets.ChunkSend:
			init, ok := streams[p.Stream]
			if !ok {
				c.t.Fatalf("chunk for unknown stream %d", p.Stream)
			}
			bufs[p.Stream] = append(bufs[p.Stream], p.Data...)
			if p.Last {
				d.data[init.Hash] = bufs[p.Stream]
				d.order = append(d.order, init.Hash)
				delete(streams, p.Stream)
			}
		case *packets.ResourceError:
			d.errors[p.Hash] = p
		default:
			d.other = append(d.other, p)
		}
	}
	return d
}

func requestAll(hs []resources.Hash) *packets.ResourceRequest {
	r := &packets.ResourceRequest{}
	for _, h := range hs {
		r.Wants = append(r.Wants, packets.Want{Hash: h})
	}
	return r
}

func writePackFile(t testing.TB, dir, rel string, data []byte) {
	t.Helper()
	p := filepath.Join(dir, filepath.FromSlash(rel))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// randomBytes returns n deterministic pseudo-random bytes.
func randomBytes(n int, seed byte) []byte {
	b := make([]byte, n)
	rand.NewChaCha8([32]byte{seed}).Read(b)
	return b
}

// syncBuffer is a log writer the test reads while the server writes.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
