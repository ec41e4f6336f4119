package compression

import (
	"testing"
)

func TestSkip(t *testing.T) {
	tests := []struct {
		name string
		want bool
	}{
		{"blocks/stone.png", true},
		{"blocks/STONE.PNG", true},
		{"voxcraft:textures/block/stone.Webp", true},
		{"sounds/step1.ogg", true},
		{"sounds/step1.oga", true},
		{"music/theme.opus", true},
		{"music/theme.mp3", true},
		{"music/theme.flac", true},
		{"photos/a.jpg", true},
		{"photos/a.JPEG", true},
		{"packs/extra.zip", true},
		{"packs/extra.tar.gz", true},
		{"maps/world.zst", true},
		{"maps/world.xz", true},
		{"maps/world.bz2", true},
		{"maps/world.7z", true},
		{"textures/gpu.ktx2", true},
		{"textures/gpu.basis", true},
		{"video/intro.mp4", true},
		{"video/intro.webm", true},
		{"textures/sky.avif", true},
		{"fonts/ui.woff2", true},
		{"models/block/stone.json", false},
		{"blockstates/stone.json", false},
		{"shaders/water.glsl", false},
		{"fonts/ui.ttf", false},
		{"textures/gpu.ktx", false},
		{"maps/world.bin", false},
		{"png", false},
		{"stone", false},
		{"", false},
		{"file.", false},
		{".png", true},
		{"textures.png/readme", false},
		{"voxcraft:png", false},
		{"blocks/stone.pngx", false},
		{"blocks/stone.xpng", false},
		{"blocks/stone.verylongextension", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Skip(tt.name); got != tt.want {
				t.Errorf("Skip(%q) = %v, want %v", tt.name, got, tt.want)
			}
		})
	}
}

func TestSkipData(t *testing.T) {
	tests := []struct {
		name string
		data []byte
		want bool
	}{
		{"PNG", []byte("\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"), true},
		{"JPEG", []byte("\xff\xd8\xff\xe0\x00\x10JFIF"), true},
		{"Ogg", []byte("OggS\x00\x02\x00\x00"), true},
		{"MP3 with ID3", []byte("ID3\x04\x00\x00"), true},
		{"MP3 frame", []byte("\xff\xfb\x90\x64\x00"), true},
		{"zip", []byte("PK\x03\x04\x14\x00"), true},
		{"gzip", []byte("\x1f\x8b\x08\x00"), true},
		{"zstd (our own frames)", frameOf(mapBlob()[:4096]), true},
		{"WebP", []byte("RIFF\x24\x00\x00\x00WEBPVP8 "), true},
		{"WAV is RIFF but not WebP", []byte("RIFF\x24\x00\x00\x00WAVEfmt "), false},
		{"MP4", []byte("\x00\x00\x00\x20ftypisom"), true},
		{"KTX2", []byte("\xabKTX 20\xbb\r\n\x1a\n"), true},
		{"JSON", []byte(`{"parent":"block/cube_all"}`), false},
		{"map data", mapBlob()[:64], false},
		{"empty", nil, false},
		{"one byte", []byte{0x89}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := SkipData(tt.data); got != tt.want {
				t.Errorf("SkipData(%q) = %v, want %v", tt.data[:min(len(tt.data), 16)], got, tt.want)
			}
		})
	}
}

// TestSkipAllocatesNothing: the server asks Skip for every resource.
func TestSkipAllocatesNothing(t *testing.T) {
	png := []byte("\x89PNG\r\n\x1a\n")
	for _, name := range []string{"blocks/stone.png", "BLOCKS/STONE.PNG", "models/block/stone.json"} {
		if n := testing.AllocsPerRun(100, func() { Skip(name); SkipData(png) }); n != 0 {
			t.Errorf("Skip(%q) and SkipData allocate %v times", name, n)
		}
	}
}

// BenchmarkSkip shows what deciding not to compress a PNG or OGG costs the
// server: a lookup by name, no read of the content and no compression.
func BenchmarkSkip(b *testing.B) {
	for _, name := range []string{"voxcraft:textures/block/stone.png", "voxcraft:sounds/step/stone1.OGG", "voxcraft:models/block/stone.json"} {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				Skip(name)
			}
		})
	}
}

func BenchmarkSkipData(b *testing.B) {
	for _, tt := range []struct {
		name string
		data []byte
	}{{"png", []byte("\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")}, {"json", []byte(`{"parent":"block/cube_all"}`)}} {
		b.Run(tt.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				SkipData(tt.data)
			}
		})
	}
}
