package session

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/voxsync/voxsync/configs"
	"github.com/voxsync/voxsync/packets"
	"github.com/voxsync/voxsync/resources"
)

func TestServerSyncsBuiltinPack(t *testing.T) {
	ts := startServer(t, serverSetup{})
	total := ts.View().Len()
	c, w := join(t, ts.url)
	if w.Limits.MaxChunk != 64<<10 || w.Limits.MaxRequestHashes != 1024 {
		t.Fatalf("limits %+v", w.Limits)
	}
	// All binds of the join come batched in one packet.
	p := c.recv()
	bind, ok := p.(*packets.Bind)
	if !ok || len(bind.Entries) != total {
		t.Fatalf("first packet after Welcome: %T with %d entries, want one Bind of %d", p, len(bind.Entries), total)
	}
	want := map[resources.Hash]bool{}
	for _, e := range bind.Entries {
		want[e.Hash] = true
	}
	hashes := make([]resources.Hash, 0, len(want))
	for h := range want {
		hashes = append(hashes, h)
	}
	c.send(requestAll(hashes))
	d := c.download(want)
	if len(d.errors) != 0 {
		t.Fatalf("errors: %v", d.errors)
	}
	for h, data := range d.data {
		if resources.Sum(data) != h {
			t.Fatalf("stream for %s carried other bytes", h.Short())
		}
	}
	// A hash already sent is sent again when asked again (LuaVox refuses).
	c.send(requestAll(hashes[:1]))
	again := c.download(map[resources.Hash]bool{hashes[0]: true})
	if resources.Sum(again.data[hashes[0]]) != hashes[0] {
		t.Fatal("re-request not served")
	}

	// The operator sees it in /metrics on the admin listener. The server
	// counts a stream as sent just after its last write, so the client can
	// be a moment ahead.
	wants := []string{
		"voxsync_server_clients 1",
		fmt.Sprintf("voxsync_server_resources_sent_total %d", len(want)+1),
		fmt.Sprintf("voxsync_server_bind_entries_total %d", total),
		`voxsync_server_resource_errors_total{code="unknown hash"} 0`,
		fmt.Sprintf("voxsync_server_hashes_requested_total %d", len(want)+1),
		fmt.Sprintf("voxsync_server_stream_duration_seconds_count %d", len(want)+1),
		`voxsync_server_pack_reloads_total{outcome="failed"} 0`,
		"go_goroutines ",
		"process_resident_memory_bytes ",
	}
	var missing []string
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		resp, err := http.Get(ts.admin.URL + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		missing = missing[:0]
		for _, w := range wants {
			if !strings.Contains(string(body), w) {
				missing = append(missing, w)
			}
		}
		if len(missing) == 0 {
			break
		}
	}
	if len(missing) > 0 {
		t.Errorf("/metrics lacks %q", missing)
	}
}

func TestUnknownAndUnboundHashesGetErrors(t *testing.T) {
	ts := startServer(t, serverSetup{cfg: func(c *configs.Server) { c.Preload = []string{"texture/*"} }})
	c, _ := join(t, ts.url)
	binds := c.binds(len(ts.matchPreload(ts.View()).keys))
	var texture resources.Hash
	for _, b := range binds {
		texture = b.Hash
	}
	var sound resources.Hash
	for _, e := range ts.View().Entries() {
		if e.Type == resources.TypeSound {
			sound = e.Hash
		}
	}
	unknown := resources.Sum([]byte("no such resource"))
	c.send(&packets.ResourceRequest{Wants: []packets.Want{
		{Hash: unknown},
		{Hash: sound},
		{Hash: texture, HasRange: true, Offset: 1 << 40, Length: 1},
		{Hash: texture},
	}})
	d := c.download(map[resources.Hash]bool{unknown: true, sound: true, texture: true})
	// The texture gets two answers, an error and a stream, in either order:
	// the writer may already be past its error check when the request
	// lands and start the stream first. Read until both are in.
	for d.errors[texture] == nil || d.data[texture] == nil {
		more := c.download(map[resources.Hash]bool{texture: true})
		if e := more.errors[texture]; e != nil {
			d.errors[texture] = e
		}
		if b, ok := more.data[texture]; ok {
			d.data[texture] = b
		}
	}
	if e := d.errors[unknown]; e == nil || e.Code != packets.ErrorUnknownHash {
		t.Errorf("unknown hash: %+v", e)
	}
	if e := d.errors[sound]; e == nil || e.Code != packets.ErrorNotBound {
		t.Errorf("unbound hash: %+v", e)
	}
	// The invalid range got an error, and the plain request for the same
	// hash is still served: the session goes on after errors.
	if e := d.errors[texture]; e.Code != packets.ErrorRangeInvalid {
		t.Errorf("invalid range: %+v", e)
	}
	if resources.Sum(d.data[texture]) != texture {
		t.Fatal("the plain request after an invalid range was not served")
	}
}

