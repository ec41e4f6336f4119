package cdc

import (
	"bytes"
	"crypto/sha256"
	"io"
	"math/rand/v2"
	"sync"
	"testing"
)

// candidates are the Params that the chunk-size table in docs/benchmarks.md compares; Default is the second.
var candidates = []Params{
	{Min: 16 << 10, Avg: 64 << 10, Max: 256 << 10},
	{Min: 32 << 10, Avg: 128 << 10, Max: 512 << 10},
	{Min: 64 << 10, Avg: 256 << 10, Max: 1 << 20},
}

// randomBytes returns n bytes from a ChaCha8 stream seeded with seed, the
// same on every machine and Go version.
func randomBytes(n int, seed uint64) []byte {
	var s [32]byte
	s[0] = byte(seed)
	s[1] = byte(seed >> 8)
	b := make([]byte, n)
	rand.NewChaCha8(s).Read(b)
	return b
}

var benchData = sync.OnceValue(func() []byte { return randomBytes(64<<20, 1) })

// BenchmarkChunker is the speed of Next on 64 MiB of random data, read from
// a bytes.Reader (so it includes copying into the Chunker's buffer, as a
// file would). Data has no influence on the cost per hashed byte; what
// varies is how many bytes below Min each chunk skips.
func BenchmarkChunker(b *testing.B) {
	data := benchData()
	for _, p := range candidates {
		b.Run(p.String(), func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			r := bytes.NewReader(data)
			chunks := 0
			for b.Loop() {
				r.Reset(data)
				c, err := New(r, p)
				if err != nil {
					b.Fatal(err)
				}
				for {
					_, err := c.Next()
					if err == io.EOF {
						break
					}
					if err != nil {
						b.Fatal(err)
					}
					chunks++
				}
			}
			b.ReportMetric(float64(chunks)/float64(b.N), "chunks/op")
		})
	}
}

// BenchmarkSHA256 is the speed of hashing the same data one chunk at a time,
// which the server does alongside cutting: the yardstick for the chunker.
func BenchmarkSHA256(b *testing.B) {
	data := benchData()
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		for off := 0; off < len(data); off += 256 << 10 {
			sha256.Sum256(data[off : off+256<<10])
		}
	}
}
