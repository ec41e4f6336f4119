package mirror

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/voxsync/voxsync/resources"
)

// verify is the accept function a cache gives: the bytes must hash to the
// object's name.
func verify(h resources.Hash, got *[]byte) func([]byte) error {
	return func(b []byte) error {
		if resources.Sum(b) != h {
			return fmt.Errorf("store %s: %w", h.Short(), ErrCorrupt)
		}
		if got != nil {
			*got = bytes.Clone(b)
		}
		return nil
	}
}

// mirrorServer serves objects from a map at /objects/..; behave may take
// over a request (return true when it answered).
type mirrorServer struct {
	objects map[string][]byte
	behave  func(w http.ResponseWriter, r *http.Request, body []byte) bool
	gets    atomic.Int64 // of anything but the layout file
	ranges  atomic.Int64
	// noLayout: no voxsync-mirror.json: nothing published here.
	noLayout bool
}

func (m *mirrorServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if strings.HasSuffix(r.URL.Path, "/"+LayoutFile) && !m.noLayout {
		w.Write([]byte(`{"layout":1}`))
		return
	}
	m.gets.Add(1)
	name := r.URL.Path[strings.LastIndexByte(r.URL.Path, '/')+1:]
	body, ok := m.objects[name]
	if r.Header.Get("Range") != "" {
		m.ranges.Add(1)
	}
	if m.behave != nil && m.behave(w, r, body) {
		return
	}
	if !ok {
		http.NotFound(w, r)
		return
	}
	http.ServeContent(w, r, name, time.Time{}, bytes.NewReader(body))
}

func newMirror(t *testing.T, objs ...[]byte) (*mirrorServer, string) {
	t.Helper()
	m := &mirrorServer{objects: make(map[string][]byte)}
	for _, o := range objs {
		m.objects[resources.Sum(o).String()] = o
	}
	srv := httptest.NewServer(m)
	t.Cleanup(srv.Close)
	return m, srv.URL + "/pub/"
}

func object(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

func fastOpts() Options {
	return Options{LeaseBase: 300 * time.Millisecond, LeaseRate: 64 << 20, BackoffMin: 200 * time.Millisecond, BackoffMax: time.Second}
}

func TestGetServesAndVerifies(t *testing.T) {
	obj := object(300 << 10)
	m, base := newMirror(t, obj)
	p := NewPool([]string{base}, fastOpts())
	defer p.Close()
	var got []byte
	h := resources.Sum(obj)
	if err := p.Get(context.Background(), h, int64(len(obj)), nil, verify(h, &got)); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, obj) {
		t.Fatal("wrong bytes")
	}
	st := p.Stats()[0]
	if st.Objects != 1 || st.Bytes != int64(len(obj)) || st.Failures != 0 {
		t.Fatalf("stats %+v", st)
	}
	if m.gets.Load() != 1 {
		t.Fatalf("%d GETs, want 1", m.gets.Load())
	}
}

