package session

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/voxsync/voxsync/assetsmgr"
	"github.com/voxsync/voxsync/configs"
	"github.com/voxsync/voxsync/packets"
	"github.com/voxsync/voxsync/resources"
)

// fakeServer speaks the protocol from a script, to misbehave on purpose.
type fakeServer struct {
	url   string
	conns chan *fakeConn
	// linger keeps a connection open after the client closes it, as a
	// server busy writing to a slow link does.
	linger atomic.Bool
	closed atomic.Bool
}

type fakeConn struct {
	t    testing.TB
	conn *websocket.Conn
	in   chan packets.Packet
	done chan struct{}
}

func newFakeServer(t testing.TB) *fakeServer { return newFakeServerWith(t, 0) }

// newFakeServerWith answers Hello with a Welcome choosing caps (of those
// the client offers).
func newFakeServerWith(t testing.TB, caps uint64) *fakeServer {
	return newFakeServerLimited(t, caps, 65536)
}

// newFakeServerLimited also announces maxPending requests.
func newFakeServerLimited(t testing.TB, caps uint64, maxPending uint32) *fakeServer {
	fs := &fakeServer{conns: make(chan *fakeConn, 8)}
	up := websocket.Upgrader{}
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer conn.Close()
		_, data, err := conn.ReadMessage()
		if err != nil {
			return
		}
		hello, ok := packets.Decode(data)
		if ok != nil {
			return
		}
		conn.WriteMessage(websocket.BinaryMessage, packets.Encode(&packets.Welcome{Version: packets.Version, Capabilities: caps & hello.(*packets.Hello).Capabilities,
			Limits: packets.Limits{MaxChunk: 65536, MaxPacket: packets.MaxPacketSize, MaxRequestHashes: 100, MaxPending: maxPending, PingIntervalMs: 5000}}))
		if fs.linger.Load() {
			// No close frame back either: it would be queued behind
			// what a slow link has not taken yet.
			conn.SetCloseHandler(func(int, string) error { return nil })
		}
		fc := &fakeConn{t: t, conn: conn, in: make(chan packets.Packet, 256), done: make(chan struct{})}
		fs.conns <- fc
		defer close(fc.done)
		for {
			_, data, err := conn.ReadMessage()
			if err != nil {
				close(fc.in)
				for fs.linger.Load() && !fs.closed.Load() {
					time.Sleep(10 * time.Millisecond)
				}
				return
			}
			p, err := packets.Decode(data)
			if err != nil {
				t.Errorf("client sent a malformed packet: %v", err)
				close(fc.in)
				return
			}
			fc.in <- p
		}
	}))
	t.Cleanup(func() { fs.closed.Store(true); hs.Close() })
	fs.url = "ws" + strings.TrimPrefix(hs.URL, "http") + "/ws"
	return fs
}

func (fs *fakeServer) accept(t testing.TB) *fakeConn {
	t.Helper()
	select {
	case c := <-fs.conns:
		return c
	case <-time.After(10 * time.Second):
		t.Fatal("client did not connect")
		return nil
	}
}

func (c *fakeConn) send(ps ...packets.Packet) {
	for _, p := range ps {
		c.conn.WriteMessage(websocket.BinaryMessage, packets.Encode(p))
	}
}

// expect returns the next packet of type T, skipping Moves.
func expect[T packets.Packet](c *fakeConn) T {
	c.t.Helper()
	for {
		select {
		case p, ok := <-c.in:
			if !ok {
				c.t.Fatal("client closed the connection")
			}
			if v, ok := p.(T); ok {
				return v
			}
			if _, ok := p.(*packets.Move); ok {
				continue
			}
			var zero T
			c.t.Fatalf("got %s, want %T", p.Type(), zero)
		case <-time.After(10 * time.Second):
			var zero T
			c.t.Fatalf("no %T from the client", zero)
		}
	}
}

// stream sends data as one stream of the given chunk size.
func (c *fakeConn) stream(id uint32, b resources.Binding, data []byte, chunk int) {
	c.send(&packets.InitResSend{Stream: id, Hash: b.Hash, Size: b.Size, Length: b.Size, AssetType: b.Type, ID: b.ID, Ref: b.Ref})
	for off := 0; ; off += chunk {
		end := min(off+chunk, len(data))
		c.send(&packets.ChunkSend{Stream: id, Offset: uint64(off), Last: end == len(data), Data: data[off:end]})
		if end == len(data) {
			return
		}
	}
}

