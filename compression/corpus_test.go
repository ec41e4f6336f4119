package compression

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
)

// The test corpus: Minecraft-like JSON block models, item models and
// blockstates, and a map-like binary blob, generated from a fixed seed so
// that every run measures the same bytes.

// corpusFile is one generated resource.
type corpusFile struct {
	name string
	data []byte
}

// Sizes of the corpus.
const (
	corpusSmallFiles = 2000     // 200 B to 4 KiB each
	corpusLargeFiles = 20       // 8 KiB to 64 KiB each
	corpusMapBytes   = 4 << 20  // the map blob
	smallMin         = 200      // bytes
	smallMax         = 4 << 10  // bytes
	largeMin         = 8 << 10  // bytes
	largeMax         = 64 << 10 // bytes
	mapChunk         = 64 << 10 // a typical content-defined chunk
	mapBigChunk      = MaxSize  // the largest chunk the protocol sends
	mapSectionBlocks = 16 * 16 * 16
)

var (
	jsonCorpus = sync.OnceValue(func() []corpusFile { return genJSONCorpus(rand.New(rand.NewPCG(11, 1))) })
	mapBlob    = sync.OnceValue(func() []byte { return genMap(rand.New(rand.NewPCG(11, 2)), corpusMapBytes) })
	// randomBlob stands for already-compressed content that Skip did not
	// catch: what trying to compress it costs.
	randomBlob = sync.OnceValue(func() []byte {
		b := make([]byte, corpusMapBytes)
		rand.NewChaCha8([32]byte{11}).Read(b)
		return b
	})
)

var (
	domains   = []string{"voxcraft", "default", "moreblocks", "techmod", "farming", "decor_plus"}
	materials = []string{
		"oak", "spruce", "birch", "jungle", "acacia", "dark_oak", "mangrove", "cherry", "crimson", "warped",
		"stone", "cobblestone", "mossy_cobblestone", "granite", "polished_granite", "diorite", "andesite",
		"deepslate", "cobbled_deepslate", "tuff", "brick", "sandstone", "red_sandstone", "prismarine",
		"nether_brick", "quartz", "blackstone", "mud_brick", "copper", "exposed_copper", "weathered_copper",
		"oxidized_copper", "end_stone_brick", "purpur", "basalt", "calcite", "obsidian", "steel", "tin", "bronze",
	}
	colors = []string{
		"white", "orange", "magenta", "light_blue", "yellow", "lime", "pink", "gray", "light_gray", "cyan",
		"purple", "blue", "brown", "green", "red", "black",
	}
	shapes    = []string{"block", "stairs", "slab", "wall", "fence", "fence_gate", "door", "trapdoor", "pillar", "button", "pressure_plate", "lantern", "panel", "post"}
	facings   = []string{"north", "east", "south", "west"}
	faceNames = []string{"down", "up", "north", "south", "west", "east"}
)

// ordered is a JSON object that keeps its keys in insertion order, as
// hand-written and exported models do.
type ordered []kv

type kv struct {
	k string
	v any
}

