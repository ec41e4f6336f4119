package compression

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/klauspost/compress/zstd"
)

// MaxSize caps the declared decompressed size Decompress accepts: the
// protocol's chunk cap (packets.MaxChunkSize, manifest.MaxChunkLen), since
// a payload is one chunk or one small resource sent in one chunk.
const MaxSize = 1 << 20

// Sentinels that every Decompress error wraps exactly one of.
var (
	// ErrTooLarge: the frame declares or produces more than the declared
	// size, or the declared size is over MaxSize. A protocol error.
	ErrTooLarge = errors.New("zstd frame larger than declared")
	// ErrCorrupt: the frame is not one well-formed zstd frame of exactly the
	// declared size.
	ErrCorrupt = errors.New("corrupt zstd frame")
)

// decoder is shared by every Decompress call; DecodeAll is safe for
// concurrent use (up to GOMAXPROCS at once, then callers wait their turn).
// Its bounds are defence in depth: Decompress already gives it a buffer of
// exactly the declared size and WithDecodeAllCapLimit makes it stop there.
var decoder = sync.OnceValue(func() *zstd.Decoder {
	dec, err := zstd.NewReader(nil,
		zstd.WithDecoderConcurrency(0),
		zstd.WithDecoderMaxMemory(MaxSize),
		zstd.WithDecoderMaxWindow(MaxSize),
		zstd.WithDecodeAllCapLimit(true),
		zstd.WithDecoderLowmem(true),
	)
	if err != nil {
		panic("compression: creating zstd decoder: " + err.Error()) // only bad options fail
	}
	return dec
})

// Decompress decodes the single zstd frame that is src, appending its
// content to dst. The frame must record its content size and it must be
// exactly size, which must be between 0 and MaxSize; callers pass the
// declared decompressed length, itself checked against protocol caps.
//
// A frame that declares or produces more than size bytes is an error
// wrapping ErrTooLarge; one that produces fewer, is truncated, is followed
// by anything, or is not zstd is an error wrapping ErrCorrupt.
//
// Memory is bounded by size, never by what the frame claims or holds: a
// frame that declares more is refused from its header, one whose raw and
// RLE blocks alone hold more from its block headers, before any decoding.
// Otherwise Decompress grows dst by size and the decoder writes only into
// those size bytes. A frame that lies (declares size but holds more) is
// stopped one block (at most 128 KiB) past size; that block lands in a
// buffer the decoder grows for itself, about size bytes more, which is
// dropped (TestDecompressBomb: 1 GiB claiming MaxSize costs 2.3 MiB). On
// error dst is returned with its length unchanged; the bytes past its
// length, up to size of them, may have been overwritten.
//
// Decompress is safe for concurrent use.
func Decompress(dst, src []byte, size int) ([]byte, error) {
	if size < 0 {
		return dst, fmt.Errorf("decompressing frame: %w: negative declared size %d", ErrCorrupt, size)
	}
	if size > MaxSize {
		return dst, fmt.Errorf("decompressing frame: %w: declared size %d over the %d cap", ErrTooLarge, size, MaxSize)
	}
	if err := checkFrame(src, size); err != nil {
		return dst, fmt.Errorf("decompressing frame: %w", err)
	}
	start := len(dst)
	dst = slices.Grow(dst, size)
	// A three-index slice: the decoder appends into exactly size bytes of
	// dst's array and cannot write past them.
	room := dst[start : start : start+size]
	out, err := decoder().DecodeAll(src, room)
	if err != nil {
		return dst[:start], fmt.Errorf("decompressing frame: %w", decodeError(err))
	}
	if len(out) != size {
		// Unreachable while checkFrame and the decoder agree on the size;
		// kept so that a decoder bug cannot hand back the wrong length.
		return dst[:start], fmt.Errorf("decompressing frame: %w: decoded %d bytes, %d declared", ErrCorrupt, len(out), size)
	}
	dst = dst[:start+size]
	if size > 0 && &out[0] != &dst[start] {
		copy(dst[start:], out) // the decoder chose another buffer after all
	}
	return dst, nil
}

// decodeError wraps an error from the zstd decoder in ErrTooLarge when the
// frame ran past its size and in ErrCorrupt otherwise.
//
// The decoder has sentinels for running past the declared content size or
// the memory limit, but a block that decodes to more than the block size
// allowed (in our single-segment frames, no more than the content size) or
// more than the room left in dst comes back as a plain error whose text is
// the only sign; TestDecompressRejects pins it.
func decodeError(err error) error {
	switch {
	case errors.Is(err, zstd.ErrDecoderSizeExceeded), errors.Is(err, zstd.ErrFrameSizeExceeded),
		errors.Is(err, zstd.ErrWindowSizeExceeded),
		strings.Contains(err.Error(), "bigger than max block size"):
		return fmt.Errorf("%w: %w", ErrTooLarge, err)
	default:
		return fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
}
