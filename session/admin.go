package session

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/voxsync/voxsync/packs"
)

// maxReloadHistory is how many hot reloads the status page remembers.
const maxReloadHistory = 10

// maxChangedNames is how many changed resources a reload record names; the
// counts are always complete.
const maxChangedNames = 20

// adminState is what the admin listener shows beyond the metrics: when
// each connection started and what it was sent, and the last hot reloads.
// Its zero value is not ready; Server calls init.
type adminState struct {
	started time.Time

	mu    sync.Mutex // guards conns, reloads, packSeen, mirrors
	conns map[string]*trackedConn
	// mirrors: the verdict of each mirror's check, by base URL.
	mirrors map[string]MirrorStatus
	reloads []ReloadRecord // newest last
	// packSeen is, by pack (Pack.String()), the last reload that changed
	// something in it, or the initial load.
	packSeen map[string]packReload
}

type packReload struct {
	At      time.Time
	Outcome string
}

// ReloadRecord is one hot reload as the status page shows it.
type ReloadRecord struct {
	At      time.Time `json:"at"`
	Outcome string    `json:"outcome"` // ReloadApplied, ReloadPartial or ReloadFailed
	Error   string    `json:"error,omitempty"`
	// Problems are what the new view skipped that the old one did not,
	// e.g. "pack /srv/p: parse /srv/p/pack.toml: …" (at most
	// maxChangedNames).
	Problems []string `json:"problems,omitempty"`
	// Added, Changed and Removed count resources; the Names slices hold the
	// first few of each as type/domain:key.
	Added        int      `json:"added"`
	Changed      int      `json:"changed"`
	Removed      int      `json:"removed"`
	AddedNames   []string `json:"added_names,omitempty"`
	ChangedNames []string `json:"changed_names,omitempty"`
	RemovedNames []string `json:"removed_names,omitempty"`
	Resources    int      `json:"resources"` // in service after the reload
}

func (a *adminState) init(v *packs.View) {
	a.started = time.Now()
	a.conns = make(map[string]*trackedConn)
	a.packSeen = make(map[string]packReload)
	for _, p := range v.Packs() {
		a.packSeen[p.String()] = packReload{a.started, "loaded"}
	}
}

// reloaded records an applied reload, what changed between old and v, and
// returns the record.
func (a *adminState) reloaded(old, v *packs.View) ReloadRecord {
	r := ReloadRecord{At: time.Now(), Outcome: ReloadApplied, Resources: v.Len()}
	had := make(map[packs.Problem]bool, len(old.Problems))
	for _, p := range old.Problems {
		had[p] = true
	}
	for _, p := range v.Problems {
		if !had[p] {
			r.Outcome = ReloadPartial
			if len(r.Problems) < maxChangedNames {
				r.Problems = append(r.Problems, p.String())
			}
		}
	}
	touched := make(map[string]bool)
	name := func(e *packs.Entry) string { return e.Type.String() + "/" + e.Ref.String() }
	for _, e := range v.Entries() {
		o, ok := old.Lookup(e.Loc)
		switch {
		case !ok:
			r.Added++
			r.AddedNames = append(r.AddedNames, name(e))
		case o.Hash != e.Hash:
			r.Changed++
			r.ChangedNames = append(r.ChangedNames, name(e))
		default:
			continue
		}
		touched[e.Pack.String()] = true
	}
	for _, e := range old.Entries() {
		if _, ok := v.Lookup(e.Loc); !ok {
			r.Removed++
			r.RemovedNames = append(r.RemovedNames, name(e))
			touched[e.Pack.String()] = true
		}
	}
	// Sorted, then cut: the same reload names the same files every time,
	// whatever the maps' order.
	for _, names := range []*[]string{&r.AddedNames, &r.ChangedNames, &r.RemovedNames} {
		slices.Sort(*names)
		*names = slices.Clip((*names)[:min(len(*names), maxChangedNames)])
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	for p := range touched {
		a.packSeen[p] = packReload{r.At, r.Outcome}
	}
	for _, p := range v.Packs() {
		if _, ok := a.packSeen[p.String()]; !ok {
			a.packSeen[p.String()] = packReload{r.At, r.Outcome}
		}
	}
	a.addLocked(r)
	return r
}

func (a *adminState) addLocked(r ReloadRecord) {
	a.reloads = append(a.reloads, r)
	if len(a.reloads) > maxReloadHistory {
		a.reloads = slices.Delete(a.reloads, 0, len(a.reloads)-maxReloadHistory)
	}
}

// ReloadFailed records a hot reload that failed (the previous packs stay in
// service), for the metrics and the status page.
func (s *Server) ReloadFailed(err error) {
	s.metrics.reloads.WithLabelValues(ReloadFailed).Inc()
	r := ReloadRecord{At: time.Now(), Outcome: ReloadFailed, Error: err.Error(), Resources: s.View().Len()}
	s.admin.mu.Lock()
	s.admin.addLocked(r)
	s.admin.mu.Unlock()
}

// trackedConn counts what the server writes to one connection.
type trackedConn struct {
	net.Conn
	since time.Time
	sent  atomic.Int64
}

func (c *trackedConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	c.sent.Add(int64(n))
	return n, err
}

// SyscallConn reaches the socket under the wrapper: the server's send
// limit and progress watchdog work on the raw TCP connection.
func (c *trackedConn) SyscallConn() (syscall.RawConn, error) {
	if sc, ok := c.Conn.(syscall.Conn); ok {
		return sc.SyscallConn()
	}
	return nil, errors.ErrUnsupported
}

// trackingWriter hands the WebSocket upgrader a counted connection and
// registers it under the request's remote address, which is the Client's.
type trackingWriter struct {
	http.ResponseWriter
	a      *adminState
	remote string
}

func (w trackingWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	hj, ok := w.ResponseWriter.(http.Hijacker)
	if !ok {
		return nil, nil, errors.New("hijack connection: response writer cannot be hijacked")
	}
	conn, rw, err := hj.Hijack()
	if err != nil {
		return nil, nil, err
	}
	tc := &trackedConn{Conn: conn, since: time.Now()}
	w.a.mu.Lock()
	w.a.conns[w.remote] = tc
	w.a.mu.Unlock()
	return tc, rw, nil
}

func (w trackingWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// serveTrackedWS is ServeWS with the connection counted for the status page.
func (s *Server) serveTrackedWS(w http.ResponseWriter, r *http.Request) {
	defer func() {
		s.admin.mu.Lock()
		delete(s.admin.conns, r.RemoteAddr)
		s.admin.mu.Unlock()
	}()
	s.ServeWS(trackingWriter{ResponseWriter: w, a: &s.admin, remote: r.RemoteAddr}, r)
}

// AdminHandler returns the admin listener's handler, for operators and
// never the public: /metrics (Prometheus), /healthz (the process answers),
// /readyz (packs are loaded and the server is not shutting down), and the
// status page at /status (HTML) and /status.json.
func (s *Server) AdminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.metrics.Registry, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /status", s.serveStatus)
	mux.HandleFunc("GET /status.json", s.serveStatusJSON)
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		closed, n, np := s.closed, s.view.Len(), len(s.view.Packs())
		s.mu.Unlock()
		if closed {
			http.Error(w, "not ready: shutting down", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintf(w, "ready: %d resources from %d packs\n", n, np)
	})
	return mux
}
