// Package corpus generates resource packs shaped like a real voxel game's
// media, for benchmarks and load tests: by default about 2,600 files and
// 11–12 MiB, 71% of files ≤ 1 KiB, 97% ≤ 16 KiB, median ~400 B, p99 ~60 KiB,
// max ~500 KiB; 84% textures (PNG), 7% sounds (OGG), 9% models (OBJ/B3D) —
// the shape of Minetest Game with 13 mods (shared/PEERS.md).
//
// The same seed always gives the same files. Contents are random bytes
// behind the right magic numbers: as incompressible as real PNG and OGG.
package corpus

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
)

// Spec describes a corpus.
type Spec struct {
	Files int    // default 2600
	Seed  uint64 // default 1
	// Domain names cycle over this many mods plus "default". Default 13.
	Mods int
}

// Stats describe a generated corpus.
type Stats struct {
	Files     int
	Bytes     int64
	Median    int
	P99       int
	Max       int
	Textures  int
	Sounds    int
	Models    int
	UpTo1KiB  int
	UpTo16KiB int
	Paths     []string // slash paths relative to the pack root
}

// Size quantile anchors (fraction of files, size in bytes); sizes between
// anchors are log-uniform. Chosen to match the measured Minetest corpus.
var anchors = []struct {
	q    float64
	size float64
}{
	{0, 60}, {0.50, 400}, {0.71, 1024}, {0.97, 16384}, {0.99, 61440}, {1, 512000},
}

func sizeAt(q float64) int {
	for i := 1; i < len(anchors); i++ {
		a, b := anchors[i-1], anchors[i]
		if q <= b.q {
			t := (q - a.q) / (b.q - a.q)
			return int(math.Round(math.Exp(math.Log(a.size) + t*(math.Log(b.size)-math.Log(a.size)))))
		}
	}
	return int(anchors[len(anchors)-1].size)
}

// Generate writes the corpus as a pack in dir (assets/<domain>/<type>/…).
func Generate(dir string, spec Spec) (Stats, error) {
	if spec.Files <= 0 {
		spec.Files = 2600
	}
	if spec.Seed == 0 {
		spec.Seed = 1
	}
	if spec.Mods <= 0 {
		spec.Mods = 13
	}
	r := rand.New(rand.NewPCG(spec.Seed, 0x9e3779b97f4a7c15))
	n := spec.Files
	sizes := make([]int, n)
	for i := range sizes {
		q := 0.0
		if n > 1 {
			q = float64(i) / float64(n-1) // stratified: the quantiles come out exact
		}
		sizes[i] = max(1, sizeAt(q))
	}
	// Assign kinds to shuffled positions: sizes and kinds independent.
	kinds := make([]int, n) // 0 texture, 1 sound, 2 model
	for i := range kinds {
		switch {
		case i < n*84/100:
			kinds[i] = 0
		case i < n*91/100:
			kinds[i] = 1
		default:
			kinds[i] = 2
		}
	}
	r.Shuffle(n, func(i, j int) { kinds[i], kinds[j] = kinds[j], kinds[i] })

	var st Stats
	chacha := rand.NewChaCha8([32]byte{byte(spec.Seed), byte(spec.Seed >> 8), 0xc0})
	for i, size := range sizes {
		domain := "default"
		if m := i % (spec.Mods + 1); m > 0 {
			domain = fmt.Sprintf("mod%02d", m)
		}
		var rel string
		var magic []byte
		switch kinds[i] {
		case 0:
			rel = fmt.Sprintf("assets/%s/texture/%s_%04d.png", domain, domain, i)
			magic = []byte("\x89PNG\r\n\x1a\n")
			st.Textures++
		case 1:
			rel = fmt.Sprintf("assets/%s/sound/%s_%04d.ogg", domain, domain, i)
			magic = []byte("OggS\x00\x02")
			st.Sounds++
		default:
			if i%2 == 0 {
				rel = fmt.Sprintf("assets/%s/model/%s_%04d.obj", domain, domain, i)
				magic = []byte("# obj\n")
			} else {
				rel = fmt.Sprintf("assets/%s/model/%s_%04d.b3d", domain, domain, i)
				magic = []byte("BB3D")
			}
			st.Models++
		}
		data := make([]byte, size)
		chacha.Read(data)
		copy(data, magic)
		p := filepath.Join(dir, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return st, err
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			return st, err
		}
		st.Paths = append(st.Paths, rel)
		st.Bytes += int64(size)
		if size <= 1024 {
			st.UpTo1KiB++
		}
		if size <= 16384 {
			st.UpTo16KiB++
		}
	}
	sorted := append([]int(nil), sizes...)
	sort.Ints(sorted)
	st.Files = n
	st.Median = sorted[n/2]
	st.P99 = sorted[n*99/100]
	st.Max = sorted[n-1]
	return st, nil
}

// LargeFiles writes count files of size bytes each under dir's pack layout,
// for the startup-hashing benchmark.
func LargeFiles(dir string, count int, size int, seed uint64) error {
	chacha := rand.NewChaCha8([32]byte{byte(seed), 0x5a})
	data := make([]byte, size)
	for i := range count {
		chacha.Read(data)
		p := filepath.Join(dir, "assets", "bench", "texture", fmt.Sprintf("d%02d", i%100), fmt.Sprintf("f%05d.png", i))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			return err
		}
	}
	return nil
}
