package session

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"net"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/voxsync/voxsync/compression"
	"github.com/voxsync/voxsync/configs"
	"github.com/voxsync/voxsync/manifest"
	"github.com/voxsync/voxsync/packets"
	"github.com/voxsync/voxsync/resources"
)

// waitSynced fails the test unless s syncs within 30 s.
func waitSynced(t *testing.T, s *Syncer) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.WaitSynced(ctx); err != nil {
		t.Fatalf("not synced: %v (%+v)", err, s.Stats())
	}
}

// cutAfter dials TCP connections that are closed once n bytes have been
// read from the first one: a connection lost in the middle of a download.
func cutAfter(n int64) func(ctx context.Context, network, addr string) (net.Conn, error) {
	var first atomic.Bool
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if err != nil || !first.CompareAndSwap(false, true) {
			return c, err
		}
		return &cuttingConn{Conn: c, left: n}, nil
	}
}

type cuttingConn struct {
	net.Conn
	left int64
}

func (c *cuttingConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if c.left -= int64(n); c.left <= 0 {
		c.Conn.Close()
	}
	return n, err
}

func TestChunkedDownloadResumesAfterConnectionLoss(t *testing.T) {
	dir := t.TempDir()
	data := randomBytes(24<<20, 3)
	writePackFile(t, dir, "assets/m/model/world.bin", data)
	ts := startServer(t, serverSetup{dirs: []string{dir}, cfg: func(c *configs.Server) { c.BuiltinPack = false }})
	s, _, cache, _ := startSyncer(t, ts.url, func(o *SyncOptions) { o.NetDialContext = cutAfter(12 << 20) })
	waitSynced(t, s)
	st := s.Stats()
	if st.Sessions != 2 {
		t.Fatalf("%d sessions; the first connection should have been cut at 12 MiB", st.Sessions)
	}
	// What was verified before the cut is kept: at most the chunks cut
	// off mid-stream (16 streams of at most 512 KiB) are fetched twice.
	// (resumed_bytes counts only what an earlier run left: none here.)
	if over := st.WireBytes - int64(len(data)); over > 8<<20 || st.ChunksResumed != 0 {
		t.Fatalf("received %d bytes for %d (%d over), resumed %d: %+v", st.WireBytes, len(data), over, st.ChunksResumed, st)
	}
	got := readBlob(t, s, resources.Sum(data))
	if !bytes.Equal(got, data) {
		t.Fatal("assembled resource differs")
	}
	_ = cache
}

func readBlob(t *testing.T, s *Syncer, h resources.Hash) []byte {
	t.Helper()
	b, err := s.Open(context.Background(), h)
	if err != nil {
		t.Fatal(err)
	}
	data, err := b.ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestChunkedDeltaFetchesOnlyChangedChunks(t *testing.T) {
	dir := t.TempDir()
	v1 := randomBytes(16<<20, 4)
	writePackFile(t, dir, "assets/m/model/world.bin", v1)
	ts := startServer(t, serverSetup{dirs: []string{dir}, cfg: func(c *configs.Server) { c.BuiltinPack = false }, hotReload: true})
	s, rec, _, _ := startSyncer(t, ts.url, nil)
	waitSynced(t, s)
	before := s.Stats()

	// Version 2: 1 MiB overwritten in the middle, 100 KiB inserted near
	// the start.
	v2 := append(append(append([]byte{}, v1[:1<<20]...), randomBytes(100<<10, 5)...), v1[1<<20:]...)
	copy(v2[8<<20:], randomBytes(1<<20, 6))
	writePackFile(t, dir, "assets/m/model/world.bin", v2)
	h2 := resources.Sum(v2)
	deadline := time.Now().Add(20 * time.Second)
	for {
		l := waitEvent[Loaded](t, rec)
		if l.Binding.Hash == h2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("version 2 never loaded")
		}
	}
	after := s.Stats()
	wire := after.WireBytes - before.WireBytes
	local := after.FromLocalChunks - before.FromLocalChunks
	if wire > 4<<20 || local < 12<<20 {
		t.Fatalf("delta moved %d bytes over the wire and copied %d locally; want ≤ 4 MiB and most of 16 MiB local", wire, local)
	}
	if !bytes.Equal(readBlob(t, s, h2), v2) {
		t.Fatal("version 2 assembled wrong")
	}
	t.Logf("delta: %d bytes on the wire, %d copied from version 1", wire, local)
}

