package session

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/voxsync/voxsync/configs"
	"github.com/voxsync/voxsync/manifest"
	"github.com/voxsync/voxsync/mirror"
	"github.com/voxsync/voxsync/packets"
	"github.com/voxsync/voxsync/packs"
	"github.com/voxsync/voxsync/resources"
)

// testMirror is a real HTTP server holding the published layout of a
// server's view (objects only: whole small resources, chunks of large
// ones), with switches for the ways mirrors go wrong.
type testMirror struct {
	*httptest.Server
	mu      sync.Mutex
	objects map[string][]byte
	// behave, if set, may answer a request itself (return true).
	behave func(w http.ResponseWriter, r *http.Request, name string, body []byte) bool
	served atomic.Int64 // body bytes written
}

func newTestMirror(t testing.TB, dir string) *testMirror {
	t.Helper()
	m := &testMirror{objects: make(map[string][]byte)}
	v, err := packs.Load(context.Background(), packs.Options{Dirs: []string{dir}, MaxFileSize: 1 << 30, IDs: packs.NewIDs()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	for _, e := range v.Entries() {
		c, err := e.Open()
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(io.NewSectionReader(c, 0, e.Size))
		c.Close()
		if err != nil {
			t.Fatal(err)
		}
		mf, err := e.Manifest(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if e.Size <= manifest.MaxChunkLen {
			m.objects[e.Hash.String()] = data
			continue
		}
		for _, ch := range mf.Chunks {
			m.objects[ch.Hash.String()] = data[ch.Offset : ch.Offset+uint64(ch.Length)]
		}
	}
	m.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/pub/"+mirror.LayoutFile {
			w.Write([]byte(`{"layout":1}`))
			return
		}
		name := r.URL.Path[strings.LastIndexByte(r.URL.Path, '/')+1:]
		if !strings.HasPrefix(r.URL.Path, "/pub/objects/"+name[:min(2, len(name))]+"/") {
			http.NotFound(w, r)
			return
		}
		m.mu.Lock()
		body, ok := m.objects[name]
		behave := m.behave
		m.mu.Unlock()
		if behave != nil && behave(w, r, name, body) {
			return
		}
		if !ok {
			http.NotFound(w, r)
			return
		}
		m.served.Add(int64(len(body)))
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(body))
	}))
	t.Cleanup(m.Close)
	return m
}

func (m *testMirror) base() string { return m.URL + "/pub/" }

// answerAfter is a mirror's behaviour that answers every request after d:
// a far-away or overloaded mirror.
func answerAfter(d time.Duration) func(http.ResponseWriter, *http.Request, string, []byte) bool {
	return func(http.ResponseWriter, *http.Request, string, []byte) bool {
		time.Sleep(d)
		return false
	}
}

func (m *testMirror) setBehave(f func(w http.ResponseWriter, r *http.Request, name string, body []byte) bool) {
	m.mu.Lock()
	m.behave = f
	m.mu.Unlock()
}

// mirroredServer starts a server over dir whose clients are told of a
// test mirror of its content.
func mirroredServer(t *testing.T, dir string) (*testServer, *testMirror) {
	return mirroredServerWith(t, dir, nil)
}

// mirroredServerWith also changes the server's configuration.
func mirroredServerWith(t *testing.T, dir string, tweak func(*configs.Server)) (*testServer, *testMirror) {
	t.Helper()
	m := newTestMirror(t, dir)
	ts := startServer(t, serverSetup{dirs: []string{dir}, cfg: func(c *configs.Server) {
		c.BuiltinPack = false
		c.Mirrors = []string{m.base()}
		if tweak != nil {
			tweak(c)
		}
	}})
	return ts, m
}

// mirrorPack writes n small files and one large one of size big.
func mirrorPack(t *testing.T, n int, big int) (dir string, all map[resources.Hash][]byte) {
	dir = t.TempDir()
	all = make(map[resources.Hash][]byte)
	for i := range n {
		b := randomBytes(2000+i*37, byte(i))
		writePackFile(t, dir, fmt.Sprintf("assets/m/texture/t%03d.png", i), b)
		all[resources.Sum(b)] = b
	}
	if big > 0 {
		b := randomBytes(big, 200)
		writePackFile(t, dir, "assets/m/sound/ambient.ogg", b)
		all[resources.Sum(b)] = b
	}
	return dir, all
}

