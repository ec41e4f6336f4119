package packets

import (
	"bytes"
	"errors"
	"math"
	"reflect"
	"runtime"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/voxsync/voxsync/resources"
)

// samples returns at least one packet of every type, including edge values.
func samples() []Packet {
	h1 := resources.Sum([]byte("stone"))
	h2 := resources.Sum([]byte("dirt"))
	return []Packet{
		&Hello{Version: Version, Client: uuid.MustParse("6ba7b810-9dad-11d1-80b4-00c04fd430c8"), Capabilities: 0xff, Token: "secret"},
		&Hello{Version: 0xffff},
		&Welcome{Version: Version, Session: uuid.New(), Capabilities: 1 << 63, Limits: Limits{MaxChunk: 65536, MaxPacket: MaxPacketSize, MaxRequestHashes: 512, MaxPending: 65536, PingIntervalMs: 15000}},
		&Bind{Entries: []resources.Binding{
			{Type: resources.TypeTexture, ID: 1, Ref: resources.Ref{Domain: "default", Key: "blocks/stone.png"}, Hash: h1, Size: 1234},
			{Type: resources.TypeFont, ID: math.MaxUint32, Ref: resources.Ref{Domain: "a", Key: strings.Repeat("k", resources.MaxKeyLen)}, Hash: h2, Size: math.MaxUint64},
		}},
		&Bind{Entries: []resources.Binding{}},
		&Lost{Entries: []resources.Key{{Type: resources.TypeTexture, ID: 1}, {Type: resources.TypeSound, ID: 7}}},
		&ResourceRequest{Wants: []Want{{Hash: h1}, {Hash: h2, Priority: 9, HasRange: true, Offset: 10, Length: 20}}},
		&ResourceRequest{Wants: []Want{{Hash: h1, Manifest: true, Priority: PriorityNow}, {Hash: h2, Raise: true, HasRange: true, Offset: 1, Length: 2}, {Hash: h2, Raise: true, Manifest: true}}},
		&ResourceCancel{Hashes: []resources.Hash{h1, h2}},
		&InitResSend{Stream: 3, Hash: h1, Size: 1 << 40, Offset: 0, Length: 1 << 40, AssetType: resources.TypeModel, ID: 4, Ref: resources.Ref{Domain: "default", Key: "m.obj"}, Encoding: EncodingRaw},
		&InitResSend{Stream: 4, Hash: h2, Size: 100, Offset: 10, Length: 20, AssetType: resources.TypeSound, ID: 5, Ref: resources.Ref{Domain: "default", Key: "s.ogg"}},
		&InitResSend{Stream: 5, Hash: h2, Size: 1 << 30, Offset: 1 << 20, Length: 1 << 20, AssetType: resources.TypeModel, ID: 6, Ref: resources.Ref{Domain: "default", Key: "m.json"}, Encoding: EncodingZstd, EncodedLength: 1234},
		&ChunkSend{Stream: 3, Offset: 65536, Last: true, Data: []byte("payload")},
		&ChunkSend{Stream: 1, Offset: 0, Data: []byte{}},
		&ResourceError{Hash: h2, Code: ErrorUnknownHash, Message: "no resource with hash " + h2.Short()},
		&ResourceError{Hash: h2, Code: 200, Message: "a code a later server may add"},
		&Disconnect{Code: DisconnectVersionMismatch, Reason: "server speaks version 1, client version 2: update the client"},
		&Disconnect{Code: 250, Reason: "a code a later server may add"},
		&Move{Seq: 7, X: 1.5, Y: -64, Z: 1e9, Yaw: 90, Pitch: -45},
		&BindsDone{Seq: 0},
		&BindsDone{Seq: math.MaxUint32},
		&Manifest{Hash: h1, Size: 3 << 20, Total: 3, First: 0, Chunks: []ManifestChunk{{Length: 1 << 20, Hash: h1, Chain: h2}, {Length: 1<<20 - 3, Hash: h2, Chain: h1, Carry: []byte{1, 2, 3}}}},
		&Manifest{Hash: h1, Size: 3 << 20, Total: 3, First: 2, Chunks: []ManifestChunk{{Length: 1 << 20, Hash: h2}}},
		&Manifest{Hash: h2, Size: 0, Total: 0, Chunks: []ManifestChunk{}},
		&Mirrors{Help: true, URLs: []string{"http://127.0.0.1:9000/bucket/prefix/", "https://cdn.example/game/"}},
		&Mirrors{URLs: []string{}},
		&Mirrors{URLs: []string{"ftp://not-http/ is decoded, and ignored by the client"}},
		&MirrorReport{Bytes: 1 << 40, Objects: 2500},
	}
}

