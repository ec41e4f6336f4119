// Package configs holds the server's configuration: the TOML files in this
// directory are both the examples operators copy and, embedded, the built-in
// defaults. It parses and validates; it never opens packs or sockets.
package configs

import (
	_ "embed"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/voxsync/voxsync/mirror"
	"github.com/voxsync/voxsync/packets"
	"github.com/voxsync/voxsync/resources"
)

//go:embed server.toml
var defaultServer string

//go:embed world.toml
var defaultWorld string

// ErrInvalid is wrapped by every validation error.
var ErrInvalid = errors.New("invalid configuration")

// Duration is a time.Duration written as "10s" or "100ms".
type Duration struct{ time.Duration }

func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return err
	}
	d.Duration = v
	return nil
}

func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// Server is the gameserver configuration.
type Server struct {
	Listen             string   `toml:"listen"`
	Packs              []string `toml:"packs"`
	BuiltinPack        bool     `toml:"builtin_pack"`
	Preload            []string `toml:"preload"`
	World              string   `toml:"world"`
	ViewDistance       int      `toml:"view_distance"`
	ChunkSize          int      `toml:"chunk_size"`
	MaxFileSize        int64    `toml:"max_file_size"`
	MemoryMax          int64    `toml:"memory_max"`
	MemoryBudget       int64    `toml:"memory_budget"`
	MaxRequestHashes   int      `toml:"max_request_hashes"`
	MaxPendingRequests int      `toml:"max_pending_requests"`
	ActiveStreams      int      `toml:"active_streams"`
	Chunked            bool     `toml:"chunked"`
	Compression        bool     `toml:"compression"`
	CompressionCache   int64    `toml:"compression_cache"`
	// Mirrors are base URLs of HTTP mirrors serving the published layout
	// (gameserver publish); clients fetch content from them and from the
	// server at once.
	Mirrors []string `toml:"mirrors"`
	// MirrorHelp: a client joining while fewer than this many others
	// joined in the last minute may also take from this server work that
	// slow mirrors have not got to; 0: clients ask it only for what the
	// mirrors cannot serve.
	MirrorHelp       int      `toml:"mirror_help"`
	MaxClients       int      `toml:"max_clients"`
	WriteTimeout     Duration `toml:"write_timeout"`
	PingInterval     Duration `toml:"ping_interval"`
	HandshakeTimeout Duration `toml:"handshake_timeout"`
	AuthToken        string   `toml:"auth_token"`
	HotReload        bool     `toml:"hot_reload"`
	ReloadDebounce   Duration `toml:"reload_debounce"`
	// Per-address limits (an IPv6 address counts as its /64).
	MaxClientsPerAddress  int `toml:"max_clients_per_address"`
	AuthFailuresPerMinute int `toml:"auth_failures_per_minute"`
	// AdminListen is the operators' address for /metrics, /status,
	// /healthz and /readyz; empty turns the admin listener off.
	AdminListen string `toml:"admin_listen"`
}

// DefaultServer returns the built-in defaults (configs/server.toml).
func DefaultServer() Server {
	var s Server
	if err := decode(defaultServer, "built-in server.toml", &s); err != nil {
		panic(err) // the embedded file is tested
	}
	return s
}

// LoadServer reads path over the defaults and validates the result; the
// error lists every problem (Problems), each with its line.
func LoadServer(path string) (Server, error) {
	s, src, err := ReadServer(path)
	if err != nil {
		return s, err
	}
	return s, src.Check(s)
}

func decode(data, name string, v any) error {
	md, err := toml.Decode(data, v)
	if err != nil {
		return fmt.Errorf("parse %s: %w", name, err)
	}
	if und := md.Undecoded(); len(und) > 0 {
		keys := make([]string, len(und))
		for i, k := range und {
			keys[i] = k.String()
		}
		return fmt.Errorf("parse %s: unknown setting %s: %w", name, strings.Join(keys, ", "), ErrInvalid)
	}
	return nil
}

