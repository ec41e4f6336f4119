package cdc

import (
	"bytes"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"
	"testing/iotest"
)

// TestNextAgreesWithCut checks that streaming through the buffer, with its
// refills, cuts where Cut cuts on the whole data.
func TestNextAgreesWithCut(t *testing.T) {
	data := randomBytes(6<<20, 6)
	for _, p := range []Params{small, {Min: 101, Avg: 4096, Max: 9999}, candidates[0], Default} {
		t.Run(p.String(), func(t *testing.T) {
			want := cutAll(data, p)
			if got := nextAll(t, bytes.NewReader(data), data, p); !slices.Equal(got, want) {
				t.Errorf("Next cut %d chunks, Cut %d; first difference at chunk %d", len(got), len(want), firstDiff(got, want))
			}
			// Reads of an awkward size, and data returned with io.EOF.
			r := iotest.DataErrReader(&shortReader{r: bytes.NewReader(data), n: 12345})
			if got := nextAll(t, r, data, p); !slices.Equal(got, want) {
				t.Errorf("Next on short reads cut %d chunks, Cut %d; first difference at chunk %d", len(got), len(want), firstDiff(got, want))
			}
		})
	}
}

func firstDiff(a, b []int) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// shortReader returns at most n bytes per Read.
type shortReader struct {
	r io.Reader
	n int
}

func (s *shortReader) Read(p []byte) (int, error) {
	return s.r.Read(p[:min(len(p), s.n)])
}

// TestReadError checks that a read error ends the chunks where the next cut
// would need the bytes that could not be read, and is returned from then on.
func TestReadError(t *testing.T) {
	errDisk := errors.New("disk on fire")
	data := randomBytes(3<<20+100, 7)
	want := cutAll(data, small)
	c, err := New(io.MultiReader(bytes.NewReader(data), iotest.ErrReader(errDisk)), small)
	if err != nil {
		t.Fatal(err)
	}
	var got []int
	var off int64
	for {
		ch, err := c.Next()
		if err != nil {
			if !errors.Is(err, errDisk) || !strings.Contains(err.Error(), "reading stream at offset 3145828") {
				t.Fatalf("Next after %d bytes: %v, want errDisk at offset 3145828", off, err)
			}
			break
		}
		got = append(got, len(ch.Data))
		off += int64(len(ch.Data))
	}
	if len(data)-int(off) >= small.Max {
		t.Errorf("chunks stopped %d bytes before the error, want fewer than Max", len(data)-int(off))
	}
	if !slices.Equal(got, want[:len(got)]) {
		t.Errorf("chunks before the error differ from Cut's at chunk %d", firstDiff(got, want))
	}
	if _, err := c.Next(); !errors.Is(err, errDisk) {
		t.Errorf("Next after the error: %v, want errDisk again", err)
	}
}

type stuckReader struct{}

func (stuckReader) Read([]byte) (int, error) { return 0, nil }

func TestNoProgress(t *testing.T) {
	c, err := New(stuckReader{}, small)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Next(); !errors.Is(err, io.ErrNoProgress) {
		t.Fatalf("Next on a reader that returns nothing: %v, want io.ErrNoProgress", err)
	}
}

// TestNextAllocs checks that Next allocates nothing, refills included.
func TestNextAllocs(t *testing.T) {
	data := randomBytes(8<<20, 8)
	c, err := New(bytes.NewReader(data), small)
	if err != nil {
		t.Fatal(err)
	}
	var cut int64
	allocs := testing.AllocsPerRun(10000, func() {
		ch, err := c.Next()
		if err != nil {
			t.Fatal(err)
		}
		cut += int64(len(ch.Data))
	})
	if cut < 2*int64(bufferSize(small)) {
		t.Fatalf("cut only %d bytes, too few to refill the %d-byte buffer", cut, bufferSize(small))
	}
	if allocs != 0 {
		t.Errorf("Next allocates %.2f times per chunk, want 0", allocs)
	}
}
