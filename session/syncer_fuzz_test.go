package session

import (
	"context"
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"

	"github.com/voxsync/voxsync/assetsmgr"
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

	cacheDir := f.TempDir()
	cache, err := assetsmgr.Open(context.Background(), assetsmgr.Options{Dir: cacheDir})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { cache.Close() })

	f.Fuzz(func(t *testing.T, in []byte) {
		s := NewSyncer(SyncOptions{URL: "ws://unused", Cache: cache, MaxRetries: 2})
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
		for len(in) >= 2 {
			n := int(binary.LittleEndian.Uint16(in))
			in = in[2:]
			if n > len(in) {
				break
			}
			p, err := packets.Decode(in[:n])
			in = in[n:]
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
