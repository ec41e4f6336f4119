package configs

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeFile(t *testing.T, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// Every problem of a file is reported at once, each with its line, and an
// unknown setting with the setting it is probably a typo of.
func TestLoadServerReportsEveryProblemWithItsLine(t *testing.T) {
	p := writeFile(t, t.TempDir(), "server.toml", strings.Join([]string{
		`# comment`,
		`chunk_sise = 4096`,
		`write_timeout = "soon"`,
		`max_clients = 0`,
		`listen = "127.0.0.1:30000"`,
		`preload = ["textures/*"]`,
		`hot_relaod = true`,
		`admin_listen = "nowhere"`,
	}, "\n"))
	_, err := LoadServer(p)
	var ps Problems
	if !errors.As(err, &ps) || !errors.Is(err, ErrInvalid) {
		t.Fatalf("err = %v, want Problems matching ErrInvalid", err)
	}
	want := []string{
		p + ":2: chunk_sise: unknown setting; did you mean chunk_size?",
		p + `:3: write_timeout: bad value (want a duration such as "10s"): time: invalid duration "soon"`,
		p + ":7: hot_relaod: unknown setting; did you mean hot_reload?",
		p + ":4: max_clients: 0 must be positive",
		p + `:6: preload: pattern "textures/*"`,
		p + `:8: admin_listen: "nowhere" has no port`,
	}
	if len(ps) != len(want) {
		t.Errorf("got %d problems, want %d:\n%v", len(ps), len(want), err)
	}
	for i, w := range want {
		if i < len(ps) && !strings.HasPrefix(ps[i].Error(), w) {
			t.Errorf("problem %d:\n got %s\nwant %s…", i, ps[i], w)
		}
	}
}

func TestDidYouMean(t *testing.T) {
	known := []string{"chunk_size", "listen", "max_clients", "packs", "preload", "priority"}
	tests := []struct{ name, got, want string }{
		{"one letter swapped", "chunk_sise", "chunk_size"},
		{"missing letter", "lisen", "listen"},
		{"plural", "pack", "packs"},
		{"transposed", "prioirty", "priority"},
		{"nothing close", "colour", ""},
	}
	for _, tc := range tests {
		if got := didYouMean(tc.got, known); got != tc.want {
			t.Errorf("%s: didYouMean(%q) = %q, want %q", tc.name, tc.got, got, tc.want)
		}
	}
}

// Flags are named as the place a bad value came from.
func TestCheckNamesTheFlag(t *testing.T) {
	s, src := DefaultServer(), DefaultSource()
	s.Listen = "nowhere"
	src.SetByFlag("listen", "-listen")
	err := src.Check(s)
	if err == nil || !strings.HasPrefix(err.Error(), "flag -listen: listen: ") {
		t.Fatalf("err = %v", err)
	}
	if err := DefaultSource().Check(DefaultServer()); err != nil {
		t.Fatalf("defaults: %v", err)
	}
}

func TestCheckPack(t *testing.T) {
	root := t.TempDir()
	good := filepath.Join(root, "good")
	writeFile(t, good, "assets/m/texture/a.png", "a")
	writeFile(t, good, "pack.toml", "name = \"good\"\npriority = 3\ndescription = \"fine\"\n")
	badToml := filepath.Join(root, "badtoml")
	writeFile(t, badToml, "assets/m/texture/a.png", "a")
	writeFile(t, badToml, "pack.toml", "name = \"x\"\nprioritty = 3\npriority = \"high\"\n")
	huge := filepath.Join(root, "huge")
	writeFile(t, huge, "assets/m/texture/a.png", "a")
	writeFile(t, huge, "pack.toml", "priority = 99999999\n")
	syntax := filepath.Join(root, "syntax")
	writeFile(t, syntax, "assets/m/texture/a.png", "a")
	writeFile(t, syntax, "pack.toml", "name = \"x\"\npriority = = 1\n")
	file := writeFile(t, root, "afile", "x")
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name string
		dir  string
		want []string // prefixes of the problems, in order
	}{
		{"good", good, nil},
		{"no pack.toml is fine", filepath.Join(good, "assets", ".."), nil},
		{"missing", filepath.Join(root, "nope"), []string{"server.toml:4: packs: " + filepath.Join(root, "nope") + ": pack directory does not exist"}},
		{"a file", file, []string{"server.toml:4: packs: " + file + ": not a directory"}},
		{"missing, relative", "nope-relative", []string{"server.toml:4: packs: nope-relative: pack directory does not exist (looked in " + wd + ", the working directory)"}},
		{"assets given", filepath.Join(good, "assets"), []string{"server.toml:4: packs: " + filepath.Join(good, "assets") + ": no assets/ directory in it"}},
		{"parent of packs given", root, []string{"server.toml:4: packs: " + root + ": no assets/ directory in it; a pack is a directory holding assets/<domain>/<type>/<key>; it holds packs: did you mean -packs " + badToml + ","}},
		{"pack.toml unknown key and bad value", badToml, []string{
			filepath.Join(badToml, "pack.toml") + ":2: prioritty: unknown setting; did you mean priority?",
			filepath.Join(badToml, "pack.toml") + ":3: priority: bad value (want an integer)",
		}},
		{"priority out of range", huge, []string{filepath.Join(huge, "pack.toml") + ":1: priority: 99999999 not in -1000000..1000000"}},
		{"not TOML", syntax, []string{filepath.Join(syntax, "pack.toml") + ":2: not valid TOML"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := CheckPack(tc.dir, "server.toml", 4)
			if len(got) != len(tc.want) {
				t.Fatalf("got %d problems, want %d: %v", len(got), len(tc.want), got)
			}
			for i, w := range tc.want {
				if !strings.HasPrefix(got[i].Error(), w) {
					t.Errorf("problem %d:\n got %s\nwant %s…", i, got[i], w)
				}
			}
		})
	}
	if got := CheckPack(filepath.Join(good, "assets"), "server.toml", 4); !strings.Contains(got.Error(), "did you mean "+good+"?") {
		t.Errorf("assets/ given: %v does not suggest the pack", got)
	}
}

func TestLoadWorldNamesUnknownSettingsWithLines(t *testing.T) {
	p := writeFile(t, t.TempDir(), "world.toml", strings.Join([]string{
		`seed = 1`,
		`region_sise = 16`,
		`nodes_per_region = 2`,
		``,
		`[[node]]`,
		`name = "stone"`,
		`wieght = 1`,
		`resources = ["texture/default:blocks/stone.png"]`,
	}, "\n"))
	_, err := LoadWorld(p)
	want := p + ":2: region_sise: unknown setting; did you mean region_size?\n" +
		p + ":7: node.wieght: unknown setting; did you mean weight?"
	if err == nil || err.Error() != want || !errors.Is(err, ErrInvalid) {
		t.Errorf("err =\n%v\nwant\n%s", err, want)
	}
	p = writeFile(t, t.TempDir(), "world.toml", "region_size = 0\nnodes_per_region = 1\n[[node]]\nname = \"x\"\nweight = 1\n")
	if _, err := LoadWorld(p); err == nil || err.Error() != p+":1: region_size: 0 not in 1..65536" {
		t.Errorf("err = %v", err)
	}
}
