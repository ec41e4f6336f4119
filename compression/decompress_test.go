package compression

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/voxsync/voxsync/manifest"
	"github.com/voxsync/voxsync/packets"
)

// frameOf returns Compress's frame for src.
func frameOf(src []byte) []byte {
	f, _ := Compress(nil, src)
	return f
}

// encodeWith returns one frame for src from an encoder with opts.
func encodeWith(t testing.TB, src []byte, opts ...zstd.EOption) []byte {
	t.Helper()
	enc, err := zstd.NewWriter(nil, opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer enc.Close()
	return enc.EncodeAll(src, nil)
}

// header decodes frame's header.
func header(t testing.TB, frame []byte) zstd.Header {
	t.Helper()
	var h zstd.Header
	if err := h.Decode(frame); err != nil {
		t.Fatalf("decoding frame header: %v", err)
	}
	return h
}

// withContentSize returns a copy of frame whose Frame_Content_Size field
// says n, in the field's existing width: a frame that lies about its size.
func withContentSize(t testing.TB, frame []byte, n uint64) []byte {
	t.Helper()
	h := header(t, frame)
	width := [4]int{0, 2, 4, 8}[frame[4]>>6]
	if width == 0 && h.SingleSegment {
		width = 1
	}
	out := bytes.Clone(frame)
	f := out[h.HeaderSize-width : h.HeaderSize]
	switch width {
	case 1:
		f[0] = byte(n)
	case 2:
		binary.LittleEndian.PutUint16(f, uint16(n-256))
	case 4:
		binary.LittleEndian.PutUint32(f, uint32(n))
	case 8:
		binary.LittleEndian.PutUint64(f, n)
	default:
		t.Fatal("frame has no content size to rewrite")
	}
	if got := header(t, out).FrameContentSize; got != n {
		t.Fatalf("rewritten content size is %d, want %d (field of %d bytes)", got, n, width)
	}
	return out
}

func randomBytes(n int, seed uint64) []byte {
	b := make([]byte, n)
	rand.NewChaCha8([32]byte{byte(seed)}).Read(b)
	return b
}

func TestDecompressRoundTrip(t *testing.T) {
	json := jsonCorpus()
	tests := []struct {
		name string
		src  []byte
	}{
		{"empty", nil},
		{"one byte", []byte{'x'}},
		{"tiny JSON", []byte(`{"parent":"block/cube_all","textures":{"all":"default:block/stone"}}`)},
		{"small JSON", json[0].data},
		{"large JSON", json[len(json)-1].data},
		{"map chunk 64 KiB", mapBlob()[:mapChunk]},
		{"map chunk MaxSize", mapBlob()[:MaxSize]},
		{"random 4 KiB (raw block)", randomBytes(4<<10, 1)},
		{"random MaxSize", randomBytes(MaxSize, 2)},
		{"zeros MaxSize (RLE)", make([]byte, MaxSize)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			frame := frameOf(tt.src)
			// Spare capacity past prefix+size is filled with a marker that
			// must survive.
			prefix := []byte("prefix")
			dst := make([]byte, len(prefix), len(prefix)+len(tt.src)+64)
			for i := range dst[:cap(dst)] {
				dst[:cap(dst)][i] = 0xAA
			}
			copy(dst, prefix)
			got, err := Decompress(dst, frame, len(tt.src))
			if err != nil {
				t.Fatalf("Decompress: %v", err)
			}
			if !bytes.Equal(got[:len(prefix)], prefix) || !bytes.Equal(got[len(prefix):], tt.src) {
				t.Fatalf("got %d bytes, want prefix + %d bytes of content", len(got), len(tt.src))
			}
			if &got[0] != &dst[0] {
				t.Errorf("Decompress reallocated dst although it had room")
			}
			for i, b := range got[len(got):cap(got)] {
				if b != 0xAA {
					t.Fatalf("byte %d past the content was overwritten", i)
				}
			}
			// And into a nil dst.
			if got, err := Decompress(nil, frame, len(tt.src)); err != nil || !bytes.Equal(got, tt.src) {
				t.Fatalf("Decompress(nil): %d bytes, %v", len(got), err)
			}
		})
	}
}

