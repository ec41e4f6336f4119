package compression

import (
	"fmt"
	"testing"

	"github.com/klauspost/compress/zstd"
)

// Benchmarks on the generated corpus (corpus_test.go). Each reports MB/s of
// raw content and, where it compresses, two ratios summed over the corpus
// with one frame per file or chunk:
//
//	ratio  raw bytes / frame bytes
//	wire×  raw bytes / bytes on the wire, where content not worth
//	       compressing (under 10% saved) is sent raw

type benchSet struct {
	name  string
	items [][]byte
}

func benchSets() []benchSet {
	var js [][]byte
	for _, f := range jsonCorpus() {
		js = append(js, f.data)
	}
	return []benchSet{
		{"json", js},
		{"map64k", chunks(mapBlob(), mapChunk)},
		{"map1m", chunks(mapBlob(), mapBigChunk)},
		{"random64k", chunks(randomBlob(), mapChunk)},
	}
}

func (s benchSet) bytes() (n int64) {
	for _, it := range s.items {
		n += int64(len(it))
	}
	return n
}

var levels = []zstd.EncoderLevel{zstd.SpeedFastest, zstd.SpeedDefault, zstd.SpeedBetterCompression, zstd.SpeedBestCompression}

// BenchmarkCompressLevels compares the encoder levels on each set; Level is
// the one Compress uses.
func BenchmarkCompressLevels(b *testing.B) {
	for _, set := range benchSets() {
		for _, level := range levels {
			b.Run(fmt.Sprintf("%s/%s", set.name, level), func(b *testing.B) {
				enc := newEncoder(level)
				defer enc.Close()
				b.SetBytes(set.bytes())
				var buf []byte
				var frames, wire int64
				for b.Loop() {
					frames, wire = 0, 0
					for _, it := range set.items {
						buf = enc.EncodeAll(it, buf[:0])
						frames += int64(len(buf))
						if worthSending(len(it), len(buf)) {
							wire += int64(len(buf))
						} else {
							wire += int64(len(it))
						}
					}
				}
				b.ReportMetric(float64(set.bytes())/float64(frames), "ratio")
				b.ReportMetric(float64(set.bytes())/float64(wire), "wire×")
			})
		}
	}
}

// BenchmarkCompress measures Compress, at Level, on each set.
func BenchmarkCompress(b *testing.B) {
	for _, set := range benchSets() {
		b.Run(set.name, func(b *testing.B) {
			b.SetBytes(set.bytes())
			var buf []byte
			for b.Loop() {
				for _, it := range set.items {
					buf, _ = Compress(buf[:0], it)
				}
			}
		})
	}
}

// BenchmarkDecompress measures Decompress, the client's cost, on frames
// made at Level.
func BenchmarkDecompress(b *testing.B) {
	for _, set := range benchSets() {
		frames := make([][]byte, len(set.items))
		for i, it := range set.items {
			frames[i], _ = Compress(nil, it)
		}
		b.Run(set.name, func(b *testing.B) {
			b.SetBytes(set.bytes())
			buf := make([]byte, 0, MaxSize)
			for b.Loop() {
				for i, f := range frames {
					var err error
					if buf, err = Decompress(buf[:0], f, len(set.items[i])); err != nil {
						b.Fatal(err)
					}
				}
			}
		})
	}
}