// jsonModels returns n small JSON block models.
func jsonModels(n int) map[string][]byte {
	out := make(map[string][]byte, n)
	for i := range n {
		var b bytes.Buffer
		b.WriteString("{\n  \"parent\": \"block/cube_all\",\n  \"textures\": {\n")
		for j := range 6 {
			b.WriteString("    \"side" + string(rune('a'+j)) + "\": \"default:block/stone_" + string(rune('a'+i%26)) + string(rune('a'+j)) + "\",\n")
		}
		fmt.Fprintf(&b, "    \"particle\": \"default:block/stone_%d\"\n  },\n  \"elements\": [{\"from\": [0, 0, 0], \"to\": [16, %d, 16]}]\n}\n", i, i%17)
		out["m"+string(rune('a'+i%26))+string(rune('a'+i/26%26))+".json"] = b.Bytes()
	}
	return out
}

func TestCompressionNegotiatedAndRefused(t *testing.T) {
	dir := t.TempDir()
	var total int64
	for name, data := range jsonModels(200) {
		writePackFile(t, dir, "assets/m/model/"+name, data)
		total += int64(len(data))
	}
	writePackFile(t, dir, "assets/m/texture/noise.png", randomBytes(50_000, 7))
	total += 50_000
	for _, tc := range []struct {
		name         string
		serverOff    bool
		clientOff    bool
		budget       int64 // compression_cache; 0: the default
		wantCompress bool
	}{
		{"both offer zstd", false, false, 0, true},
		{"client refuses", false, true, 0, false},
		{"server refuses", true, false, 0, false},
		// Frames held by streams count against compression_cache too:
		// with room for none, everything goes raw.
		{"no room for a frame", false, false, 16, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts := startServer(t, serverSetup{dirs: []string{dir}, cfg: func(c *configs.Server) {
				c.BuiltinPack = false
				c.Compression = !tc.serverOff
				if tc.budget > 0 {
					c.CompressionCache = tc.budget
				}
			}})
			s, _, _, _ := startSyncer(t, ts.url, func(o *SyncOptions) { o.NoCompression = tc.clientOff })
			waitSynced(t, s)
			st := s.Stats()
			if st.BytesReceived != total {
				t.Fatalf("received %d resource bytes, want %d", st.BytesReceived, total)
			}
			// The PNG is never compressed: at best the JSON shrinks.
			if tc.wantCompress && st.WireBytes*2 > st.BytesReceived-50_000+50_000*2 {
				t.Fatalf("%d bytes on the wire for %d: JSON not compressed 2×", st.WireBytes, st.BytesReceived)
			}
			if !tc.wantCompress && st.WireBytes != st.BytesReceived {
				t.Fatalf("%d bytes on the wire for %d, with compression refused", st.WireBytes, st.BytesReceived)
			}
		})
	}
}

// TestNeededNowOvertakesPrefetch: with one stream slot, a needed-now
// request starts at the server's next turn, before the large prefetch in
// progress ends; a raise does the same for a request already queued.
func TestNeededNowOvertakesPrefetch(t *testing.T) {
	dir := t.TempDir()
	big := randomBytes(32<<20, 8)
	small := randomBytes(1000, 9)
	small2 := randomBytes(1200, 10)
	writePackFile(t, dir, "assets/m/sound/big.ogg", big)
	writePackFile(t, dir, "assets/m/texture/small.png", small)
	writePackFile(t, dir, "assets/m/texture/small2.png", small2)
	ts := startServer(t, serverSetup{dirs: []string{dir}, cfg: func(c *configs.Server) {
		c.BuiltinPack = false
		c.ActiveStreams = 1
	}})
	c, _ := join(t, ts.url)
	c.binds(3)
	hb, hs, hs2 := resources.Sum(big), resources.Sum(small), resources.Sum(small2)
	c.send(&packets.ResourceRequest{Wants: []packets.Want{{Hash: hb, Priority: packets.PriorityPrefetch}, {Hash: hs2, Priority: packets.PriorityPrefetch}}})
	// Wait for the big stream to start, then ask for small as needed now
	// and raise small2, queued behind big.
	bigStream := expectInit(t, c, hb)
	c.send(&packets.ResourceRequest{Wants: []packets.Want{{Hash: hs, Priority: packets.PriorityNow}, {Hash: hs2, Priority: packets.PriorityNow, Raise: true}}})
	done := map[resources.Hash]int{} // completion order
	streams := map[uint32]resources.Hash{bigStream: hb}
	for len(done) < 3 {
		switch p := c.recv().(type) {
		case *packets.InitResSend:
			streams[p.Stream] = p.Hash
		case *packets.ChunkSend:
			if p.Last {
				done[streams[p.Stream]] = len(done)
			}
		}
	}
	if done[hb] != 2 {
		t.Fatalf("completion order big %d, small %d, small2 %d: the prefetch finished before a needed-now request", done[hb], done[hs], done[hs2])
	}
}

