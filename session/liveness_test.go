package session

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/voxsync/voxsync/configs"
	"github.com/voxsync/voxsync/packets"
	"github.com/voxsync/voxsync/resources"
)

// freezeProxy forwards TCP connections to a target until told to freeze:
// then every open connection stops forwarding in both directions while
// its sockets stay open, as a dead NAT or a suspended laptop looks to the
// peers. Connections made after a freeze forward normally.
type freezeProxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex // guards conns
	conns  []*proxied
	wg     sync.WaitGroup
}

type proxied struct {
	a, b   net.Conn
	frozen atomic.Bool
}

func startFreezeProxy(t *testing.T, target string) *freezeProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &freezeProxy{ln: ln, target: target}
	p.wg.Go(func() {
		for {
			a, err := ln.Accept()
			if err != nil {
				return
			}
			b, err := net.Dial("tcp", target)
			if err != nil {
				a.Close()
				continue
			}
			pc := &proxied{a: a, b: b}
			p.mu.Lock()
			p.conns = append(p.conns, pc)
			p.mu.Unlock()
			p.wg.Go(func() { pc.pipe(a, b) })
			p.wg.Go(func() { pc.pipe(b, a) })
		}
	})
	t.Cleanup(func() {
		ln.Close()
		p.mu.Lock()
		for _, c := range p.conns {
			c.a.Close()
			c.b.Close()
		}
		p.mu.Unlock()
		p.wg.Wait()
	})
	return p
}

func (pc *proxied) pipe(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		for pc.frozen.Load() {
			// Hold the bytes; the sockets stay open until cleanup.
			time.Sleep(10 * time.Millisecond)
			if _, err := dst.Write(nil); err != nil {
				return
			}
		}
		if n > 0 {
			if _, err := dst.Write(buf[:n]); err != nil {
				return
			}
		}
		if err != nil {
			dst.Close()
			return
		}
	}
}

func (p *freezeProxy) freeze() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.frozen.Store(true)
	}
}

func (p *freezeProxy) url() string { return "ws://" + p.ln.Addr().String() + "/ws" }

// A connection that stops delivering anything, without closing, is noticed
// by both sides within two ping intervals; the client then reconnects.
func TestFrozenConnectionDetectedWithinTwoPingIntervals(t *testing.T) {
	const interval = time.Second
	ts := startServer(t, serverSetup{cfg: func(c *configs.Server) { c.PingInterval = configs.Duration{Duration: interval} }})
	proxy := startFreezeProxy(t, strings.TrimPrefix(strings.TrimSuffix(ts.url, "/ws"), "ws://"))
	s, _, _, _ := startSyncer(t, proxy.url(), func(o *SyncOptions) { o.StallTimeout = time.Minute })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := s.WaitSynced(ctx); err != nil {
		t.Fatal(err)
	}
	old := ts.Clients()
	if len(old) != 1 {
		t.Fatalf("%d clients on the server, want 1", len(old))
	}

	frozen := time.Now()
	proxy.freeze()
	var serverSaw, clientSaw time.Duration
	for serverSaw == 0 || clientSaw == 0 {
		if ctx.Err() != nil {
			t.Fatalf("after %s: server noticed: %v, client noticed: %v", time.Since(frozen), serverSaw, clientSaw)
		}
		if serverSaw == 0 && !slicesContains(ts.Clients(), old[0]) {
			serverSaw = time.Since(frozen)
		}
		if clientSaw == 0 && s.Stats().Sessions >= 2 {
			clientSaw = time.Since(frozen)
		}
		time.Sleep(5 * time.Millisecond)
	}
	// Two intervals, plus scheduling slack; the client's figure also
	// includes its first reconnect backoff (at most 200 ms).
	const slack = 1500 * time.Millisecond // a busy 2-core machine
	if serverSaw > 2*interval+slack {
		t.Errorf("server dropped the frozen connection after %s, want ≤ 2 ping intervals (%s)", serverSaw, 2*interval)
	}
	if clientSaw > 2*interval+200*time.Millisecond+slack {
		t.Errorf("client reconnected %s after the freeze, want ≤ 2 ping intervals (%s) plus backoff", clientSaw, 2*interval)
	}
	t.Logf("frozen connection noticed by the server after %s, client reconnected after %s", serverSaw.Round(time.Millisecond), clientSaw.Round(time.Millisecond))
	if err := s.WaitSynced(ctx); err != nil {
		t.Fatalf("not synced again after reconnecting: %v", err)
	}
}

