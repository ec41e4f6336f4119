package world

import (
	"reflect"
	"testing"

	"github.com/voxsync/voxsync/configs"
)

func TestWorldIsDeterministicAndVaried(t *testing.T) {
	def, err := configs.LoadWorld("")
	if err != nil {
		t.Fatal(err)
	}
	w1, _ := New(def)
	w2, _ := New(def)
	kinds := map[string]bool{}
	for x := int32(-20); x < 20; x++ {
		r := Region{x, x * 3}
		if !reflect.DeepEqual(w1.Resources(r), w2.Resources(r)) {
			t.Fatalf("region %v differs between two worlds from one seed", r)
		}
		for _, n := range w1.Nodes(r) {
			kinds[n] = true
		}
	}
	if len(kinds) < 5 {
		t.Fatalf("only %d node kinds in 40 regions: %v", len(kinds), kinds)
	}
	def.Seed++
	w3, _ := New(def)
	same := 0
	for x := int32(0); x < 50; x++ {
		if reflect.DeepEqual(w1.Nodes(Region{x, 0}), w3.Nodes(Region{x, 0})) {
			same++
		}
	}
	if same == 50 {
		t.Fatal("another seed gives the same world")
	}
}

func TestRegionAndView(t *testing.T) {
	def, _ := configs.LoadWorld("")
	w, _ := New(def)
	tests := []struct {
		x, z float64
		want Region
	}{
		{0, 0, Region{0, 0}},
		{15.9, 16, Region{0, 1}},
		{-0.1, -16, Region{-1, -1}},
		{1e300, -1e300, Region{2147483647, -2147483648}},
	}
	for _, tc := range tests {
		if got := w.RegionAt(tc.x, tc.z); got != tc.want {
			t.Errorf("RegionAt(%v, %v) = %v, want %v", tc.x, tc.z, got, tc.want)
		}
	}
	if n := len(w.View(Region{0, 0}, 2)); n != 25 {
		t.Errorf("view of distance 2 has %d regions", n)
	}
	if n := len(w.View(Region{2147483647, 0}, 1)); n != 6 {
		t.Errorf("view at the edge has %d regions, want 6 (no wrap-around)", n)
	}
}