func TestRangeRequest(t *testing.T) {
	dir := t.TempDir()
	data := randomBytes(300_000, 1)
	writePackFile(t, dir, "assets/test/sound/big.ogg", data)
	ts := startServer(t, serverSetup{dirs: []string{dir}, cfg: func(c *configs.Server) { c.Preload = []string{"test:*"} }})
	c, _ := join(t, ts.url)
	h := resources.Sum(data)
	c.binds(1)
	c.send(&packets.ResourceRequest{Wants: []packets.Want{{Hash: h, HasRange: true, Offset: 70_000, Length: 100_000}}})
	var got []byte
	var first uint64 = 1 << 63
	for {
		p := c.recv()
		cs, ok := p.(*packets.ChunkSend)
		if !ok {
			continue
		}
		first = min(first, cs.Offset)
		got = append(got, cs.Data...)
		if cs.Last {
			break
		}
	}
	if first != 70_000 || !bytes.Equal(got, data[70_000:170_000]) {
		t.Fatalf("range: first offset %d, %d bytes, equal=%v", first, len(got), bytes.Equal(got, data[70_000:170_000]))
	}
}

func TestSmallResourceNotStuckBehindLarge(t *testing.T) {
	dir := t.TempDir()
	big := bytes.Repeat([]byte("0123456789abcdef"), 1<<18) // 4 MiB
	writePackFile(t, dir, "assets/test/model/big.b3d", big)
	writePackFile(t, dir, "assets/test/texture/small.png", []byte("small"))
	ts := startServer(t, serverSetup{dirs: []string{dir}, cfg: func(c *configs.Server) { c.Preload = []string{"test:*"} }})
	c, _ := join(t, ts.url)
	c.binds(2)
	hb, hs := resources.Sum(big), resources.Sum([]byte("small"))
	c.send(requestAll([]resources.Hash{hb, hs})) // the big one first
	d := c.download(map[resources.Hash]bool{hb: true, hs: true})
	if d.order[0] != hs {
		t.Fatal("small resource finished after the 4 MiB one requested before it")
	}
	if !bytes.Equal(d.data[hb], big) {
		t.Fatal("big resource corrupted")
	}
}

