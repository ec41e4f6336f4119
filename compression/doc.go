// Package compression shrinks wire payloads with zstd: each chunk or small
// resource is compressed once per server and sent compressed only where
// that saves at least 10%, and known-compressed formats (PNG, OGG, JPEG,
// zip, ...) are skipped without trying.
//
// A compressed payload is one zstd frame that records its content size. The
// receiver declares the size it expects (the protocol's chunk length) and
// Decompress holds the frame to it: a frame that claims or produces more is
// ErrTooLarge, one that produces less is ErrCorrupt.
//
// Frames carry no checksum: the receiver checks every payload's SHA-256
// after decompressing it, which also catches a frame damaged into other
// bytes of the right length.
//
// This package must never allocate from a size a frame claims: a frame is
// checked against the caller's declared size, itself at most MaxSize,
// before anything is allocated, and decoding stops within one block of it.
//
// The encoder and decoder are shared by the whole process and safe for
// concurrent use; they are the package's only package-level state, created
// on first use.
package compression