func expectInit(t *testing.T, c *rawClient, h resources.Hash) uint32 {
	t.Helper()
	for {
		if p, ok := c.recv().(*packets.InitResSend); ok && p.Hash == h {
			return p.Stream
		}
	}
}

// A client of the earlier chunking (capability bit 0, manifests without
// hash states) is not offered chunking, and gets a large resource whole.
func TestRetiredChunkedBitGetsWholeStreams(t *testing.T) {
	dir := t.TempDir()
	data := randomBytes(3<<20, 12)
	writePackFile(t, dir, "assets/m/model/map.bin", data)
	ts := startServer(t, serverSetup{dirs: []string{dir}, cfg: func(c *configs.Server) { c.BuiltinPack = false }})
	c := dial(t, ts.url)
	const retired = 1 << 0
	c.send(&packets.Hello{Version: packets.Version, Capabilities: retired | packets.CapZstd})
	w, ok := c.recv().(*packets.Welcome)
	if !ok || w.Capabilities != packets.CapZstd {
		t.Fatalf("welcome %+v, want only zstd chosen", w)
	}
	c.binds(1)
	h := resources.Sum(data)
	c.send(&packets.ResourceRequest{Wants: []packets.Want{{Hash: h}}})
	var got []byte
	for {
		switch p := c.recv().(type) {
		case *packets.InitResSend:
			if p.Hash != h || p.Offset != 0 || p.Length != uint64(len(data)) || p.Encoding != packets.EncodingRaw {
				t.Fatalf("stream %+v, want the whole resource raw", p)
			}
		case *packets.ChunkSend:
			got = append(got, p.Data...)
			if p.Last {
				if !bytes.Equal(got, data) {
					t.Fatal("whole stream differs from the resource")
				}
				return
			}
		}
	}
}

// TestManifestRequestOverTheWire checks the server's manifest against the
// resource, and that its chunks can be fetched as ranges.
func TestManifestRequestOverTheWire(t *testing.T) {
	dir := t.TempDir()
	data := randomBytes(3<<20, 11)
	writePackFile(t, dir, "assets/m/model/map.bin", data)
	ts := startServer(t, serverSetup{dirs: []string{dir}, cfg: func(c *configs.Server) { c.BuiltinPack = false }})
	c := dial(t, ts.url)
	c.send(&packets.Hello{Version: packets.Version, Capabilities: packets.CapChunked})
	w, ok := c.recv().(*packets.Welcome)
	if !ok || w.Capabilities != packets.CapChunked {
		t.Fatalf("welcome %+v", w)
	}
	c.binds(1)
	h := resources.Sum(data)
	c.send(&packets.ResourceRequest{Wants: []packets.Want{{Hash: h, Manifest: true}}})
	var chunks []manifest.Chunk
	for {
		p, ok := c.recv().(*packets.Manifest)
		if !ok {
			continue
		}
		if p.Hash != h || p.Size != uint64(len(data)) || int(p.First) != len(chunks) {
			t.Fatalf("manifest part %+v", p)
		}
		for _, ch := range p.Chunks {
			chunks = append(chunks, manifest.Chunk{Length: ch.Length, Hash: ch.Hash, Chain: ch.Chain, Carry: ch.Carry})
		}
		if len(chunks) == int(p.Total) {
			break
		}
	}
	m, err := manifest.New(uint64(len(data)), chunks)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Chunks) < 6 {
		t.Fatalf("3 MiB cut into %d chunks", len(m.Chunks))
	}
	for i, ch := range m.Chunks {
		if sha256.Sum256(data[ch.Offset:ch.End()]) != ch.Hash {
			t.Fatalf("chunk at %d does not match its hash", ch.Offset)
		}
		if err := m.Verify(h, i, data[ch.Offset:ch.End()]); err != nil {
			t.Fatalf("chunk at %d does not verify: %v", ch.Offset, err)
		}
	}
	// Every chunk as a range, all pending at once.
	req := &packets.ResourceRequest{}
	for _, ch := range m.Chunks {
		req.Wants = append(req.Wants, packets.Want{Hash: h, HasRange: true, Offset: ch.Offset, Length: uint64(ch.Length)})
	}
	c.send(req)
	got := make([]byte, len(data))
	streams := map[uint32]*packets.InitResSend{}
	for left := len(m.Chunks); left > 0; {
		switch p := c.recv().(type) {
		case *packets.InitResSend:
			if p.Encoding != packets.EncodingRaw {
				t.Fatalf("an encoded stream without zstd negotiated: %+v", p)
			}
			streams[p.Stream] = p
		case *packets.ChunkSend:
			copy(got[p.Offset:], p.Data)
			if p.Last {
				left--
			}
		}
	}
	if !bytes.Equal(got, data) {
		t.Fatal("chunks fetched as ranges differ from the resource")
	}
	// Without the capability a manifest request is a protocol error.
	c2, _ := join(t, ts.url)
	c2.binds(1)
	c2.send(&packets.ResourceRequest{Wants: []packets.Want{{Hash: h, Manifest: true}}})
	if d := c2.expectDisconnect(); d.Code != packets.DisconnectProtocolError {
		t.Fatalf("disconnect %+v", d)
	}
}

