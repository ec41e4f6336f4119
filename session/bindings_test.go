package session

import (
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"unique"

	"github.com/voxsync/voxsync/configs"
	"github.com/voxsync/voxsync/packs"
	"github.com/voxsync/voxsync/resources"
)

// After every flush a client has been told exactly what a model says:
// every key in use (preloaded or used by the game) and in the view, with
// the view's hash — through random joins, game uses and releases, and hot
// reloads that add, remove and change preloaded and other files, also
// before a client's first flush; no Bind twice, no Lost for what it was
// never told, and its bound count right.
func TestBindingsAgainstAModel(t *testing.T) {
	for seed := range uint64(200) {
		bindingsModelRun(t, seed)
	}
}

func bindingsModelRun(t *testing.T, seed uint64) {
	r := rand.New(rand.NewPCG(seed, 7))
	dir := t.TempDir()
	const nfiles = 10
	// p* files are preloaded, g* are not.
	name := func(i int) string {
		if i < nfiles/2 {
			return "assets/t/texture/p" + itoa(i) + ".png"
		}
		return "assets/t/texture/g" + itoa(i) + ".png"
	}
	present := map[int]int{} // file -> version
	write := func() {
		for i := range nfiles {
			p := filepath.Join(dir, filepath.FromSlash(name(i)))
			switch r.IntN(4) {
			case 0:
				os.Remove(p)
				delete(present, i)
			case 1:
				v := r.IntN(3)
				writePackFile(t, dir, name(i), []byte("v"+itoa(v)+" "+itoa(i)))
				present[i] = v
			}
		}
	}
	write()
	cfg := configs.DefaultServer()
	cfg.Packs = []string{dir}
	cfg.BuiltinPack = false
	cfg.Preload = []string{"t:p*"}
	ids := packs.NewIDs()
	load := func() *packs.View {
		v, err := packs.Load(context.Background(), packs.Options{Dirs: []string{dir}, IDs: ids}, nil)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	s, err := NewServer(ServerOptions{Config: cfg, View: load(), IDs: ids})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	keyOf := func(i int) resources.Key {
		l := resources.Loc{Type: resources.TypeTexture, Ref: resources.Ref{Domain: "t", Key: filepath.Base(name(i))}}
		return resources.Key{Type: l.Type, ID: ids.ID(l)}
	}
	type cl struct {
		c    *Client
		game map[resources.Key]int
		told map[resources.Key]unique.Handle[resources.Hash]
	}
	var cls []*cl
	newCl := func() {
		c := newClient(s, nil, "127.0.0.1:1")
		if err := s.join(c); err != nil {
			t.Fatal(err)
		}
		cls = append(cls, &cl{c: c, game: map[resources.Key]int{}, told: map[resources.Key]unique.Handle[resources.Hash]{}})
	}
	newCl()
	for step := range 120 {
		x := cls[r.IntN(len(cls))]
		switch op := r.IntN(6); op {
		case 0:
			newCl()
		case 1: // game use
			k := keyOf(r.IntN(nfiles))
			x.c.mu.Lock()
			x.c.useLocked(k)
			x.c.mu.Unlock()
			x.game[k]++
		case 2: // game release of a game use
			for k := range x.game {
				x.c.mu.Lock()
				if err := x.c.releaseLocked(k); err != nil {
					t.Fatal(err)
				}
				x.c.mu.Unlock()
				if x.game[k]--; x.game[k] == 0 {
					delete(x.game, k)
				}
				break
			}
		case 3: // reload
			write()
			s.SetView(load())
		default: // flush one client
			x.c.mu.Lock()
			binds, losts := x.c.reconcileLocked()
			v := x.c.view
			pre := s.pre
			x.c.mu.Unlock()
			for _, e := range binds {
				k := resources.Key{Type: e.Type, ID: e.ID}
				if old, ok := x.told[k]; ok && old == e.Content {
					t.Fatalf("seed %d step %d: duplicate Bind of %v", seed, step, k)
				}
				x.told[k] = e.Content
			}
			for _, k := range losts {
				if _, ok := x.told[k]; !ok {
					t.Fatalf("seed %d step %d: Lost of %v never told", seed, step, k)
				}
				delete(x.told, k)
			}
			// Ideal: every key in use and in the view, as its hash.
			want := map[resources.Key]unique.Handle[resources.Hash]{}
			for _, e := range v.Entries() {
				k := resources.Key{Type: e.Type, ID: e.ID}
				if pre.has(k) || x.game[k] > 0 {
					want[k] = e.Content
				}
			}
			if len(want) != len(x.told) {
				t.Fatalf("seed %d step %d: told %d keys, want %d (%v vs %v)", seed, step, len(x.told), len(want), x.told, want)
			}
			for k, h := range want {
				if x.told[k] != h {
					t.Fatalf("seed %d step %d: key %v told %v want %v", seed, step, k, x.told[k], h)
				}
			}
			x.c.mu.Lock()
			bound := x.c.bind.bound
			eachTold := map[resources.Key]unique.Handle[resources.Hash]{}
			x.c.bind.eachTold(func(k resources.Key, h unique.Handle[resources.Hash]) { eachTold[k] = h })
			x.c.mu.Unlock() // before any Fatal: Close takes the locks
			if bound != len(x.told) {
				t.Fatalf("seed %d step %d: bound %d, told %d", seed, step, bound, len(x.told))
			}
			if len(eachTold) != len(x.told) {
				t.Fatalf("seed %d step %d: eachTold gives %d keys, told %d", seed, step, len(eachTold), len(x.told))
			}
			for k, h := range eachTold {
				if x.told[k] != h {
					t.Fatalf("seed %d step %d: eachTold %v", seed, step, k)
				}
			}
		}
	}
}
