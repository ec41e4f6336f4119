package session

import (
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/voxsync/voxsync/mirror"
	"github.com/voxsync/voxsync/packets"
	"github.com/voxsync/voxsync/resources"
)

// gatedMirror serves objects by name, and its layout file; gate, when
// set, holds each object request until closed. reqs receives the object
// name of every request; open counts TCP connections open now.
type gatedMirror struct {
	*httptest.Server
	mu      sync.Mutex
	objects map[string][]byte
	gate    chan struct{}
	delay   time.Duration
	reqs    chan string
	open    atomic.Int64
}

func newGatedMirror(t *testing.T) *gatedMirror {
	m := &gatedMirror{objects: map[string][]byte{}, reqs: make(chan string, 10000)}
	m.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/"+mirror.LayoutFile) {
			w.Write([]byte(`{"layout":1}`))
			return
		}
		name := r.URL.Path[strings.LastIndexByte(r.URL.Path, '/')+1:]
		m.reqs <- name
		m.mu.Lock()
		gate, d := m.gate, m.delay
		body, ok := m.objects[name]
		m.mu.Unlock()
		if gate != nil {
			select {
			case <-gate:
			case <-r.Context().Done():
				return
			}
		}
		time.Sleep(d)
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Write(body)
	}))
	m.Server.Config.ConnState = func(c net.Conn, s http.ConnState) {
		switch s {
		case http.StateNew:
			m.open.Add(1)
		case http.StateClosed, http.StateHijacked:
			m.open.Add(-1)
		}
	}
	m.Start()
	t.Cleanup(m.Close)
	return m
}

func (m *gatedMirror) add(data []byte) {
	m.mu.Lock()
	m.objects[resources.Sum(data).String()] = data
	m.mu.Unlock()
}

func (m *gatedMirror) base() string { return m.URL + "/pub/" }

// gatedSync binds one 5,000-byte resource held by a gated mirror to a
// Syncer on a fake server, and returns once the mirror holds its request
// at the gate (close gate to let it through).
func gatedSync(t *testing.T, seed byte) (s *Syncer, rec *recorder, fs *fakeServer, c *fakeConn, m *gatedMirror, b resources.Binding, data []byte, gate chan struct{}) {
	fs = newFakeServerWith(t, packets.CapMirrors)
	m = newGatedMirror(t)
	data = randomBytes(5000, seed)
	m.add(data)
	b = binding("a.png", data)
	gate = make(chan struct{})
	m.mu.Lock()
	m.gate = gate
	m.mu.Unlock()
	s, rec, _, _ = startSyncer(t, fs.url, nil) // StallTimeout 500 ms
	c = fs.accept(t)
	c.send(&packets.Mirrors{URLs: []string{m.base()}}, &packets.Bind{Entries: []resources.Binding{b}}, &packets.BindsDone{})
	<-m.reqs // in flight at the mirror
	return
}

// A whole resource that was at a mirror when the connection dropped goes
// to the mirrors again after the reconnect, not to the game server.
func TestReconnectSendsMirrorWorkToMirrors(t *testing.T) {
	s, rec, fs, c, m, b, _, gate := gatedSync(t, 1)
	c.conn.Close()

	c2 := fs.accept(t)
	m.mu.Lock()
	m.gate = nil
	m.mu.Unlock()
	close(gate)
	c2.send(&packets.Mirrors{URLs: []string{m.base()}}, &packets.Bind{Entries: []resources.Binding{b}}, &packets.BindsDone{})
	deadline := time.After(2 * time.Second)
	for {
		select {
		case p := <-c2.in:
			if r, ok := p.(*packets.ResourceRequest); ok {
				t.Fatalf("after reconnect %s requested in-band although the mirror has it; %+v", r.Wants[0].Hash.Short(), s.Stats())
			}
		case <-deadline:
			waitEvent[Loaded](t, rec)
			return
		}
	}
}