// chunkedFake starts a Syncer that fetches anything over 1,000 bytes by
// chunks from a scripted server, binds data, and returns the connection
// after the client's manifest request.
func chunkedFake(t *testing.T, data []byte) (*fakeConn, *recorder, *Syncer, resources.Binding) {
	t.Helper()
	fs := newFakeServerWith(t, packets.CapChunked|packets.CapZstd)
	s, rec, _, _ := startSyncer(t, fs.url, func(o *SyncOptions) { o.ChunkedMin = 1000 })
	c := fs.accept(t)
	b := binding("big.bin", data)
	c.send(&packets.Bind{Entries: []resources.Binding{b}}, &packets.BindsDone{})
	if w := expect[*packets.ResourceRequest](c).Wants; len(w) != 1 || !w[0].Manifest || w[0].Hash != b.Hash {
		t.Fatalf("first request %+v, want the manifest", w)
	}
	return c, rec, s, b
}

// fixedManifest cuts data into n-byte chunks, as one Manifest packet for
// b (whose hash need not be data's).
func fixedManifest(b resources.Binding, data []byte, n int) (*packets.Manifest, []manifest.Chunk) {
	var lengths []uint32
	for off := 0; off < len(data); off += n {
		lengths = append(lengths, uint32(min(n, len(data)-off)))
	}
	return manifestPacket(b, data, lengths...)
}

// manifestPacket cuts data into chunks of the given lengths, as one
// Manifest packet for b.
func manifestPacket(b resources.Binding, data []byte, lengths ...uint32) (*packets.Manifest, []manifest.Chunk) {
	m, _, err := manifest.Cut(data, lengths)
	if err != nil {
		panic(err)
	}
	p := &packets.Manifest{Hash: b.Hash, Size: b.Size, Total: uint32(len(m.Chunks))}
	for _, c := range m.Chunks {
		p.Chunks = append(p.Chunks, packets.ManifestChunk{Length: c.Length, Hash: c.Hash, Chain: c.Chain, Carry: c.Carry})
	}
	return p, m.Chunks
}

// serveRanges answers range requests from data until the client asks for
// nothing more for a while, corrupting the first answer for each offset in
// bad. It returns how many times each offset was asked for.
func serveRanges(t *testing.T, c *fakeConn, b resources.Binding, data []byte, bad map[uint64]bool) map[uint64]int {
	asked, _ := serveRangesUntilManifest(t, c, b, data, bad)
	return asked
}