// Validate checks every setting once, naming the first bad one.
func (s *Server) Validate() error {
	bad := func(setting, format string, args ...any) error {
		return fmt.Errorf("config: %s: %s: %w", setting, fmt.Sprintf(format, args...), ErrInvalid)
	}
	switch {
	case s.Listen == "":
		return bad("listen", "empty; want host:port such as 127.0.0.1:30000")
	case !strings.Contains(s.Listen, ":"):
		return bad("listen", "%q has no port; want host:port%s", s.Listen, portHint(s.Listen))
	case !s.BuiltinPack && len(s.Packs) == 0:
		return bad("packs", "no packs and builtin_pack = false: nothing to serve")
	case s.ViewDistance < 0 || s.ViewDistance > 32:
		return bad("view_distance", "%d not in 0..32", s.ViewDistance)
	case s.ChunkSize < 1024 || s.ChunkSize > packets.MaxChunkSize:
		return bad("chunk_size", "%d not in 1024..%d", s.ChunkSize, packets.MaxChunkSize)
	case s.MaxFileSize < 1:
		return bad("max_file_size", "%d must be positive", s.MaxFileSize)
	case s.MemoryMax < 0:
		return bad("memory_max", "%d must not be negative (0 serves no file from memory)", s.MemoryMax)
	case s.MemoryBudget < 0:
		return bad("memory_budget", "%d must not be negative", s.MemoryBudget)
	case s.MaxRequestHashes < 1 || s.MaxRequestHashes > packets.MaxRequestHashes:
		return bad("max_request_hashes", "%d not in 1..%d", s.MaxRequestHashes, packets.MaxRequestHashes)
	case s.MaxPendingRequests < s.MaxRequestHashes || s.MaxPendingRequests > 1<<24:
		return bad("max_pending_requests", "%d not in max_request_hashes (%d)..%d", s.MaxPendingRequests, s.MaxRequestHashes, 1<<24)
	case s.ActiveStreams < 1 || s.ActiveStreams > 1024:
		return bad("active_streams", "%d not in 1..1024", s.ActiveStreams)
	case s.CompressionCache < 0:
		return bad("compression_cache", "%d must not be negative", s.CompressionCache)
	case s.MaxClients < 1:
		return bad("max_clients", "%d must be positive", s.MaxClients)
	case s.WriteTimeout.Duration <= 0:
		return bad("write_timeout", "%s must be positive", s.WriteTimeout)
	case s.PingInterval.Duration < packets.MinPingIntervalMs*time.Millisecond || s.PingInterval.Duration > packets.MaxPingIntervalMs*time.Millisecond:
		return bad("ping_interval", "%s not in %s..%s", s.PingInterval, packets.MinPingIntervalMs*time.Millisecond, packets.MaxPingIntervalMs*time.Millisecond)
	case s.HandshakeTimeout.Duration <= 0:
		return bad("handshake_timeout", "%s must be positive", s.HandshakeTimeout)
	case s.ReloadDebounce.Duration < 0 || s.ReloadDebounce.Duration > time.Minute:
		return bad("reload_debounce", "%s not in 0..1m", s.ReloadDebounce)
	case s.MaxClientsPerAddress < 0:
		return bad("max_clients_per_address", "%d must not be negative (0: no limit)", s.MaxClientsPerAddress)
	case s.AuthFailuresPerMinute < 0:
		return bad("auth_failures_per_minute", "%d must not be negative (0: no limit)", s.AuthFailuresPerMinute)
	}
	for _, p := range s.Packs {
		if p == "" {
			return bad("packs", "empty directory name")
		}
	}
	for _, p := range s.Preload {
		if _, err := resources.ParsePattern(p); err != nil {
			return bad("preload", "%v", err)
		}
	}
	if s.MirrorHelp < 0 {
		return bad("mirror_help", "%d must not be negative (0: never)", s.MirrorHelp)
	}
	if len(s.Mirrors) > packets.MaxMirrors {
		return bad("mirrors", "%d URLs, limit %d", len(s.Mirrors), packets.MaxMirrors)
	}
	// Every unusable URL at once: the check reports a list setting once.
	var unusable []string
	for _, m := range s.Mirrors {
		if _, err := mirror.ParseBase(m); err != nil {
			unusable = append(unusable, err.Error())
		}
	}
	if len(unusable) > 0 {
		return bad("mirrors", "%s", strings.Join(unusable, "; "))
	}
	return s.validateListeners()
}

// World is the demo world's definition (configs/world.toml).
type World struct {
	Seed           uint64     `toml:"seed"`
	RegionSize     int        `toml:"region_size"`
	NodesPerRegion int        `toml:"nodes_per_region"`
	Nodes          []NodeType `toml:"node"`
}

// NodeType is a kind of block and the resources it uses.
type NodeType struct {
	Name      string   `toml:"name"`
	Weight    int      `toml:"weight"`
	Resources []string `toml:"resources"`
}

// LoadWorld reads a world file; an empty path gives the built-in world.
// Its problems come as Problems, with lines.
func LoadWorld(path string) (World, error) {
	data, name := defaultWorld, "built-in world.toml"
	if path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return World{}, fmt.Errorf("read world: %w", err)
		}
		data, name = string(b), path
	}
	return decodeWorld(data, name)
}

// Validate checks the world definition, naming the first bad setting.
func (w *World) Validate() error {
	if ps := w.problems(); len(ps) > 0 {
		return fmt.Errorf("world: %s: %s: %w", ps[0].setting, ps[0].msg, ErrInvalid)
	}
	return nil
}

// worldProblem is a bad setting: at the top level (node < 0), or key of
// the node-th [[node]] table.
type worldProblem struct {
	setting, msg string
	node         int
	key          string
}

// problems lists every bad setting of the world definition, so a person
// fixing the file sees them all at once.
func (w *World) problems() []worldProblem {
	var ps []worldProblem
	bad := func(setting, format string, args ...any) {
		ps = append(ps, worldProblem{setting: setting, msg: fmt.Sprintf(format, args...), node: -1, key: setting})
	}
	badNode := func(i int, key, setting, format string, args ...any) {
		ps = append(ps, worldProblem{setting: setting, msg: fmt.Sprintf(format, args...), node: i, key: key})
	}
	if w.RegionSize < 1 || w.RegionSize > 1<<16 {
		bad("region_size", "%d not in 1..65536", w.RegionSize)
	}
	if w.NodesPerRegion < 1 || w.NodesPerRegion > 64 {
		bad("nodes_per_region", "%d not in 1..64", w.NodesPerRegion)
	}
	if len(w.Nodes) == 0 {
		bad("node", "no node types")
	}
	for i, n := range w.Nodes {
		if n.Name == "" {
			badNode(i, "name", fmt.Sprintf("node[%d].name", i), "empty")
		}
		if n.Weight < 1 {
			badNode(i, "weight", fmt.Sprintf("node %q weight", n.Name), "%d must be positive", n.Weight)
		}
		for _, r := range n.Resources {
			if _, err := resources.ParseLoc(r); err != nil {
				badNode(i, "resources", fmt.Sprintf("node %q resources", n.Name), "%v", err)
			}
		}
	}
	return ps
}
