package session

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/gorilla/websocket"
	"github.com/voxsync/voxsync/configs"
	"github.com/voxsync/voxsync/packets"
	"github.com/voxsync/voxsync/resources"
)

// hostileServer serves a pack with one large resource (so a stream is
// still running when an attacker stops reading) and a few small ones, with
// short timeouts and a per-address limit of 4.
func hostileServer(t *testing.T, tweak func(*configs.Server)) (*testServer, resources.Hash) {
	t.Helper()
	dir := t.TempDir()
	big := randomBytes(4<<20, 3)
	writePackFile(t, dir, "assets/h/model/big.b3d", big)
	for i := range 5 {
		writePackFile(t, dir, "assets/h/texture/t"+itoa(i)+".png", randomBytes(3000+i, byte(10+i)))
	}
	ts := startServer(t, serverSetup{dirs: []string{dir}, cfg: func(c *configs.Server) {
		c.BuiltinPack = false
		c.Preload = []string{"*"}
		c.WriteTimeout = configs.Duration{Duration: time.Second}
		c.HandshakeTimeout = configs.Duration{Duration: 500 * time.Millisecond}
		c.MaxClientsPerAddress = 4
		if tweak != nil {
			tweak(c)
		}
	}})
	return ts, resources.Sum(big)
}

// honestSync syncs a real Syncer from 127.0.0.2 (another address than the
// attackers') and fails the test if it does not complete.
func honestSync(t *testing.T, url string, token string) {
	t.Helper()
	s, _, _, _ := startSyncer(t, url, func(o *SyncOptions) {
		o.Token = token
		o.NetDialContext = (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}}).DialContext
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.WaitSynced(ctx); err != nil {
		t.Fatalf("an honest client did not sync while under attack: %v (%+v)", err, s.Stats())
	}
}

// joinedAttacker dials from 127.0.0.1 and completes the handshake.
func joinedAttacker(t *testing.T, url string) *rawClient {
	t.Helper()
	c := dialFrom(t, url, "127.0.0.1")
	c.send(&packets.Hello{Version: packets.Version, Client: uuid.New()})
	return c
}