func TestDecompressRejects(t *testing.T) {
	content := mapBlob()[:100<<10] // one block
	frame := frameOf(content)
	big := mapBlob()[:300<<10] // three blocks
	bigFrame := frameOf(big)

	var stream bytes.Buffer
	w, _ := zstd.NewWriter(&stream, zstd.WithEncoderCRC(false))
	for _, piece := range chunks(big, 64<<10) {
		w.Write(piece)
	}
	w.Close()
	if header(t, stream.Bytes()).HasFCS {
		t.Fatal("test setup: the streamed frame records its size")
	}

	withCRC := encodeWith(t, content, zstd.WithEncoderCRC(true))
	badCRC := bytes.Clone(withCRC)
	badCRC[len(badCRC)-1] ^= 0xff

	skippable := binary.LittleEndian.AppendUint32(nil, 0x184D2A50)
	skippable = binary.LittleEndian.AppendUint32(skippable, 3)
	skippable = append(skippable, "abc"...)

	// A reserved block type (3) in the first block header of a frame
	// of 5 declared bytes.
	reserved := []byte{0x28, 0xb5, 0x2f, 0xfd, 0x20, 5, 3<<1 | 1 | 5<<3, 0, 0, 1, 2, 3, 4, 5}

	tests := []struct {
		name string
		src  []byte
		size int
		want error
	}{
		{"empty input", nil, 0, ErrCorrupt},
		{"garbage", []byte("this is not a zstd frame at all"), 31, ErrCorrupt},
		{"negative size", frame, -1, ErrCorrupt},
		{"size over MaxSize", frameOf(make([]byte, MaxSize+1)), MaxSize + 1, ErrTooLarge},
		{"declares more than size", frame, len(content) - 1, ErrTooLarge},
		{"declares less than size", frame, len(content) + 1, ErrCorrupt},
		{"no content size", stream.Bytes(), len(big), ErrCorrupt},
		{"two concatenated frames", append(bytes.Clone(frame), frame...), len(content), ErrCorrupt},
		{"two frames declared as their sum", append(bytes.Clone(frame), frame...), 2 * len(content), ErrCorrupt},
		{"trailing skippable frame", append(bytes.Clone(frame), skippable...), len(content), ErrCorrupt},
		{"trailing garbage byte", append(bytes.Clone(frame), 0), len(content), ErrCorrupt},
		{"skippable frame alone", skippable, 3, ErrCorrupt},
		{"dictionary frame", encodeWith(t, content, zstd.WithEncoderDictRaw(7, []byte("a dictionary of some length"))), len(content), ErrCorrupt},
		{"bad checksum", badCRC, len(content), ErrCorrupt},
		{"reserved block type", reserved, 5, ErrCorrupt},
		// The frame's header says size, its one block holds twice as much.
		{"lies: content larger than declared", withContentSize(t, frame, uint64(len(content)/2)), len(content) / 2, ErrTooLarge},
		{"lies: content larger than declared, 3 blocks", withContentSize(t, bigFrame, 150<<10), 150 << 10, ErrTooLarge},
		{"lies: content smaller than declared", withContentSize(t, frame, uint64(len(content)+10)), len(content) + 10, ErrCorrupt},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dst := make([]byte, 3, 3+max(tt.size, 0)+64)
			for i := range dst[:cap(dst)] {
				dst[:cap(dst)][i] = 0xAA
			}
			got, err := Decompress(dst, tt.src, tt.size)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Decompress: %v; want an error wrapping %q", err, tt.want)
			}
			if errors.Is(err, ErrTooLarge) == errors.Is(err, ErrCorrupt) {
				t.Errorf("error %q wraps both or neither sentinel", err)
			}
			if len(got) != 3 {
				t.Errorf("len(dst) = %d after an error, want it unchanged (3)", len(got))
			}
			if tt.size >= 0 {
				for i, b := range dst[3+tt.size : cap(dst)] {
					if b != 0xAA {
						t.Fatalf("byte %d past the declared size was overwritten", i)
					}
				}
			}
		})
	}
}

func TestDecompressAcceptsChecksum(t *testing.T) {
	src := mapBlob()[:10000]
	frame := encodeWith(t, src, zstd.WithEncoderCRC(true))
	if !header(t, frame).HasCheckSum {
		t.Fatal("test setup: frame has no checksum")
	}
	got, err := Decompress(nil, frame, len(src))
	if err != nil || !bytes.Equal(got, src) {
		t.Fatalf("Decompress: %d bytes, %v", len(got), err)
	}
}

// TestDecompressTruncated cuts a three-block frame at every length.
func TestDecompressTruncated(t *testing.T) {
	src := mapBlob()[:300<<10]
	frame := frameOf(src)
	for n := range len(frame) {
		if _, err := Decompress(nil, frame[:n], len(src)); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("frame cut to %d of %d bytes: %v; want ErrCorrupt", n, len(frame), err)
		}
	}
}

// Decompression bombs: 1 GiB of content in frames of a few hundred KB.
const (
	bombSize     = 1 << 30
	bombDeclared = 64 << 10
	// bombMaxAlloc bounds what refusing a bomb may allocate: room for the
	// declared size, one block the decoder decodes past it, and the growth
	// of its buffer when that block does not fit.
	bombMaxAlloc = 1 << 20
)

// streamBomb returns one frame of bombSize bytes of pattern repeated, with
// a window of windowSize, encoded as a stream so that the 1 GiB is never in
// memory. Zeros become RLE and compressed blocks; a longer pattern,
// compressed blocks of one long match each.
func streamBomb(pattern []byte, windowSize int) []byte {
	var buf bytes.Buffer
	enc, err := zstd.NewWriter(&buf, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderCRC(false),
		zstd.WithEncoderConcurrency(1), zstd.WithWindowSize(windowSize))
	if err != nil {
		panic(err)
	}
	enc.ResetContentSize(&buf, bombSize)
	piece := bytes.Repeat(pattern, (1<<20)/len(pattern))
	for n := 0; n < bombSize; n += len(piece) {
		if _, err := enc.Write(piece); err != nil {
			panic(err)
		}
	}
	if err := enc.Close(); err != nil {
		panic(err)
	}
	return buf.Bytes()
}

