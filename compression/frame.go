package compression

import (
	"encoding/binary"
	"fmt"

	"github.com/klauspost/compress/zstd"
)

// Layout of one zstd frame (RFC 8878, section 3.1.1), as checkFrame reads
// it without decoding anything:
//
//	Magic_Number          4 bytes  0xFD2FB528, little-endian
//	Frame_Header          2-14 bytes; Frame_Content_Size required here
//	Block...              each a 3-byte little-endian Block_Header:
//	                        bit 0      Last_Block
//	                        bits 1-2   Block_Type: 0 raw, 1 RLE, 2 compressed, 3 reserved
//	                        bits 3-23  Block_Size
//	                      then the block's content: Block_Size bytes (raw,
//	                      compressed) or 1 byte repeated Block_Size times (RLE)
//	[Content_Checksum]    4 bytes when the header's checksum flag is set
const (
	blockHeaderLen = 3
	checksumLen    = 4
	// maxBlockSize caps what one block decodes to and its Block_Size
	// (Block_Maximum_Size, at most 128 KiB).
	maxBlockSize = 128 << 10
)

// Block types (Block_Type).
const (
	blockRaw        = 0
	blockRLE        = 1
	blockCompressed = 2
)

// frameBounds is what checkFrame learns from a frame's block headers.
type frameBounds struct {
	// exact is the output of the raw and RLE blocks, known without decoding.
	exact uint64
	// compressed counts compressed blocks, each of which decodes to between
	// 0 and maxBlockSize bytes.
	compressed uint64
}

// checkFrame reads the header of the zstd frame that must make up all of
// src, checks that it declares exactly size bytes of content, and walks its
// block headers to check that the frame ends exactly where src does (one
// frame, nothing after it, nothing missing) and that its raw and RLE blocks
// alone do not already exceed size. It allocates nothing and decodes
// nothing, so a frame that is a bomb made of RLE blocks, a truncated frame
// or a concatenation is refused before the decoder sees it.
func checkFrame(src []byte, size int) error {
	var h zstd.Header
	if err := h.Decode(src); err != nil {
		return fmt.Errorf("reading frame header: %w: %w", ErrCorrupt, err)
	}
	switch {
	case h.Skippable:
		return fmt.Errorf("reading frame header: %w: a skippable frame carries no content", ErrCorrupt)
	case !h.HasFCS:
		return fmt.Errorf("reading frame header: %w: the frame does not record its content size", ErrCorrupt)
	case h.DictionaryID != 0:
		return fmt.Errorf("reading frame header: %w: the frame needs dictionary %d", ErrCorrupt, h.DictionaryID)
	case h.FrameContentSize > uint64(size):
		return fmt.Errorf("reading frame header: %w: the frame declares %d bytes, %d expected",
			ErrTooLarge, h.FrameContentSize, size)
	case h.FrameContentSize < uint64(size):
		return fmt.Errorf("reading frame header: %w: the frame declares %d bytes, %d expected",
			ErrCorrupt, h.FrameContentSize, size)
	}
	b, err := walkBlocks(src[h.HeaderSize:], h.HasCheckSum)
	if err != nil {
		return err
	}
	if b.exact > uint64(size) {
		return fmt.Errorf("reading block headers: %w: raw and RLE blocks alone hold %d bytes, %d declared",
			ErrTooLarge, b.exact, size)
	}
	if b.exact+b.compressed*maxBlockSize < uint64(size) {
		return fmt.Errorf("reading block headers: %w: the blocks hold at most %d bytes, %d declared",
			ErrCorrupt, b.exact+b.compressed*maxBlockSize, size)
	}
	return nil
}

// walkBlocks walks the blocks that follow a frame header in rest, and the
// checksum after them if the frame has one, and requires that they use up
// rest exactly.
func walkBlocks(rest []byte, checksum bool) (frameBounds, error) {
	var b frameBounds
	for n := 0; ; n++ {
		if len(rest) < blockHeaderLen {
			return b, fmt.Errorf("reading block %d header: %w: the frame is truncated", n, ErrCorrupt)
		}
		bh := uint32(rest[0]) | uint32(rest[1])<<8 | uint32(rest[2])<<16
		rest = rest[blockHeaderLen:]
		last, typ, bsize := bh&1 != 0, (bh>>1)&3, int(bh>>3)
		if bsize > maxBlockSize {
			return b, fmt.Errorf("reading block %d header: %w: block size %d over %d", n, ErrCorrupt, bsize, maxBlockSize)
		}
		stored := bsize
		switch typ {
		case blockRaw:
			b.exact += uint64(bsize)
		case blockRLE:
			b.exact += uint64(bsize)
			stored = 1
		case blockCompressed:
			b.compressed++
		default:
			return b, fmt.Errorf("reading block %d header: %w: reserved block type", n, ErrCorrupt)
		}
		if len(rest) < stored {
			return b, fmt.Errorf("reading block %d: %w: the frame is truncated", n, ErrCorrupt)
		}
		rest = rest[stored:]
		if last {
			break
		}
	}
	if checksum {
		if len(rest) < checksumLen {
			return b, fmt.Errorf("reading frame checksum: %w: the frame is truncated", ErrCorrupt)
		}
		rest = rest[checksumLen:]
	}
	if len(rest) != 0 {
		return b, fmt.Errorf("reading frame end: %w: %d bytes after the frame (%s)",
			ErrCorrupt, len(rest), trailingKind(rest))
	}
	return b, nil
}

// trailingKind names what follows a frame, for the error message.
func trailingKind(rest []byte) string {
	if len(rest) >= 4 {
		switch m := binary.LittleEndian.Uint32(rest); {
		case m == 0xFD2FB528:
			return "another frame"
		case m&0xFFFFFFF0 == 0x184D2A50:
			return "a skippable frame"
		}
	}
	return "garbage"
}
