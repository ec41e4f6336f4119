package packets

import (
	"encoding/binary"
	"math"
	"unicode/utf8"

	"github.com/voxsync/voxsync/resources"
)

// Minimum encoded sizes of repeated elements, used to bound counts by the
// bytes actually present before allocating.
const (
	minBindEntry = 1 + 4 + 1 + 1 + 1 + resources.HashSize + 8 // empty strings are rejected later, but a count check needs a floor
	lostEntry    = 1 + 4
	minWant      = resources.HashSize + 1 + 1
)

// HelloVersion returns the version of an encoded Hello (or Welcome) from
// its first three bytes, which every protocol version keeps: type byte,
// then u16 version. A server checks it before decoding the rest, so a
// client of another version always gets DisconnectVersionMismatch, whatever
// later fields its Hello has.
func HelloVersion(b []byte) (uint16, bool) {
	if len(b) < 3 || (Type(b[0]) != TypeHello && Type(b[0]) != TypeWelcome) {
		return 0, false
	}
	return binary.LittleEndian.Uint16(b[1:3]), true
}

// Decode decodes one packet. On failure it returns a *Error. A ChunkSend's
// Data aliases b.
func Decode(b []byte) (Packet, error) {
	if len(b) > MaxPacketSize {
		return nil, errorf(0, "", ErrTooLarge, "packet of %d bytes, limit %d", len(b), MaxPacketSize)
	}
	if len(b) == 0 {
		return nil, errorf(0, "type", ErrTruncated, "empty message")
	}
	d := &decoder{b: b, off: 1, typ: Type(b[0]), entry: -1}
	var p Packet
	switch d.typ {
	case TypeHello:
		p = decodeHello(d)
	case TypeWelcome:
		p = decodeWelcome(d)
	case TypeBind:
		p = decodeBind(d)
	case TypeLost:
		p = decodeLost(d)
	case TypeResourceRequest:
		p = decodeResourceRequest(d)
	case TypeResourceCancel:
		p = decodeResourceCancel(d)
	case TypeInitResSend:
		p = decodeInitResSend(d)
	case TypeChunkSend:
		p = decodeChunkSend(d)
	case TypeResourceError:
		p = decodeResourceError(d)
	case TypeDisconnect:
		p = decodeDisconnect(d)
	case TypeMove:
		p = decodeMove(d)
	case TypeBindsDone:
		p = &BindsDone{Seq: d.u32()}
	case TypeManifest:
		p = decodeManifest(d)
	case TypeMirrors:
		p = decodeMirrors(d)
	case TypeMirrorReport:
		p = decodeMirrorReport(d)
	default:
		return nil, errorf(0, "type", ErrUnknownType, "type byte 0x%02x", b[0])
	}
	if err := d.finish(); err != nil {
		return nil, err
	}
	return p, nil
}

func decodeHello(d *decoder) *Hello {
	p := &Hello{}
	d.field = "version"
	p.Version = d.u16()
	d.field = "client uuid"
	copy(p.Client[:], d.take(16))
	d.field = "capabilities"
	p.Capabilities = d.u64()
	d.field = "token"
	p.Token = d.str(MaxTokenLen)
	return p
}

func decodeWelcome(d *decoder) *Welcome {
	p := &Welcome{}
	d.field = "version"
	p.Version = d.u16()
	d.field = "session uuid"
	copy(p.Session[:], d.take(16))
	d.field = "capabilities"
	p.Capabilities = d.u64()
	d.field = "max chunk"
	p.Limits.MaxChunk = d.limit(1, MaxChunkSize)
	d.field = "max packet"
	p.Limits.MaxPacket = d.limit(MinMaxPacket, MaxPacketSize)
	if d.err == nil && uint64(p.Limits.MaxPacket) < uint64(p.Limits.MaxChunk)+ChunkHeaderSize {
		d.fail(ErrInvalidValue, "%d cannot carry a chunk of max chunk %d plus its %d-byte header", p.Limits.MaxPacket, p.Limits.MaxChunk, ChunkHeaderSize)
	}
	d.field = "max hashes per request"
	p.Limits.MaxRequestHashes = d.limit(1, MaxRequestHashes)
	d.field = "max pending requests"
	p.Limits.MaxPending = d.limit(1, math.MaxUint32)
	d.field = "ping interval"
	p.Limits.PingIntervalMs = d.limit(MinPingIntervalMs, MaxPingIntervalMs)
	return p
}

func (d *decoder) limit(lo, hi uint32) uint32 {
	v := d.u32()
	if d.err == nil && (v < lo || v > hi) {
		d.fail(ErrInvalidValue, "%d not in %d..%d", v, lo, hi)
	}
	return v
}

