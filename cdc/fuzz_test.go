package cdc

import (
	"bytes"
	"io"
	"testing"
)

// FuzzChunker cuts random data with random Params through reads of random
// size, and checks that the chunks cover the data exactly, that each is in
// [Min, Max] but the last, which is in [1, Max], and that Cut agrees.
func FuzzChunker(f *testing.F) {
	// Short seeds: the fuzzer minimizes every new input it finds, for a
	// time that grows with the input's length.
	f.Add(make([]byte, 2000), uint16(0), uint8(0), uint16(0), uint16(100))
	f.Add(randomBytes(2500, 9), uint16(37), uint8(0), uint16(999), uint16(4095))
	f.Add(randomBytes(1500, 10), uint16(1), uint8(1), uint16(1), uint16(0))
	f.Fuzz(func(t *testing.T, data []byte, minSeed uint16, avgSeed uint8, maxSeed uint16, readSize uint16) {
		// Avg from 256 B to 2 KiB, so that a few KiB of input has several
		// chunks; Min anywhere in [64, Avg]; Max in [Avg, 4×Avg]. Larger
		// sizes run the same code on longer inputs, which the fuzzer finds
		// slowly and takes long to minimize.
		avg := 256 << (avgSeed % 4)
		p := Params{
			Min: 64 + int(minSeed)%(avg-64+1),
			Avg: avg,
			Max: avg + int(maxSeed)%(3*avg+1),
		}
		if err := p.Validate(); err != nil {
			t.Fatalf("derived invalid %v: %v", p, err)
		}
		c, err := New(&shortReader{r: bytes.NewReader(data), n: int(readSize) + 1}, p)
		if err != nil {
			t.Fatal(err)
		}
		var off int64
		for {
			ch, err := c.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("Next at %d: %v", off, err)
			}
			n := len(ch.Data)
			last := off+int64(n) == int64(len(data))
			switch {
			case ch.Offset != off:
				t.Fatalf("chunk at offset %d, want %d", ch.Offset, off)
			case n == 0 || n > p.Max || n < p.Min && !last:
				t.Fatalf("chunk at %d of %d bytes has length %d, outside [%d, %d] (last: %v)", off, len(data), n, p.Min, p.Max, last)
			case !bytes.Equal(ch.Data, data[off:off+int64(n)]):
				t.Fatalf("chunk at %d does not hold the stream's bytes", off)
			}
			if want := Cut(data[off:], p); n != want {
				t.Fatalf("chunk at %d: Next cut %d bytes, Cut %d", off, n, want)
			}
			off += int64(n)
		}
		if off != int64(len(data)) {
			t.Fatalf("chunks cover %d bytes of %d", off, len(data))
		}
	})
}