// recorder collects a Syncer's events. Its callback never blocks, as
// OnEvent's contract asks: a test that does not read ch loses the channel
// copy (counted in dropped), never the Syncer's progress.
type recorder struct {
	mu      sync.Mutex
	evs     []Event
	dropped int
	ch      chan Event
	backlog []Event // read from ch but not yet matched; the test goroutine's own
}

func (r *recorder) on(e Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.evs = append(r.evs, e)
	if _, ok := e.(Progress); ok {
		return
	}
	select {
	case r.ch <- e:
	default:
		r.dropped++
	}
}

// wait returns the next event of type T.
func waitEvent[T Event](t testing.TB, r *recorder) T {
	t.Helper()
	for {
		select {
		case e := <-r.ch:
			if v, ok := e.(T); ok {
				return v
			}
		case <-time.After(10 * time.Second):
			var zero T
			t.Fatalf("no %T event", zero)
		}
	}
}

func startSyncer(t testing.TB, url string, tweak func(*SyncOptions)) (*Syncer, *recorder, *assetsmgr.Cache, chan error) {
	t.Helper()
	cache, err := assetsmgr.Open(context.Background(), assetsmgr.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{ch: make(chan Event, 10000)}
	opts := SyncOptions{URL: url, Cache: cache, OnEvent: rec.on, StallTimeout: 500 * time.Millisecond, MaxRetries: 3}
	if testing.Verbose() {
		opts.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	if tweak != nil {
		tweak(&opts)
	}
	s := NewSyncer(opts)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
		cache.Close()
	})
	return s, rec, cache, done
}

func binding(key string, data []byte) resources.Binding {
	return resources.Binding{Type: resources.TypeTexture, ID: 1, Ref: resources.Ref{Domain: "test", Key: key}, Hash: resources.Sum(data), Size: uint64(len(data))}
}

func TestSyncerRecoversFromBadStreams(t *testing.T) {
	data := randomBytes(150_000, 7) // large: assembled in a temp file
	b := binding("big.png", data)
	tests := []struct {
		name string
		bad  func(c *fakeConn)
	}{
		{"hash mismatch", func(c *fakeConn) {
			wrong := append([]byte(nil), data...)
			wrong[100_000] ^= 1
			c.stream(1, b, wrong, 65536)
		}},
		{"offset gap", func(c *fakeConn) {
			c.send(&packets.InitResSend{Stream: 1, Hash: b.Hash, Size: b.Size, Length: b.Size, Ref: b.Ref})
			c.send(&packets.ChunkSend{Stream: 1, Offset: 0, Data: data[:1000]})
			c.send(&packets.ChunkSend{Stream: 1, Offset: 2000, Data: data[2000:3000]})
		}},
		{"past the end", func(c *fakeConn) {
			c.send(&packets.InitResSend{Stream: 1, Hash: b.Hash, Size: b.Size, Length: b.Size, Ref: b.Ref})
			padded := append(append([]byte(nil), data...), make([]byte, 3*65536-len(data))...)
			for off := 0; off < len(padded); off += 65536 {
				c.send(&packets.ChunkSend{Stream: 1, Offset: uint64(off), Last: off+65536 == len(padded), Data: padded[off : off+65536]})
			}
		}},
		{"wrong size in header", func(c *fakeConn) {
			c.send(&packets.InitResSend{Stream: 1, Hash: b.Hash, Size: b.Size * 4, Length: b.Size * 4, Ref: b.Ref})
		}},
		{"unknown stream", func(c *fakeConn) {
			c.send(&packets.ChunkSend{Stream: 77, Offset: 0, Data: []byte("who am I")})
			// and then silence: the stall timeout must re-request
		}},
		{"server error", func(c *fakeConn) {
			c.send(&packets.ResourceError{Hash: b.Hash, Code: packets.ErrorInternal, Message: "disk hiccup"})
		}},
		{"silence", func(c *fakeConn) {}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fs := newFakeServer(t)
			s, rec, cache, _ := startSyncer(t, fs.url, nil)
			c := fs.accept(t)
			c.send(&packets.Bind{Entries: []resources.Binding{b}})
			req := expect[*packets.ResourceRequest](c)
			if len(req.Wants) != 1 || req.Wants[0].Hash != b.Hash {
				t.Fatalf("request %+v", req)
			}
			tc.bad(c)
			// The client asks again, and this time gets it right.
			expect[*packets.ResourceRequest](c)
			c.stream(2, b, data, 65536)
			l := waitEvent[Loaded](t, rec)
			if l.Source != assetsmgr.SourceNetwork || l.Binding.Hash != b.Hash {
				t.Fatalf("loaded %+v", l)
			}
			hits, _ := cache.Lookup(context.Background(), []resources.Hash{b.Hash})
			got, _ := hits[b.Hash].ReadAll()
			if string(got) != string(data) {
				t.Fatal("cache holds other bytes than the bound hash")
			}
			if st := s.Stats(); st.Loaded != 1 || st.Failed != 0 {
				t.Fatalf("stats %+v", st)
			}
		})
	}
}

