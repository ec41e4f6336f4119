// Package world is the demo game's deterministic voxel world: a seeded
// generator gives each region a few node types, and a player's view is the
// set of regions around it. The session uses it to decide which resources a
// client is using. It knows nothing of connections or packets.
package world

import (
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"math"

	"github.com/voxsync/voxsync/configs"
	"github.com/voxsync/voxsync/resources"
)

// Region is a region's grid coordinate.
type Region struct{ X, Z int32 }

// World generates region contents from a seed.
type World struct {
	seed        uint64
	regionSize  float64
	perRegion   int
	nodes       []node
	totalWeight uint64
}

type node struct {
	name   string
	weight uint64
	locs   []resources.Loc
}

// New builds a world from its validated definition.
func New(def configs.World) (*World, error) {
	w := &World{seed: def.Seed, regionSize: float64(def.RegionSize), perRegion: def.NodesPerRegion}
	for _, n := range def.Nodes {
		nd := node{name: n.Name, weight: uint64(n.Weight)}
		for _, r := range n.Resources {
			l, err := resources.ParseLoc(r)
			if err != nil {
				return nil, fmt.Errorf("world node %q: %w", n.Name, err)
			}
			nd.locs = append(nd.locs, l)
		}
		w.nodes = append(w.nodes, nd)
		w.totalWeight += nd.weight
	}
	if w.totalWeight == 0 || w.perRegion < 1 || w.regionSize < 1 {
		return nil, fmt.Errorf("world: %w", configs.ErrInvalid)
	}
	return w, nil
}

// RegionAt returns the region containing world position (x, z).
func (w *World) RegionAt(x, z float64) Region {
	clamp := func(v float64) int32 {
		return int32(max(math.MinInt32, min(math.MaxInt32, math.Floor(v/w.regionSize))))
	}
	return Region{clamp(x), clamp(z)}
}

// View returns the regions within Chebyshev distance d of r.
func (w *World) View(r Region, d int) []Region {
	out := make([]Region, 0, (2*d+1)*(2*d+1))
	for dx := -d; dx <= d; dx++ {
		for dz := -d; dz <= d; dz++ {
			x, z := int64(r.X)+int64(dx), int64(r.Z)+int64(dz)
			if x < math.MinInt32 || x > math.MaxInt32 || z < math.MinInt32 || z > math.MaxInt32 {
				continue
			}
			out = append(out, Region{int32(x), int32(z)})
		}
	}
	return out
}

// Nodes returns the names of the node types in region r.
func (w *World) Nodes(r Region) []string {
	var names []string
	for _, i := range w.pick(r) {
		names = append(names, w.nodes[i].name)
	}
	return names
}

// Resources returns the resources used by region r, each once.
func (w *World) Resources(r Region) []resources.Loc {
	seen := make(map[resources.Loc]bool)
	var out []resources.Loc
	for _, i := range w.pick(r) {
		for _, l := range w.nodes[i].locs {
			if !seen[l] {
				seen[l] = true
				out = append(out, l)
			}
		}
	}
	return out
}

// pick chooses the region's node types by weight from a hash of seed and
// coordinates: the same seed always gives the same world.
func (w *World) pick(r Region) []int {
	var out []int
	for k := 0; k < w.perRegion; k++ {
		h := fnv.New64a()
		var b [20]byte
		binary.LittleEndian.PutUint64(b[0:], w.seed)
		binary.LittleEndian.PutUint32(b[8:], uint32(r.X))
		binary.LittleEndian.PutUint32(b[12:], uint32(r.Z))
		binary.LittleEndian.PutUint32(b[16:], uint32(k))
		h.Write(b[:])
		v := h.Sum64() % w.totalWeight
		for i, n := range w.nodes {
			if v < n.weight {
				if !contains(out, i) {
					out = append(out, i)
				}
				break
			}
			v -= n.weight
		}
	}
	return out
}

func contains(s []int, v int) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}
