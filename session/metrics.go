package session

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/voxsync/voxsync/packets"
)

// ServerMetrics are the server's Prometheus metrics, on their own registry
// so several servers (tests) can run in one process.
type ServerMetrics struct {
	Registry        *prometheus.Registry
	clients         prometheus.Gauge
	sessions        prometheus.Counter
	bytesSent       prometheus.Counter
	resourcesSent   prometheus.Counter
	binds           prometheus.Counter
	losts           prometheus.Counter
	resourceErrors  *prometheus.CounterVec
	disconnects     *prometheus.CounterVec
	reloads         *prometheus.CounterVec
	reloadResources prometheus.Gauge
	hashesRequested prometheus.Counter
	manifestsSent   prometheus.Counter
	bytesSaved      prometheus.Counter
	mirrorBytes     prometheus.Counter
	mirrorObjects   prometheus.Counter
	hashesServed    *prometheus.CounterVec
	streamSeconds   prometheus.Histogram
}

// Reload outcomes, the values of pack_reloads_total's outcome label.
const (
	ReloadApplied = "applied" // a new pack view was swapped in
	// ReloadPartial: a new view was swapped in, but files or whole packs
	// that were fine before are skipped now (e.g. a pack.toml broken by
	// an edit takes its pack out of service).
	ReloadPartial = "partial"
	ReloadFailed  = "failed" // building the new view failed; the old one stays
)

// Sources of a served stream, the values of hashes_served_total's source
// label: the bytes were in the server's memory, or read from the pack file.
const (
	sourceMemory = "memory"
	sourceDisk   = "disk"
)

func newServerMetrics() *ServerMetrics {
	m := &ServerMetrics{
		Registry:        prometheus.NewRegistry(),
		clients:         prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "voxsync", Subsystem: "server", Name: "clients", Help: "Connected clients past the handshake."}),
		sessions:        prometheus.NewCounter(prometheus.CounterOpts{Namespace: "voxsync", Subsystem: "server", Name: "sessions_total", Help: "Sessions that completed the handshake."}),
		bytesSent:       prometheus.NewCounter(prometheus.CounterOpts{Namespace: "voxsync", Subsystem: "server", Name: "payload_bytes_sent_total", Help: "Resource payload bytes sent in ChunkSend packets."}),
		resourcesSent:   prometheus.NewCounter(prometheus.CounterOpts{Namespace: "voxsync", Subsystem: "server", Name: "resources_sent_total", Help: "Streams sent to completion."}),
		binds:           prometheus.NewCounter(prometheus.CounterOpts{Namespace: "voxsync", Subsystem: "server", Name: "bind_entries_total", Help: "Bind entries sent."}),
		losts:           prometheus.NewCounter(prometheus.CounterOpts{Namespace: "voxsync", Subsystem: "server", Name: "lost_entries_total", Help: "Lost entries sent."}),
		resourceErrors:  prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "voxsync", Subsystem: "server", Name: "resource_errors_total", Help: "ResourceError packets sent, by code."}, []string{"code"}),
		disconnects:     prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "voxsync", Subsystem: "server", Name: "disconnects_total", Help: "Sessions ended by the server, by reason code."}, []string{"code"}),
		reloads:         prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "voxsync", Subsystem: "server", Name: "pack_reloads_total", Help: "Hot reloads of the pack directories, by outcome (applied, partial, failed)."}, []string{"outcome"}),
		reloadResources: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "voxsync", Subsystem: "server", Name: "resources", Help: "Resources in the current pack view."}),
		hashesRequested: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "voxsync", Subsystem: "server", Name: "hashes_requested_total", Help: "Hashes asked for in ResourceRequest packets."}),
		manifestsSent:   prometheus.NewCounter(prometheus.CounterOpts{Namespace: "voxsync", Subsystem: "server", Name: "manifests_sent_total", Help: "Manifests of large resources sent in full (clients then fetch their chunks as ranges)."}),
		bytesSaved:      prometheus.NewCounter(prometheus.CounterOpts{Namespace: "voxsync", Subsystem: "server", Name: "compression_saved_bytes_total", Help: "Payload bytes zstd saved: resource bytes of encoded streams minus the bytes sent for them."}),
		mirrorBytes:     prometheus.NewCounter(prometheus.CounterOpts{Namespace: "voxsync", Subsystem: "server", Name: "mirror_bytes_total", Help: "Payload bytes clients report they fetched from the mirrors instead of this server (compare payload_bytes_sent_total)."}),
		mirrorObjects:   prometheus.NewCounter(prometheus.CounterOpts{Namespace: "voxsync", Subsystem: "server", Name: "mirror_objects_total", Help: "Objects (whole resources and chunks) clients report they fetched from the mirrors."}),
		hashesServed:    prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "voxsync", Subsystem: "server", Name: "hashes_served_total", Help: "Streams started, by where their bytes came from (memory, disk)."}, []string{"source"}),
		streamSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "voxsync", Subsystem: "server", Name: "stream_duration_seconds",
			Help:    "Time from a stream's first write to its last chunk.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 4, 10), // 0.5 ms .. ~131 s
		}),
	}
	m.Registry.MustRegister(m.clients, m.sessions, m.bytesSent, m.resourcesSent, m.binds, m.losts, m.resourceErrors,
		m.disconnects, m.reloads, m.reloadResources, m.hashesRequested, m.hashesServed, m.streamSeconds,
		m.manifestsSent, m.bytesSaved, m.mirrorBytes, m.mirrorObjects,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	// Create every label series up front so dashboards see zeros, not gaps.
	for c := packets.ErrorUnknownHash; c <= packets.ErrorInternal; c++ {
		m.resourceErrors.WithLabelValues(c.String())
	}
	for c := packets.DisconnectNormal; c <= packets.DisconnectAuthFailed; c++ {
		m.disconnects.WithLabelValues(c.String())
	}
	for _, o := range []string{ReloadApplied, ReloadPartial, ReloadFailed} {
		m.reloads.WithLabelValues(o)
	}
	for _, s := range []string{sourceMemory, sourceDisk} {
		m.hashesServed.WithLabelValues(s)
	}
	return m
}

// streamStarted counts a stream by where its bytes come from.
func (m *ServerMetrics) streamStarted(inMemory bool) {
	src := sourceDisk
	if inMemory {
		src = sourceMemory
	}
	m.hashesServed.WithLabelValues(src).Inc()
}

// streamDone records a stream sent to completion.
func (m *ServerMetrics) streamDone(began time.Time) {
	m.resourcesSent.Inc()
	m.streamSeconds.Observe(time.Since(began).Seconds())
}
