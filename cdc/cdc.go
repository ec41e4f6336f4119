// Package cdc finds content-defined chunk boundaries in a stream with
// FastCDC, so that two versions of a large resource cut into mostly the same
// chunks and a receiver downloads only the chunks it does not have.
//
// The cut points are those of FastCDC 2020 (Xia et al., "The Design of Fast
// Content-Defined Chunking for Data Deduplication Based Storage Systems",
// IEEE TPDS 2020): the gear hash with the published MD5-derived table,
// cut-point skipping below Min, normalized chunking at level 2 with the
// reference masks, and the hash rolled two bytes at a time. They are the
// same as those of nlfiedler/fastcdc-rs and of the Remote Execution API's
// FAST_CDC_2020 for any even Min, and the tests check the published vectors
// of both. Changing
// the table, the masks or the level changes every chunk of every resource and
// so every client's cache: treat them as part of the wire format.
//
// This package only finds boundaries: it never hashes, stores or names
// chunks, and it never allocates per chunk.
package cdc

import (
	"errors"
	"fmt"
	"math/bits"
)

// Limits of Params. maxMax is manifest.MaxChunkLen, the protocol's cap on
// one chunk; minMin keeps a chunk at least as long as the gear hash's
// 64-byte window; avg's range is the one the mask table covers at level 2.
const (
	minMin = 64
	avgMin = 256
	avgMax = 1 << 20
	maxMax = 1 << 20
)

// ErrInvalidParams is wrapped by every error of Params.Validate.
var ErrInvalidParams = errors.New("invalid chunk params")

// Params are a chunker's sizes in bytes: Min <= Avg <= Max, Max <= 1<<20.
//
// Avg sets the masks and must be a power of two; normalization makes a cut
// before Avg unlikely and one soon after it likely, so on random data the
// mean chunk is about 1.15×Avg. The first Min bytes of a chunk are skipped
// without hashing, which is where much of the speed comes from, and Max caps
// a chunk where no boundary was found (as in runs of zeros).
type Params struct{ Min, Avg, Max int }

// Default is 32/128/512 KiB, chosen by measurement (see the chunk-size table in docs/benchmarks.md, and
// TestMeasureCandidates with -cdc.measure): it is the candidate with the
// fewest chunks whose delta met the 4 MiB target in every trial. A client
// holding v1 of a 256 MiB resource fetches v2 (1 MiB overwritten, 100 KiB
// inserted) for 1.90 MiB on average and 2.62 MiB at worst over 20 seeds,
// manifest and request headers included, at 7,160 chunks per GiB.
// 64/256/1024 KiB halves the chunks but went over 4 MiB in 1 of 20 seeds
// (4.34 MiB) when chunking was slow to resynchronise after the insertion.
// Next cuts at about 3.2 GB/s on one core here, above SHA-256's 2.0 GB/s.
var Default = Params{Min: 32 << 10, Avg: 128 << 10, Max: 512 << 10}

// Validate reports whether p can be used: 64 <= Min <= Avg <= Max <= 1 MiB,
// and Avg a power of two from 256 bytes to 1 MiB.
func (p Params) Validate() error {
	switch {
	case p.Min < minMin:
		return fmt.Errorf("%w: Min %d is below %d", ErrInvalidParams, p.Min, minMin)
	case p.Avg < avgMin || p.Avg > avgMax:
		return fmt.Errorf("%w: Avg %d is outside [%d, %d]", ErrInvalidParams, p.Avg, avgMin, avgMax)
	case bits.OnesCount(uint(p.Avg)) != 1:
		return fmt.Errorf("%w: Avg %d is not a power of two", ErrInvalidParams, p.Avg)
	case p.Min > p.Avg:
		return fmt.Errorf("%w: Min %d is above Avg %d", ErrInvalidParams, p.Min, p.Avg)
	case p.Max < p.Avg:
		return fmt.Errorf("%w: Max %d is below Avg %d", ErrInvalidParams, p.Max, p.Avg)
	case p.Max > maxMax:
		return fmt.Errorf("%w: Max %d is above %d", ErrInvalidParams, p.Max, maxMax)
	}
	return nil
}

// String formats p as min/avg/max, the way the chunk-size table in docs/benchmarks.md names candidates.
func (p Params) String() string {
	return fmt.Sprintf("%s/%s/%s", size(p.Min), size(p.Avg), size(p.Max))
}

func size(n int) string {
	if n >= 1<<10 && n%(1<<10) == 0 {
		return fmt.Sprintf("%dKiB", n>>10)
	}
	return fmt.Sprintf("%d", n)
}