func TestRoundTrip(t *testing.T) {
	seen := map[Type]bool{}
	for _, p := range samples() {
		b := Encode(p)
		got, err := Decode(b)
		if err != nil {
			t.Fatalf("%s: decode: %v", p.Type(), err)
		}
		if !reflect.DeepEqual(got, p) {
			t.Fatalf("%s: round trip\n got  %+v\n want %+v", p.Type(), got, p)
		}
		if again := Encode(got); !bytes.Equal(again, b) {
			t.Fatalf("%s: re-encoding differs", p.Type())
		}
		seen[p.Type()] = true
	}
	for typ := range typeNames {
		if !seen[typ] {
			t.Errorf("no round-trip sample for %s", typ)
		}
	}
}

func welcomeWith(l Limits) []byte {
	return Encode(&Welcome{Limits: l})
}

func TestDecodeErrors(t *testing.T) {
	hash := resources.Sum([]byte("x"))
	valid := func(p Packet) []byte { return Encode(p) }
	bind := valid(&Bind{Entries: []resources.Binding{{Type: resources.TypeTexture, ID: 1, Ref: resources.Ref{Domain: "d", Key: "k"}, Hash: hash, Size: 1}}})
	withBadRef := func(dom, key string) []byte {
		b := []byte{byte(TypeBind), 1, byte(resources.TypeTexture), 1, 0, 0, 0}
		b = appendStr(b, dom)
		b = appendStr(b, key)
		b = append(b, hash[:]...)
		return appendU64(b, 1)
	}
	tests := []struct {
		name  string
		in    []byte
		want  error
		field string // substring expected in the message
	}{
		{"empty", nil, ErrTruncated, "type"},
		{"unknown type", []byte{0xee, 1, 2}, ErrUnknownType, "0xee"},
		{"type zero", []byte{0}, ErrUnknownType, ""},
		{"oversized", make([]byte, MaxPacketSize+1), ErrTooLarge, ""},
		{"hello truncated", valid(&Hello{Version: 1})[:5], ErrTruncated, "client uuid"},
		{"hello trailing", append(valid(&Hello{Version: 1}), 0), ErrTrailingBytes, ""},
		{"hello token too long", append(appendU64(append(appendU16([]byte{byte(TypeHello)}, 1), make([]byte, 16)...), 0), 0x81, 0x40), ErrTooLarge, "token"},
		{"hello token bad utf8", append(appendU64(append(appendU16([]byte{byte(TypeHello)}, 1), make([]byte, 16)...), 0), 2, 0xff, 0xfe), ErrInvalidValue, "UTF-8"},
		{"welcome zero chunk", welcomeWith(Limits{MaxChunk: 0, MaxPacket: 1 << 16, MaxRequestHashes: 1, MaxPending: 1, PingIntervalMs: 1000}), ErrInvalidValue, "max chunk"},
		{"welcome huge packet", welcomeWith(Limits{MaxChunk: 1, MaxPacket: MaxPacketSize + 1, MaxRequestHashes: 1, MaxPending: 1, PingIntervalMs: 1000}), ErrInvalidValue, "max packet"},
		{"welcome packet too small to use", welcomeWith(Limits{MaxChunk: 1, MaxPacket: 15, MaxRequestHashes: 1, MaxPending: 1, PingIntervalMs: 1000}), ErrInvalidValue, "max packet"},
		{"welcome packet smaller than a chunk", welcomeWith(Limits{MaxChunk: 65536, MaxPacket: 65536, MaxRequestHashes: 1, MaxPending: 1, PingIntervalMs: 1000}), ErrInvalidValue, "header"},
		{"welcome zero pending", welcomeWith(Limits{MaxChunk: 1, MaxPacket: 1 << 16, MaxRequestHashes: 1, MaxPending: 0, PingIntervalMs: 1000}), ErrInvalidValue, "max pending"},
		{"welcome ping too fast", welcomeWith(Limits{MaxChunk: 1, MaxPacket: 1 << 16, MaxRequestHashes: 1, MaxPending: 1, PingIntervalMs: 10}), ErrInvalidValue, "ping interval"},
		{"welcome v1 layout", valid(&Welcome{})[:27], ErrTruncated, ""},
		{"bind count over cap", append([]byte{byte(TypeBind)}, appendUvarint(nil, MaxBindEntries+1)...), ErrTooLarge, "count"},
		{"bind count beyond data", []byte{byte(TypeBind), 0x80, 0x10}, ErrTruncated, "count"},
		{"bind huge varint", []byte{byte(TypeBind), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}, ErrInvalidValue, "overflows"},
		{"bind non-minimal varint", []byte{byte(TypeBind), 0x80, 0x00}, ErrInvalidValue, "shortest"},
		{"bind truncated entry", bind[:len(bind)-1], ErrTruncated, "entry 0 size"},
		{"bind bad type", func() []byte { b := bytes.Clone(bind); b[2] = 7; return b }(), ErrInvalidValue, "entry 0 type"},
		{"bind dotdot key", withBadRef("d", "../x"), ErrInvalidValue, "entry 0 ref"},
		{"bind upper domain", withBadRef("D", "x"), ErrInvalidValue, "entry 0 ref"},
		{"bind empty key", withBadRef("d", ""), ErrInvalidValue, "entry 0 ref"},
		{"bind long domain", withBadRef(strings.Repeat("d", 65), "x"), ErrTooLarge, "entry 0 ref domain"},
		{"lost bad type", []byte{byte(TypeLost), 1, 9, 0, 0, 0, 0}, ErrInvalidValue, "entry 0 type"},
		{"lost count over cap", append([]byte{byte(TypeLost)}, appendUvarint(nil, MaxLostEntries+1)...), ErrTooLarge, "count"},
		{"request too many", append([]byte{byte(TypeResourceRequest)}, appendUvarint(nil, MaxRequestHashes+1)...), ErrTooLarge, "count"},
		{"request reserved flag", append(append([]byte{byte(TypeResourceRequest), 1}, hash[:]...), 0, 8), ErrInvalidValue, "entry 0 flags"},
		{"manifest request with range", append(append([]byte{byte(TypeResourceRequest), 1}, hash[:]...), 0, 3), ErrInvalidValue, "entry 0 flags"},
		{"manifest over chunk cap", append(append([]byte{byte(TypeManifest)}, hash[:]...), 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 4, 0, 0, 0, 0, 0, 0), ErrTooLarge, "total"},
		{"manifest part past total", append(append([]byte{byte(TypeManifest)}, hash[:]...), 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 0), ErrInvalidValue, "count"},
		{"manifest empty chunk", append(append(append(append(append([]byte{byte(TypeManifest)}, hash[:]...), 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0), hash[:]...), hash[:]...), 0), ErrInvalidValue, "entry 0 length"},
		{"manifest carry over a block", append(append(append(append(append([]byte{byte(TypeManifest)}, hash[:]...), 100, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 100, 0, 0, 0), hash[:]...), hash[:]...), append([]byte{64}, make([]byte, 64)...)...), ErrInvalidValue, "entry 0 carry"},
		{"manifest carry cut short", append(append(append(append(append([]byte{byte(TypeManifest)}, hash[:]...), 100, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 100, 0, 0, 0), hash[:]...), hash[:]...), 5, 1, 2), ErrTruncated, "entry 0 carry"},
		{"mirrors count over cap", append([]byte{byte(TypeMirrors), 0}, appendUvarint(nil, MaxMirrors+1)...), ErrTooLarge, "count"},
		{"mirrors reserved flag", []byte{byte(TypeMirrors), 2, 0}, ErrInvalidValue, "flags"},
		{"mirror url too long", appendStr([]byte{byte(TypeMirrors), 0, 1}, strings.Repeat("u", MaxMirrorURLLen+1)), ErrTooLarge, "entry 0 url"},
		{"mirror url bad utf8", []byte{byte(TypeMirrors), 0, 1, 2, 0xff, 0xfe}, ErrInvalidValue, "entry 0 url"},
		{"mirror report truncated", []byte{byte(TypeMirrorReport), 1, 0, 0, 0, 0, 0, 0, 0, 1}, ErrTruncated, "objects"},
		{"zstd stream longer than the cap", Encode(&InitResSend{Hash: hash, Size: 1 << 30, Length: 1 << 30, Encoding: EncodingZstd, EncodedLength: 10, Ref: resources.Ref{Domain: "d", Key: "k"}}), ErrTooLarge, "encoded length"},
		{"zstd stream that grows", Encode(&InitResSend{Hash: hash, Size: 100, Length: 100, Encoding: EncodingZstd, EncodedLength: 101, Ref: resources.Ref{Domain: "d", Key: "k"}}), ErrInvalidValue, "encoded length"},
		{"request range truncated", append(append([]byte{byte(TypeResourceRequest), 1}, hash[:]...), 0, 1, 0), ErrTruncated, "entry 0 offset"},
		{"cancel truncated hash", append([]byte{byte(TypeResourceCancel), 1}, hash[:31]...), ErrTruncated, "count"},
		{"init bad encoding", func() []byte {
			b := valid(&InitResSend{Hash: hash, Ref: resources.Ref{Domain: "d", Key: "k"}})
			b[len(b)-1] = 5
			return b
		}(), ErrInvalidValue, "encoding"},
		{"chunk reserved flag", []byte{byte(TypeChunkSend), 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x80}, ErrInvalidValue, "flags"},
		{"chunk offset overflow", append(appendU64([]byte{byte(TypeChunkSend), 0, 0, 0, 0}, math.MaxUint64), 0, 1), ErrInvalidValue, "overflows"},
		{"chunk too big", append([]byte{byte(TypeChunkSend)}, make([]byte, 13+MaxChunkSize+1)...), ErrTooLarge, "payload"},
		{"chunk truncated header", []byte{byte(TypeChunkSend), 0, 0}, ErrTruncated, "stream"},
		{"error code zero", append(append([]byte{byte(TypeResourceError)}, hash[:]...), 0, 0), ErrInvalidValue, "code"},
		{"init range past size", valid(&InitResSend{Hash: hash, Size: 10, Offset: 5, Length: 6, Ref: resources.Ref{Domain: "d", Key: "k"}}), ErrInvalidValue, "length"},
		{"init range offset past size", valid(&InitResSend{Hash: hash, Size: 10, Offset: 11, Ref: resources.Ref{Domain: "d", Key: "k"}}), ErrInvalidValue, "range"},
		{"binds done truncated", []byte{byte(TypeBindsDone), 1, 0, 0}, ErrTruncated, "need 4"},
		{"binds done trailing", []byte{byte(TypeBindsDone), 1, 0, 0, 0, 0}, ErrTrailingBytes, ""},
		{"disconnect reason long", append([]byte{byte(TypeDisconnect), 0}, appendUvarint(nil, MaxMessageLen+1)...), ErrTooLarge, "reason"},
		{"move nan", valid(&Move{X: math.NaN()}), ErrInvalidValue, "x"},
		{"move inf yaw", valid(&Move{Yaw: float32(math.Inf(1))}), ErrInvalidValue, "yaw"},
		{"move truncated", valid(&Move{})[:24], ErrTruncated, "z"},
		{"move v1 layout", valid(&Move{})[:33], ErrTruncated, "pitch"},
	}
	sentinels := []error{ErrTruncated, ErrTrailingBytes, ErrUnknownType, ErrTooLarge, ErrInvalidValue}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := Decode(tc.in)
			if err == nil {
				t.Fatalf("decoded %+v, want error %v", p, tc.want)
			}
			var perr *Error
			if !errors.As(err, &perr) {
				t.Fatalf("error %T %v is not a *Error", err, err)
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("error %q, want %v", err, tc.want)
			}
			for _, s := range sentinels {
				if s != tc.want && errors.Is(err, s) {
					t.Fatalf("error %q also matches %v", err, s)
				}
			}
			if !strings.Contains(err.Error(), tc.field) {
				t.Fatalf("error %q does not mention %q", err, tc.field)
			}
		})
	}
}

