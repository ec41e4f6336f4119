package packets

import (
	"fmt"

	"github.com/google/uuid"
	"github.com/voxsync/voxsync/resources"
)

// Type is the first byte of every packet.
type Type uint8

// Packet types. Layouts use the notation of the package comment; "C→S" is
// client to server.
const (
	// TypeHello, C→S, first packet of a session:
	//	u16 version | [16]byte client uuid | u64 capabilities | str token (≤ MaxTokenLen)
	TypeHello Type = 0x01
	// TypeWelcome, S→C, answer to an accepted Hello:
	//	u16 version | [16]byte session uuid | u64 capabilities | u32 max chunk | u32 max packet |
	//	u32 max hashes per request | u32 max pending requests | u32 ping interval ms
	TypeWelcome Type = 0x02
	// TypeBind, S→C: (type, id) is now domain:key with this hash and size.
	//	uvarint n (≤ MaxBindEntries) | n × {u8 type | u32 id | str domain | str key | [32]byte sha256 | u64 size}
	TypeBind Type = 0x03
	// TypeLost, S→C: (type, id) is no longer used by this client.
	//	uvarint n (≤ MaxLostEntries) | n × {u8 type | u32 id}
	TypeLost Type = 0x04
	// TypeResourceRequest, C→S: send me these hashes.
	//	uvarint n (≤ MaxRequestHashes) | n × {[32]byte sha256 | u8 priority | u8 flags | if flags&1: u64 offset | u64 length}
	// flags: 1 range, 2 manifest (needs CapChunked; no range), 4 raise (only
	// change the priority of a pending request).
	TypeResourceRequest Type = 0x05
	// TypeResourceCancel, C→S: stop sending these hashes.
	//	uvarint n (≤ MaxRequestHashes) | n × [32]byte sha256
	TypeResourceCancel Type = 0x06
	// TypeInitResSend, S→C: a stream of one resource starts.
	//	u32 stream | [32]byte sha256 | u64 size | u64 offset | u64 length | u8 type | u32 id |
	//	str domain | str key | u8 encoding | if encoding≠0: u64 encoded length
	TypeInitResSend Type = 0x07
	// TypeChunkSend, S→C: bytes of a stream.
	//	u32 stream | u64 offset | u8 flags | payload (the rest of the message, ≤ MaxChunkSize)
	TypeChunkSend Type = 0x08
	// TypeResourceError, S→C: a requested hash will not be sent.
	//	[32]byte sha256 | u8 code | str message (≤ MaxMessageLen)
	TypeResourceError Type = 0x09
	// TypeDisconnect, either way, last packet before closing:
	//	u8 code | str reason (≤ MaxMessageLen)
	TypeDisconnect Type = 0x0A
	// TypeMove, C→S: the player's position and view in the demo world.
	//	u32 seq | f64 x | f64 y | f64 z | f32 yaw | f32 pitch   (all finite)
	TypeMove Type = 0x0B
	// TypeBindsDone, S→C: every Bind and Lost due for the join (seq 0) or
	// for Move seq has been sent.
	//	u32 seq
	TypeBindsDone Type = 0x0C
	// TypeManifest, S→C (CapChunked): one part of the chunk list of a
	// resource, answering a request with the manifest flag. Parts come in
	// order; the one with first+n = total is the last.
	//	[32]byte sha256 | u64 size | u32 total chunks | u32 first |
	//	uvarint n (≤ MaxManifestEntries) |
	//	n × {u32 length | [32]byte sha256 | [32]byte chain | u8 k (≤ 63) | k × carry byte}
	TypeManifest Type = 0x0D
	// TypeMirrors, S→C (CapMirrors): base URLs of HTTP mirrors serving the
	// published layout; sent once, after Welcome.
	//	u8 flags | uvarint n (≤ MaxMirrors) | n × str url (≤ MaxMirrorURLLen)
	// flags: 1 help (the server serves work slow mirrors have not done).
	TypeMirrors Type = 0x0E
	// TypeMirrorReport, C→S (CapMirrors): what the client fetched from
	// mirrors since its last report, for the server's metrics.
	//	u64 bytes | u32 objects
	TypeMirrorReport Type = 0x0F
)

