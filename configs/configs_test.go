package configs

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestDefaultsAreValid(t *testing.T) {
	s := DefaultServer()
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	if s.ChunkSize != 64<<10 || !s.BuiltinPack || len(s.Preload) != 1 {
		t.Fatalf("defaults not read from server.toml: %+v", s)
	}
	w, err := LoadWorld("")
	if err != nil {
		t.Fatal(err)
	}
	if len(w.Nodes) < 3 {
		t.Fatalf("built-in world has %d nodes", len(w.Nodes))
	}
	// The shipped example files are the embedded defaults, so they load too.
	for _, f := range []string{"server.toml", "dev.toml", "production.toml"} {
		if _, err := LoadServer(f); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
	dev, _ := LoadServer("dev.toml")
	prod, _ := LoadServer("production.toml")
	if !dev.HotReload || prod.HotReload || s.HotReload {
		t.Errorf("hot_reload: dev %v, production %v, default %v; want on only in dev", dev.HotReload, prod.HotReload, s.HotReload)
	}
}

func TestLoadServerErrorsNameTheSetting(t *testing.T) {
	tests := []struct {
		toml    string
		setting string
	}{
		{"chunk_size = 0", "chunk_size"},
		{"chunk_size = 99999999", "chunk_size"},
		{"memory_max = -1", "memory_max"},
		{`listen = "nowhere"`, "listen"},
		{`preload = ["textures/*"]`, "preload"},
		{"max_request_hashes = 100000", "max_request_hashes"},
		{"max_pending_requests = 1", "max_pending_requests"},
		{`write_timeout = "0s"`, "write_timeout"},
		{`chunk_sise = 1`, "chunk_sise"},
		{"builtin_pack = false", "packs"},
		{`write_timeout = "soon"`, "write_timeout"},
		{`mirrors = ["ftp://files.example/game/"]`, "mirrors"},
		{`mirrors = ["http://user:secret@cdn.example/game/"]`, "mirrors"},
		{`mirrors = ["cdn.example/game/"]`, "mirrors"},
		{`mirrors = ["http://ok.example/", "ftp://one/", "gopher://two/"]`, `"ftp://one/" is not http:// or https://; unusable mirror URL: "gopher://two/"`},
	}
	for _, tc := range tests {
		p := filepath.Join(t.TempDir(), "server.toml")
		if err := os.WriteFile(p, []byte(tc.toml+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := LoadServer(p)
		if err == nil {
			t.Errorf("%q: accepted", tc.toml)
			continue
		}
		if !strings.Contains(err.Error(), tc.setting) {
			t.Errorf("%q: error %q does not name %s", tc.toml, err, tc.setting)
		}
	}
	if _, err := LoadServer(filepath.Join(t.TempDir(), "missing.toml")); err == nil {
		t.Error("missing file accepted")
	}
	p := filepath.Join(t.TempDir(), "ok.toml")
	os.WriteFile(p, []byte("chunk_size = 4096\npacks = [\"a\"]\n"), 0o644)
	s, err := LoadServer(p)
	if err != nil || s.ChunkSize != 4096 || s.Packs[0] != "a" || s.MaxClients != 1000 {
		t.Fatalf("override: %+v, %v", s, err)
	}
}

func TestWorldValidation(t *testing.T) {
	p := filepath.Join(t.TempDir(), "world.toml")
	os.WriteFile(p, []byte("region_size = 16\nnodes_per_region = 1\n[[node]]\nname = \"x\"\nweight = 1\nresources = [\"textures/default:x\"]\n"), 0o644)
	_, err := LoadWorld(p)
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), `node "x" resources`) {
		t.Fatalf("err = %v", err)
	}
}

// Every bad value in a world file is reported at once, each with its line.
func TestWorldReportsEveryBadValue(t *testing.T) {
	_, err := decodeWorld("region_size = 0\nnodes_per_region = 99\n[[node]]\nname = \"x\"\nweight = 0\n", "w.toml")
	var ps Problems
	if !errors.As(err, &ps) || len(ps) != 3 {
		t.Fatalf("problems %v, want region_size, nodes_per_region and the node's weight", err)
	}
	if ps[0].Line != 1 || ps[1].Line != 2 {
		t.Errorf("lines %d and %d, want 1 and 2", ps[0].Line, ps[1].Line)
	}
	// A node's problems are at their line in that node's table, or at its
	// header when the key is not written.
	_, err = decodeWorld("region_size = 16\nnodes_per_region = 1\n[[node]]\nname = \"dirt\"\nweight = 1\n"+
		"resources = [\"texture/default:dirt.png\"]\n\n[[node]]  # stone\nname = \"stone\"\nweight = 0\n"+
		"resources = [\"textur/default:stone.png\"]\n[[node]]\nweight = 2\n", "w.toml")
	ps = nil
	if !errors.As(err, &ps) || len(ps) != 3 {
		t.Fatalf("problems %v, want stone's weight and resources, and a name missing", err)
	}
	for i, want := range []int{10, 11, 12} {
		if ps[i].Line != want {
			t.Errorf("%s: line %d, want %d", ps[i].Setting, ps[i].Line, want)
		}
	}
}

// admin_listen = "none" turns the admin listener off, as -admin-listen
// none and world = "none" do; an operator copies it from the flag's help.
func TestAdminListenNoneIsOff(t *testing.T) {
	for _, v := range []string{`"none"`, `""`} {
		p := filepath.Join(t.TempDir(), "server.toml")
		os.WriteFile(p, []byte("admin_listen = "+v+"\n"), 0o644)
		s, err := LoadServer(p)
		if err != nil || s.AdminListen != "" {
			t.Errorf("admin_listen = %s: %q, %v; want off", v, s.AdminListen, err)
		}
	}
}