// A count claiming the maximum with no data behind it must be refused before
// the entry slice is allocated.
func TestDecodeDoesNotAllocateFromCount(t *testing.T) {
	in := append([]byte{byte(TypeBind)}, appendUvarint(nil, MaxBindEntries)...)
	const runs = 100
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range runs {
		if _, err := Decode(in); !errors.Is(err, ErrTruncated) {
			t.Fatalf("err = %v", err)
		}
	}
	runtime.ReadMemStats(&after)
	// An error value and its message, a few hundred bytes; a 2048-entry
	// slice of bindings would be over 200 KB a run.
	if perRun := (after.TotalAlloc - before.TotalAlloc) / runs; perRun > 1024 {
		t.Fatalf("%d bytes allocated per decode of a bogus count", perRun)
	}
}

// A Hello's version is readable from its first three bytes whatever
// follows, so a server can answer version mismatch to any later version's
// Hello instead of failing to decode it.
func TestHelloVersionWhateverFollows(t *testing.T) {
	future := append([]byte{byte(TypeHello)}, appendU16(nil, 9)...)
	future = append(future, []byte("fields a later version added")...)
	tests := []struct {
		name string
		in   []byte
		v    uint16
		ok   bool
	}{
		{"current", Encode(&Hello{Version: Version}), Version, true},
		{"future with other fields", future, 9, true},
		{"welcome", Encode(&Welcome{Version: 1}), 1, true},
		{"too short", []byte{byte(TypeHello), 2}, 0, false},
		{"other packet", Encode(&BindsDone{Seq: 5}), 0, false},
	}
	for _, tc := range tests {
		v, ok := HelloVersion(tc.in)
		if v != tc.v || ok != tc.ok {
			t.Errorf("%s: HelloVersion = %d, %v; want %d, %v", tc.name, v, ok, tc.v, tc.ok)
		}
	}
	if _, err := Decode(future); err == nil {
		t.Fatal("a future Hello decoded as a current one")
	}
}