// Capabilities: optional features, offered in Hello and chosen in Welcome.
const (
	// CapChunked: the client may ask for a resource's manifest and fetch
	// its chunks as ranges; the server answers manifest requests. (Bit 0
	// was chunking with manifests whose chunks carried no hash state;
	// this version neither offers nor chooses it, so that peers of both
	// kinds fall back to whole streams.)
	CapChunked uint64 = 1 << 3
	// CapZstd: the server may send a stream zstd-encoded.
	CapZstd uint64 = 1 << 1
	// CapMirrors: the server may send Mirrors, and the client may fetch
	// content from them and send MirrorReport.
	CapMirrors uint64 = 1 << 2
	// KnownCapabilities are the bits this version defines; a Welcome may
	// choose only bits the Hello offered.
	KnownCapabilities = CapChunked | CapZstd | CapMirrors
)

var typeNames = map[Type]string{
	TypeHello: "Hello", TypeWelcome: "Welcome", TypeBind: "Bind", TypeLost: "Lost",
	TypeResourceRequest: "ResourceRequest", TypeResourceCancel: "ResourceCancel",
	TypeInitResSend: "InitResSend", TypeChunkSend: "ChunkSend",
	TypeResourceError: "ResourceError", TypeDisconnect: "Disconnect", TypeMove: "Move",
	TypeBindsDone: "BindsDone", TypeManifest: "Manifest", TypeMirrors: "Mirrors",
	TypeMirrorReport: "MirrorReport",
}

func (t Type) String() string {
	if n, ok := typeNames[t]; ok {
		return n
	}
	return fmt.Sprintf("packet(0x%02x)", uint8(t))
}

// Packet is one of the message types of this package; the set is closed.
type Packet interface {
	Type() Type
	appendPayload(b []byte) []byte
}

// Append appends the encoding of p to dst.
func Append(dst []byte, p Packet) []byte {
	return p.appendPayload(append(dst, byte(p.Type())))
}

// Encode returns the encoding of p.
func Encode(p Packet) []byte { return Append(nil, p) }

// Hello opens a session.
type Hello struct {
	Version      uint16
	Client       uuid.UUID
	Capabilities uint64 // optional features the client supports: Cap* bits
	Token        string // optional auth token; empty when the server needs none
}

// Welcome accepts a Hello and announces the server's limits, which the
// client must respect in its requests and may use to size buffers.
type Welcome struct {
	Version uint16
	Session uuid.UUID
	// Capabilities are the optional features in use for this session: a
	// subset of Hello's. Neither side uses a feature not in this set.
	Capabilities uint64
	Limits       Limits
}

// Limits are a session's negotiated limits, each at most the protocol cap.
type Limits struct {
	MaxChunk         uint32 // largest ChunkSend payload the server sends
	MaxPacket        uint32 // largest packet either side may send
	MaxRequestHashes uint32 // most hashes in one ResourceRequest or ResourceCancel
	// MaxPending is how many requested hashes may be outstanding at once:
	// requested and neither fully streamed, answered with a ResourceError,
	// nor cancelled. More ends the session with DisconnectLimitExceeded.
	MaxPending uint32
	// PingIntervalMs is how often each side pings; a side that receives no
	// frame at all for two intervals considers the connection dead.
	PingIntervalMs uint32
}

// Bind announces bindings.
type Bind struct{ Entries []resources.Binding }

// Lost withdraws bindings.
type Lost struct{ Entries []resources.Key }

// Request entry flags.
const (
	RequestFlagRange    = 1 << 0 // the entry carries a byte range
	RequestFlagManifest = 1 << 1 // send the hash's manifest, not its bytes
	RequestFlagRaise    = 1 << 2 // only re-prioritise a pending request
	requestFlags        = RequestFlagRange | RequestFlagManifest | RequestFlagRaise
)

// Priorities a client gives its requests; any u8 is valid and higher is
// served first. A server serves every pending request of a higher class
// (now ≥ 128 > normal ≥ 1 > prefetch 0) before any of a lower class, and
// interleaves the streams of one class.
const (
	PriorityPrefetch uint8 = 0   // may be needed later
	PriorityNormal   uint8 = 64  // bound and not yet used by the game
	PriorityNow      uint8 = 192 // the game is waiting for it
)