func TestBadClients(t *testing.T) {
	ts := startServer(t, serverSetup{cfg: func(c *configs.Server) { c.MaxRequestHashes = 4 }})
	tests := []struct {
		name   string
		run    func(c *rawClient)
		code   packets.DisconnectCode
		reason string
	}{
		{"request before hello", func(c *rawClient) {
			c.send(&packets.ResourceRequest{})
		}, packets.DisconnectProtocolError, "expected Hello"},
		{"garbage before hello", func(c *rawClient) {
			c.sendRaw([]byte{0xfe, 1, 2, 3})
		}, packets.DisconnectProtocolError, "unknown packet type"},
		{"wrong version", func(c *rawClient) {
			c.send(&packets.Hello{Version: 99, Client: uuid.New()})
		}, packets.DisconnectVersionMismatch, fmt.Sprintf("server speaks version %d, client sent version 99", packets.Version)},
		{"version 1 hello", func(c *rawClient) {
			c.sendRaw([]byte{byte(packets.TypeHello), 1, 0})
		}, packets.DisconnectVersionMismatch, "client sent version 1"},
		{"future hello with more fields", func(c *rawClient) {
			c.sendRaw(append([]byte{byte(packets.TypeHello), 3, 0}, bytes.Repeat([]byte("new field"), 100)...))
		}, packets.DisconnectVersionMismatch, "client sent version 3"},
		{"oversized message", func(c *rawClient) {
			c.send(&packets.Hello{Version: packets.Version})
			c.sendRaw(make([]byte, packets.MaxPacketSize+1))
		}, packets.DisconnectProtocolError, "over 1049600 bytes"},
		{"malformed after hello", func(c *rawClient) {
			c.send(&packets.Hello{Version: packets.Version})
			c.sendRaw([]byte{byte(packets.TypeResourceRequest), 0x05, 1, 2})
		}, packets.DisconnectProtocolError, "decode ResourceRequest"},
		{"server packet from client", func(c *rawClient) {
			c.send(&packets.Hello{Version: packets.Version})
			c.send(&packets.Bind{})
		}, packets.DisconnectProtocolError, "unexpected Bind"},
		{"too many hashes", func(c *rawClient) {
			c.send(&packets.Hello{Version: packets.Version})
			c.send(requestAll(make([]resources.Hash, 5)))
		}, packets.DisconnectLimitExceeded, "limit announced in Welcome is 4"},
		{"text message", func(c *rawClient) {
			c.send(&packets.Hello{Version: packets.Version})
			c.conn.WriteMessage(1, []byte("hi"))
		}, packets.DisconnectProtocolError, "text messages"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := dial(t, ts.url)
			tc.run(c)
			d := c.expectDisconnect()
			if d.Code != tc.code || !strings.Contains(d.Reason, tc.reason) {
				t.Fatalf("Disconnect{%s, %q}, want {%s, …%q…}", d.Code, d.Reason, tc.code, tc.reason)
			}
			// And the connection is then closed by the server.
			for {
				if _, err := c.tryRecv(5 * time.Second); err != nil {
					if strings.Contains(err.Error(), "timeout") {
						t.Fatal("server kept the connection open after Disconnect")
					}
					break
				}
			}
		})
	}
	// The server still serves well-behaved clients after all that.
	c, _ := join(t, ts.url)
	c.binds(ts.View().Len())
}

func TestWorldUsesFollowMovement(t *testing.T) {
	ts := startServer(t, serverSetup{world: true, cfg: func(c *configs.Server) {
		c.Preload = nil
		c.ViewDistance = 0
	}})
	c, _ := join(t, ts.url)
	// Nothing is used before the player is anywhere: the join's set is
	// empty, and the marker says so at once.
	if p, ok := c.recv().(*packets.BindsDone); !ok || p.Seq != 0 {
		t.Fatalf("first packet %+v, want BindsDone{0}", p)
	}
	w := ts.world
	// Find two regions whose node sets differ.
	a := w.RegionAt(0, 0)
	var bx float64
	for x := 1; ; x++ {
		if strings.Join(w.Nodes(w.RegionAt(float64(x*16), 0)), ",") != strings.Join(w.Nodes(a), ",") {
			bx = float64(x * 16)
			break
		}
	}
	keysOf := func(x float64) map[resources.Key]bool {
		out := map[resources.Key]bool{}
		for _, l := range w.Resources(w.RegionAt(x, 0)) {
			if _, ok := ts.View().Lookup(l); ok {
				out[resources.Key{Type: l.Type, ID: ts.ids.ID(l)}] = true
			}
		}
		return out
	}
	inA, inB := keysOf(0), keysOf(bx)
	c.send(&packets.Move{Seq: 1, X: 1, Z: 1})
	got, lostA := c.untilDone(1)
	if len(got) != len(inA) || len(lostA) != 0 {
		t.Fatalf("Move 1: %d bound, %d lost before BindsDone{1}; want %d and 0", len(got), len(lostA), len(inA))
	}
	for k := range got {
		if !inA[k] {
			t.Fatalf("bound %v, not used in region A", k)
		}
	}
	// A Move within the region changes nothing and is answered at once.
	c.send(&packets.Move{Seq: 2, X: 2, Z: 2})
	if b, l := c.untilDone(2); len(b)+len(l) != 0 {
		t.Fatalf("a Move within the region bound %d and lost %d", len(b), len(l))
	}
	c.send(&packets.Move{Seq: 3, X: bx + 1, Z: 1})
	wantLost, wantBind := 0, 0
	for k := range inA {
		if !inB[k] {
			wantLost++
		}
	}
	for k := range inB {
		if !inA[k] {
			wantBind++
		}
	}
	bound, lost := c.untilDone(3)
	for k := range lost {
		if inB[k] || !inA[k] {
			t.Fatalf("Lost %v which region B still uses", k)
		}
	}
	if len(lost) != wantLost || len(bound) != wantBind {
		t.Fatalf("lost %d bound %d, want %d and %d", len(lost), len(bound), wantLost, wantBind)
	}
}