// Each way a mirror can be wrong ends in ErrUnavailable (the caller then
// asks the game server), never in accepted bytes that are wrong, and
// within the lease for a mirror that hangs or trickles.
func TestGetBadMirrors(t *testing.T) {
	obj := object(64 << 10)
	h := resources.Sum(obj)
	tests := []struct {
		name    string
		behave  func(w http.ResponseWriter, r *http.Request, body []byte) bool
		missing bool // not published at all
		demoted bool
		notFnd  bool
	}{
		{name: "404", missing: true, notFnd: true},
		{name: "403", notFnd: true, behave: func(w http.ResponseWriter, r *http.Request, _ []byte) bool {
			http.Error(w, "AccessDenied", http.StatusForbidden)
			return true
		}},
		{name: "500", behave: func(w http.ResponseWriter, r *http.Request, _ []byte) bool {
			http.Error(w, "boom", http.StatusInternalServerError)
			return true
		}},
		{name: "wrong body", demoted: true, behave: func(w http.ResponseWriter, r *http.Request, b []byte) bool {
			bad := bytes.Clone(b)
			bad[100] ^= 1
			w.Write(bad)
			return true
		}},
		{name: "wrong length", demoted: true, behave: func(w http.ResponseWriter, r *http.Request, b []byte) bool {
			w.Write(b[:len(b)-10])
			return true
		}},
		{name: "longer body", demoted: true, behave: func(w http.ResponseWriter, r *http.Request, b []byte) bool {
			w.Header().Set("Content-Length", strconv.Itoa(len(b)+5))
			w.Write(append(bytes.Clone(b), "extra"...))
			return true
		}},
		{name: "truncated body", behave: func(w http.ResponseWriter, r *http.Request, b []byte) bool {
			w.Header().Set("Content-Length", strconv.Itoa(len(b)))
			w.Write(b[:len(b)/2])
			return true // the server closes the connection short
		}},
		{name: "chunked body without length, too short", demoted: true, behave: func(w http.ResponseWriter, r *http.Request, b []byte) bool {
			w.Write(b[:100])
			w.(http.Flusher).Flush()
			return true
		}},
		{name: "hangs", behave: func(w http.ResponseWriter, r *http.Request, b []byte) bool {
			<-r.Context().Done()
			return true
		}},
		{name: "trickles", behave: func(w http.ResponseWriter, r *http.Request, b []byte) bool {
			w.Header().Set("Content-Length", strconv.Itoa(len(b)))
			for i := range b {
				if _, err := w.Write(b[i : i+1]); err != nil {
					return true
				}
				w.(http.Flusher).Flush()
				time.Sleep(10 * time.Millisecond)
			}
			return true
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var objs [][]byte
			if !tc.missing {
				objs = append(objs, obj)
			}
			m, base := newMirror(t, objs...)
			m.behave = tc.behave
			p := NewPool([]string{base}, fastOpts())
			defer p.Close()
			start := time.Now()
			err := p.Get(context.Background(), h, int64(len(obj)), nil, func(b []byte) error {
				if resources.Sum(b) != h {
					return fmt.Errorf("%w", ErrCorrupt)
				}
				t.Fatal("accepted bytes from a bad mirror")
				return nil
			})
			if !errors.Is(err, ErrUnavailable) {
				t.Fatalf("err = %v, want ErrUnavailable", err)
			}
			if d := time.Since(start); d > 3*time.Second {
				t.Fatalf("took %s", d)
			}
			st := p.Stats()[0]
			if st.Demoted != tc.demoted {
				t.Errorf("demoted = %v, want %v (%+v)", st.Demoted, tc.demoted, st)
			}
			if (st.NotFound > 0) != tc.notFnd {
				t.Errorf("not found = %d (%+v)", st.NotFound, st)
			}
			if !tc.notFnd && st.Failures == 0 {
				t.Errorf("no failure counted: %+v", st)
			}
			if tc.notFnd {
				if st.Failures != 0 || !p.Usable() {
					t.Errorf("a mirror lacking an object is not a failing mirror: %+v", st)
				}
			} else if p.Usable() {
				t.Error("a failed mirror is still asked at once")
			}
		})
	}
}