func TestTruncateMessage(t *testing.T) {
	s := strings.Repeat("é", MaxMessageLen) // 2 bytes a rune
	got := TruncateMessage(s)
	if len(got) > MaxMessageLen || !strings.HasPrefix(s, got) || len(got) < MaxMessageLen-1 {
		t.Fatalf("len %d", len(got))
	}
	if _, err := Decode(Encode(&Disconnect{Reason: got})); err != nil {
		t.Fatalf("truncated reason does not decode: %v", err)
	}
	if TruncateMessage("short") != "short" {
		t.Fatal("short message changed")
	}
}

func TestEnumStrings(t *testing.T) {
	if TypeChunkSend.String() != "ChunkSend" || Type(0x77).String() != "packet(0x77)" {
		t.Error("Type.String")
	}
	if ErrorNotBound.String() != "not bound" || ErrorCode(9).String() != "error(9)" {
		t.Error("ErrorCode.String")
	}
	if !ErrorInternal.Known() || ErrorCode(9).Known() || !DisconnectAuthFailed.Known() || DisconnectCode(8).Known() {
		t.Error("Known")
	}
	if !DisconnectAuthFailed.Permanent() || !DisconnectVersionMismatch.Permanent() || DisconnectShutdown.Permanent() || DisconnectCode(99).Permanent() {
		t.Error("Permanent")
	}
	if DisconnectSlowClient.String() != "slow client" || DisconnectCode(99).String() != "disconnect(99)" {
		t.Error("DisconnectCode.String")
	}
}

func BenchmarkDecodeBind(b *testing.B) {
	entries := make([]resources.Binding, 1000)
	for i := range entries {
		entries[i] = resources.Binding{Type: resources.TypeTexture, ID: resources.ResourceID(i), Ref: resources.Ref{Domain: "default", Key: "blocks/stone_" + strings.Repeat("x", i%20) + ".png"}, Hash: resources.Sum([]byte{byte(i)}), Size: uint64(i)}
	}
	buf := Encode(&Bind{Entries: entries})
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Decode(buf); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEncodeChunk(b *testing.B) {
	data := make([]byte, 64<<10)
	buf := make([]byte, 0, len(data)+ChunkHeaderSize)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		buf = Append(buf[:0], &ChunkSend{Stream: 1, Offset: 1 << 20, Data: data})
	}
}