func TestSyncerGivesUpAfterRetries(t *testing.T) {
	fs := newFakeServer(t)
	data := []byte("small texture")
	b := binding("small.png", data)
	s, rec, _, _ := startSyncer(t, fs.url, nil)
	c := fs.accept(t)
	c.send(&packets.Bind{Entries: []resources.Binding{b}}, &packets.BindsDone{})
	// An unknown hash, every time (LuaVox clients wait forever here).
	for range 4 {
		expect[*packets.ResourceRequest](c)
		c.send(&packets.ResourceError{Hash: b.Hash, Code: packets.ErrorUnknownHash, Message: "no such hash"})
	}
	f := waitEvent[Failed](t, rec)
	if f.Binding.Hash != b.Hash || !strings.Contains(f.Err.Error(), "unknown hash") {
		t.Fatalf("failed %+v", f)
	}
	// Waited for: the recorder hands the event over before OnEvent has
	// returned, and Synced counts the delivery.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.WaitSynced(ctx); !errors.Is(err, ErrFailed) || s.Stats().Failed != 1 {
		t.Fatalf("after giving up: %v, synced=%v stats=%+v", err, s.Synced(), s.Stats())
	}
}

func TestSyncerDisconnectsGarbageServerAndReconnects(t *testing.T) {
	fs := newFakeServer(t)
	s, rec, _, _ := startSyncer(t, fs.url, nil)
	c := fs.accept(t)
	c.conn.WriteMessage(websocket.BinaryMessage, []byte{byte(packets.TypeBind), 0xff, 0xff, 0xff})
	d := expect[*packets.Disconnect](c)
	if d.Code != packets.DisconnectProtocolError || !strings.Contains(d.Reason, "decode Bind") {
		t.Fatalf("disconnect %+v", d)
	}
	// It comes back and syncs.
	c2 := fs.accept(t)
	data := []byte("after reconnect")
	b := binding("x.png", data)
	c2.send(&packets.Bind{Entries: []resources.Binding{b}})
	expect[*packets.ResourceRequest](c2)
	c2.stream(1, b, data, 65536)
	waitEvent[Loaded](t, rec)
	if s.Stats().Sessions != 2 {
		t.Fatalf("sessions %d", s.Stats().Sessions)
	}
}

func TestSyncerResumesRequestsAfterConnectionLoss(t *testing.T) {
	fs := newFakeServer(t)
	data := randomBytes(200_000, 9)
	b := binding("big.png", data)
	_, rec, _, _ := startSyncer(t, fs.url, nil)
	c := fs.accept(t)
	c.send(&packets.Bind{Entries: []resources.Binding{b}})
	expect[*packets.ResourceRequest](c)
	c.send(&packets.InitResSend{Stream: 1, Hash: b.Hash, Size: b.Size, Length: b.Size, Ref: b.Ref})
	c.send(&packets.ChunkSend{Stream: 1, Offset: 0, Data: data[:65536]})
	c.conn.Close() // the server dies mid-stream
	// The new session's server re-sends the same Bind: nothing new to the
	// client, so it must ask for the unfinished hash on its own.
	c2 := fs.accept(t)
	c2.send(&packets.Bind{Entries: []resources.Binding{b}})
	req := expect[*packets.ResourceRequest](c2)
	if req.Wants[0].Hash != b.Hash {
		t.Fatal("unfinished hash not requested after reconnect")
	}
	c2.stream(1, b, data, 65536)
	if l := waitEvent[Loaded](t, rec); l.Binding.Hash != b.Hash {
		t.Fatal("wrong resource loaded")
	}
}

