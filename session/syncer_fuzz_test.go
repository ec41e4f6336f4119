package session

import (
	"bytes"
	"context"
	"encoding/binary"
	"iter"
	"os"
	"path/filepath"
	"testing"

	"github.com/voxsync/voxsync/assetsmgr"
	"github.com/voxsync/voxsync/compression"
	"github.com/voxsync/voxsync/packets"
	"github.com/voxsync/voxsync/resources"
)

// FuzzSyncerHandle feeds a Syncer sequences of packets a hostile server
// could send — each well-formed alone, arbitrary together: streams for
// hashes never bound, sizes that lie, chunks out of order, Lost mid-stream.
// The Syncer must not panic, its counts must stay consistent, and nothing
// that does not match its hash may reach the cache.
//
// The input is a series of u16-length-prefixed packet encodings; pieces
// that do not decode are skipped (the decoders have their own targets).
// packetSeq encodes packets as a fuzz input: each behind its u16 length.
func packetSeq(ps ...packets.Packet) []byte {
	var out []byte
	for _, p := range ps {
		e := packets.Encode(p)
		out = binary.LittleEndian.AppendUint16(out, uint16(len(e)))
		out = append(out, e...)
	}
	return out
}

// packetsOf is packetSeq's inverse: the packets of a fuzz input in order,
// each with its decoding error, until the input runs out or a length
// overruns it.
func packetsOf(in []byte) iter.Seq2[packets.Packet, error] {
	return func(yield func(packets.Packet, error) bool) {
		for len(in) >= 2 {
			n := int(binary.LittleEndian.Uint16(in))
			in = in[2:]
			if n > len(in) {
				return
			}
			p, err := packets.Decode(in[:n])
			in = in[n:]
			if !yield(p, err) {
				return
			}
		}
	}
}

