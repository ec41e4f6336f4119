// Command genbuiltin writes the built-in default pack (packs/builtin) from
// code, so its content is ours and reproducible: run `go generate ./packs`.
package main

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"log"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

func main() {
	out := "builtin"
	if len(os.Args) > 1 {
		out = os.Args[1]
	}
	if err := os.RemoveAll(out); err != nil {
		log.Fatal(err)
	}
	write := func(typ, key string, data []byte) {
		p := filepath.Join(out, "pack.toml")
		if _, err := os.Stat(p); err != nil {
			must(os.MkdirAll(out, 0o755))
			must(os.WriteFile(p, []byte("name = \"builtin\"\ndescription = \"Default content compiled into gameserver\"\n"), 0o644))
		}
		path := filepath.Join(out, "assets", "default", typ, filepath.FromSlash(key))
		must(os.MkdirAll(filepath.Dir(path), 0o755))
		must(os.WriteFile(path, data, 0o644))
	}

	textures := map[string]color.RGBA{
		"stone":      {120, 120, 120, 255},
		"dirt":       {121, 85, 58, 255},
		"grass_top":  {86, 160, 60, 255},
		"grass_side": {110, 120, 60, 255},
		"sand":       {218, 206, 160, 255},
		"water":      {40, 90, 200, 180},
		"wood":       {140, 100, 60, 255},
		"leaves":     {50, 120, 40, 220},
	}
	nodes := []struct{ name, top, side, sound string }{
		{"stone", "stone", "stone", "dig_stone"},
		{"dirt", "dirt", "dirt", "dig_soft"},
		{"grass", "grass_top", "grass_side", "dig_soft"},
		{"sand", "sand", "sand", "dig_soft"},
		{"water", "water", "water", "splash"},
		{"tree", "wood", "wood", "dig_wood"},
		{"leaves", "leaves", "leaves", "dig_soft"},
	}
	seed := uint64(1)
	names := make([]string, 0, len(textures))
	for name := range textures {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		c := textures[name]
		seed++
		write("texture", "blocks/"+name+".png", texture(c, seed))
	}
	for i, s := range []string{"dig_stone", "dig_soft", "dig_wood", "splash"} {
		write("sound", s+".wav", sound(220*float64(i+1), uint64(i)))
	}
	write("model", "cube.obj", []byte(cubeOBJ))
	write("model", "cross.obj", []byte(crossOBJ))
	for _, n := range nodes {
		model := "default:cube.obj"
		if n.name == "leaves" {
			model = "default:cross.obj"
		}
		write("nodestate", n.name+".json", fmt.Appendf(nil,
			`{"model":%q,"textures":{"top":"default:blocks/%s.png","side":"default:blocks/%s.png"},"sounds":{"dig":"default:%s.wav"}}`+"\n",
			model, n.top, n.side, n.sound))
	}
	write("particle", "dust.json", []byte(`{"texture":"default:blocks/dirt.png","lifetime":0.8,"count":12,"gravity":-9.8}`+"\n"))
	write("animation", "water_flow.json", []byte(`{"texture":"default:blocks/water.png","frames":4,"frame_time":0.25}`+"\n"))
	write("font", "mono.bdf", font())
}

func must(err error) {
	if err != nil {
		log.Fatal(err)
	}
}

// texture is a 16×16 PNG of c with deterministic per-pixel noise.
func texture(c color.RGBA, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 7))
	img := image.NewNRGBA(image.Rect(0, 0, 16, 16))
	for y := range 16 {
		for x := range 16 {
			d := int(r.IntN(41)) - 20
			clamp := func(v uint8) uint8 { return uint8(max(0, min(255, int(v)+d))) }
			img.Set(x, y, color.NRGBA{clamp(c.R), clamp(c.G), clamp(c.B), c.A})
		}
	}
	var b bytes.Buffer
	must(png.Encode(&b, img))
	return b.Bytes()
}

