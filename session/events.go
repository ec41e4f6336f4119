package session

import (
	"github.com/voxsync/voxsync/assetsmgr"
	"github.com/voxsync/voxsync/mirror"
	"github.com/voxsync/voxsync/resources"
)

// Event is something a game client reacts to. The set is closed: Bound,
// Loaded, Lost, BindsDone, Progress and Failed.
type Event interface{ event() }

// Bound: the server bound (type, id) to a hash. The resource is not
// necessarily available yet; Loaded follows.
type Bound struct{ Binding resources.Binding }

// Loaded: the bound hash is verified and available from the cache (read it
// with Syncer.Open). Replaces is the hash this key had loaded before, when a
// resource was changed on the server (hot reload): a game swaps the texture
// in place. It is zero for a first load.
type Loaded struct {
	Binding  resources.Binding
	Source   assetsmgr.Source
	Replaces resources.Hash
}

// Lost: the server no longer uses (type, id) for this client.
type Lost struct{ Binding resources.Binding }

// BindsDone: the server has sent every Bind and Lost for the join (Seq 0)
// or for the Move with this Seq (as returned by Syncer.Move). Complete
// says it answers the latest Move: the set of bound resources for where
// the player is now is known, so a loading screen can show a total and
// wait for the Loaded events. After a reconnect, the first Complete marker
// also follows the Lost events of resources the server no longer has.
type BindsDone struct {
	Seq      uint32
	Complete bool
	Bound    int // resources bound at this moment
}

// Progress is sent about ten times a second while anything changes.
type Progress struct{ Stats Stats }

// Failed: the hash could not be loaded after retries.
type Failed struct {
	Binding resources.Binding
	Err     error
}

func (Bound) event()     {}
func (Loaded) event()    {}
func (Lost) event()      {}
func (BindsDone) event() {}
func (Progress) event()  {}
func (Failed) event()    {}

// Stats summarise a Syncer. Counts are of bindings (type, id), not hashes.
type Stats struct {
	Bound       int `json:"bound"`
	Loaded      int `json:"loaded"`
	Failed      int `json:"failed"`
	FromPack    int `json:"from_pack"`
	FromInline  int `json:"from_inline"`
	FromBlob    int `json:"from_blob"`
	FromNetwork int `json:"from_network"`
	// BytesReceived is resource bytes obtained from the network (decoded);
	// WireBytes the stream payload bytes as they crossed it (compressed
	// where the server compressed them).
	BytesReceived int64 `json:"bytes_received"`
	WireBytes     int64 `json:"wire_bytes"`
	// FromLocalChunks is bytes of chunked resources copied from chunks the
	// cache already held (an earlier version, another resource);
	// ChunksResumed bytes kept from an earlier run: an interrupted
	// download, or the good chunks of a cached copy found damaged.
	FromLocalChunks int64 `json:"from_local_chunks"`
	ChunksResumed   int64 `json:"resumed_bytes"`
	// BytesFromMirrors and BytesInBand split BytesReceived by source: HTTP
	// mirrors, and the game server. MirrorObjects counts the objects
	// (whole resources and chunks) the mirrors served; Mirrors has each
	// mirror's counts for the current session.
	BytesFromMirrors int64                `json:"bytes_from_mirrors"`
	BytesInBand      int64                `json:"bytes_in_band"`
	MirrorObjects    int                  `json:"mirror_objects"`
	Mirrors          []mirror.SourceStats `json:"mirrors,omitempty"`
	Requested        int                  `json:"requested"`
	Rerequested      int                  `json:"rerequested"`
	StreamErrors     int                  `json:"stream_errors"`
	Sessions         int                  `json:"sessions"`
	// SyncSeconds is the time from Run to the first moment every bound
	// resource was loaded (0 until then).
	SyncSeconds float64 `json:"sync_seconds"`
}