func TestSyncerLostAndRefused(t *testing.T) {
	fs := newFakeServer(t)
	data := []byte("lost soon")
	b := binding("l.png", data)
	s, rec, _, _ := startSyncer(t, fs.url, nil)
	c := fs.accept(t)
	c.send(&packets.Bind{Entries: []resources.Binding{b}})
	expect[*packets.ResourceRequest](c)
	c.send(&packets.Lost{Entries: []resources.Key{b.Key()}})
	if l := waitEvent[Lost](t, rec); l.Binding.Ref != b.Ref {
		t.Fatalf("lost %+v", l)
	}
	// The request in flight is withdrawn.
	cancel := expect[*packets.ResourceCancel](c)
	if cancel.Hashes[0] != b.Hash {
		t.Fatal("wrong cancel")
	}
	if s.Stats().Bound != 0 {
		t.Fatalf("bound %d after Lost", s.Stats().Bound)
	}

	// A real server that wants a token: Run ends with ErrRefused instead
	// of reconnecting forever, even with reconnecting on.
	ts := startServer(t, serverSetup{cfg: func(c *configs.Server) { c.AuthToken = "sesame" }})
	cache, _ := assetsmgr.Open(context.Background(), assetsmgr.Options{Dir: t.TempDir()})
	defer cache.Close()
	ctx, cancelRun := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancelRun()
	err := NewSyncer(SyncOptions{URL: ts.url, Cache: cache, Token: "wrong"}).Run(ctx)
	if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "auth token refused") {
		t.Fatalf("run with a wrong token: %v", err)
	}
	// With the right token it syncs.
	s2 := NewSyncer(SyncOptions{URL: ts.url, Cache: cache, Token: "sesame"})
	go s2.Run(ctx)
	if err := s2.WaitSynced(ctx); err != nil {
		t.Fatal(err)
	}
}

