package session

import (
	"cmp"
	"slices"
	"time"
	"unique"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/voxsync/voxsync/packets"
	"github.com/voxsync/voxsync/resources"
)

// Status is a snapshot of the server for operators: /status shows it as a
// page, /status.json as it is.
type Status struct {
	Now      time.Time      `json:"now"`
	Started  time.Time      `json:"started"`
	Totals   StatusTotals   `json:"totals"`
	Clients  []ClientStatus `json:"clients"`
	Packs    []PackStatus   `json:"packs"`
	Reloads  []ReloadRecord `json:"reloads"` // newest first
	Mirrors  []MirrorStatus `json:"mirrors"` // as configured
	Protocol uint16         `json:"protocol"`
	// HotReload says whether the pack directories are watched.
	HotReload bool `json:"hot_reload"`
}

// MirrorStatus is a configured mirror and what its last check found.
type MirrorStatus struct {
	URL string `json:"url"`
	// Checked is when; zero until a check has reported (SetMirrorCheck).
	Checked time.Time `json:"checked"`
	Ready   bool      `json:"ready"`
	Problem string    `json:"problem,omitempty"` // why not ready, and what to do
}

// SetMirrorCheck records what a check of the mirror at base found (nil: it
// serves this server's content), for the status page.
func (s *Server) SetMirrorCheck(base string, err error) {
	ms := MirrorStatus{URL: base, Checked: time.Now(), Ready: err == nil}
	if err != nil {
		ms.Problem = err.Error()
	}
	s.admin.mu.Lock()
	if s.admin.mirrors == nil {
		s.admin.mirrors = make(map[string]MirrorStatus)
	}
	s.admin.mirrors[base] = ms
	s.admin.mu.Unlock()
}

// StatusTotals are the server-wide numbers, as in /metrics.
type StatusTotals struct {
	Clients       int   `json:"clients"`
	Sessions      int64 `json:"sessions"`
	Resources     int   `json:"resources"`
	ResourceBytes int64 `json:"resource_bytes"`
	PayloadBytes  int64 `json:"payload_bytes_sent"`
	// MirrorBytes: payload bytes clients report they fetched from the
	// mirrors instead of this server.
	MirrorBytes     int64 `json:"mirror_bytes"`
	StreamsSent     int64 `json:"streams_sent"`
	HashesRequested int64 `json:"hashes_requested"`
	ReloadsApplied  int64 `json:"reloads_applied"`
	ReloadsPartial  int64 `json:"reloads_partial"`
	ReloadsFailed   int64 `json:"reloads_failed"`
}

// ClientStatus is one connected client. The server cannot see a client's
// cache: Loaded counts the bound resources the client has not asked for or
// has been sent, i.e. Bound minus Outstanding.
type ClientStatus struct {
	Remote         string         `json:"remote"`
	Session        string         `json:"session"`
	Client         string         `json:"client"`
	Protocol       uint16         `json:"protocol"`
	Bound          int            `json:"bound"`
	Loaded         int            `json:"loaded"`
	Outstanding    int            `json:"outstanding"`
	BytesSent      int64          `json:"bytes_sent"`   // on the wire, framing included
	MirrorBytes    int64          `json:"mirror_bytes"` // fetched from mirrors, as the client reports
	Streams        []StreamStatus `json:"streams"`      // being sent now
	ConnectedSince time.Time      `json:"connected_since"`
}

// StreamStatus is a resource being streamed to a client.
type StreamStatus struct {
	Resource string `json:"resource"` // type/domain:key
	Size     int64  `json:"size"`
}

// PackStatus is one pack of the current view: the resources it provides
// (those no higher pack overrides) and the last reload that changed it.
type PackStatus struct {
	Name        string    `json:"name"`
	Dir         string    `json:"dir"` // "builtin" for the built-in pack
	Priority    int       `json:"priority"`
	Resources   int       `json:"resources"`
	Bytes       int64     `json:"bytes"`
	LastReload  time.Time `json:"last_reload"`
	LastOutcome string    `json:"last_outcome"` // "loaded" (at start) or a reload outcome
}