// A stream the client did not ask for, for a hash it gave the mirrors, is
// ignored: it must not take the hash from the mirror and then stall.
func TestUnaskedStreamForMirrorHashIsIgnored(t *testing.T) {
	s, _, _, c, _, b, data, gate := gatedSync(t, 2)
	c.send(&packets.InitResSend{Stream: 1, Hash: b.Hash, Size: b.Size, Length: b.Size, Ref: b.Ref},
		&packets.ChunkSend{Stream: 1, Offset: 0, Data: data[:1000]})
	time.Sleep(100 * time.Millisecond)
	close(gate)
	deadline := time.After(2 * time.Second)
	for {
		select {
		case p := <-c.in:
			if _, ok := p.(*packets.ResourceRequest); ok {
				t.Fatalf("requested in-band although the mirror serves it: %+v", s.Stats())
			}
		case <-deadline:
			if st := s.Stats(); st.Loaded != 1 || st.BytesFromMirrors != int64(len(data)) {
				t.Fatalf("not loaded from the mirror: %+v", st)
			}
			return
		}
	}
}

// A session uses its first Mirrors packet: a server repeating it cannot
// make the client open pools and connections without end.
func TestRepeatedMirrorsAreIgnored(t *testing.T) {
	fs := newFakeServerWith(t, packets.CapMirrors)
	m := newGatedMirror(t)
	m.delay = 20 * time.Millisecond
	s, _, _, _ := startSyncer(t, fs.url, nil)
	c := fs.accept(t)
	n := 0
	for round := range 10 {
		var bs []resources.Binding
		for i := range 16 {
			data := randomBytes(3000+i, byte(round*16+i))
			m.add(data)
			b := binding("r"+itoa(round)+"_"+itoa(i)+".png", data)
			b.ID = resources.ResourceID(round*16 + i + 1)
			bs = append(bs, b)
		}
		n += len(bs)
		c.send(&packets.Mirrors{URLs: []string{m.base()}}, &packets.Bind{Entries: bs})
		time.Sleep(150 * time.Millisecond)
	}
	c.send(&packets.BindsDone{})
	deadline := time.Now().Add(10 * time.Second)
	for s.Stats().Loaded < n {
		if time.Now().After(deadline) {
			t.Fatalf("not synced: %+v", s.Stats())
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond)
	if open := m.open.Load(); open > 8 {
		t.Fatalf("%d connections open to one mirror after sync (Parallel 8)", open)
	}
}

// A chunk a mirror serves by its name, correctly, that does not verify
// under the game server's manifest is the manifest's fault: the chunk is
// asked of the game server, and the mirror keeps serving the session.
func TestManifestFaultDoesNotDemoteTheMirror(t *testing.T) {
	fs := newFakeServerWith(t, packets.CapChunked|packets.CapMirrors)
	m := newGatedMirror(t)
	data, other := randomBytes(30_000, 31), randomBytes(30_000, 32)
	b := binding("big.bin", data)
	lie, chunks := fixedManifest(b, other, 10_000) // consistent, of other bytes
	for _, ch := range chunks {
		m.add(other[ch.Offset:ch.End()])
	}
	small := randomBytes(900, 33)
	m.add(small)
	sb := binding("small.png", small)
	sb.ID = 2
	s, rec, _, _ := startSyncer(t, fs.url, func(o *SyncOptions) { o.ChunkedMin = 1000 })
	c := fs.accept(t)
	c.send(&packets.Mirrors{URLs: []string{m.base()}}, &packets.Bind{Entries: []resources.Binding{b}}, &packets.BindsDone{})
	if w := expect[*packets.ResourceRequest](c).Wants; len(w) != 1 || !w[0].Manifest {
		t.Fatalf("first request %+v, want the manifest", w)
	}
	c.send(lie)
	last := chunks[len(chunks)-1]
	for asked := false; !asked; {
		for _, w := range expect[*packets.ResourceRequest](c).Wants {
			asked = asked || (w.HasRange && w.Offset == last.Offset)
		}
	}
	c.send(&packets.Bind{Entries: []resources.Binding{sb}})
	deadline := time.After(5 * time.Second)
	for {
		select {
		case p := <-c.in:
			if r, ok := p.(*packets.ResourceRequest); ok {
				for _, w := range r.Wants {
					if w.Hash == sb.Hash {
						t.Fatalf("a resource the mirror holds was asked in-band: the mirror was blamed; %+v", s.Stats())
					}
				}
			}
		case e := <-rec.ch:
			if l, ok := e.(Loaded); ok && l.Binding.Hash == sb.Hash {
				return
			}
		case <-deadline:
			t.Fatalf("small resource not loaded: %+v", s.Stats())
		}
	}
}