// sound is a short 8 kHz mono 16-bit PCM WAV: a decaying tone with noise.
func sound(freq float64, seed uint64) []byte {
	const rate, n = 8000, 1600
	r := rand.New(rand.NewPCG(seed, 11))
	pcm := make([]byte, 2*n)
	for i := range n {
		t := float64(i) / rate
		v := (0.6*math.Sin(2*math.Pi*freq*t) + 0.4*(r.Float64()*2-1)) * math.Exp(-t*12)
		binary.LittleEndian.PutUint16(pcm[2*i:], uint16(int16(v*12000)))
	}
	var b bytes.Buffer
	le := func(v any) { must(binary.Write(&b, binary.LittleEndian, v)) }
	b.WriteString("RIFF")
	le(uint32(36 + len(pcm)))
	b.WriteString("WAVEfmt ")
	le(uint32(16))
	le(uint16(1))        // PCM
	le(uint16(1))        // mono
	le(uint32(rate))     // sample rate
	le(uint32(rate * 2)) // byte rate
	le(uint16(2))        // block align
	le(uint16(16))       // bits per sample
	b.WriteString("data")
	le(uint32(len(pcm)))
	b.Write(pcm)
	return b.Bytes()
}

const cubeOBJ = `# unit cube
v 0 0 0
v 1 0 0
v 1 1 0
v 0 1 0
v 0 0 1
v 1 0 1
v 1 1 1
v 0 1 1
vt 0 0
vt 1 0
vt 1 1
vt 0 1
f 1/1 2/2 3/3 4/4
f 5/1 8/4 7/3 6/2
f 1/1 5/2 6/3 2/4
f 2/1 6/2 7/3 3/4
f 3/1 7/2 8/3 4/4
f 4/1 8/2 5/3 1/4
`

const crossOBJ = `# two crossed quads, for plants and leaves
v 0 0 0
v 1 0 1
v 1 1 1
v 0 1 0
v 1 0 0
v 0 0 1
v 0 1 1
v 1 1 0
vt 0 0
vt 1 0
vt 1 1
vt 0 1
f 1/1 2/2 3/3 4/4
f 5/1 6/2 7/3 8/4
`

// font is a tiny BDF bitmap font with the digits 0-9 in a 4×6 cell.
func font() []byte {
	glyphs := [10][6]string{
		{"0110", "1001", "1001", "1001", "1001", "0110"},
		{"0010", "0110", "0010", "0010", "0010", "0111"},
		{"0110", "1001", "0010", "0100", "1000", "1111"},
		{"1110", "0001", "0110", "0001", "0001", "1110"},
		{"1001", "1001", "1111", "0001", "0001", "0001"},
		{"1111", "1000", "1110", "0001", "0001", "1110"},
		{"0110", "1000", "1110", "1001", "1001", "0110"},
		{"1111", "0001", "0010", "0100", "0100", "0100"},
		{"0110", "1001", "0110", "1001", "1001", "0110"},
		{"0110", "1001", "1001", "0111", "0001", "0110"},
	}
	var b strings.Builder
	b.WriteString("STARTFONT 2.1\nFONT -voxsync-mono-medium-r-normal--6-60-75-75-c-40-iso10646-1\nSIZE 6 75 75\nFONTBOUNDINGBOX 4 6 0 0\nSTARTPROPERTIES 2\nFONT_ASCENT 6\nFONT_DESCENT 0\nENDPROPERTIES\n")
	fmt.Fprintf(&b, "CHARS %d\n", len(glyphs))
	for i, g := range glyphs {
		fmt.Fprintf(&b, "STARTCHAR digit%d\nENCODING %d\nSWIDTH 666 0\nDWIDTH 4 0\nBBX 4 6 0 0\nBITMAP\n", i, '0'+i)
		for _, row := range g {
			var v uint8
			for j, c := range row {
				if c == '1' {
					v |= 0x80 >> j
				}
			}
			fmt.Fprintf(&b, "%02X\n", v)
		}
		b.WriteString("ENDCHAR\n")
	}
	b.WriteString("ENDFONT\n")
	return []byte(b.String())
}
