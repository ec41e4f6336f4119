package cdc

import (
	"bytes"
	"crypto/sha256"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"
)

var measure = flag.Bool("cdc.measure", false, "measure the candidate Params of the chunk-size table in docs/benchmarks.md (about 40 s on 2 cores, 1 GiB of memory)")

// Costs of the sync protocol per chunk, from the chunk-size table in docs/benchmarks.md.
const (
	manifestEntry = 36  // bytes of one chunk in a manifest
	requestHeader = 120 // bytes of headers of one chunk request and its stream
	wireTarget    = 4 << 20
)

// TestMeasureCandidates produces the table of the chunk-size table in docs/benchmarks.md: for each candidate,
// what a client holding v1 of a 256 MiB resource downloads to get v2 (v1
// with 1 MiB overwritten in the middle and 100 KiB inserted at 1 MiB),
// over several seeds; the chunks of a 1 GiB resource; and the speed.
//
//	go test ./cdc -run MeasureCandidates -cdc.measure -v
func TestMeasureCandidates(t *testing.T) {
	if !*measure {
		t.Skip("measures for about 40 s: run with -cdc.measure")
	}
	const (
		size     = 256 << 20
		overLen  = 1 << 20
		insertAt = 1 << 20
		insLen   = 100 << 10
		seeds    = 20
	)
	type result struct {
		newBytes, newChunks, chunks []int
		mbps                        []float64
	}
	results := make([]result, len(candidates))
	for seed := range uint64(seeds) {
		v1 := randomBytes(size, 100+seed)
		v2 := slices.Clone(v1)
		copy(v2[size/2:], randomBytes(overLen, 200+seed))
		v2 = slices.Concat(v2[:insertAt], randomBytes(insLen, 300+seed), v2[insertAt:])
		for i, p := range candidates {
			start := time.Now()
			have := make(map[[32]byte]bool)
			for _, ch := range chunks(t, v1, p) {
				have[sha256.Sum256(ch)] = true
			}
			elapsed := time.Since(start)
			var newBytes, newChunks, n int
			for _, ch := range chunks(t, v2, p) {
				n++
				if !have[sha256.Sum256(ch)] {
					newBytes += len(ch)
					newChunks++
				}
			}
			r := &results[i]
			r.newBytes = append(r.newBytes, newBytes)
			r.newChunks = append(r.newChunks, newChunks)
			r.chunks = append(r.chunks, n)
			// Cutting and hashing together, as the server does.
			r.mbps = append(r.mbps, float64(size)/elapsed.Seconds()/1e6)
		}
	}

	var b strings.Builder
	fmt.Fprintf(&b, "\n| min/avg/max | new chunk bytes, mean (max) | new chunks | manifest of v2 | wire incl. manifest and %d B/request, mean (max) | seeds over %s | chunks per GiB | mean chunk | cut MB/s | cut+SHA-256 MB/s |\n", requestHeader, mib(wireTarget))
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|\n")
	for i, p := range candidates {
		r := results[i]
		perGiB, cutMBps := chunksPerGiB(t, p)
		manifest := manifestEntry * int(mean(r.chunks))
		wire := make([]int, seeds)
		over := 0
		for s := range wire {
			wire[s] = r.newBytes[s] + manifestEntry*r.chunks[s] + requestHeader*r.newChunks[s]
			if wire[s] > wireTarget {
				over++
			}
		}
		fmt.Fprintf(&b, "| %s | %s (%s) | %.1f | %s | %s (%s) | %d of %d | %d | %s | %.0f | %.0f |\n",
			p, mib(mean(r.newBytes)), mib(float64(slices.Max(r.newBytes))), mean(r.newChunks),
			kib(float64(manifest)), mib(mean(wire)), mib(float64(slices.Max(wire))), over, seeds,
			perGiB, kib(float64(1<<30)/float64(perGiB)), cutMBps, mean(r.mbps))
	}
	t.Log(b.String())
}

// chunks cuts data with a Chunker and returns copies of the chunks.
func chunks(t *testing.T, data []byte, p Params) [][]byte {
	c, err := New(bytes.NewReader(data), p)
	if err != nil {
		t.Fatal(err)
	}
	var all [][]byte
	for {
		ch, err := c.Next()
		if err == io.EOF {
			return all
		}
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, data[ch.Offset:ch.Offset+int64(len(ch.Data))])
	}
}

// chunksPerGiB cuts a 1 GiB random stream, 64 MiB generated at a time so as
// not to hold it, and returns its chunks and the cutting speed alone.
func chunksPerGiB(t *testing.T, p Params) (int, float64) {
	r := &randomReader{left: 1 << 30, rng: rand.NewChaCha8([32]byte{42})}
	c, err := New(r, p)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	start := time.Now()
	for {
		if _, err := c.Next(); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		n++
	}
	return n, float64(1<<30) / (time.Since(start) - r.spent).Seconds() / 1e6
}

// randomReader is left bytes of ChaCha8 output, and the time spent making
// them, to take out of the chunker's.
type randomReader struct {
	left  int
	rng   *rand.ChaCha8
	spent time.Duration
}

func (r *randomReader) Read(p []byte) (int, error) {
	if r.left == 0 {
		return 0, io.EOF
	}
	start := time.Now()
	p = p[:min(len(p), r.left)]
	r.rng.Read(p)
	r.left -= len(p)
	r.spent += time.Since(start)
	return len(p), nil
}

func mean[T int | float64](xs []T) float64 {
	var sum T
	for _, x := range xs {
		sum += x
	}
	return float64(sum) / float64(len(xs))
}

func mib(n float64) string { return fmt.Sprintf("%.2f MiB", n/(1<<20)) }
func kib(n float64) string { return fmt.Sprintf("%.0f KiB", n/(1<<10)) }
