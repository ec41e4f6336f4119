package compression

import (
	"bytes"
	"sync"
	"testing"
)

func TestCompress(t *testing.T) {
	json := jsonCorpus()
	tests := []struct {
		name      string
		src       []byte
		wantWorth bool
	}{
		{"empty", nil, false},
		{"tiny JSON, 70 B", []byte(`{"parent":"block/cube_all","textures":{"all":"default:block/stone"}}`), false},
		{"small JSON", json[0].data, true},
		{"large JSON", json[len(json)-1].data, true},
		{"map chunk", mapBlob()[:mapChunk], true},
		{"random bytes", randomBytes(4<<10, 3), false},
		{"zeros over MaxSize", make([]byte, MaxSize+1), false},
		{"zeros, MaxSize", make([]byte, MaxSize), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prefix := []byte("prefix")
			out, worth := Compress(bytes.Clone(prefix), tt.src)
			if worth != tt.wantWorth {
				t.Errorf("worth = %v for %d bytes into a %d-byte frame, want %v",
					worth, len(tt.src), len(out)-len(prefix), tt.wantWorth)
			}
			if !bytes.HasPrefix(out, prefix) {
				t.Fatalf("Compress did not append to dst")
			}
			frame := out[len(prefix):]
			if h := header(t, frame); !h.HasFCS || h.FrameContentSize != uint64(len(tt.src)) || h.HasCheckSum {
				t.Errorf("frame header %+v: want a content size of %d and no checksum", h, len(tt.src))
			}
			if len(tt.src) > MaxSize {
				return
			}
			got, err := Decompress(nil, frame, len(tt.src))
			if err != nil || !bytes.Equal(got, tt.src) {
				t.Fatalf("Decompress: %d bytes, %v", len(got), err)
			}
		})
	}
}

func TestWorthSending(t *testing.T) {
	tests := []struct {
		name   string
		raw, n int
		want   bool
	}{
		{"exactly 10% saved", 1000, 900, true},
		{"just under 10% saved", 1000, 901, false},
		{"larger", 100, 110, false},
		{"empty content", 0, 9, false},
		{"over MaxSize however small", MaxSize + 1, 10, false},
		{"MaxSize", MaxSize, 10, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := worthSending(tt.raw, tt.n); got != tt.want {
				t.Errorf("worthSending(%d, %d) = %v, want %v", tt.raw, tt.n, got, tt.want)
			}
		})
	}
}

// TestCompressConcurrent compresses from many goroutines at once (run with
// -race) and checks every frame against a serial one.
func TestCompressConcurrent(t *testing.T) {
	inputs := chunks(mapBlob()[:1<<20], 32<<10)
	for _, f := range jsonCorpus()[:64] {
		inputs = append(inputs, f.data)
	}
	want := make([][]byte, len(inputs))
	for i, in := range inputs {
		want[i] = frameOf(in)
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range inputs {
				i := (i + g*7) % len(inputs)
				if got := frameOf(inputs[i]); !bytes.Equal(got, want[i]) {
					t.Errorf("input %d: concurrent frame differs from the serial one", i)
				}
				if got, err := Decompress(nil, want[i], len(inputs[i])); err != nil || !bytes.Equal(got, inputs[i]) {
					t.Errorf("input %d: Decompress: %v", i, err)
				}
			}
		})
	}
	wg.Wait()
}