func decodeBind(d *decoder) *Bind {
	d.field = "count"
	n := d.count(MaxBindEntries, minBindEntry)
	p := &Bind{Entries: make([]resources.Binding, 0, n)}
	for i := 0; i < n && d.err == nil; i++ {
		var e resources.Binding
		d.at(i, "type")
		e.Type = d.assetType()
		d.at(i, "id")
		e.ID = resources.ResourceID(d.u32())
		d.at(i, "ref")
		e.Ref = d.ref()
		d.at(i, "hash")
		e.Hash = d.hash()
		d.at(i, "size")
		e.Size = d.u64()
		p.Entries = append(p.Entries, e)
	}
	return p
}

func decodeLost(d *decoder) *Lost {
	d.field = "count"
	n := d.count(MaxLostEntries, lostEntry)
	p := &Lost{Entries: make([]resources.Key, 0, n)}
	for i := 0; i < n && d.err == nil; i++ {
		var k resources.Key
		d.at(i, "type")
		k.Type = d.assetType()
		d.at(i, "id")
		k.ID = resources.ResourceID(d.u32())
		p.Entries = append(p.Entries, k)
	}
	return p
}

func decodeResourceRequest(d *decoder) *ResourceRequest {
	d.field = "count"
	n := d.count(MaxRequestHashes, minWant)
	p := &ResourceRequest{Wants: make([]Want, 0, n)}
	for i := 0; i < n && d.err == nil; i++ {
		var w Want
		d.at(i, "hash")
		w.Hash = d.hash()
		d.at(i, "priority")
		w.Priority = d.u8()
		d.at(i, "flags")
		flags := d.u8()
		if d.err == nil && flags&^requestFlags != 0 {
			d.fail(ErrInvalidValue, "reserved flag bits 0x%02x set", flags&^requestFlags)
		}
		if d.err == nil && flags&RequestFlagManifest != 0 && flags&RequestFlagRange != 0 {
			d.fail(ErrInvalidValue, "a manifest request has no range")
		}
		w.Manifest = flags&RequestFlagManifest != 0
		w.Raise = flags&RequestFlagRaise != 0
		if flags&RequestFlagRange != 0 {
			w.HasRange = true
			d.at(i, "offset")
			w.Offset = d.u64()
			d.at(i, "length")
			w.Length = d.u64()
		}
		p.Wants = append(p.Wants, w)
	}
	return p
}

func decodeResourceCancel(d *decoder) *ResourceCancel {
	d.field = "count"
	n := d.count(MaxRequestHashes, resources.HashSize)
	p := &ResourceCancel{Hashes: make([]resources.Hash, 0, n)}
	for i := 0; i < n && d.err == nil; i++ {
		d.at(i, "hash")
		p.Hashes = append(p.Hashes, d.hash())
	}
	return p
}

func decodeInitResSend(d *decoder) *InitResSend {
	p := &InitResSend{}
	d.field = "stream"
	p.Stream = d.u32()
	d.field = "hash"
	p.Hash = d.hash()
	d.field = "size"
	p.Size = d.u64()
	d.field = "offset"
	p.Offset = d.u64()
	d.field = "length"
	p.Length = d.u64()
	if d.err == nil && (p.Offset > p.Size || p.Length > p.Size-p.Offset) {
		d.fail(ErrInvalidValue, "range %d+%d outside %d bytes", p.Offset, p.Length, p.Size)
	}
	d.field = "asset type"
	p.AssetType = d.assetType()
	d.field = "id"
	p.ID = resources.ResourceID(d.u32())
	d.field = "ref"
	p.Ref = d.ref()
	d.field = "encoding"
	p.Encoding = Encoding(d.u8())
	if d.err == nil && p.Encoding >= numEncodings {
		d.fail(ErrInvalidValue, "encoding %d unknown", p.Encoding)
	}
	if p.Encoding != EncodingRaw {
		d.field = "encoded length"
		p.EncodedLength = d.u64()
		switch {
		case d.err != nil:
		case p.Length > MaxEncodedLength:
			d.fail(ErrTooLarge, "encoded stream of %d bytes decoded, limit %d", p.Length, MaxEncodedLength)
		case p.EncodedLength > p.Length || p.EncodedLength == 0:
			d.fail(ErrInvalidValue, "encoded length %d for %d bytes", p.EncodedLength, p.Length)
		}
	}
	return p
}

