package cdc

import (
	"bytes"
	"crypto/md5"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"io"
	"os"
	"testing"
)

// sekien is testdata/SekienAkashita.jpg, "Akashita" by Toriyama Sekien
// (public domain), the input of every published FastCDC test vector; see
// testdata/README.md.
func sekien(t *testing.T) []byte {
	t.Helper()
	data, err := os.ReadFile("testdata/SekienAkashita.jpg")
	if err != nil {
		t.Fatalf("reading test image: %v", err)
	}
	const want = "d9e749d9367fc908876749d6502eb212fee88c9a94892fb07da5ef3ba8bc39ed"
	if sum := sha256.Sum256(data); hex.EncodeToString(sum[:]) != want {
		t.Fatalf("testdata/SekienAkashita.jpg has SHA-256 %x, want %s", sum, want)
	}
	return data
}

func TestGearTable(t *testing.T) {
	for i := range 256 {
		sum := md5.Sum(bytes.Repeat([]byte{byte(i)}, 64))
		if got, want := gear[i], binary.BigEndian.Uint64(sum[:8]); got != want {
			t.Errorf("gear[%d] = %#016x, want %#016x", i, got, want)
		}
		if gearLS[i] != gear[i]<<1 {
			t.Errorf("gearLS[%d] = %#016x, want gear[%d]<<1", i, gearLS[i], i)
		}
	}
}

// TestRemoteExecutionAPIVectors checks the FastCDC 2020 vectors that the
// Remote Execution API publishes with its FAST_CDC_2020 chunking function
// (bazelbuild/remote-apis, build/bazel/remote/execution/v2/
// fastcdc2020_test_vectors.txt, commit becdd8f): 4096/16384/65535 at
// normalization level 2, the level this package uses, with each chunk's
// SHA-256. Seed 0 goes through the public API; seed 666 (the gear tables
// XORed with it) through cut, since this package does not offer seeds.
func TestRemoteExecutionAPIVectors(t *testing.T) {
	data := sekien(t)
	type vector struct {
		offset, length int
		sha256         string
		fingerprint    uint64
	}
	tests := []struct {
		name string
		seed uint64
		want []vector
	}{
		{"seed 0", 0, []vector{
			{0, 19186, "0f9efa589121d5d9e9e2c4ace91337d77cae866537143f6f15a0ffd525a77c2d", 17583755766661134474},
			{19186, 19279, "c7c86a165573c16448cda35c9169742e85645af42be22889f8b96b8ee0ec7cb0", 4098594969649699419},
			{38465, 17354, "bc88521e28a8b4479cdea5f75aa721a24f3a0a7d0be903aa6d505c574e51e89d", 2365586132076908760},
			{55819, 16387, "4b8dac2652e4685c629d2bb1ae9d4448e676b86f2e67ca0b2fff3d9580184b79", 16009206469796846404},
			{72206, 19940, "c0a7062da6f2386c28e086ee0cedd5732252741269838773cff1ddb05b2df6ed", 2473608525189754172},
			{92146, 17320, "7fa5b12134dc75cd2ac8dc60d3a8f3c8d22f0ee9d4cf74a4aa937e2a0d2d79a5", 2504464741100432583},
		}},
		{"seed 666", 666, []vector{
			{0, 17635, "cb3a9d80a3569772d4ed331ca37ab0c862c759897b890fc1aac90a4f2ea3a407", 17021115692437263050},
			{17635, 17334, "d758c6b7b0b7eef1e996f8ccd17de6c645360b03a26c35541e7581348ac08944", 8231525949846907466},
			{34969, 19136, "24846aefd89e510594bae3e9d7d5ea5012067601512610fed126a3c57ba993f5", 10944310959829698982},
			{54105, 17467, "efa785e1fefb49f190e665f72fd246c1442079874508c312196da1fb3040d00b", 13602876513398592944},
			{71572, 23593, "a2f557bdd8d40d8faada963ad5f91ec54b10ccee7c5ae72754a65137592dc607", 2945079350535657389},
			{95165, 14301, "e131100b4a7147ccad19dc63c4a2fac1f5d8b644e1373eeb6803825024234efc", 8981594897574481255},
		}},
	}
	p := Params{Min: 4096, Avg: 16384, Max: 65535}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g, gls := seeded(tt.seed)
			maskS, maskL := maskPair(p.Avg, level)
			var got []vector
			for off := 0; off < len(data); {
				n, fp := cut(data[off:], p.Min, p.Avg, p.Max, maskS, maskL, g, gls)
				sum := sha256.Sum256(data[off : off+n])
				got = append(got, vector{off, n, hex.EncodeToString(sum[:]), fp})
				off += n
			}
			compare(t, got, tt.want)
			if tt.seed != 0 {
				return
			}
			// The public API: Next on a stream and Cut on the rest of the data.
			var viaNext, viaCut []vector
			c, err := New(bytes.NewReader(data), p)
			if err != nil {
				t.Fatal(err)
			}
			for i := 0; ; i++ {
				ch, err := c.Next()
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				sum := sha256.Sum256(ch.Data)
				viaNext = append(viaNext, vector{int(ch.Offset), len(ch.Data), hex.EncodeToString(sum[:]), 0})
				n := Cut(data[ch.Offset:], p)
				sum = sha256.Sum256(data[ch.Offset : int(ch.Offset)+n])
				viaCut = append(viaCut, vector{int(ch.Offset), n, hex.EncodeToString(sum[:]), 0})
			}
			noFP := make([]vector, len(tt.want))
			for i, v := range tt.want {
				noFP[i] = vector{v.offset, v.length, v.sha256, 0}
			}
			t.Run("Next", func(t *testing.T) { compare(t, viaNext, noFP) })
			t.Run("Cut", func(t *testing.T) { compare(t, viaCut, noFP) })
		})
	}
}

