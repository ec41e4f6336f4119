package compression

import (
	"sync"

	"github.com/klauspost/compress/zstd"
)

// Level is the zstd level every payload is compressed at. Compression
// happens once per content on the server, so ratio counts for more than
// speed, as long as a 1 GiB resource's chunks still compress in seconds.
// BenchmarkCompressLevels on the generated corpus (2,020 JSON files of
// 2.3 MB, one frame each; a 4 MiB voxel map in 64 KiB chunks), on a
// shared 2-core AMD EPYC, MB/s per core:
//
//	level     JSON ratio  JSON MB/s  map ratio  map MB/s  encoder tables
//	fastest   4.69×       ~170       12.4×      ~450      small
//	default   4.84×       ~160       13.8×      ~620      ~1 MiB
//	better    5.04×       ~110       14.2×      ~300      ~4 MiB
//	best      5.17×       ~35        16.7×      ~60       ~34 MiB
//
// better saves 3-4% over default for about twice the CPU, and compresses
// 1 GiB in about 3-4 s per core; best saves another 2.5% on JSON (17% on
// the map) for 4-5× the CPU of better, 15-20 s per GiB per core, and an
// encoder of ~34 MiB per concurrent call.
const Level = zstd.SpeedBetterCompression

// A payload is worth sending compressed when its frame is at most
// worthNum/worthDen of the raw length: at least 10% smaller.
const (
	worthNum = 9
	worthDen = 10
)

// newEncoder returns an encoder for EncodeAll at level. Frames are single
// segments that record their content size (which Decompress requires) and
// carry no checksum: the receiver verifies every payload's SHA-256 after
// decompressing it, so 4 more bytes per frame would buy nothing. An empty
// input still gets a frame, so that every Compress result decodes.
func newEncoder(level zstd.EncoderLevel) *zstd.Encoder {
	enc, err := zstd.NewWriter(nil,
		zstd.WithEncoderLevel(level),
		zstd.WithEncoderCRC(false),
		zstd.WithSingleSegment(true),
		zstd.WithZeroFrames(true),
		zstd.WithEncoderConcurrency(0), // GOMAXPROCS concurrent EncodeAll calls
	)
	if err != nil {
		panic("compression: creating zstd encoder: " + err.Error()) // only bad options fail
	}
	return enc
}

// encoder is shared by every Compress call; EncodeAll is safe for
// concurrent use.
var encoder = sync.OnceValue(func() *zstd.Encoder { return newEncoder(Level) })

// probe is the fastest level, used to give up on incompressible content
// cheaply: it skips random data at several GB/s where Level runs at a few
// hundred MB/s, and its ratio is within a few percent of Level's, so
// content it cannot shrink by the margin Level could not either.
var probe = sync.OnceValue(func() *zstd.Encoder { return newEncoder(zstd.SpeedFastest) })

// probeMin is the size from which Compress probes first: below it, the
// probe would cost more than it saves.
const probeMin = 16 << 10

// Compress returns the zstd encoding of src appended to dst, one frame that
// records its content size, and whether it is worth sending: at least 10%
// smaller than src and no longer than MaxSize decompressed, which is as
// much as a receiver accepts. It is safe for concurrent use.
func Compress(dst, src []byte) (out []byte, worth bool) {
	if len(src) >= probeMin {
		// Half the margin: content the probe shrinks by less than 5%
		// is not going to shrink by 10% at Level either.
		out = probe().EncodeAll(src, dst)
		if 20*(len(out)-len(dst)) > 19*len(src) {
			return out, false
		}
		dst = out[:len(dst)] // the room the probe grew serves the frame
	}
	out = encoder().EncodeAll(src, dst)
	return out, worthSending(len(src), len(out)-len(dst))
}

// worthSending reports whether a frame of n bytes for raw bytes of content
// saves at least 10% and decodes within MaxSize.
func worthSending(raw, n int) bool {
	return raw <= MaxSize && n*worthDen <= raw*worthNum
}