func checkAll(t *testing.T, s *Syncer, all map[resources.Hash][]byte) {
	t.Helper()
	for h, want := range all {
		if got := readBlob(t, s, h); !bytes.Equal(got, want) {
			t.Fatalf("%s: wrong bytes", h.Short())
		}
	}
}

func payloadSent(ts *testServer) int64 { return int64(metricValue(ts.metrics.bytesSent)) }

// A client told of a mirror fetches from it what it holds, verified; the
// game server sends only manifests, and hears what the mirror saved it.
func TestSyncFromMirror(t *testing.T) {
	dir, all := mirrorPack(t, 200, 8<<20)
	ts, m := mirroredServer(t, dir)
	s, _, _, _ := startSyncer(t, ts.url, nil)
	waitSynced(t, s)
	checkAll(t, s, all)
	st := s.Stats()
	var total int64
	for _, b := range all {
		total += int64(len(b))
	}
	if st.BytesFromMirrors != total || st.BytesInBand != 0 || st.Failed != 0 || st.StreamErrors != 0 {
		t.Fatalf("from mirrors %d of %d, in band %d: %+v", st.BytesFromMirrors, total, st.BytesInBand, st)
	}
	if sent := payloadSent(ts); sent != 0 {
		t.Fatalf("server sent %d payload bytes; the mirror had everything", sent)
	}
	if m.served.Load() != total {
		t.Fatalf("mirror served %d bytes for %d", m.served.Load(), total)
	}
	if len(st.Mirrors) != 1 || st.Mirrors[0].Bytes != total {
		t.Fatalf("mirror stats %+v", st.Mirrors)
	}
	// The client reports what the mirror saved the server, at least on
	// its tick (every second).
	deadline := time.Now().Add(5 * time.Second)
	for int64(metricValue(ts.metrics.mirrorBytes)) != total {
		if time.Now().After(deadline) {
			t.Fatalf("server heard of %v mirror bytes, want %d", metricValue(ts.metrics.mirrorBytes), total)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if st := ts.Status(); st.Totals.MirrorBytes != total || len(st.Clients) != 1 || st.Clients[0].MirrorBytes != total {
		t.Fatalf("status: totals %+v, clients %+v", st.Totals, st.Clients)
	}
}

// A mirror that lacks some objects is normal: they come from the game
// server, and the player sees no error.
func TestMirrorLackingObjectsFallsBack(t *testing.T) {
	dir, all := mirrorPack(t, 100, 4<<20)
	ts, m := mirroredServer(t, dir)
	m.mu.Lock()
	i := 0
	for name := range m.objects {
		if i%2 == 0 {
			delete(m.objects, name)
		}
		i++
	}
	m.mu.Unlock()
	s, _, _, _ := startSyncer(t, ts.url, nil)
	waitSynced(t, s)
	checkAll(t, s, all)
	st := s.Stats()
	if st.BytesFromMirrors == 0 || st.BytesInBand == 0 || st.Failed != 0 || st.StreamErrors != 0 || st.Mirrors[0].NotFound == 0 {
		t.Fatalf("%+v", st)
	}
	if st.Mirrors[0].Failures != 0 || st.Mirrors[0].Demoted {
		t.Fatalf("a mirror lacking objects was counted as failing: %+v", st.Mirrors[0])
	}
}

// A mirror that serves corrupt bytes is demoted for the session; every
// resource still arrives verified, from the game server.
func TestCorruptMirrorIsDemotedAndServerServes(t *testing.T) {
	dir, all := mirrorPack(t, 100, 4<<20)
	ts, m := mirroredServer(t, dir)
	var n atomic.Int64
	m.setBehave(func(w http.ResponseWriter, r *http.Request, name string, body []byte) bool {
		if n.Add(1) > 10 && len(body) > 0 {
			bad := bytes.Clone(body)
			bad[len(bad)/2] ^= 0x40
			w.Write(bad)
			return true
		}
		return false
	})
	s, _, _, _ := startSyncer(t, ts.url, nil)
	waitSynced(t, s)
	checkAll(t, s, all)
	st := s.Stats()
	if !st.Mirrors[0].Demoted || st.Failed != 0 || st.BytesInBand == 0 {
		t.Fatalf("%+v", st)
	}
	if got := n.Load(); got > 10+int64(2*8) {
		t.Fatalf("mirror asked %d times; a demoted mirror is not asked again", got)
	}
}

// A mirror that dies in the middle of a large resource: the rest comes
// from the game server, and little is fetched twice.
func TestMirrorDiesMidResource(t *testing.T) {
	dir, all := mirrorPack(t, 0, 64<<20)
	ts, m := mirroredServer(t, dir)
	var dead atomic.Bool
	m.setBehave(func(w http.ResponseWriter, r *http.Request, name string, body []byte) bool {
		if dead.Load() || m.served.Load() > 32<<20 {
			dead.Store(true)
			panic(http.ErrAbortHandler)
		}
		return false
	})
	s, _, _, _ := startSyncer(t, ts.url, nil)
	waitSynced(t, s)
	checkAll(t, s, all)
	st := s.Stats()
	total := int64(64 << 20)
	if st.BytesFromMirrors < 30<<20 || st.BytesInBand == 0 || st.Failed != 0 {
		t.Fatalf("%+v", st)
	}
	if twice := st.WireBytes - total; twice > total/100 {
		t.Fatalf("%d bytes fetched twice (%.2f%%): %+v", twice, 100*float64(twice)/float64(total), st)
	}
	t.Logf("mirror %d, server %d, on the wire %d for %d", st.BytesFromMirrors, st.BytesInBand, st.WireBytes, total)
}

// A client that does not want mirrors gets everything in-band.
func TestNoMirrorsOption(t *testing.T) {
	dir, all := mirrorPack(t, 50, 2<<20)
	ts, m := mirroredServer(t, dir)
	s, _, _, _ := startSyncer(t, ts.url, func(o *SyncOptions) { o.NoMirrors = true })
	waitSynced(t, s)
	checkAll(t, s, all)
	if st := s.Stats(); st.BytesFromMirrors != 0 || m.served.Load() != 0 {
		t.Fatalf("%+v", st)
	}
}

// A mirror that accepts connections and never answers delivers nothing:
// after slowMirrors the game server takes its queue, and its requests in
// flight after takeoverAfter, without waiting for their leases.
func TestHangingMirrorIsTakenOver(t *testing.T) {
	dir, all := mirrorPack(t, 100, 4<<20)
	ts, m := mirroredServer(t, dir)
	m.setBehave(func(w http.ResponseWriter, r *http.Request, name string, body []byte) bool {
		<-r.Context().Done()
		return true
	})
	s, _, _, _ := startSyncer(t, ts.url, nil)
	start := time.Now()
	waitSynced(t, s)
	took := time.Since(start)
	checkAll(t, s, all)
	st := s.Stats()
	if st.BytesFromMirrors != 0 || st.Failed != 0 || st.BytesInBand == 0 {
		t.Fatalf("%+v", st)
	}
	if took > slowMirrors+2*time.Second {
		t.Fatalf("took %s with a hung mirror", took)
	}
	t.Logf("synced in %s with a hung mirror", took)
}

// A mirror that works but answers slowly (a far-away bucket, an overloaded
// CDN) would hold the sync for many seconds: the idle game server takes
// most of the work, and the mirror keeps what it does.
func TestSlowMirrorIsHelped(t *testing.T) {
	dir, all := mirrorPack(t, 150, 0)
	ts, m := mirroredServer(t, dir)
	m.setBehave(answerAfter(300 * time.Millisecond))
	s, _, _, _ := startSyncer(t, ts.url, nil)
	start := time.Now()
	waitSynced(t, s)
	took := time.Since(start)
	checkAll(t, s, all)
	st := s.Stats()
	// Mirror alone: 150 objects / 8 at once × 0.3 s ≈ 5.6 s.
	if took > 4*time.Second || st.BytesInBand == 0 || st.BytesFromMirrors == 0 || st.Failed != 0 {
		t.Fatalf("took %s: %+v", took, st)
	}
	t.Logf("synced in %s: %d bytes from the slow mirror, %d from the game server", took, st.BytesFromMirrors, st.BytesInBand)
}

// With mirror_help = 0 the operator spares the server's uplink at the
// cost of players' time: a slow mirror does all the work.
func TestSlowMirrorWithoutHelp(t *testing.T) {
	dir, all := mirrorPack(t, 40, 0)
	ts, m := mirroredServerWith(t, dir, func(c *configs.Server) { c.MirrorHelp = 0 })
	m.setBehave(answerAfter(300 * time.Millisecond))
	s, _, _, _ := startSyncer(t, ts.url, nil)
	waitSynced(t, s)
	checkAll(t, s, all)
	if st := s.Stats(); st.BytesInBand != 0 || payloadSent(ts) != 0 {
		t.Fatalf("the server helped although mirror_help = 0: %+v", st)
	}
}

// In a join storm the mirrors do the work: a client joining after
// mirror_help others in the last minute gets no help from the server.
func TestJoinStormGetsNoHelp(t *testing.T) {
	dir, _ := mirrorPack(t, 5, 0)
	ts, _ := mirroredServerWith(t, dir, func(c *configs.Server) { c.MirrorHelp = 3 })
	var helped []bool
	for range 5 {
		c := dial(t, ts.url)
		c.send(&packets.Hello{Version: packets.Version, Client: uuid.New(), Capabilities: packets.CapMirrors})
		for {
			if m, ok := c.recv().(*packets.Mirrors); ok {
				helped = append(helped, m.Help)
				break
			}
		}
	}
	if want := []bool{true, true, true, false, false}; !slices.Equal(helped, want) {
		t.Fatalf("help offered to joins %v, want %v", helped, want)
	}
}

// What a client reports fetching from mirrors is its word, for the
// metrics only; a report no link could back is dropped, not summed.
func TestImplausibleMirrorReportIgnored(t *testing.T) {
	dir, _ := mirrorPack(t, 2, 0)
	ts, _ := mirroredServer(t, dir)
	c := dial(t, ts.url)
	c.send(&packets.Hello{Version: packets.Version, Client: uuid.New(), Capabilities: packets.CapMirrors})
	c.send(&packets.MirrorReport{Bytes: math.MaxUint64, Objects: math.MaxUint32})
	c.send(&packets.MirrorReport{Bytes: 1000, Objects: 1})
	deadline := time.Now().Add(5 * time.Second)
	for metricValue(ts.metrics.mirrorBytes) != 1000 {
		if time.Now().After(deadline) {
			t.Fatalf("mirror_bytes_total = %v, want 1000", metricValue(ts.metrics.mirrorBytes))
		}
		time.Sleep(10 * time.Millisecond)
	}
	if st := ts.Status(); st.Totals.MirrorBytes != 1000 {
		t.Fatalf("status: %+v", st.Totals)
	}
}

// The status page lists the configured mirrors with what the server's
// check of each found, so an operator sees a mirror not ready at a glance.
func TestStatusListsMirrorsAndTheirCheck(t *testing.T) {
	dir, _ := mirrorPack(t, 2, 0)
	ts := startServer(t, serverSetup{dirs: []string{dir}, cfg: func(c *configs.Server) {
		c.Mirrors = []string{"http://a.example/game", "http://b.example/game/", "http://c.example/"}
	}})
	ts.SetMirrorCheck("http://a.example/game/", nil)
	ts.SetMirrorCheck("http://b.example/game/", errors.New("check mirror http://b.example/game/: GET voxsync-mirror.json: 404 Not Found"))
	st := ts.Status()
	if len(st.Mirrors) != 3 || !st.Mirrors[0].Ready || st.Mirrors[1].Ready || !strings.Contains(st.Mirrors[1].Problem, "404") ||
		!st.Mirrors[2].Checked.IsZero() || st.Mirrors[2].URL != "http://c.example/" {
		t.Fatalf("mirrors in status: %+v", st.Mirrors)
	}
	_, page := get(t, ts.admin.URL+"/status")
	for _, want := range []string{"Mirrors (3)", "http://a.example/game/", "serves this server", "not ready:", "404 Not Found", "not checked yet"} {
		if !strings.Contains(page, want) {
			t.Errorf("status page lacks %q", want)
		}
	}
}