// rleBomb returns a hand-made frame of bombSize bytes in RLE blocks of
// 128 KiB, 4 bytes each, that declares declared bytes.
func rleBomb(declared uint32) []byte {
	f := []byte{0x28, 0xb5, 0x2f, 0xfd, 0xa0} // magic; single segment, 4-byte content size
	f = binary.LittleEndian.AppendUint32(f, declared)
	for i := range bombSize / maxBlockSize {
		bh := uint32(maxBlockSize)<<3 | blockRLE<<1
		if i == bombSize/maxBlockSize-1 {
			bh |= 1
		}
		f = append(f, byte(bh), byte(bh>>8), byte(bh>>16), 0)
	}
	return f
}

var (
	zeroBomb    = sync.OnceValue(func() []byte { return streamBomb([]byte{0}, 1<<20) })
	patternBomb = sync.OnceValue(func() []byte { return streamBomb([]byte("voxel16!"), 1<<20) })
)

// allocated returns the bytes f allocates on the heap.
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

func TestDecompressBomb(t *testing.T) {
	claims := func(bomb func() []byte, declared int) func() []byte {
		return func() []byte { return withContentSize(t, bomb(), uint64(declared)) }
	}
	tests := []struct {
		name      string
		frame     func() []byte
		declared  int
		maxAlloc  uint64
		wantWhere string // where it is caught, for the log
	}{
		{"1 GiB of zeros, declared honestly", zeroBomb, bombDeclared, 4 << 10, "frame header"},
		{"1 GiB of zeros, claims 64 KiB", claims(zeroBomb, bombDeclared), bombDeclared, bombMaxAlloc, "decoder cap"},
		{"1 GiB of a pattern, claims 64 KiB", claims(patternBomb, bombDeclared), bombDeclared, bombMaxAlloc, "decoder cap"},
		// dst is empty: Decompress allocates the declared size, and the
		// decoder's overrun costs about as much again (2.3 MiB measured;
		// more under -race, where sync.Pool drops the decoder's tables).
		{"1 GiB of a pattern, claims MaxSize", claims(patternBomb, MaxSize), MaxSize, 4 * MaxSize, "decoder cap"},
		{"1 GiB of zeros with a 4 MiB window, claims 64 KiB", func() []byte {
			f := withContentSize(t, zeroBomb(), bombDeclared)
			f[5] = (22 - 10) << 3 // Window_Descriptor: 4 MiB
			return f
		}, bombDeclared, 4 << 10, "window over MaxSize"},
		{"1 GiB of RLE blocks, claims 64 KiB", func() []byte { return rleBomb(bombDeclared) }, bombDeclared, 4 << 10, "block headers"},
		{"1 GiB of RLE blocks, declared honestly", func() []byte { return rleBomb(bombSize) }, bombDeclared, 4 << 10, "frame header"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			frame := tt.frame()
			var dst []byte
			if tt.declared == bombDeclared {
				dst = make([]byte, 0, tt.declared) // the caller's buffer, not counted
			}
			for range 4 { // the shared decoder's scratch buffers are made on first use
				Decompress(dst, frame, tt.declared)
			}
			var err error
			start := time.Now()
			const runs = 4
			n := allocated(func() {
				for range runs {
					_, err = Decompress(dst, frame, tt.declared)
				}
			}) / runs
			elapsed := time.Since(start) / runs
			if !errors.Is(err, ErrTooLarge) {
				t.Fatalf("Decompress: %v; want ErrTooLarge", err)
			}
			if n > tt.maxAlloc {
				t.Errorf("refusing the bomb allocated %d bytes, want at most %d", n, tt.maxAlloc)
			}
			if elapsed > time.Second {
				t.Errorf("refusing the bomb took %v", elapsed)
			}
			t.Logf("%d-byte frame declared as %d bytes refused at the %s in %v, %d bytes allocated: %v",
				len(frame), tt.declared, tt.wantWhere, elapsed, n, err)
		})
	}
}

// TestMaxSizeIsTheChunkCap: a payload is at most one chunk, so MaxSize must
// follow the protocol's chunk caps.
func TestMaxSizeIsTheChunkCap(t *testing.T) {
	caps := []struct {
		name string
		v    int
	}{{"packets.MaxChunkSize", packets.MaxChunkSize}, {"manifest.MaxChunkLen", manifest.MaxChunkLen}}
	for _, c := range caps {
		if c.v != MaxSize {
			t.Errorf("MaxSize = %d, %s = %d: want them equal", MaxSize, c.name, c.v)
		}
	}
}