// Status returns a snapshot of the server: clients, packs, the last hot
// reloads, and totals.
func (s *Server) Status() Status {
	// Empty lists are [], not null: a script indexing or iterating them
	// (jq '.clients | length') must not trip on an idle server.
	st := Status{Now: time.Now(), Started: s.admin.started, Protocol: packets.Version, HotReload: s.cfg.HotReload,
		Clients: []ClientStatus{}, Packs: []PackStatus{}, Reloads: []ReloadRecord{}, Mirrors: []MirrorStatus{}}
	s.mu.Lock()
	view := s.view
	clients := make([]*Client, 0, len(s.clients))
	for c := range s.clients {
		clients = append(clients, c)
	}
	s.mu.Unlock()

	s.admin.mu.Lock()
	for _, c := range clients {
		cs := ClientStatus{Remote: c.remote, Session: c.session.String(), Client: c.hello.Client.String(), Protocol: c.hello.Version,
			MirrorBytes: int64(c.mirrorBytes.Load()), Streams: []StreamStatus{}}
		if tc := s.admin.conns[c.remote]; tc != nil {
			cs.BytesSent, cs.ConnectedSince = tc.sent.Load(), tc.since
		}
		st.Clients = append(st.Clients, cs)
	}
	for _, m := range s.mirrors {
		ms, ok := s.admin.mirrors[m]
		if !ok {
			ms = MirrorStatus{URL: m}
		}
		st.Mirrors = append(st.Mirrors, ms)
	}
	for i := len(s.admin.reloads) - 1; i >= 0; i-- {
		st.Reloads = append(st.Reloads, s.admin.reloads[i])
	}
	seen := make(map[string]packReload, len(s.admin.packSeen))
	for k, v := range s.admin.packSeen {
		seen[k] = v
	}
	s.admin.mu.Unlock()

	for i, c := range clients {
		cs := &st.Clients[i]
		c.mu.Lock()
		// A chunked resource has several requests pending: count hashes.
		outstanding := len(c.pending)
		if len(c.parts) > 0 {
			hashes := make(map[resources.Hash]bool, len(c.parts))
			for k := range c.parts {
				if _, whole := c.pending[unique.Make(k.hash)]; !whole {
					hashes[k.hash] = true
				}
			}
			outstanding += len(hashes)
		}
		cs.Bound, cs.Outstanding = c.bind.bound, outstanding
		for _, list := range c.active {
			for _, sm := range list {
				cs.Streams = append(cs.Streams, StreamStatus{Resource: sm.entry.Type.String() + "/" + sm.entry.Ref.String(), Size: sm.entry.Size})
			}
		}
		c.mu.Unlock()
		cs.Loaded = max(cs.Bound-cs.Outstanding, 0)
	}
	slices.SortFunc(st.Clients, func(a, b ClientStatus) int {
		return cmp.Or(a.ConnectedSince.Compare(b.ConnectedSince), cmp.Compare(a.Session, b.Session))
	})

	byPack := make(map[string]*PackStatus)
	for _, p := range view.Packs() {
		ps := PackStatus{Name: p.Name, Dir: p.String(), Priority: p.Priority}
		if r, ok := seen[p.String()]; ok {
			ps.LastReload, ps.LastOutcome = r.At, r.Outcome
		}
		st.Packs = append(st.Packs, ps)
	}
	for i := range st.Packs {
		byPack[st.Packs[i].Dir] = &st.Packs[i]
	}
	for _, e := range view.Entries() {
		if ps := byPack[e.Pack.String()]; ps != nil {
			ps.Resources++
			ps.Bytes += e.Size
		}
	}
	slices.SortStableFunc(st.Packs, func(a, b PackStatus) int { return cmp.Compare(b.Priority, a.Priority) })

	m := s.metrics
	st.Totals = StatusTotals{
		Clients:         len(st.Clients),
		Sessions:        int64(metricValue(m.sessions)),
		Resources:       view.Len(),
		ResourceBytes:   view.TotalSize(),
		PayloadBytes:    int64(metricValue(m.bytesSent)),
		MirrorBytes:     int64(metricValue(m.mirrorBytes)),
		StreamsSent:     int64(metricValue(m.resourcesSent)),
		HashesRequested: int64(metricValue(m.hashesRequested)),
		ReloadsApplied:  int64(metricValue(m.reloads.WithLabelValues(ReloadApplied))),
		ReloadsPartial:  int64(metricValue(m.reloads.WithLabelValues(ReloadPartial))),
		ReloadsFailed:   int64(metricValue(m.reloads.WithLabelValues(ReloadFailed))),
	}
	return st
}

// metricValue reads a counter or gauge.
func metricValue(m prometheus.Metric) float64 {
	var d dto.Metric
	if err := m.Write(&d); err != nil {
		return 0
	}
	if c := d.GetCounter(); c != nil {
		return c.GetValue()
	}
	return d.GetGauge().GetValue()
}