// With two mirrors, what one gets wrong the other serves; a corrupt one is
// not asked again, a failing one rests and is asked again later.
func TestGetFailsOverAndRecovers(t *testing.T) {
	a, b := object(100<<10), object(100<<10)
	bad, badBase := newMirror(t, a, b)
	var broken atomic.Bool
	broken.Store(true)
	bad.behave = func(w http.ResponseWriter, r *http.Request, body []byte) bool {
		if broken.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return true
		}
		return false
	}
	good, goodBase := newMirror(t, a, b)
	p := NewPool([]string{badBase, goodBase}, fastOpts())
	defer p.Close()
	for _, o := range [][]byte{a, b} {
		h := resources.Sum(o)
		if err := p.Get(context.Background(), h, int64(len(o)), nil, verify(h, nil)); err != nil {
			t.Fatal(err)
		}
	}
	if s := p.Stats(); s[1].Objects != 2 || s[0].Failures != 1 {
		t.Fatalf("stats %+v", s)
	}
	// Resting: the next Gets go to the good mirror without asking it.
	before := bad.gets.Load()
	h := resources.Sum(a)
	p.Get(context.Background(), h, int64(len(a)), nil, verify(h, nil))
	if bad.gets.Load() != before {
		t.Fatal("a resting mirror was asked")
	}
	// Recovered and rested: asked again.
	broken.Store(false)
	time.Sleep(250 * time.Millisecond)
	good.behave = func(w http.ResponseWriter, r *http.Request, body []byte) bool {
		http.Error(w, "down", http.StatusServiceUnavailable)
		return true
	}
	if err := p.Get(context.Background(), h, int64(len(a)), nil, verify(h, nil)); err != nil {
		t.Fatalf("recovered mirror not used: %v", err)
	}
	if s := p.Stats(); s[0].Objects != 1 {
		t.Fatalf("stats %+v", s)
	}
}

// A body cut off half-way is continued with a Range request, so its first
// half is not fetched twice.
func TestGetContinuesAnInterruptedBodyWithRange(t *testing.T) {
	obj := object(512 << 10)
	h := resources.Sum(obj)
	m, base := newMirror(t, obj)
	var cut atomic.Bool
	cut.Store(true)
	var sent atomic.Int64
	m.behave = func(w http.ResponseWriter, r *http.Request, body []byte) bool {
		if cut.CompareAndSwap(true, false) {
			w.Header().Set("Content-Length", strconv.Itoa(len(body)))
			w.Write(body[:len(body)/2])
			sent.Add(int64(len(body) / 2))
			panic(http.ErrAbortHandler) // the connection dies mid-body
		}
		return false
	}
	p := NewPool([]string{base}, fastOpts())
	defer p.Close()
	var got []byte
	if err := p.Get(context.Background(), h, int64(len(obj)), nil, verify(h, &got)); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, obj) {
		t.Fatal("wrong bytes")
	}
	if m.ranges.Load() != 1 || m.gets.Load() != 2 {
		t.Fatalf("%d GETs, %d with Range; want 2 and 1", m.gets.Load(), m.ranges.Load())
	}
}

// A mirror whose bytes fail verification is demoted: not asked again this
// session, even for other objects.
func TestCorruptMirrorIsDemoted(t *testing.T) {
	a, b := object(10<<10), object(10<<10)
	m, base := newMirror(t, a, b)
	m.behave = func(w http.ResponseWriter, r *http.Request, body []byte) bool {
		w.Write(bytes.Repeat([]byte{'x'}, len(body)))
		return true
	}
	p := NewPool([]string{base, "ftp://ignored/"}, fastOpts())
	defer p.Close()
	if p.Len() != 1 {
		t.Fatalf("%d mirrors; the ftp one must be ignored", p.Len())
	}
	ha := resources.Sum(a)
	if err := p.Get(context.Background(), ha, int64(len(a)), nil, verify(ha, nil)); !errors.Is(err, ErrUnavailable) {
		t.Fatal(err)
	}
	n := m.gets.Load()
	hb := resources.Sum(b)
	if err := p.Get(context.Background(), hb, int64(len(b)), nil, verify(hb, nil)); !errors.Is(err, ErrUnavailable) {
		t.Fatal(err)
	}
	if m.gets.Load() != n || p.Usable() || !p.Stats()[0].Demoted {
		t.Fatal("a demoted mirror was asked again")
	}
}