// TestFastCDCRsVectors checks the vectors of nlfiedler/fastcdc-rs
// (src/v2020/mod.rs and src/v2016/mod.rs, commit f76938d): lengths and gear
// hashes at normalization levels 0, 1 and 3, which this package reaches only
// through cut. The 2016 chunker rolls one byte at a time; its cut points are
// the same and its hash is the 2020 one, or half of it where the 2020 loop
// cut on the first byte of a pair (whose table is shifted left).
func TestFastCDCRsVectors(t *testing.T) {
	data := sekien(t)
	type vector struct {
		length int
		hash   uint64
	}
	tests := []struct {
		name          string
		min, avg, max int
		level         int
		seed          uint64
		v2020, v2016  []vector
	}{
		{
			name: "16k level 1", min: 4096, avg: 16384, max: 65535, level: 1,
			v2020: []vector{{21325, 17968276318003433923}, {17140, 8197189939299398838}, {28084, 13019990849178155730}, {18217, 4509236223063678303}, {24700, 2504464741100432583}},
			v2016: []vector{{21325, 17968276318003433923}, {17140, 4098594969649699419}, {28084, 15733367461443853673}, {18217, 4509236223063678303}, {24700, 2504464741100432583}},
		},
		{
			name: "16k level 1 seed 666", min: 4096, avg: 16384, max: 65535, level: 1, seed: 666,
			v2020: []vector{{10605, 9312357714466240148}, {55745, 226910853333574584}, {11346, 12271755243986371352}, {5883, 14153975939352546047}, {11586, 5890158701071314778}, {14301, 8981594897574481255}},
		},
		{
			name: "32k level 1", min: 8192, avg: 32768, max: 131072, level: 1,
			v2020: []vector{{66549, 15733367461443853673}, {42917, 6321136627705800457}},
			v2016: []vector{{66549, 15733367461443853673}, {42917, 2504464741100432583}},
		},
		{
			name: "64k level 1", min: 16384, avg: 65536, max: 262144, level: 1,
			v2020: []vector{{109466, 2504464741100432583}},
			v2016: []vector{{109466, 2504464741100432583}},
		},
		{
			name: "16k level 0", min: 4096, avg: 16384, max: 65535, level: 0,
			v2020: []vector{{6634, 443122261039895162}, {59915, 15733367461443853673}, {25597, 10460176299449652894}, {5237, 6197802202431009942}, {12083, 6321136627705800457}},
			v2016: []vector{{6634, 221561130519947581}, {59915, 15733367461443853673}, {25597, 10460176299449652894}, {5237, 6197802202431009942}, {12083, 2504464741100432583}},
		},
		{
			name: "16k level 3", min: 8192, avg: 16384, max: 32768, level: 3,
			v2020: []vector{{17350, 10718006254707412376}, {19911, 13104072099671895560}, {17426, 12322483109039221194}, {17519, 16009206469796846404}, {19940, 2473608525189754172}, {17320, 2504464741100432583}},
		},
		{
			name: "16k level 3, 2016 sizes", min: 4096, avg: 16384, max: 65535, level: 3,
			v2016: []vector{{17350, 14582375164208481996}, {19911, 13104072099671895560}, {17426, 6161241554519610597}, {17519, 16009206469796846404}, {19940, 10460176299449652894}, {17320, 2504464741100432583}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g, gls := seeded(tt.seed)
			maskS, maskL := maskPair(tt.avg, tt.level)
			var got []vector
			for off := 0; off < len(data); {
				n, h := cut(data[off:], tt.min, tt.avg, tt.max, maskS, maskL, g, gls)
				got = append(got, vector{n, h})
				off += n
			}
			if tt.v2020 != nil {
				compare(t, got, tt.v2020)
			}
			if tt.v2016 == nil {
				return
			}
			if len(got) != len(tt.v2016) {
				t.Fatalf("got %d chunks, 2016 vectors have %d", len(got), len(tt.v2016))
			}
			for i, w := range tt.v2016 {
				if got[i].length != w.length {
					t.Errorf("chunk %d: length %d, 2016 vector %d", i, got[i].length, w.length)
				}
				// The last chunk ends at the end of the data, not at a match,
				// and the two loops stop hashing at different bytes there.
				last := i == len(tt.v2016)-1
				if !last && got[i].hash != w.hash && got[i].hash != w.hash<<1 {
					t.Errorf("chunk %d: hash %d, want the 2016 vector's %d or twice it", i, got[i].hash, w.hash)
				}
			}
		})
	}
}