func decodeManifest(d *decoder) *Manifest {
	p := &Manifest{}
	d.field = "hash"
	p.Hash = d.hash()
	d.field = "size"
	p.Size = d.u64()
	d.field = "total"
	p.Total = d.u32()
	if d.err == nil && p.Total > MaxManifestChunks {
		d.fail(ErrTooLarge, "%d chunks, limit %d", p.Total, MaxManifestChunks)
	}
	d.field = "first"
	p.First = d.u32()
	d.field = "count"
	n := d.count(MaxManifestEntries, ManifestEntryMin)
	if d.err == nil && uint64(p.First)+uint64(n) > uint64(p.Total) {
		d.fail(ErrInvalidValue, "chunks %d..%d of %d", p.First, uint64(p.First)+uint64(n), p.Total)
	}
	p.Chunks = make([]ManifestChunk, 0, n)
	for i := 0; i < n && d.err == nil; i++ {
		var c ManifestChunk
		d.at(i, "length")
		c.Length = d.u32()
		if d.err == nil && (c.Length == 0 || c.Length > MaxManifestChunkLen) {
			d.fail(ErrInvalidValue, "chunk length %d not in 1..%d", c.Length, MaxManifestChunkLen)
		}
		d.at(i, "hash")
		c.Hash = d.hash()
		d.at(i, "chain")
		c.Chain = d.hash()
		d.at(i, "carry")
		k := int(d.u8())
		if d.err == nil && k > MaxCarryLen {
			d.fail(ErrInvalidValue, "carry of %d bytes, limit %d", k, MaxCarryLen)
		}
		if s := d.take(k); s != nil && k > 0 {
			c.Carry = append(make([]byte, 0, k), s...) // the packet's buffer is reused
		}
		p.Chunks = append(p.Chunks, c)
	}
	return p
}

func decodeMirrors(d *decoder) *Mirrors {
	p := &Mirrors{}
	d.field = "flags"
	flags := d.u8()
	if d.err == nil && flags&^MirrorsFlagHelp != 0 {
		d.fail(ErrInvalidValue, "reserved flag bits 0x%02x set", flags&^MirrorsFlagHelp)
	}
	p.Help = flags&MirrorsFlagHelp != 0
	d.field = "count"
	n := d.count(MaxMirrors, 1)
	p.URLs = make([]string, 0, n)
	for i := 0; i < n && d.err == nil; i++ {
		d.at(i, "url")
		p.URLs = append(p.URLs, d.str(MaxMirrorURLLen))
	}
	return p
}

func decodeMirrorReport(d *decoder) *MirrorReport {
	p := &MirrorReport{}
	d.field = "bytes"
	p.Bytes = d.u64()
	d.field = "objects"
	p.Objects = d.u32()
	return p
}

func decodeChunkSend(d *decoder) *ChunkSend {
	p := &ChunkSend{}
	d.field = "stream"
	p.Stream = d.u32()
	d.field = "offset"
	p.Offset = d.u64()
	d.field = "flags"
	flags := d.u8()
	if d.err == nil && flags&^ChunkFlagLast != 0 {
		d.fail(ErrInvalidValue, "reserved flag bits 0x%02x set", flags&^ChunkFlagLast)
	}
	p.Last = flags&ChunkFlagLast != 0
	d.field = "payload"
	if d.err == nil && d.remaining() > MaxChunkSize {
		d.fail(ErrTooLarge, "payload of %d bytes, limit %d", d.remaining(), MaxChunkSize)
	}
	p.Data = d.take(d.remaining())
	if d.err == nil && p.Offset+uint64(len(p.Data)) < p.Offset {
		d.fail(ErrInvalidValue, "offset %d + %d bytes overflows", p.Offset, len(p.Data))
	}
	return p
}

func decodeResourceError(d *decoder) *ResourceError {
	p := &ResourceError{}
	d.field = "hash"
	p.Hash = d.hash()
	d.field = "code"
	p.Code = ErrorCode(d.u8())
	if d.err == nil && p.Code == 0 {
		d.fail(ErrInvalidValue, "error code 0 is not a code")
	}
	d.field = "message"
	p.Message = d.str(MaxMessageLen)
	return p
}

func decodeDisconnect(d *decoder) *Disconnect {
	p := &Disconnect{}
	d.field = "code"
	p.Code = DisconnectCode(d.u8())
	d.field = "reason"
	p.Reason = d.str(MaxMessageLen)
	return p
}

func decodeMove(d *decoder) *Move {
	p := &Move{}
	d.field = "seq"
	p.Seq = d.u32()
	d.field = "x"
	p.X = d.f64()
	d.field = "y"
	p.Y = d.f64()
	d.field = "z"
	p.Z = d.f64()
	d.field = "yaw"
	p.Yaw = d.f32()
	d.field = "pitch"
	p.Pitch = d.f32()
	return p
}

// TruncateMessage shortens s to at most MaxMessageLen bytes at a rune
// boundary, so any error text fits a ResourceError or Disconnect.
func TruncateMessage(s string) string {
	if len(s) <= MaxMessageLen {
		return s
	}
	cut := MaxMessageLen
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut]
}