func slicesContains(cs []*Client, c *Client) bool {
	for _, x := range cs {
		if x == c {
			return true
		}
	}
	return false
}

// An idle, healthy client keeps its one session indefinitely: pings from
// both sides keep both read deadlines moving. Three minutes is three times
// the 60 s after which version 1 clients reconnected.
func TestIdleClientKeepsOneSessionForThreeMinutes(t *testing.T) {
	t.Parallel()
	ts := startServer(t, serverSetup{cfg: func(c *configs.Server) { *c = withDefaultLiveness(*c) }})
	s, _, _, _ := startSyncer(t, ts.url, func(o *SyncOptions) { o.StallTimeout = time.Minute })
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	if err := s.WaitSynced(ctx); err != nil {
		t.Fatal(err)
	}
	first := ts.Clients()
	time.Sleep(3 * time.Minute)
	if st := s.Stats(); st.Sessions != 1 {
		t.Fatalf("%d sessions after 3 idle minutes, want 1", st.Sessions)
	}
	if now := ts.Clients(); len(now) != 1 || len(first) != 1 || now[0] != first[0] {
		t.Fatalf("server's client changed during 3 idle minutes")
	}
}

// withDefaultLiveness restores the shipped ping interval and timeouts
// (test servers ping faster).
func withDefaultLiveness(c configs.Server) configs.Server {
	d := configs.DefaultServer()
	c.PingInterval, c.WriteTimeout = d.PingInterval, d.WriteTimeout
	return c
}

// WaitSynced returns the moment the server's marker arrives when all is
// loaded, and not before it: no fixed settle either way.
func TestWaitSyncedFollowsTheMarker(t *testing.T) {
	fs := newFakeServer(t)
	data := []byte("a small texture")
	b := binding("w.png", data)
	s, rec, _, _ := startSyncer(t, fs.url, nil)
	c := fs.accept(t)
	c.send(&packets.Bind{Entries: []resources.Binding{b}})
	expect[*packets.ResourceRequest](c)
	c.stream(1, b, data, 65536)
	waitEvent[Loaded](t, rec)

	waited := make(chan time.Time, 1)
	go func() {
		if err := s.WaitSynced(context.Background()); err != nil {
			t.Error(err)
		}
		waited <- time.Now()
	}()
	select {
	case <-waited:
		t.Fatal("WaitSynced returned before the server said its Binds were complete")
	case <-time.After(300 * time.Millisecond):
	}
	sent := time.Now()
	c.send(&packets.BindsDone{Seq: 0})
	if d := (<-waited).Sub(sent); d > time.Second {
		t.Fatalf("WaitSynced returned %s after BindsDone", d)
	}
	if d := waitEvent[BindsDone](t, rec); !d.Complete || d.Bound != 1 {
		t.Fatalf("event %+v", d)
	}
}

// The last resource failing for good ends WaitSynced at once, with
// ErrFailed, whether the server refuses it or keeps sending bad bytes.
func TestWaitSyncedReturnsWhenTheLastResourceFails(t *testing.T) {
	fs := newFakeServer(t)
	data := []byte("bytes the server never sends right")
	b := binding("bad.png", data)
	s, rec, _, _ := startSyncer(t, fs.url, nil)
	c := fs.accept(t)
	c.send(&packets.Bind{Entries: []resources.Binding{b}}, &packets.BindsDone{})
	wrong := append([]byte(nil), data...)
	wrong[0] ^= 1
	waited := make(chan error, 1)
	go func() { waited <- s.WaitSynced(context.Background()) }()
	for range 4 { // MaxRetries 3: four bad streams
		expect[*packets.ResourceRequest](c)
		c.stream(1, b, wrong, 65536)
	}
	waitEvent[Failed](t, rec)
	select {
	case err := <-waited:
		if !errors.Is(err, ErrFailed) {
			t.Fatalf("WaitSynced: %v, want ErrFailed", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("WaitSynced still waiting 2 s after the last resource failed")
	}
}