// serverClient returns the server's Client for the newest session.
func waitClients(t *testing.T, ts *testServer, n int) []*Client {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		cs := ts.Clients()
		if len(cs) == n {
			return cs
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d clients on the server, want %d", len(cs), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A client that requests the same hash over and over and never reads holds
// a bounded queue on the server (it once grew to gigabytes).
func TestHostileReRequestFloodIsBounded(t *testing.T) {
	ts, big := hostileServer(t, nil)
	a := joinedAttacker(t, ts.url)
	a.recv() // Welcome
	a.untilDone(0)
	sc := waitClients(t, ts, 1)[0]
	same := &packets.ResourceRequest{}
	for range 1024 {
		same.Wants = append(same.Wants, packets.Want{Hash: big})
	}
	enc := packets.Encode(same)
	for range 200 { // 204,800 requests of one hash
		if err := a.conn.WriteMessage(websocket.BinaryMessage, enc); err != nil {
			break // dropped: also contained
		}
	}
	// The last requests are read and queued a moment after they are sent.
	time.Sleep(200 * time.Millisecond)
	sc.mu.Lock()
	queued, pending, bye := sc.queuedN, len(sc.pending), sc.bye
	sc.mu.Unlock()
	if bye != nil {
		t.Fatalf("re-requests of one bound hash were answered with %+v", bye)
	}
	if queued > 2*pending+1024+1 {
		t.Fatalf("%d queue entries for %d pending hashes after a re-request flood", queued, pending)
	}
	honestSync(t, ts.url, "")
}

// After the server has decided to disconnect a client (here for a
// malformed packet), further packets are not acted on and do not keep the
// connection alive: it is closed within write_timeout plus a second, and
// its slot is free.
func TestHostileClientIgnoredAfterDisconnect(t *testing.T) {
	ts, big := hostileServer(t, nil)
	a := joinedAttacker(t, ts.url)
	waitClients(t, ts, 1)
	a.sendRaw([]byte{byte(packets.TypeResourceRequest), 0xff})
	flood := packets.Encode(&packets.ResourceRequest{Wants: []packets.Want{{Hash: big}}})
	start := time.Now()
	for time.Since(start) < 5*time.Second {
		if err := a.conn.WriteMessage(websocket.BinaryMessage, flood); err != nil {
			break
		}
		if len(ts.Clients()) == 0 {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	if took := time.Since(start); len(ts.Clients()) != 0 || took > 3*time.Second {
		t.Fatalf("client still served %s after its protocol error (clients: %d)", took, len(ts.Clients()))
	}
	honestSync(t, ts.url, "")
}

// Clients that misbehave in each way are refused or dropped with a reason,
// and an honest client syncing at the same time completes.
func TestHostileClients(t *testing.T) {
	ts, big := hostileServer(t, func(c *configs.Server) {
		c.MaxRequestHashes = 4
		c.MaxPendingRequests = 4
	})
	tests := []struct {
		name   string
		run    func(c *rawClient)
		code   packets.DisconnectCode
		reason string
	}{
		{"never completes the handshake", func(c *rawClient) {}, packets.DisconnectProtocolError, "no Hello within handshake_timeout"},
		{"oversized frame", func(c *rawClient) {
			c.send(&packets.Hello{Version: packets.Version})
			c.sendRaw(make([]byte, packets.MaxPacketSize+100))
		}, packets.DisconnectProtocolError, "over 1049600 bytes"},
		{"garbage frame", func(c *rawClient) {
			c.send(&packets.Hello{Version: packets.Version})
			c.sendRaw([]byte{0x42, 0, 1, 2, 3})
		}, packets.DisconnectProtocolError, "unknown packet type"},
		{"text frame", func(c *rawClient) {
			c.send(&packets.Hello{Version: packets.Version})
			c.conn.WriteMessage(websocket.TextMessage, []byte("GET / HTTP/1.1"))
		}, packets.DisconnectProtocolError, "text messages"},
		{"request flood past the per-request limit", func(c *rawClient) {
			c.send(&packets.Hello{Version: packets.Version})
			c.send(requestAll([]resources.Hash{big, big, big, big, big}))
		}, packets.DisconnectLimitExceeded, "limit announced in Welcome is 4"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := dialFrom(t, ts.url, "127.0.0.1")
			tc.run(c)
			done := make(chan struct{})
			go func() { defer close(done); honestSync(t, ts.url, "") }()
			d := c.expectDisconnect()
			if d.Code != tc.code || !strings.Contains(d.Reason, tc.reason) {
				t.Fatalf("Disconnect{%s, %q}, want {%s, …%q…}", d.Code, d.Reason, tc.code, tc.reason)
			}
			<-done
		})
	}

	t.Run("cancel and move floods", func(t *testing.T) {
		c := joinedAttacker(t, ts.url)
		done := make(chan struct{})
		go func() { defer close(done); honestSync(t, ts.url, "") }()
		cancel := &packets.ResourceCancel{Hashes: []resources.Hash{big, big, big, big}}
		for i := range 20000 {
			c.send(cancel)
			c.send(&packets.Move{Seq: uint32(i + 1), X: float64(i * 1000)})
		}
		<-done
	})
}

// One address cannot take every slot: past max_clients_per_address its
// connections are refused with a reason, and other addresses still join.
func TestHostileManyIdleFromOneAddress(t *testing.T) {
	ts, _ := hostileServer(t, nil)
	for range 4 {
		c := joinedAttacker(t, ts.url)
		if _, ok := c.recv().(*packets.Welcome); !ok {
			t.Fatal("expected Welcome within the per-address limit")
		}
	}
	extra := dialFrom(t, ts.url, "127.0.0.1")
	d := extra.expectDisconnect()
	if d.Code != packets.DisconnectLimitExceeded || !strings.Contains(d.Reason, "too many connections from your address") {
		t.Fatalf("fifth connection from one address: Disconnect{%s, %q}", d.Code, d.Reason)
	}
	honestSync(t, ts.url, "")
}

// Guessing the token is limited per address: after auth_failures_per_minute
// refusals, tokens from that address are not even checked for the rest of
// the minute, while other addresses are unaffected.
func TestHostileTokenGuessingIsRateLimited(t *testing.T) {
	ts, _ := hostileServer(t, func(c *configs.Server) {
		c.AuthToken = "correct horse"
		c.AuthFailuresPerMinute = 3
	})
	try := func(token string) *packets.Disconnect {
		c := dialFrom(t, ts.url, "127.0.0.1")
		c.send(&packets.Hello{Version: packets.Version, Client: uuid.New(), Token: token})
		p := c.recv()
		d, ok := p.(*packets.Disconnect)
		if !ok {
			return nil
		}
		return d
	}
	for i := range 3 {
		d := try("guess " + itoa(i))
		if d == nil || d.Code != packets.DisconnectAuthFailed || !strings.Contains(d.Reason, "auth token refused") {
			t.Fatalf("guess %d: %+v", i, d)
		}
	}
	for _, token := range []string{"guess 4", "correct horse"} {
		d := try(token)
		if d == nil || d.Code != packets.DisconnectAuthFailed || !strings.Contains(d.Reason, "too many refused tokens") {
			t.Fatalf("token %q after 3 refusals: %+v, want it not checked", token, d)
		}
	}
	honestSync(t, ts.url, "correct horse")
}

func TestTokenMatches(t *testing.T) {
	tests := []struct {
		got, want string
		ok        bool
	}{
		{"sesame", "sesame", true},
		{"sesam", "sesame", false},
		{"sesame!", "sesame", false},
		{"", "sesame", false},
		{"SESAME", "sesame", false},
	}
	for _, tc := range tests {
		if got := tokenMatches(tc.got, tc.want); got != tc.ok {
			t.Errorf("tokenMatches(%q, %q) = %v", tc.got, tc.want, got)
		}
	}
}

// More outstanding requests than Welcome announced end the session. The
// resources are large and the attacker does not read, so none of the first
// four can finish before the fifth is asked for.
func TestHostilePendingLimit(t *testing.T) {
	dir := t.TempDir()
	for i := range 6 {
		writePackFile(t, dir, "assets/h/model/big"+itoa(i)+".b3d", randomBytes(8<<20, byte(40+i)))
	}
	ts := startServer(t, serverSetup{dirs: []string{dir}, cfg: func(c *configs.Server) {
		c.BuiltinPack = false
		c.Preload = []string{"*"}
		c.MaxRequestHashes = 4
		c.MaxPendingRequests = 4
	}})
	c := joinedAttacker(t, ts.url)
	c.recv() // Welcome
	c.untilDone(0)
	var hs []resources.Hash
	for _, e := range ts.View().Entries() {
		hs = append(hs, e.Hash)
	}
	c.send(requestAll(hs[:4]))
	c.send(requestAll(hs[4:]))
	d := c.expectDisconnect()
	if d.Code != packets.DisconnectLimitExceeded || !strings.Contains(d.Reason, "more than 4 resources requested") {
		t.Fatalf("Disconnect{%s, %q}", d.Code, d.Reason)
	}
	// The reference client keeps within the same limit and syncs.
	honestSync(t, ts.url, "")
}

// The reference client keeps within max pending even when a resource it
// is fetching is released meanwhile: its cancel reaches the server before
// the request that takes the freed room (it once came after, and the
// server disconnected the client for exceeding the limit).
func TestSyncerCancelPrecedesTheRequestItMakesRoomFor(t *testing.T) {
	dir := t.TempDir()
	var locs []resources.Loc
	for i := range 4 {
		writePackFile(t, dir, "assets/p/model/big"+itoa(i)+".b3d", randomBytes(16<<20, byte(60+i)))
		l, _ := resources.ParseLoc("model/p:big" + itoa(i) + ".b3d")
		locs = append(locs, l)
	}
	joined := make(chan *Client, 1)
	ts := startServer(t, serverSetup{dirs: []string{dir}, cfg: func(c *configs.Server) {
		c.BuiltinPack = false
		c.Preload = nil
		c.MaxRequestHashes = 2
		c.MaxPendingRequests = 2
		c.ActiveStreams = 1
	}, onJoin: func(c *Client) {
		for _, l := range locs {
			c.Use(l)
		}
		joined <- c
	}})
	// Whole streams: each resource is one request (chunked, a manifest
	// and then a chunk are).
	s, _, _, _ := startSyncer(t, ts.url, func(o *SyncOptions) { o.NoChunks = true })
	sc := <-joined
	// Once the client has its two allowed requests pending on the server,
	// release both while they are being sent.
	deadline := time.Now().Add(10 * time.Second)
	var pending []resources.Hash
	for len(pending) < 2 {
		if time.Now().After(deadline) {
			t.Fatal("the client never had two requests pending")
		}
		sc.mu.Lock()
		pending = pending[:0]
		for k := range sc.pending {
			pending = append(pending, k.Value())
		}
		sc.mu.Unlock()
		time.Sleep(100 * time.Microsecond)
	}
	for _, l := range locs {
		if e, ok := ts.View().Lookup(l); ok && (e.Hash == pending[0] || e.Hash == pending[1]) {
			if err := sc.Release(l); err != nil {
				t.Fatal(err)
			}
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := s.WaitSynced(ctx); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.Sessions != 1 || st.Bound != 2 || st.Loaded != 2 {
		t.Fatalf("after releasing two of four: %+v (want one session, 2 bound and loaded)", st)
	}
}

// Requests are remembered by hash: a cancel after a reload (which makes new
// entries for the same content) still withdraws a request made before it.
func TestCancelAfterReloadWithdrawsTheRequest(t *testing.T) {
	dir := t.TempDir()
	big := randomBytes(16<<20, 70)
	writePackFile(t, dir, "assets/r/model/big.b3d", big)
	writePackFile(t, dir, "assets/r/texture/other.png", []byte("v1"))
	ts := hotServer(t, dir)
	c, _ := join(t, ts.url)
	c.untilDone(0)
	sc := waitClients(t, ts, 1)[0]
	c.send(requestAll([]resources.Hash{resources.Sum(big)}))
	// A reload while the request is pending (the client does not read, so
	// the 16 MiB stream cannot finish).
	before := ts.View()
	writePackFile(t, dir, "assets/r/texture/other.png", []byte("v2"))
	for ts.View() == before {
		time.Sleep(5 * time.Millisecond)
	}
	c.send(&packets.ResourceCancel{Hashes: []resources.Hash{resources.Sum(big)}})
	deadline := time.Now().Add(5 * time.Second)
	for {
		sc.mu.Lock()
		n := sc.pendingLocked()
		sc.mu.Unlock()
		if n == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d requests still pending after the cancel", n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