func FuzzSyncerHandle(f *testing.F) {
	data := []byte("a texture")
	b := resources.Binding{Type: resources.TypeTexture, ID: 1, Ref: resources.Ref{Domain: "d", Key: "k.png"}, Hash: resources.Sum(data), Size: uint64(len(data))}
	seq := packetSeq
	init := &packets.InitResSend{Stream: 1, Hash: b.Hash, Size: b.Size, Length: b.Size, AssetType: b.Type, ID: b.ID, Ref: b.Ref}
	other := resources.Binding{Type: b.Type, ID: b.ID, Ref: resources.Ref{Domain: "d", Key: "other.png"}, Hash: resources.Sum([]byte("other")), Size: 5}
	f.Add(seq(&packets.Bind{Entries: []resources.Binding{b}}, init, &packets.ChunkSend{Stream: 1, Last: true, Data: data}))
	f.Add(seq(&packets.Bind{Entries: []resources.Binding{b}}, init, &packets.ChunkSend{Stream: 1, Data: data[:3]}, &packets.Lost{Entries: []resources.Key{b.Key()}}, &packets.ChunkSend{Stream: 1, Offset: 3, Last: true, Data: data[3:]}))
	f.Add(seq(init, &packets.ChunkSend{Stream: 2, Offset: 1 << 62, Data: data}, &packets.ResourceError{Hash: b.Hash, Code: packets.ErrorUnknownHash}))
	f.Add(seq(&packets.Bind{Entries: []resources.Binding{b, b}}, init, init, &packets.ChunkSend{Stream: 1, Last: true, Data: []byte("other 123")}))
	f.Add(seq(&packets.Bind{Entries: []resources.Binding{b}}, &packets.BindsDone{Seq: 0}, &packets.Bind{Entries: []resources.Binding{other}}, &packets.BindsDone{Seq: 7}))
	f.Add(seq(&packets.Bind{Entries: []resources.Binding{b, {Type: b.Type, ID: 2, Ref: b.Ref, Hash: b.Hash, Size: b.Size + 1}}}, &packets.BindsDone{}))
	// Chunked (the fuzz Syncer fetches anything over 4 bytes by chunks)
	// and compressed streams.
	mf, _ := manifestPacket(b, data, 4, uint32(len(data)-4))
	f.Add(seq(&packets.Bind{Entries: []resources.Binding{b}}, mf,
		&packets.InitResSend{Stream: 1, Hash: b.Hash, Size: b.Size, Offset: 4, Length: b.Size - 4, Ref: b.Ref},
		&packets.ChunkSend{Stream: 1, Offset: 4, Last: true, Data: data[4:]},
		&packets.InitResSend{Stream: 2, Hash: b.Hash, Size: b.Size, Offset: 0, Length: 4, Ref: b.Ref},
		&packets.ChunkSend{Stream: 2, Offset: 0, Last: true, Data: []byte("lies")}))
	f.Add(seq(&packets.Bind{Entries: []resources.Binding{b}}, &packets.Manifest{Hash: b.Hash, Size: b.Size, Total: 3, Chunks: mf.Chunks[:1]},
		&packets.Manifest{Hash: b.Hash, Size: b.Size, Total: 3, First: 1, Chunks: mf.Chunks[1:]}, &packets.Lost{Entries: []resources.Key{b.Key()}}))
	z, _ := compression.Compress(nil, bytes.Repeat([]byte("zstd "), 100))
	zb := resources.Binding{Type: resources.TypeModel, ID: 3, Ref: resources.Ref{Domain: "d", Key: "m.json"}, Hash: resources.Sum(bytes.Repeat([]byte("zstd "), 100)), Size: 500}
	zmf, _ := manifestPacket(zb, bytes.Repeat([]byte("zstd "), 100), 500)
	f.Add(seq(&packets.Bind{Entries: []resources.Binding{zb}}, zmf,
		&packets.InitResSend{Stream: 1, Hash: zb.Hash, Size: 500, Length: 500, Ref: zb.Ref, Encoding: packets.EncodingZstd, EncodedLength: uint64(len(z))},
		&packets.ChunkSend{Stream: 1, Last: true, Data: z}))

	cacheDir := f.TempDir()
	cache, err := assetsmgr.Open(context.Background(), assetsmgr.Options{Dir: cacheDir})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { cache.Close() })

	f.Fuzz(func(t *testing.T, in []byte) {
		s := NewSyncer(SyncOptions{URL: "ws://unused", Cache: cache, MaxRetries: 2, ChunkedMin: 4})
		s.caps = packets.CapChunked | packets.CapZstd
		ctx, cancel := context.WithCancel(context.Background())
		out := &outbox{ch: make(chan packets.Packet, 64), done: ctx.Done(), lookups: make(chan struct{}, 2)}
		s.limits = packets.Limits{MaxChunk: 1 << 20, MaxPacket: packets.MaxPacketSize, MaxRequestHashes: 16}
		go func() { // the writer: take what the Syncer sends
			for {
				select {
				case <-out.ch:
				case <-ctx.Done():
					return
				}
			}
		}()
		for p, err := range packetsOf(in) {
			if err != nil {
				continue
			}
			if err := s.handle(ctx, out, p); err != nil {
				break // the session would end here (Disconnect, protocol error)
			}
		}
		cancel()
		out.wg.Wait()
		cache.Flush(context.Background())
		st := s.Stats()
		if st.Loaded+st.Failed > st.Bound || st.FromNetwork > st.Loaded {
			t.Fatalf("inconsistent stats %+v", st)
		}
		// Whatever reached the cache's blob files matches its name.
		blobs, _ := filepath.Glob(filepath.Join(cacheDir, "blobs", "*", "*"))
		for _, p := range blobs {
			if b, err := os.ReadFile(p); err == nil && filepath.Base(p)[0] != '.' && resources.Sum(b).String() != filepath.Base(p) {
				t.Fatalf("blob %s does not match its hash", filepath.Base(p))
			}
		}
	})
}
