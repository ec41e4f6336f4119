package compression

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/klauspost/compress/zstd"
)

// fuzzSeed is one FuzzDecompress input.
type fuzzSeed struct {
	name string
	src  []byte
	size int
}

// fuzzSeeds are frames from Compress and the malformed frames the unit
// tests use, small enough for the fuzzer to mutate quickly.
func fuzzSeeds(t testing.TB) []fuzzSeed {
	json := jsonCorpus()[1].data
	mapPart := mapBlob()[:3000]
	twoBlocks := mapBlob()[:200<<10]
	frame := frameOf(json)
	small := func(n int) []byte { // a small RLE bomb: n blocks of 128 KiB
		f := []byte{0x28, 0xb5, 0x2f, 0xfd, 0xa0}
		f = binary.LittleEndian.AppendUint32(f, 1000)
		for i := range n {
			bh := uint32(maxBlockSize)<<3 | blockRLE<<1
			if i == n-1 {
				bh |= 1
			}
			f = append(f, byte(bh), byte(bh>>8), byte(bh>>16), 'z')
		}
		return f
	}
	return []fuzzSeed{
		{"empty-frame", frameOf(nil), 0},
		{"tiny", frameOf([]byte("x")), 1},
		{"json", frame, len(json)},
		{"map", frameOf(mapPart), len(mapPart)},
		{"two-blocks", frameOf(twoBlocks), len(twoBlocks)},
		{"random-raw-block", frameOf(randomBytes(300, 5)), 300},
		{"zeros-rle", frameOf(make([]byte, 10000)), 10000},
		{"checksum", encodeWith(t, mapPart, zstd.WithEncoderCRC(true)), len(mapPart)},
		{"lies-smaller", withContentSize(t, frameOf(mapPart), 1000), 1000},
		{"lies-larger", withContentSize(t, frameOf(mapPart), 4000), 4000},
		{"truncated", frame[:len(frame)/2], len(json)},
		{"concatenated", append(bytes.Clone(frame), frame...), len(json)},
		{"rle-bomb", small(16), 1000},
		{"garbage", []byte("not zstd"), 8},
		{"size-over-max", frame, MaxSize + 1},
		{"size-negative", frame, -1},
	}
}

// checkDecompress is the property FuzzDecompress checks: Decompress never
// panics; an error wraps exactly one sentinel and leaves dst's length and
// content alone; a success returns exactly size bytes after dst; nothing is
// written past len(dst)+size; and what it returns round-trips through
// Compress.
func checkDecompress(t *testing.T, src []byte, size int) {
	prefix := []byte("pre")
	room := 0
	if size >= 0 && size <= MaxSize {
		room = size
	}
	dst := make([]byte, len(prefix)+room+16)
	for i := range dst {
		dst[i] = 0xAA
	}
	copy(dst, prefix)
	dst = dst[:len(prefix)]
	out, err := Decompress(dst, src, size)
	for i, b := range dst[len(prefix)+room : cap(dst)] {
		if b != 0xAA {
			t.Fatalf("byte %d past the declared size was overwritten", i)
		}
	}
	if err != nil {
		if errors.Is(err, ErrTooLarge) == errors.Is(err, ErrCorrupt) {
			t.Fatalf("error %q wraps both or neither sentinel", err)
		}
		if len(out) != len(prefix) || !bytes.Equal(out, prefix) {
			t.Fatalf("dst changed on error: %q", out)
		}
		return
	}
	if size < 0 || size > MaxSize {
		t.Fatalf("accepted a declared size of %d", size)
	}
	if len(out) != len(prefix)+size || !bytes.Equal(out[:len(prefix)], prefix) {
		t.Fatalf("got %d bytes, want %d after the prefix", len(out)-len(prefix), size)
	}
	content := out[len(prefix):]
	back, err := Decompress(nil, frameOf(content), size)
	if err != nil || !bytes.Equal(back, content) {
		t.Fatalf("decoded content does not round-trip through Compress: %v", err)
	}
}

// FuzzDecompress feeds arbitrary frames and declared sizes to Decompress,
// and the frame bytes themselves through Compress and back.
func FuzzDecompress(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s.src, s.size)
	}
	f.Fuzz(func(t *testing.T, src []byte, size int) {
		checkDecompress(t, src, size)
		if len(src) <= MaxSize {
			frame, _ := Compress(nil, src)
			if got, err := Decompress(nil, frame, len(src)); err != nil || !bytes.Equal(got, src) {
				t.Fatalf("Compress output does not decompress to its input: %v", err)
			}
		}
	})
}

// TestWriteFuzzSeeds regenerates testdata/fuzz/FuzzDecompress from
// fuzzSeeds when UPDATE_FUZZ_SEEDS=1; otherwise it checks that the seeds
// are there and each passes the property.
func TestWriteFuzzSeeds(t *testing.T) {
	dir := filepath.Join("testdata", "fuzz", "FuzzDecompress")
	if os.Getenv("UPDATE_FUZZ_SEEDS") == "1" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for _, s := range fuzzSeeds(t) {
			body := fmt.Appendf(nil, "go test fuzz v1\n[]byte(%q)\nint(%d)\n", s.src, s.size)
			if err := os.WriteFile(filepath.Join(dir, "seed-"+s.name), body, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	ents, err := os.ReadDir(dir)
	if err != nil || len(ents) < len(fuzzSeeds(t)) {
		t.Errorf("want at least %d seeds in %s (run with UPDATE_FUZZ_SEEDS=1): %d, %v", len(fuzzSeeds(t)), dir, len(ents), err)
	}
}