// The caller's own failure (a full disk) is returned as it is: it says
// nothing about the mirror.
func TestAcceptErrorIsNotTheMirrors(t *testing.T) {
	obj := object(1000)
	_, base := newMirror(t, obj)
	p := NewPool([]string{base}, fastOpts())
	defer p.Close()
	disk := errors.New("disk full")
	h := resources.Sum(obj)
	if err := p.Get(context.Background(), h, int64(len(obj)), nil, func([]byte) error { return disk }); err != disk {
		t.Fatalf("err = %v", err)
	}
	if s := p.Stats()[0]; s.Demoted || s.Failures != 0 || !p.Usable() {
		t.Fatalf("stats %+v", s)
	}
}

func TestIsPublic(t *testing.T) {
	for addr, want := range map[string]bool{
		"8.8.8.8": true, "2001:4860:4860::8888": true, "93.184.216.34": true,
		"127.0.0.1": false, "::1": false, "10.1.2.3": false, "172.16.0.1": false, "192.168.1.1": false,
		"169.254.169.254": false, "fe80::1": false, "fc00::1": false, "100.64.0.1": false,
		"0.0.0.0": false, "::": false, "224.0.0.1": false, "::ffff:127.0.0.1": false, "::ffff:8.8.8.8": true,
	} {
		if got := IsPublic(netip.MustParseAddr(addr)); got != want {
			t.Errorf("IsPublic(%s) = %v, want %v", addr, got, want)
		}
	}
}

// A game server on a public address cannot point clients at their own
// machine or LAN: with PublicOnly, a mirror on loopback is refused at the
// dial (after DNS, so no name can be rebound there) and not used again.
func TestPublicOnlyRefusesLoopback(t *testing.T) {
	obj := object(1000)
	m, base := newMirror(t, obj)
	opts := fastOpts()
	opts.PublicOnly = true
	p := NewPool([]string{strings.Replace(base, "127.0.0.1", "localhost", 1)}, opts)
	defer p.Close()
	h := resources.Sum(obj)
	err := p.Get(context.Background(), h, int64(len(obj)), nil, verify(h, nil))
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "non-public") {
		t.Fatalf("err = %v", err)
	}
	if m.gets.Load() != 0 || !p.Stats()[0].Demoted || p.Usable() {
		t.Fatalf("%d GETs reached the loopback mirror; stats %+v", m.gets.Load(), p.Stats()[0])
	}
}

// A base with no voxsync-mirror.json is no mirror: it is asked that once,
// never for objects, and not again in the session.
func TestNotAMirrorIsAskedOnce(t *testing.T) {
	a, b := object(1000), object(1000)
	m, base := newMirror(t, a, b)
	m.noLayout = true
	p := NewPool([]string{base}, fastOpts())
	defer p.Close()
	for i, o := range [][]byte{a, b} {
		h := resources.Sum(o)
		err := p.Get(context.Background(), h, int64(len(o)), nil, verify(h, nil))
		if !errors.Is(err, ErrUnavailable) || (i == 0 && !strings.Contains(err.Error(), "not a published voxsync mirror")) {
			t.Fatalf("get %d: err = %v", i, err)
		}
	}
	if n := m.gets.Load(); n != 1 || !p.Stats()[0].Demoted {
		t.Fatalf("%d requests to a base that is no mirror, stats %+v; want the one for its layout file", n, p.Stats()[0])
	}
}

// A redirect from https to plain http is refused: the mirror was named
// with https for a reason.
func TestRedirectDowngradeRefused(t *testing.T) {
	obj := object(1000)
	_, plain := newMirror(t, obj)
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, LayoutFile) {
			w.Write([]byte(`{"layout":1}`))
			return
		}
		http.Redirect(w, r, plain+r.URL.Path[len("/pub/"):], http.StatusFound)
	}))
	defer srv.Close()
	opts := fastOpts()
	opts.Transport = srv.Client().Transport
	p := NewPool([]string{srv.URL + "/pub/"}, opts)
	h := resources.Sum(obj)
	if err := p.Get(context.Background(), h, int64(len(obj)), nil, verify(h, nil)); !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "refused redirect") {
		t.Fatalf("err = %v", err)
	}
}