// TestAllZeros checks fastcdc-rs's test_cut_all_zeros: zeros never match a
// mask, so every chunk is Max long, with the same hash.
func TestAllZeros(t *testing.T) {
	data := make([]byte, 10240)
	maskS, maskL := maskPair(256, 1)
	for off := 0; off < len(data); {
		n, h := cut(data[off:], 64, 256, 1024, maskS, maskL, &gear, gearLS)
		if n != 1024 || h != 14169102344523991076 {
			t.Fatalf("chunk at %d: length %d hash %d, want 1024 and 14169102344523991076", off, n, h)
		}
		off += n
	}
}

// seeded returns the gear tables XORed with seed, as fastcdc-rs and the
// Remote Execution API define them; seed 0 is the tables themselves.
func seeded(seed uint64) (g, gls *[256]uint64) {
	if seed == 0 {
		return &gear, gearLS
	}
	g, gls = new([256]uint64), new([256]uint64)
	for i := range gear {
		g[i] = gear[i] ^ seed
		gls[i] = gearLS[i] ^ seed<<1
	}
	return g, gls
}

func compare[T comparable](t *testing.T, got, want []T) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("got %d chunks, want %d:\ngot  %v\nwant %v", len(got), len(want), got, want)
		return
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("chunk %d:\ngot  %v\nwant %v", i, got[i], want[i])
		}
	}
}