func (o ordered) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, e := range o {
		if i > 0 {
			b.WriteByte(',')
		}
		k, _ := json.Marshal(e.k)
		b.Write(k)
		b.WriteByte(':')
		v, err := json.Marshal(e.v)
		if err != nil {
			return nil, err
		}
		b.Write(v)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// encodeJSON writes v pretty-printed with two spaces, like vanilla assets,
// or compact, like many mods' generated assets.
func encodeJSON(r *rand.Rand, v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	if r.IntN(3) == 0 {
		return b
	}
	var out bytes.Buffer
	indent := "  "
	if r.IntN(4) == 0 {
		indent = "\t"
	}
	if err := json.Indent(&out, b, "", indent); err != nil {
		panic(err)
	}
	out.WriteByte('\n')
	return out.Bytes()
}

func pick[T any](r *rand.Rand, s []T) T { return s[r.IntN(len(s))] }

func blockName(r *rand.Rand) string {
	m := pick(r, materials)
	if r.IntN(4) == 0 {
		m = pick(r, colors) + "_" + pick(r, []string{"wool", "concrete", "terracotta", "stained_glass", "glazed_terracotta"})
	}
	if s := pick(r, shapes); s != "block" {
		m += "_" + s
	}
	return m
}

func tex(dom, name string) string { return dom + ":block/" + name }

// genModel returns one block or item model.
func genModel(r *rand.Rand, dom, name string) any {
	switch r.IntN(7) {
	case 0: // cube with one or several textures
		parents := []string{"block/cube_all", "block/cube_column", "block/cube_bottom_top", "block/orientable", "block/cube"}
		p := pick(r, parents)
		t := ordered{}
		switch p {
		case "block/cube_all":
			t = append(t, kv{"all", tex(dom, name)})
		case "block/cube_column":
			t = append(t, kv{"end", tex(dom, name+"_top")}, kv{"side", tex(dom, name)})
		case "block/cube_bottom_top":
			t = append(t, kv{"bottom", tex(dom, name+"_bottom")}, kv{"side", tex(dom, name+"_side")}, kv{"top", tex(dom, name+"_top")})
		case "block/orientable":
			t = append(t, kv{"front", tex(dom, name+"_front")}, kv{"side", tex(dom, name+"_side")}, kv{"top", tex(dom, name+"_top")})
		default:
			for _, f := range faceNames {
				t = append(t, kv{f, tex(dom, name+"_"+f)})
			}
		}
		t = append(t, kv{"particle", tex(dom, name)})
		m := ordered{{"parent", "minecraft:" + p}, {"textures", t}}
		if r.IntN(3) == 0 {
			m = append(m, kv{"render_type", pick(r, []string{"minecraft:cutout", "minecraft:cutout_mipped", "minecraft:translucent"})})
		}
		return m
	case 1: // a shaped block from a template
		p := pick(r, []string{"stairs", "inner_stairs", "outer_stairs", "slab", "slab_top", "template_wall_post", "template_wall_side", "template_fence_gate", "template_door_bottom_left", "template_trapdoor_open"})
		return ordered{{"parent", "minecraft:block/" + p}, {"textures", ordered{
			{"bottom", tex(dom, name)}, {"top", tex(dom, name)}, {"side", tex(dom, name)},
		}}}
	case 2, 3: // elements
		n := 1 + r.IntN(6)
		els := make([]any, n)
		for i := range els {
			from := []float64{float64(r.IntN(8)), float64(r.IntN(8)), float64(r.IntN(8))}
			to := []float64{from[0] + float64(1+r.IntN(8)), from[1] + float64(1+r.IntN(8)), from[2] + float64(1+r.IntN(8))}
			faces := ordered{}
			for _, f := range faceNames {
				face := ordered{{"uv", []float64{from[0], from[1], to[0], to[1]}}, {"texture", "#" + pick(r, []string{"side", "top", "bottom", "texture", "particle"})}}
				if r.IntN(2) == 0 {
					face = append(face, kv{"cullface", f})
				}
				if r.IntN(6) == 0 {
					face = append(face, kv{"tintindex", 0})
				}
				faces = append(faces, kv{f, face})
			}
			el := ordered{{"from", from}, {"to", to}}
			if r.IntN(4) == 0 {
				el = append(el, kv{"rotation", ordered{{"origin", []float64{8, 8, 8}}, {"axis", pick(r, []string{"x", "y", "z"})}, {"angle", pick(r, []float64{-45, -22.5, 22.5, 45})}}})
			}
			el = append(el, kv{"faces", faces})
			els[i] = el
		}
		return ordered{
			{"parent", "minecraft:block/block"},
			{"ambientocclusion", r.IntN(2) == 0},
			{"textures", ordered{{"particle", tex(dom, name)}, {"side", tex(dom, name+"_side")}, {"top", tex(dom, name+"_top")}}},
			{"elements", els},
		}
	case 4: // item model with display transforms
		display := ordered{}
		for _, d := range []string{"thirdperson_righthand", "firstperson_righthand", "gui", "ground", "fixed"}[:1+r.IntN(5)] {
			display = append(display, kv{d, ordered{
				{"rotation", []float64{float64(r.IntN(8) * 15), float64(r.IntN(8) * 15), 0}},
				{"translation", []float64{0, float64(r.IntN(5)) / 2, 0}},
				{"scale", []float64{0.375, 0.375, 0.375}},
			}})
		}
		return ordered{{"parent", "minecraft:item/generated"}, {"textures", ordered{{"layer0", dom + ":item/" + name}}}, {"display", display}}
	default: // item model pointing at its block, with overrides
		m := ordered{{"parent", dom + ":block/" + name}}
		if r.IntN(2) == 0 {
			var ov []any
			for i := range 1 + r.IntN(6) {
				ov = append(ov, ordered{{"predicate", ordered{{"custom_model_data", i + 1}}}, {"model", dom + ":item/" + name + fmt.Sprintf("_%d", i+1)}})
			}
			m = append(m, kv{"overrides", ov})
		}
		return m
	}
}

// genBlockstate returns one blockstate with variants or multipart; large
// asks for one of the big ones.
func genBlockstate(r *rand.Rand, dom, name string, large bool) any {
	model := func(suffix string) string { return dom + ":block/" + name + suffix }
	if large {
		// Multipart with many cases, like redstone wire or a connected-
		// texture wall: every combination of a few properties.
		var parts []any
		sides := []string{"north", "east", "south", "west", "up"}
		for i := range 40 + r.IntN(200) {
			when := ordered{}
			for _, s := range sides {
				if r.IntN(2) == 0 {
					when = append(when, kv{s, pick(r, []string{"none", "low", "tall", "side", "up"})})
				}
			}
			apply := ordered{{"model", model(fmt.Sprintf("_part%d", i%24))}}
			if y := r.IntN(4) * 90; y != 0 {
				apply = append(apply, kv{"y", y})
			}
			if r.IntN(2) == 0 {
				apply = append(apply, kv{"uvlock", true})
			}
			parts = append(parts, ordered{{"when", when}, {"apply", apply}})
		}
		return ordered{{"multipart", parts}}
	}
	variants := ordered{}
	add := func(key string, v ordered) { variants = append(variants, kv{key, v}) }
	switch r.IntN(6) {
	case 0: // random rotations, like stone or grass
		var alts []any
		for i := range 2 + r.IntN(4) {
			alts = append(alts, ordered{{"model", model("")}, {"y", i * 90}})
		}
		return ordered{{"variants", ordered{{"", alts}}}}
	case 1: // axis
		add("axis=x", ordered{{"model", model("_horizontal")}, {"x", 90}, {"y", 90}})
		add("axis=y", ordered{{"model", model("")}})
		add("axis=z", ordered{{"model", model("_horizontal")}, {"x", 90}})
	case 2: // slab
		add("type=bottom", ordered{{"model", model("")}})
		add("type=double", ordered{{"model", model("_double")}})
		add("type=top", ordered{{"model", model("_top")}})
	case 3: // facing, with or without lit
		for _, f := range facings {
			for _, lit := range []string{"false", "true"}[:1+r.IntN(2)] {
				v := ordered{{"model", model(map[string]string{"false": "", "true": "_on"}[lit])}}
				if y := map[string]int{"north": 0, "east": 90, "south": 180, "west": 270}[f]; y != 0 {
					v = append(v, kv{"y", y})
				}
				add("facing="+f+",lit="+lit, v)
			}
		}
	case 4: // stairs: facing x half x shape
		for _, f := range facings {
			for _, h := range []string{"bottom", "top"} {
				for _, s := range []string{"inner_left", "inner_right", "outer_left", "outer_right", "straight"}[:2+r.IntN(4)] {
					v := ordered{{"model", model("_" + s)}}
					if h == "top" {
						v = append(v, kv{"x", 180})
					}
					if y := r.IntN(4) * 90; y != 0 {
						v = append(v, kv{"y", y}, kv{"uvlock", true})
					}
					add("facing="+f+",half="+h+",shape="+s, v)
				}
			}
		}
	default: // fence-like multipart
		parts := []any{ordered{{"apply", ordered{{"model", model("_post")}}}}}
		for i, f := range facings {
			apply := ordered{{"model", model("_side")}, {"uvlock", true}}
			if i > 0 {
				apply = append(apply, kv{"y", i * 90})
			}
			parts = append(parts, ordered{{"when", ordered{{f, "true"}}}, {"apply", apply}})
		}
		return ordered{{"multipart", parts}}
	}
	return ordered{{"variants", variants}}
}

// genJSONCorpus returns corpusSmallFiles files of smallMin to smallMax
// bytes, about a third of them blockstates, and corpusLargeFiles of largeMin
// to largeMax bytes.
func genJSONCorpus(r *rand.Rand) []corpusFile {
	var files []corpusFile
	for len(files) < corpusSmallFiles {
		dom, name := pick(r, domains), blockName(r)
		var f corpusFile
		if r.IntN(3) == 0 {
			f = corpusFile{fmt.Sprintf("%s:blockstates/%s.json", dom, name), encodeJSON(r, genBlockstate(r, dom, name, false))}
		} else {
			f = corpusFile{fmt.Sprintf("%s:models/block/%s.json", dom, name), encodeJSON(r, genModel(r, dom, name))}
		}
		if len(f.data) >= smallMin && len(f.data) <= smallMax {
			files = append(files, f)
		}
	}
	for n := 0; n < corpusLargeFiles; {
		dom, name := pick(r, domains), blockName(r)
		data := encodeJSON(r, genBlockstate(r, dom, name, true))
		if len(data) >= largeMin && len(data) <= largeMax {
			files = append(files, corpusFile{fmt.Sprintf("%s:blockstates/%s.json", dom, name), data})
			n++
		}
	}
	return files
}

// genMap returns n bytes of map-like voxel data: 16×16×16 sections of
// little-endian uint16 block ids, each followed by its sky-light nibbles.
// Columns are 8 sections high; terrain comes from a noisy heightmap: stone
// with blobs of other stone, ores and caves, dirt, grass or sand, water
// below sea level and air above, with plants and a little per-block noise.
func genMap(r *rand.Rand, n int) []byte {
	const (
		sectionLen = mapSectionBlocks*2 + mapSectionBlocks/2
		height     = 8 // sections per column
		seaLevel   = 62
	)
	out := make([]byte, 0, n+sectionLen)
	// Value noise on a coarse grid, bilinearly interpolated.
	grid := make([]float64, 64*64)
	for i := range grid {
		grid[i] = r.Float64()
	}
	noise := func(x, z, scale int) float64 {
		fx, fz := float64(x)/float64(scale), float64(z)/float64(scale)
		tx, tz := fx-math.Floor(fx), fz-math.Floor(fz)
		x0, z0 := (int(math.Floor(fx))%63+63)%63, (int(math.Floor(fz))%63+63)%63
		g := func(i, j int) float64 { return grid[j*64+i] }
		return g(x0, z0)*(1-tx)*(1-tz) + g(x0+1, z0)*tx*(1-tz) + g(x0, z0+1)*(1-tx)*tz + g(x0+1, z0+1)*tx*tz
	}
	stones := []uint16{1, 1, 1, 19, 20, 21, 1, 1, 22} // stone, granite, diorite, andesite, deepslate
	for col := 0; len(out) < n; col++ {
		cx, cz := col%16, col/16
		for sy := range height {
			var light [mapSectionBlocks / 2]byte
			for i := range mapSectionBlocks {
				x, z, y := i&15, (i>>4)&15, i>>8
				wx, wy, wz := cx*16+x, sy*16+y, cz*16+z
				h := 40 + int(noise(wx, wz, 24)*60)
				var id uint16
				sky := byte(0)
				switch {
				case wy == 0 || (wy < 4 && r.IntN(4) < 4-wy):
					id = 7 // bedrock
				case wy < h-4:
					// blobs of other stone: 3D-ish noise from two 2D lookups
					id = stones[int(noise(wx+wy*7, wz+wy*3, 6)*9)%len(stones)]
					if wy < 24 {
						id = 22
					}
					if c := noise(wx*2+wy, wz*2-wy, 5); c > 0.82 {
						id = 0 // cave
					}
					switch p := r.IntN(1000); {
					case p < 8:
						id = 16 // coal ore
					case p < 12:
						id = 15 // iron ore
					case p < 14:
						id = 14 // gold ore
					case p < 15:
						id = 56 // diamond ore
					case p < 30:
						id = 13 // gravel
					}
				case wy < h:
					id = 3 // dirt
				case wy == h:
					id = 2 // grass
					if h < seaLevel+2 {
						id = 12 // sand
					}
				case wy == h+1 && h > seaLevel && r.IntN(3) == 0:
					id = uint16(31 + r.IntN(8)) // tall grass, flowers
					sky = 15
				case wy <= seaLevel:
					id = 9 // water
					sky = byte(max(0, 15-(seaLevel-wy)))
				default:
					sky = 15
				}
				out = binary.LittleEndian.AppendUint16(out, id)
				light[i/2] |= sky << (4 * (i & 1))
			}
			out = append(out, light[:]...)
		}
	}
	return out[:n]
}

// chunks cuts data into pieces of n bytes.
func chunks(data []byte, n int) [][]byte {
	var out [][]byte
	for len(data) > 0 {
		k := min(n, len(data))
		out = append(out, data[:k])
		data = data[k:]
	}
	return out
}
