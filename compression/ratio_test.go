package compression

import (
	"bytes"
	"fmt"
	"slices"
	"testing"
)

// TestJSONCorpusRatio checks the target on the generated corpus:
// JSON models and blockstates take at least 2× fewer bytes on the wire,
// summing one frame per file (or the raw file where compressing it would
// not save 10%). It logs the ratio by file size and formatting.
func TestJSONCorpusRatio(t *testing.T) {
	type bucket struct {
		raw, frames, wire, files, worth int
		ratios                          []float64 // per file, raw/frame
	}
	buckets := map[string]*bucket{}
	add := func(name string, raw, frame int, worth bool) {
		b := buckets[name]
		if b == nil {
			b = &bucket{}
			buckets[name] = b
		}
		b.files++
		b.ratios = append(b.ratios, float64(raw)/float64(frame))
		b.raw += raw
		b.frames += frame
		if worth {
			b.worth++
			b.wire += frame
		} else {
			b.wire += raw
		}
	}
	var buf []byte
	for _, f := range jsonCorpus() {
		var worth bool
		buf, worth = Compress(buf[:0], f.data)
		size := "large (8-64 KiB)"
		switch n := len(f.data); {
		case n < 512:
			size = "200-511 B"
		case n < 1024:
			size = "512-1023 B"
		case n <= smallMax:
			size = "1-4 KiB"
		}
		style := "compact"
		if bytes.Contains(f.data, []byte("\n")) {
			style = "pretty"
		}
		add("all", len(f.data), len(buf), worth)
		add(size, len(f.data), len(buf), worth)
		add(size+", "+style, len(f.data), len(buf), worth)
	}
	for _, name := range []string{
		"200-511 B, compact", "200-511 B, pretty", "200-511 B", "512-1023 B", "1-4 KiB", "large (8-64 KiB)", "all",
	} {
		b := buckets[name]
		slices.Sort(b.ratios)
		t.Logf("%-20s %5d files %8d B raw  frames %5.2f×  wire %5.2f×  per file: min %.2f× median %.2f×  %3.0f%% worth compressing",
			name, b.files, b.raw, float64(b.raw)/float64(b.frames), float64(b.raw)/float64(b.wire),
			b.ratios[0], b.ratios[len(b.ratios)/2], 100*float64(b.worth)/float64(b.files))
	}
	all := buckets["all"]
	if got := float64(all.raw) / float64(all.wire); got < 2 {
		t.Errorf("JSON corpus: %s on the wire for %d B raw, %.2f× fewer; want at least 2×",
			fmt.Sprint(all.wire), all.raw, got)
	}
}