func TestGameServerAPIUseRelease(t *testing.T) {
	font, _ := resources.ParseLoc("font/default:mono.bdf")
	joined := make(chan *Client, 1)
	ts := startServer(t, serverSetup{
		cfg:    func(c *configs.Server) { c.Preload = nil },
		onJoin: func(c *Client) { c.Use(font); joined <- c },
	})
	c, _ := join(t, ts.url)
	b := c.binds(1)
	if d, ok := c.recv().(*packets.BindsDone); !ok || d.Seq != 0 {
		t.Fatalf("after the join's Bind: %+v, want BindsDone{0}", d)
	}
	sc := <-joined
	for k, e := range b {
		if e.Ref.Key != "mono.bdf" || k.Type != resources.TypeFont {
			t.Fatalf("bound %v", e)
		}
	}
	// A second use, one release: still in use, nothing sent.
	sc.Use(font)
	if err := sc.Release(font); err != nil {
		t.Fatal(err)
	}
	if p, err := c.tryRecv(200 * time.Millisecond); err == nil {
		t.Fatalf("got %s while still in use", p.Type())
	}
	if err := sc.Release(font); err != nil {
		t.Fatal(err)
	}
	lost, ok := c.recv().(*packets.Lost)
	if !ok || len(lost.Entries) != 1 {
		t.Fatalf("expected one Lost")
	}
	if err := sc.Release(font); err == nil {
		t.Fatal("release of an unused resource accepted")
	}
}

func TestShutdownSendsDisconnect(t *testing.T) {
	ts := startServer(t, serverSetup{})
	c, _ := join(t, ts.url)
	done := make(chan struct{})
	go func() { ts.Close(); close(done) }()
	d := c.expectDisconnect()
	if d.Code != packets.DisconnectShutdown {
		t.Fatalf("Disconnect %v", d)
	}
	c.conn.Close()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not return")
	}
}

// A client that asks for a lot and then never reads must not grow server
// memory or slow others; it is cut off after write_timeout.
func TestNonReadingClientIsBoundedAndDropped(t *testing.T) {
	dir := t.TempDir()
	big := randomBytes(32<<20, 3)
	writePackFile(t, dir, "assets/test/model/huge.b3d", big)
	ts := startServer(t, serverSetup{dirs: []string{dir}, cfg: func(c *configs.Server) {
		c.WriteTimeout = configs.Duration{Duration: time.Second}
	}})
	total := ts.View().Len()
	hb := resources.Sum(big)

	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)

	stalled := make([]*rawClient, 4)
	for i := range stalled {
		c, _ := join(t, ts.url)
		c.binds(total)
		c.send(requestAll([]resources.Hash{hb, hb, hb}))
		stalled[i] = c // and never read again
	}
	// Meanwhile, a well-behaved client syncs everything, big file included.
	var wg sync.WaitGroup
	wg.Go(func() {
		c, _ := join(t, ts.url)
		b := c.binds(total)
		want := map[resources.Hash]bool{}
		var hs []resources.Hash
		for _, e := range b {
			if !want[e.Hash] {
				hs = append(hs, e.Hash)
			}
			want[e.Hash] = true
		}
		c.send(requestAll(hs))
		d := c.download(want)
		if len(d.data) != len(want) || !bytes.Equal(d.data[hb], big) {
			t.Errorf("good client got %d of %d resources", len(d.data), len(want))
		}
		c.send(&packets.Disconnect{Code: packets.DisconnectNormal})
		c.expectDisconnect()
	})
	wg.Wait()

	// The stalled clients are disconnected once their writes time out.
	deadline := time.Now().Add(10 * time.Second)
	for len(ts.Clients()) > 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if n := len(ts.Clients()); n != 0 {
		t.Fatalf("%d stalled clients still connected", n)
	}
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	// Each stalled client held at most a chunk in flight, never the 32 MiB
	// file times three requests.
	if grown := int64(after.HeapInuse) - int64(before.HeapInuse); grown > 16<<20 {
		t.Fatalf("heap grew by %d MiB", grown>>20)
	}
}
