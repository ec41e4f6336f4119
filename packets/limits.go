package packets

// Version is the protocol version this package speaks. A server refuses a
// Hello with another version with Disconnect{DisconnectVersionMismatch}.
const Version uint16 = 2

// Protocol-wide caps. A peer may announce lower limits in Welcome; these are
// the ceilings a decoder enforces before allocating anything.
const (
	// MaxChunkSize caps ChunkSend payloads.
	MaxChunkSize = 1 << 20
	// MaxPacketSize caps a whole packet (one WebSocket message). The largest
	// packet is a full ChunkSend; a full Bind (MaxBindEntries entries with
	// maximal names) is about 760 KB.
	MaxPacketSize = MaxChunkSize + 1024
	// MaxBindEntries caps entries in one Bind; senders split larger batches.
	MaxBindEntries = 2048
	// MaxLostEntries caps entries in one Lost.
	MaxLostEntries = 8192
	// MaxRequestHashes caps hashes in one ResourceRequest or ResourceCancel.
	MaxRequestHashes = 4096
	// MaxTokenLen caps the auth token in Hello.
	MaxTokenLen = 4096
	// MaxMessageLen caps human-readable text in ResourceError and Disconnect.
	MaxMessageLen = 1024
	// MinMaxPacket is the smallest max packet a Welcome may announce: room
	// for a Hello with a full token, a Disconnect with a full reason, and a
	// ResourceRequest of over 150 hashes.
	MinMaxPacket = 8192
	// MinPingIntervalMs and MaxPingIntervalMs bound Welcome's ping interval.
	MinPingIntervalMs = 100
	MaxPingIntervalMs = 10 * 60 * 1000
	// MaxManifestChunks caps the chunks of one manifest (16 GiB at 64 KiB
	// chunks) and MaxManifestChunkLen one chunk's length.
	MaxManifestChunks   = 1 << 18
	MaxManifestChunkLen = 1 << 20
	// MaxManifestEntries caps the chunks in one Manifest part (26 KiB with
	// the longest carries). A sender also fits a part in its peer's max
	// packet: at least 61 entries fit MinMaxPacket.
	MaxManifestEntries = 200
	// MaxEncodedLength caps the decoded length of an encoded stream, so a
	// receiver can hold a whole frame and its output in memory.
	MaxEncodedLength = MaxManifestChunkLen
	// MaxMirrors caps the URLs of one Mirrors packet and MaxMirrorURLLen
	// each URL, so that a full packet (about 8 KiB) fits MinMaxPacket.
	MaxMirrors      = 16
	MaxMirrorURLLen = 500
)

// MaxWantSize is the largest encoding of one ResourceRequest entry (hash,
// priority, flags, range); a sender fits n entries in 1+10+n×MaxWantSize
// bytes.
const MaxWantSize = 32 + 1 + 1 + 8 + 8

// ManifestEntryMin and ManifestEntryMax bound the encoded size of one
// ManifestChunk (its carry is 0 to 63 bytes), and ManifestHeaderSize is
// that of a Manifest part without its entries (with the longest uvarint
// count).
const (
	ManifestEntryMin   = 4 + 32 + 32 + 1
	ManifestEntryMax   = ManifestEntryMin + MaxCarryLen
	ManifestHeaderSize = 1 + 32 + 8 + 4 + 4 + 2
	// MaxCarryLen caps a chunk's carry: the bytes since SHA-256's last
	// 64-byte block.
	MaxCarryLen = 63
)