// serveRangesUntilManifest is serveRanges that also stops at a manifest
// request, which it returns.
func serveRangesUntilManifest(t *testing.T, c *fakeConn, b resources.Binding, data []byte, bad map[uint64]bool) (map[uint64]int, *packets.Want) {
	t.Helper()
	asked := map[uint64]int{}
	id := uint32(100)
	for {
		var req *packets.ResourceRequest
		select {
		case p, ok := <-c.in:
			if !ok {
				return asked, nil
			}
			var isReq bool
			if req, isReq = p.(*packets.ResourceRequest); !isReq {
				continue
			}
		case <-time.After(time.Second):
			return asked, nil
		}
		for _, w := range req.Wants {
			if w.Manifest {
				return asked, &w
			}
			if !w.HasRange {
				continue
			}
			asked[w.Offset]++
			payload := append([]byte{}, data[w.Offset:w.Offset+w.Length]...)
			if bad[w.Offset] {
				payload[0] ^= 0xff
				delete(bad, w.Offset)
			}
			id++
			c.send(&packets.InitResSend{Stream: id, Hash: b.Hash, Size: b.Size, Offset: w.Offset, Length: w.Length, Ref: b.Ref},
				&packets.ChunkSend{Stream: id, Offset: w.Offset, Last: true, Data: payload})
		}
	}
}

func TestSyncerRefetchesACorruptChunk(t *testing.T) {
	data := randomBytes(40_000, 20)
	c, rec, s, b := chunkedFake(t, data)
	mf, chunks := fixedManifest(b, data, 10_000)
	c.send(mf)
	asked := serveRanges(t, c, b, data, map[uint64]bool{chunks[1].Offset: true})
	if l := waitEvent[Loaded](t, rec); l.Binding.Hash != b.Hash {
		t.Fatal("wrong resource loaded")
	}
	if asked[chunks[1].Offset] != 2 || asked[chunks[0].Offset] != 1 || s.Stats().StreamErrors == 0 {
		t.Fatalf("requests per chunk %v, stats %+v: want the corrupt chunk asked twice and the others once", asked, s.Stats())
	}
}

func TestSyncerRefusesBadManifests(t *testing.T) {
	data := randomBytes(30_000, 21)
	h := resources.Sum(data)
	good, _ := fixedManifest(binding("big.bin", data), data, 10_000)
	short := &packets.Manifest{Hash: h, Size: 30_000, Total: 2, Chunks: good.Chunks[:2]}
	first := good.Chunks[0]
	first.Length = 1
	tooMany := &packets.Manifest{Hash: h, Size: 30_000, Total: 40_000, Chunks: []packets.ManifestChunk{first}}
	first.Length = 29_999
	wrongSize := &packets.Manifest{Hash: h, Size: 29_999, Total: 1, Chunks: []packets.ManifestChunk{first}}
	notFromTheStart := &packets.Manifest{Hash: h, Size: 30_000, Total: 3, Chunks: slices.Clone(good.Chunks)}
	notFromTheStart.Chunks[0].Chain[0] ^= 1
	badCarry := &packets.Manifest{Hash: h, Size: 30_000, Total: 3, Chunks: slices.Clone(good.Chunks)}
	badCarry.Chunks[1].Carry = badCarry.Chunks[1].Carry[1:]
	for _, tc := range []struct {
		name string
		mf   *packets.Manifest
	}{
		{"chunks short of the size", short}, {"more chunks than allowed", tooMany}, {"another size", wrongSize},
		{"first chunk not from SHA-256's initial state", notFromTheStart}, {"a carry of the wrong length", badCarry},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, rec, _, b := chunkedFake(t, data)
			// Each bad manifest is a bad stream: asked again, up to the
			// retry limit (3 in these tests), then the resource fails.
			for try := 0; ; try++ {
				c.send(tc.mf)
				p := waitManifestRequestOrFailure(t, c, rec)
				if p == nil {
					if try != 3 {
						t.Fatalf("failed after %d re-requests, want 3", try)
					}
					return
				}
				if p.Hash != b.Hash {
					t.Fatal("re-requested another hash")
				}
			}
		})
	}
}

// waitManifestRequestOrFailure returns the client's next manifest request,
// or nil once it reports the resource Failed.
func waitManifestRequestOrFailure(t *testing.T, c *fakeConn, rec *recorder) *packets.Want {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case p := <-c.in:
			if r, ok := p.(*packets.ResourceRequest); ok {
				for _, w := range r.Wants {
					if w.Manifest {
						return &w
					}
				}
			}
		case e := <-rec.ch:
			if _, ok := e.(Failed); ok {
				return nil
			}
		case <-deadline:
			t.Fatal("neither a new manifest request nor a failure")
		}
	}
}