// A cancelled Syncer returns within about a second even while the server
// keeps sending (a slow link with megabytes queued): a -timeout or a
// signal must not wait for the queue to drain.
func TestSyncerStopsPromptlyWhileTheServerKeepsSending(t *testing.T) {
	fs := newFakeServer(t)
	fs.linger.Store(true)
	cache := tempCache(t)
	s := NewSyncer(SyncOptions{URL: fs.url, Cache: cache})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	c := fs.accept(t)
	data := randomBytes(1<<20, 30)
	b := binding("slow.bin", data)
	c.send(&packets.Bind{Entries: []resources.Binding{b}})
	expect[*packets.ResourceRequest](c)
	c.send(&packets.InitResSend{Stream: 1, Hash: b.Hash, Size: b.Size, Length: b.Size, Ref: b.Ref})
	go func() { // a trickle that never ends, and never closes
		for off := 0; !fs.closed.Load(); off = (off + 100) % (len(data) - 100) {
			time.Sleep(10 * time.Millisecond)
			c.send(&packets.ChunkSend{Stream: 1, Offset: uint64(off), Data: data[off : off+100]})
		}
	}()
	time.Sleep(200 * time.Millisecond)
	start := time.Now()
	cancel()
	select {
	case <-done:
		if took := time.Since(start); took > 2500*time.Millisecond {
			t.Fatalf("Run took %v to return after its context ended", took)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return while the server kept sending")
	}
}

// A cached copy that turns out corrupt when the game reads it (the cache
// verifies inline blobs and unchanged blob files as they are read, not at
// every join) is fetched again at once, and Loaded again, within the same
// session.
func TestSyncerFetchesAgainWhatFailsWhenRead(t *testing.T) {
	dir := t.TempDir()
	small, large := []byte("a small texture, stored inline"), randomBytes(300_000, 3)
	writePackFile(t, dir, "assets/t/texture/small.png", small)
	writePackFile(t, dir, "assets/t/texture/large.png", large)
	ts := startServer(t, serverSetup{dirs: []string{dir}, cfg: func(c *configs.Server) {
		c.BuiltinPack = false
		c.Preload = []string{"*"}
	}})
	s, rec, cache, _ := startSyncer(t, ts.url, nil)
	for _, data := range [][]byte{small, large} {
		waitFor(t, rec, func(l Loaded) bool { return l.Binding.Hash == resources.Sum(data) }, "the first copy")
	}
	if err := cache.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	// Damage both copies behind the cache's back, the way a disk does.
	db, err := sql.Open("sqlite", filepath.Join(cache.Dir(), "db.sqlite3"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec("UPDATE inline_blobs SET data = zeroblob(length(data)) WHERE hash = ?", hashBytes(resources.Sum(small))); err != nil {
		t.Fatal(err)
	}
	db.Close()
	blobFile := filepath.Join(cache.Dir(), "blobs", resources.Sum(large).String()[:2], resources.Sum(large).String())
	f, err := os.OpenFile(blobFile, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte{'X'}, 1000)
	f.Close()

	for _, data := range [][]byte{small, large} {
		h := resources.Sum(data)
		// The blob file's ctime changed, so the lookup re-hashes it and
		// finds it damaged; the inline copy fails as it is read.
		if b, err := s.Open(context.Background(), h); err == nil {
			if got, err := b.ReadAll(); !errors.Is(err, assetsmgr.ErrHashMismatch) {
				t.Fatalf("reading the damaged copy of %s: %d bytes, err %v; want ErrHashMismatch", h.Short(), len(got), err)
			}
		}
		waitFor(t, rec, func(l Loaded) bool { return l.Binding.Hash == h && l.Source == assetsmgr.SourceNetwork }, "a good copy fetched again")
		b, err := s.Open(context.Background(), h)
		if err != nil {
			t.Fatal(err)
		}
		if got, err := b.ReadAll(); err != nil || !bytes.Equal(got, data) {
			t.Fatalf("the copy fetched again: %d bytes, err %v", len(got), err)
		}
	}
	// Waited for, not checked at once: the recorder hands the Loaded over
	// before OnEvent has returned, and Synced counts the delivery (193bb67).
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.WaitSynced(ctx); err != nil {
		t.Errorf("not synced after fetching again: %v, %+v", err, s.Stats())
	}
}

func hashBytes(h resources.Hash) []byte { return h[:] }

// WaitSynced returns only once the game's OnEvent has had every Loaded:
// a game leaving its loading screen then finds all it needs. OnEvent runs
// on the goroutine that changed the state, after it lets go of it, so the
// state can be synced while events are still on their way; WaitSynced
// returned then (a helper's game saw it return with 0 of 77 Loaded
// delivered, 1 run in 25).
func TestWaitSyncedAfterEveryLoadedIsDelivered(t *testing.T) {
	dir := t.TempDir()
	for i := range 20 {
		writePackFile(t, dir, "assets/m/texture/t"+itoa(i)+".png", []byte("texture "+itoa(i)))
	}
	ts := startServer(t, serverSetup{dirs: []string{dir}})
	cache := tempCache(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// A warm join: Loaded comes from the lookups, not the store.
	warm, stopWarm := context.WithCancel(ctx)
	first := NewSyncer(SyncOptions{URL: ts.url, Cache: cache})
	firstDone := make(chan struct{})
	go func() { first.Run(warm); close(firstDone) }()
	if err := first.WaitSynced(ctx); err != nil {
		t.Fatal(err)
	}
	stopWarm()
	<-firstDone
	entered, release := make(chan struct{}), make(chan struct{})
	var loaded atomic.Int64
	var once sync.Once
	s := NewSyncer(SyncOptions{URL: ts.url, Cache: cache, OnEvent: func(e Event) {
		if _, ok := e.(Loaded); ok {
			once.Do(func() { close(entered); <-release }) // the game busy with the first
			loaded.Add(1)
		}
	}})
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	var releaseOnce sync.Once
	letGo := func() { releaseOnce.Do(func() { close(release) }) }
	defer func() { letGo(); cancel(); <-done }()
	<-entered
	stateSynced := func() bool { s.mu.Lock(); defer s.mu.Unlock(); return s.syncedLocked() }
	for !stateSynced() { // everything loaded, the game still at its first Loaded
		if ctx.Err() != nil {
			t.Fatalf("never synced: %+v", s.Stats())
		}
		time.Sleep(time.Millisecond)
	}
	if s.Synced() {
		t.Errorf("Synced() with %d Loaded delivered of %d", loaded.Load(), s.Stats().Loaded)
	}
	early, cancelEarly := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancelEarly()
	if err := s.WaitSynced(early); err == nil {
		t.Fatalf("WaitSynced returned nil with %d Loaded delivered of %d", loaded.Load(), s.Stats().Loaded)
	}
	letGo()
	if err := s.WaitSynced(ctx); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); loaded.Load() != int64(st.Loaded) || st.SyncSeconds == 0 {
		t.Fatalf("WaitSynced returned with %d of %d Loaded delivered (SyncSeconds %v)", loaded.Load(), st.Loaded, st.SyncSeconds)
	}
}

// One Syncer is one connection: a second Run while the first runs returns
// ErrRunning at once (before, both ran, two sessions on one state), and
// Run may be called again after the first returned.
func TestSecondRunIsRefused(t *testing.T) {
	ts := startServer(t, serverSetup{})
	cache := tempCache(t)
	s := NewSyncer(SyncOptions{URL: ts.url, Cache: cache})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	if err := s.WaitSynced(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Run(ctx); !errors.Is(err, ErrRunning) {
		t.Fatalf("second Run: %v, want ErrRunning", err)
	}
	// A game telling "not loaded yet" from a broken cache.
	if _, err := s.Open(ctx, resources.Sum([]byte("never bound"))); !errors.Is(err, ErrNotCached) {
		t.Errorf("Open of a hash never loaded: %v, want ErrNotCached", err)
	}
	cancel()
	<-done
	if st := s.Stats(); st.Sessions != 1 {
		t.Errorf("%d sessions, want 1", st.Sessions)
	}
	again, stop := context.WithTimeout(context.Background(), 10*time.Second)
	defer stop()
	go func() { done <- s.Run(again) }()
	for s.Stats().Sessions < 2 && again.Err() == nil { // the new Run under way
		time.Sleep(time.Millisecond)
	}
	// Not the first Run's context.Canceled: this Run's sync.
	if err := s.WaitSynced(again); err != nil {
		t.Fatalf("WaitSynced after Run again: %v", err)
	}
	if st := s.Stats(); st.Sessions != 2 {
		t.Errorf("%d sessions after Run again, want 2", st.Sessions)
	}
	stop()
	if err := <-done; errors.Is(err, ErrRunning) {
		t.Fatalf("Run after the first returned: %v", err)
	}
}

// Every WaitSynced caller wakes, not one of them: a loading screen and,
// say, a telemetry goroutine both waiting. The wake-up was a channel of
// one slot: of three waiters when Run stopped (here at once, on a bad
// URL: a single wake-up), two slept on.
func TestEveryWaitSyncedWakes(t *testing.T) {
	cache := tempCache(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s := NewSyncer(SyncOptions{URL: "http://not-a-ws-url", Cache: cache})
	errs := make(chan error, 3)
	for range 3 {
		go func() { errs <- s.WaitSynced(ctx) }()
	}
	time.Sleep(100 * time.Millisecond) // all three waiting
	if err := s.Run(ctx); !errors.Is(err, ErrBadURL) {
		t.Fatalf("Run: %v", err)
	}
	for i := range 3 {
		select {
		case err := <-errs:
			if !errors.Is(err, ErrBadURL) {
				t.Fatalf("waiter %d: %v, want Run's error", i, err)
			}
		case <-time.After(2 * time.Second):
			t.Fatalf("waiter %d of 3 still waiting after Run returned", i)
		}
	}
}

// tempCache opens a cache in a temporary directory, closed when the test
// ends.
func tempCache(t *testing.T) *assetsmgr.Cache {
	t.Helper()
	cache, err := assetsmgr.Open(context.Background(), assetsmgr.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cache.Close() })
	return cache
}
