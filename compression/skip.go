package compression

import "bytes"

// skipExts are the extensions of formats whose data is already compressed
// (or entropy-coded) so that zstd would only cost CPU: images, audio,
// video, archives, GPU texture supercompression and compressed fonts.
var skipExts = map[string]struct{}{
	// images
	"png": {}, "apng": {}, "jpg": {}, "jpeg": {}, "webp": {}, "gif": {},
	"avif": {}, "heic": {}, "heif": {}, "jxl": {},
	// audio
	"ogg": {}, "oga": {}, "opus": {}, "mp3": {}, "flac": {}, "m4a": {},
	"aac": {},
	// video
	"mp4": {}, "m4v": {}, "webm": {}, "mkv": {}, "ogv": {},
	// archives and compressed streams
	"zip": {}, "jar": {}, "gz": {}, "tgz": {}, "zst": {}, "xz": {},
	"bz2": {}, "7z": {}, "rar": {}, "lz4": {}, "br": {},
	// GPU textures that are supercompressed
	"ktx2": {}, "basis": {},
	// fonts whose tables are compressed
	"woff": {}, "woff2": {},
}

// maxExtLen is the longest extension in skipExts; longer ones are never
// looked up.
const maxExtLen = 5

// Skip reports whether content named name (a resource key such as
// "blocks/stone.png") is in a known-compressed format not worth trying to
// compress. It decides by the extension after the last dot of the last path
// element, case-insensitively, and allocates nothing.
func Skip(name string) bool {
	dot := -1
	for i := len(name) - 1; i >= 0 && len(name)-i <= maxExtLen+1; i-- {
		if c := name[i]; c == '.' {
			dot = i
			break
		} else if c == '/' || c == ':' {
			return false
		}
	}
	if dot < 0 {
		return false
	}
	ext := name[dot+1:]
	var lower [maxExtLen]byte
	for i := range len(ext) {
		c := ext[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		lower[i] = c
	}
	_, ok := skipExts[string(lower[:len(ext)])]
	return ok
}

// skipMagics are the leading bytes of known-compressed formats, for
// content whose name says nothing (SkipData).
var skipMagics = [][]byte{
	[]byte("\x89PNG\r\n\x1a\n"),            // PNG
	[]byte("\xff\xd8\xff"),                 // JPEG
	[]byte("GIF8"),                         // GIF
	[]byte("OggS"),                         // Ogg (Vorbis, Opus)
	[]byte("fLaC"),                         // FLAC
	[]byte("ID3"),                          // MP3 with an ID3v2 tag
	[]byte("PK\x03\x04"),                   // zip, jar
	[]byte("PK\x05\x06"),                   // empty zip
	[]byte("\x1f\x8b"),                     // gzip
	[]byte("\x28\xb5\x2f\xfd"),             // zstd
	[]byte("\xfd7zXZ\x00"),                 // xz
	[]byte("BZh"),                          // bzip2
	[]byte("7z\xbc\xaf\x27\x1c"),           // 7z
	[]byte("Rar!\x1a\x07"),                 // rar
	[]byte("\x04\x22\x4d\x18"),             // lz4 frame
	[]byte("\xabKTX 20\xbb\r\n\x1a\n"),     // KTX2
	[]byte("\x1a\x45\xdf\xa3"),             // Matroska, WebM
	[]byte("wOFF"),                         // WOFF
	[]byte("wOF2"),                         // WOFF2
	[]byte("\xff\xfb"), []byte("\xff\xfa"), // MPEG-1 layer III frame
	[]byte("\xff\xf3"), []byte("\xff\xf2"), // MPEG-2 layer III frame
	[]byte("\xff\xe3"), []byte("\xff\xe2"), // MPEG-2.5 layer III frame
	[]byte("\xff\xf1"), []byte("\xff\xf9"), // AAC in ADTS
}

// SkipData reports whether data starts like a known-compressed format
// (PNG, JPEG, GIF, Ogg, FLAC, MP3, zip, gzip, zstd, xz, bzip2, 7z, rar,
// lz4, KTX2, WebM, WOFF, WebP, MP4/AVIF/HEIC). Only the first 16 bytes are
// looked at; it allocates nothing.
func SkipData(data []byte) bool {
	for _, m := range skipMagics {
		if bytes.HasPrefix(data, m) {
			return true
		}
	}
	if len(data) >= 12 && string(data[0:4]) == "RIFF" && string(data[8:12]) == "WEBP" {
		return true
	}
	// ISO base media (MP4, M4A, AVIF, HEIC): a box of type "ftyp" first.
	return len(data) >= 8 && string(data[4:8]) == "ftyp"
}