// Want is one hash of a ResourceRequest.
type Want struct {
	Hash     resources.Hash
	Priority uint8 // higher is sooner; see PriorityNow
	// HasRange limits the stream to [Offset, Offset+Length). Without it the
	// whole resource is sent.
	HasRange bool
	Offset   uint64
	Length   uint64
	// Manifest asks for the hash's manifest (Manifest packets) instead of
	// a stream. Only in sessions with CapChunked; never with a range.
	Manifest bool
	// Raise changes the priority of the pending request with the same
	// hash, range and manifest flag to Priority, without restarting it;
	// it is ignored if no such request is pending and never counts
	// against max pending.
	Raise bool
}

// ResourceRequest asks for resources by hash.
type ResourceRequest struct{ Wants []Want }

// ResourceCancel withdraws requests.
type ResourceCancel struct{ Hashes []resources.Hash }

// Encoding is how a stream's chunk payloads are encoded.
type Encoding uint8

const (
	// EncodingRaw: payloads are the resource's bytes as they are.
	EncodingRaw Encoding = 0
	// EncodingZstd (CapZstd): the stream's bytes are one zstd frame of
	// InitResSend.EncodedLength bytes that decodes to exactly Length bytes.
	// ChunkSend offsets then count bytes of the frame, from 0.
	EncodingZstd Encoding = 1
	numEncodings Encoding = 2
)

func (e Encoding) String() string {
	switch e {
	case EncodingRaw:
		return "raw"
	case EncodingZstd:
		return "zstd"
	}
	return fmt.Sprintf("encoding(%d)", uint8(e))
}

// InitResSend starts a stream. Stream ids are chosen by the server and never
// reused within a session; ChunkSend refers to them.
type InitResSend struct {
	Stream uint32
	Hash   resources.Hash
	Size   uint64 // total size of the resource, not of the range
	// Offset and Length are the bytes this stream carries: the requested
	// range, or 0 and Size for a whole resource. The stream's last chunk
	// ends at Offset+Length.
	Offset    uint64
	Length    uint64
	AssetType resources.Type
	ID        resources.ResourceID
	Ref       resources.Ref
	Encoding  Encoding
	// EncodedLength is the size of the encoded stream when Encoding is not
	// raw; at most Length (an encoding that does not shrink is not used),
	// and Length is then at most MaxEncodedLength.
	EncodedLength uint64
}

// ChunkFlagLast marks the last chunk of a stream.
const ChunkFlagLast = 1 << 0

// ChunkSend carries stream bytes at an absolute offset within the resource
// (within the encoded frame for an encoded stream).
type ChunkSend struct {
	Stream uint32
	Offset uint64
	Last   bool
	// Data aliases the buffer passed to Decode; copy it to keep it past the
	// next read.
	Data []byte
}

// ErrorCode says why a requested hash is not sent.
type ErrorCode uint8

const (
	ErrorUnknownHash  ErrorCode = 1 // the server holds no resource with this hash
	ErrorNotBound     ErrorCode = 2 // the hash exists but was never bound to this client
	ErrorRangeInvalid ErrorCode = 3 // the requested range lies outside the resource
	ErrorTooLarge     ErrorCode = 4 // the resource is larger than the server will send
	ErrorInternal     ErrorCode = 5 // the server failed to read it; retrying may work
	maxErrorCode                = ErrorInternal
	// Codes above maxErrorCode decode: a later server may add reasons, and
	// a receiver treats an unknown one like ErrorInternal.
)

// Known reports whether c is one of the codes this version defines.
func (c ErrorCode) Known() bool { return c >= 1 && c <= maxErrorCode }

var errorCodeNames = [...]string{"", "unknown hash", "not bound", "range invalid", "too large", "internal"}

func (c ErrorCode) String() string {
	if c >= 1 && c <= maxErrorCode {
		return errorCodeNames[c]
	}
	return fmt.Sprintf("error(%d)", uint8(c))
}

// ResourceError answers a request the server will not fulfil, so the client
// never waits for a stream that will not come.
type ResourceError struct {
	Hash    resources.Hash
	Code    ErrorCode
	Message string
}

// DisconnectCode says why a session ends.
type DisconnectCode uint8

const (
	DisconnectNormal          DisconnectCode = 0 // the peer is leaving
	DisconnectShutdown        DisconnectCode = 1 // the server is shutting down
	DisconnectVersionMismatch DisconnectCode = 2 // Hello's version is not supported
	DisconnectProtocolError   DisconnectCode = 3 // a malformed or unexpected packet
	DisconnectSlowClient      DisconnectCode = 4 // the client did not read fast enough
	DisconnectLimitExceeded   DisconnectCode = 5 // a request broke a Welcome limit
	DisconnectInternal        DisconnectCode = 6 // an internal error on the sender
	DisconnectAuthFailed      DisconnectCode = 7 // the token was refused
	maxDisconnectCode                        = DisconnectAuthFailed
	// Codes above maxDisconnectCode decode: a receiver treats an unknown
	// one as a reason to reconnect with backoff, showing the reason text.
)

