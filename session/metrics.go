package session

import (
	"github.com/prometheus/client_golang/prometheus"
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
	reloads         prometheus.Counter
	reloadResources prometheus.Gauge
}

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
		reloads:         prometheus.NewCounter(prometheus.CounterOpts{Namespace: "voxsync", Subsystem: "server", Name: "pack_reloads_total", Help: "Pack views swapped in by hot reload."}),
		reloadResources: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "voxsync", Subsystem: "server", Name: "resources", Help: "Resources in the current pack view."}),
	}
	m.Registry.MustRegister(m.clients, m.sessions, m.bytesSent, m.resourcesSent, m.binds, m.losts, m.resourceErrors, m.disconnects, m.reloads, m.reloadResources)
	// Create every label series up front so dashboards see zeros, not gaps.
	for c := packets.ErrorUnknownHash; c <= packets.ErrorInternal; c++ {
		m.resourceErrors.WithLabelValues(c.String())
	}
	for c := packets.DisconnectNormal; c <= packets.DisconnectAuthFailed; c++ {
		m.disconnects.WithLabelValues(c.String())
	}
	return m
}