// A manifest that describes other bytes than the bound hash, consistent in
// itself, and a server that serves those bytes: the last chunk leads to
// another whole hash and never verifies. It is asked for again up to the
// retry limit, then the resource fails, and nothing is stored.
func TestSyncerCatchesALyingManifest(t *testing.T) {
	data := randomBytes(30_000, 22)
	other := randomBytes(30_000, 23)
	c, rec, s, b := chunkedFake(t, data)
	lie, chunks := fixedManifest(b, other, 10_000)
	c.send(lie)
	asked, w := serveRangesUntilManifest(t, c, b, other, nil)
	if w != nil || asked[chunks[0].Offset] != 1 || asked[chunks[1].Offset] != 1 || asked[chunks[2].Offset] < 2 {
		t.Fatalf("after a lying manifest: %+v (asked %v), want the last chunk asked again and no new manifest", w, asked)
	}
	if f := waitEvent[Failed](t, rec); f.Binding.Hash != b.Hash {
		t.Fatalf("failed %v", f.Binding)
	}
	if hits, _ := s.opts.Cache.Lookup(context.Background(), []resources.Hash{b.Hash}); len(hits) != 0 {
		t.Fatal("a lying manifest's bytes were stored")
	}
}

// A zstd frame that inflates past its stream's declared length is a bad
// chunk: refused without decoding it whole, and asked for again.
func TestSyncerRefusesACompressionBomb(t *testing.T) {
	data := bytes.Repeat([]byte("voxel "), 5_000) // 30,000 bytes
	c, rec, _, b := chunkedFake(t, data)
	mf, chunks := fixedManifest(b, data, 10_000)
	c.send(mf)
	bomb, _ := compressionFrame(bytes.Repeat([]byte("voxel "), 200_000)) // 1.2 MB of output
	first := expect[*packets.ResourceRequest](c)
	w := first.Wants[0]
	c.send(&packets.InitResSend{Stream: 1, Hash: b.Hash, Size: b.Size, Offset: w.Offset, Length: w.Length, Ref: b.Ref, Encoding: packets.EncodingZstd, EncodedLength: uint64(len(bomb))},
		&packets.ChunkSend{Stream: 1, Offset: 0, Last: true, Data: bomb})
	// Answer everything (the first request's other chunks too) properly.
	for _, o := range first.Wants[1:] {
		c.send(&packets.InitResSend{Stream: 2 + uint32(o.Offset), Hash: b.Hash, Size: b.Size, Offset: o.Offset, Length: o.Length, Ref: b.Ref},
			&packets.ChunkSend{Stream: 2 + uint32(o.Offset), Offset: o.Offset, Last: true, Data: data[o.Offset : o.Offset+o.Length]})
	}
	asked := serveRanges(t, c, b, data, nil)
	if asked[w.Offset] != 1 {
		t.Fatalf("the chunk answered with a bomb was asked again %d times, want 1 (%v; chunks %v)", asked[w.Offset], asked, chunks)
	}
	if l := waitEvent[Loaded](t, rec); l.Binding.Hash != b.Hash {
		t.Fatal("wrong resource loaded")
	}
}

func compressionFrame(b []byte) ([]byte, error) {
	z, _ := compression.Compress(nil, b)
	return z, nil
}

// After a Manifest part is refused, the rest of that answer is ignored
// until a part with first = 0 starts a new one: the leftovers of a
// superseded answer do not use up the retries of the next.
func TestSyncerIgnoresTheRestOfARefusedManifest(t *testing.T) {
	data := randomBytes(30_000, 24)
	c, rec, _, b := chunkedFake(t, data)
	mf, _ := fixedManifest(b, data, 10_000)
	part := func(first int) *packets.Manifest {
		return &packets.Manifest{Hash: b.Hash, Size: b.Size, Total: 3, First: uint32(first), Chunks: mf.Chunks[first : first+1]}
	}
	c.send(part(1)) // out of order: refused, the manifest asked again
	if w := waitManifestRequestOrFailure(t, c, rec); w == nil {
		t.Fatal("the resource failed at the first refused part")
	}
	c.send(part(2)) // the rest of the refused answer: ignored
	select {
	case p := <-c.in:
		t.Fatalf("the rest of a refused answer was answered with %s", p.Type())
	case <-time.After(300 * time.Millisecond): // under the 500 ms stall timeout
	}
	c.send(part(0), part(1), part(2))
	asked := serveRanges(t, c, b, data, nil)
	if len(asked) != 3 {
		t.Fatalf("chunks asked for after a good manifest: %v", asked)
	}
	if l := waitEvent[Loaded](t, rec); l.Binding.Hash != b.Hash {
		t.Fatal("wrong resource loaded")
	}
}