// Known reports whether c is one of the codes this version defines.
func (c DisconnectCode) Known() bool { return c <= maxDisconnectCode }

// Permanent reports whether a client should stop rather than reconnect:
// retrying cannot help until a person changes something.
func (c DisconnectCode) Permanent() bool {
	return c == DisconnectVersionMismatch || c == DisconnectAuthFailed
}

var disconnectNames = [...]string{"normal", "shutdown", "version mismatch", "protocol error", "slow client", "limit exceeded", "internal", "auth failed"}

func (c DisconnectCode) String() string {
	if c <= maxDisconnectCode {
		return disconnectNames[c]
	}
	return fmt.Sprintf("disconnect(%d)", uint8(c))
}

// Disconnect is the last packet a side sends before closing.
type Disconnect struct {
	Code   DisconnectCode
	Reason string
}

// Move reports the player's position in the demo world. Seq numbers a
// client's Moves from 1 upward; the server answers each with BindsDone{Seq}.
type Move struct {
	Seq        uint32
	X, Y, Z    float64
	Yaw, Pitch float32
}

// BindsDone says that every Bind and Lost due for the join (Seq 0) or for
// the Move with this Seq has been sent, so the client knows the complete
// set of resources for its position. It also completes everything asked
// before: a server may send one BindsDone for several Moves that arrived
// together, naming the last.
type BindsDone struct{ Seq uint32 }

// ManifestChunk is one entry of a Manifest part: a chunk's length, its
// SHA-256, and the whole resource's SHA-256 state where it starts (see
// package manifest).
type ManifestChunk struct {
	Length uint32
	Hash   resources.Hash
	Chain  [32]byte
	Carry  []byte // ≤ MaxCarryLen bytes
}

// Manifest is one part of a resource's chunk list. The chunks of all parts,
// in order, are contiguous from offset 0 and add up to Size.
type Manifest struct {
	Hash   resources.Hash // the resource's SHA-256, as bound
	Size   uint64
	Total  uint32 // chunks in the whole manifest, ≤ MaxManifestChunks
	First  uint32 // index of Chunks[0] in the whole manifest
	Chunks []ManifestChunk
}

// Mirrors lists the base URLs of HTTP mirrors of the server's content
// (see docs/protocol.md, "Mirrors"). The decoder checks only lengths: a
// receiver ignores a URL it cannot use, so a bad entry in a server's
// configuration costs that mirror, never the session.
type Mirrors struct {
	// Help: the server also serves what slow mirrors have not got to;
	// without it a client asks the server only for what the mirrors
	// cannot serve (they lack it, fail, or rest after failures).
	Help bool
	URLs []string
}

// MirrorsFlagHelp is Mirrors.Help on the wire; other flag bits are reserved.
const MirrorsFlagHelp = 1 << 0

// MirrorReport tells the server what the client fetched from mirrors since
// its last report: payload bytes the server did not have to send.
type MirrorReport struct {
	Bytes   uint64
	Objects uint32
}

func (*Hello) Type() Type           { return TypeHello }
func (*Welcome) Type() Type         { return TypeWelcome }
func (*Bind) Type() Type            { return TypeBind }
func (*Lost) Type() Type            { return TypeLost }
func (*ResourceRequest) Type() Type { return TypeResourceRequest }
func (*ResourceCancel) Type() Type  { return TypeResourceCancel }
func (*InitResSend) Type() Type     { return TypeInitResSend }
func (*ChunkSend) Type() Type       { return TypeChunkSend }
func (*ResourceError) Type() Type   { return TypeResourceError }
func (*Disconnect) Type() Type      { return TypeDisconnect }
func (*Move) Type() Type            { return TypeMove }
func (*BindsDone) Type() Type       { return TypeBindsDone }
func (*Manifest) Type() Type        { return TypeManifest }
func (*Mirrors) Type() Type         { return TypeMirrors }
func (*MirrorReport) Type() Type    { return TypeMirrorReport }
