package main

import (
	"testing"

	"github.com/voxsync/voxsync/configs"
	"github.com/voxsync/voxsync/packs"
)

// memory_max = 0 serves nothing from memory, as its comment says; the
// packs package reads a zero MemoryMax as its own default.
func TestMemoryMaxZeroMeansNone(t *testing.T) {
	for _, tc := range []struct{ setting, want int64 }{{0, -1}, {1, 1}, {1 << 20, 1 << 20}} {
		cfg := configs.DefaultServer()
		cfg.MemoryMax = tc.setting
		if got := packOptions(cfg, packs.NewIDs()).MemoryMax; got != tc.want {
			t.Errorf("memory_max = %d: packs MemoryMax %d, want %d", tc.setting, got, tc.want)
		}
	}
}
