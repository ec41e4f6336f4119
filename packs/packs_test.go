package packs

import (
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/voxsync/voxsync/manifest"
	"github.com/voxsync/voxsync/resources"
)

// writeFile creates dir/rel with data, making parent directories.
func writeFile(t testing.TB, dir, rel string, data string) string {
	t.Helper()
	p := filepath.Join(dir, filepath.FromSlash(rel))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func load(t testing.TB, opts Options, prev *View) *View {
	t.Helper()
	v, err := Load(context.Background(), opts, prev)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.Close)
	return v
}

func loc(typ resources.Type, ref string) Loc {
	r, err := resources.ParseRef(ref)
	if err != nil {
		panic(err)
	}
	return Loc{Type: typ, Ref: r}
}

func read(t testing.TB, e *Entry) string {
	t.Helper()
	c, err := e.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	b, err := io.ReadAll(io.NewSectionReader(c, 0, e.Size))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestBuiltinPack(t *testing.T) {
	v := load(t, Options{Builtin: true}, nil)
	if len(v.Problems) != 0 {
		t.Fatalf("problems in the built-in pack: %v", v.Problems)
	}
	types := map[resources.Type]int{}
	for _, e := range v.Entries() {
		types[e.Type]++
		if got := resources.Sum([]byte(read(t, e))); got != e.Hash {
			t.Errorf("%s: served bytes hash to %s, indexed %s", e.Loc, got.Short(), e.Hash.Short())
		}
	}
	for _, typ := range resources.Types() {
		if types[typ] == 0 {
			t.Errorf("built-in pack has no %s", typ)
		}
	}
}

func TestLayering(t *testing.T) {
	low, high, tie := t.TempDir(), t.TempDir(), t.TempDir()
	writeFile(t, low, "pack.toml", "name = \"low\"\npriority = 1\n")
	writeFile(t, low, "assets/default/texture/blocks/stone.png", "low stone")
	writeFile(t, low, "assets/default/texture/only_low.png", "only low")
	writeFile(t, high, "pack.toml", "name = \"high\"\npriority = 10\n")
	writeFile(t, high, "assets/default/texture/blocks/stone.png", "high stone")
	writeFile(t, tie, "pack.toml", "priority = 1\n")
	writeFile(t, tie, "assets/default/texture/only_low.png", "tie wins: listed later")

	// high is listed first but outranks low by priority.
	v := load(t, Options{Dirs: []string{high, low, tie}, Builtin: true}, nil)
	if len(v.Problems) != 0 {
		t.Fatalf("problems: %v", v.Problems)
	}
	tests := []struct {
		loc  Loc
		want string
	}{
		{loc(resources.TypeTexture, "default:blocks/stone.png"), "high stone"},
		{loc(resources.TypeTexture, "default:only_low.png"), "tie wins: listed later"},
	}
	for _, tc := range tests {
		e, ok := v.Lookup(tc.loc)
		if !ok {
			t.Fatalf("%s missing", tc.loc)
		}
		if got := read(t, e); got != tc.want {
			t.Errorf("%s = %q, want %q", tc.loc, got, tc.want)
		}
		if byHash, ok := v.ByHash(e.Hash); !ok || byHash.Hash != e.Hash {
			t.Errorf("%s not found by hash", tc.loc)
		}
		if byKey, ok := v.Get(resources.Key{Type: e.Type, ID: e.ID}); !ok || byKey != e {
			t.Errorf("%s not found by id", tc.loc)
		}
	}
	// The built-in pack's files are still there underneath.
	if _, ok := v.Lookup(loc(resources.TypeFont, "default:mono.bdf")); !ok {
		t.Error("built-in font missing when user packs are loaded")
	}
	if got := v.Packs()[len(v.Packs())-1].Name; got != "high" {
		t.Errorf("highest pack = %q, want high", got)
	}
}

// A file the higher-ranked pack cannot serve (too large, a symlink out of
// the pack) must not hide the lower-ranked pack's good file at the same
// location, and must not shadow it in the memory slots either.
func TestLayeringFallsBackPastUnservableFiles(t *testing.T) {
	low, high := t.TempDir(), t.TempDir()
	writeFile(t, low, "pack.toml", "priority = 1\n")
	writeFile(t, low, "assets/default/texture/big.png", "low big")
	writeFile(t, low, "assets/default/texture/link.png", "low link")
	writeFile(t, low, "assets/default/texture/plain.png", "low plain")
	writeFile(t, high, "pack.toml", "priority = 10\n")
	writeFile(t, high, "assets/default/texture/big.png", strings.Repeat("x", 100))
	outside := writeFile(t, t.TempDir(), "secret.png", "outside")
	if err := os.Symlink(outside, filepath.Join(high, "assets/default/texture/link.png")); err != nil {
		t.Fatal(err)
	}
	writeFile(t, high, "assets/default/texture/plain.png", "high plain")

	v := load(t, Options{Dirs: []string{low, high}, MaxFileSize: 50}, nil)
	want := map[string]string{"big.png": "low big", "link.png": "low link", "plain.png": "high plain"}
	for key, content := range want {
		e, ok := v.Lookup(loc(resources.TypeTexture, "default:"+key))
		if !ok {
			t.Fatalf("%s not served", key)
		}
		if got := read(t, e); got != content {
			t.Errorf("%s = %q, want %q", key, got, content)
		}
		if !e.InMemory() {
			t.Errorf("%s: served from disk, want it kept in memory once read", key)
		}
	}
	reported := map[string]bool{}
	for _, p := range v.Problems {
		if p.Pack == high {
			reported[p.Path] = true
		}
	}
	if !reported["assets/default/texture/big.png"] || !reported["assets/default/texture/link.png"] || len(v.Problems) != 2 {
		t.Errorf("problems %v, want big.png and link.png of the high pack", v.Problems)
	}
}

func TestBadFilesAreSkippedAndReported(t *testing.T) {
	dir := t.TempDir()
	outside := writeFile(t, t.TempDir(), "secret.txt", "outside the pack")
	writeFile(t, dir, "assets/default/texture/good.png", "good")
	writeFile(t, dir, "assets/Default/texture/upper_domain.png", "x")
	writeFile(t, dir, "assets/default/textures/wrong_type.png", "x")
	writeFile(t, dir, "assets/default/loose_file.png", "x")
	writeFile(t, dir, "assets/default/texture/big.png", strings.Repeat("x", 2000))
	writeFile(t, dir, "assets/default/texture/.hidden.png", "editor scratch")
	writeFile(t, dir, "assets/default/texture/good.png~", "backup")
	if err := os.Symlink(outside, filepath.Join(dir, "assets/default/texture/escape.png")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("good.png", filepath.Join(dir, "assets/default/texture/alias.png")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/nonexistent/target", filepath.Join(dir, "assets/default/texture/dangling.png")); err != nil {
		t.Fatal(err)
	}
	// Names that would break or fool clients: not UTF-8 (one such file
	// once stopped every client from syncing), NFD (a twin of an NFC name
	// that looks the same), control and bidirectional-override characters.
	writeFile(t, dir, "assets/default/texture/caf\xe9.png", "latin-1 name")
	writeFile(t, dir, "assets/default/texture/cafe\u0301.png", "NFD twin")
	writeFile(t, dir, "assets/default/texture/line\nbreak.png", "control")
	writeFile(t, dir, "assets/default/texture/invoice\u202egnp.exe", "bidi override")
	missing := filepath.Join(t.TempDir(), "no-such-pack")

	v := load(t, Options{Dirs: []string{dir, missing}, MaxFileSize: 1000}, nil)

	wantProblems := map[string]string{
		"assets/Default/texture/upper_domain.png":     "validate domain",
		"assets/default/textures/wrong_type.png":      "not one of the asset types",
		"assets/default/loose_file.png":               "not at assets/<domain>/<type>/<key>",
		"assets/default/texture/big.png":              "max_file_size",
		"assets/default/texture/escape.png":           "symlink leaves the pack",
		"assets/default/texture/dangling.png":         "symlink leaves the pack or is broken",
		"assets/default/texture/caf\xe9.png":          "not valid UTF-8",
		"assets/default/texture/cafe\u0301.png":       "not in Unicode NFC form; rename it to \"caf\u00e9.png\"",
		"assets/default/texture/line\nbreak.png":      "control character U+000A",
		"assets/default/texture/invoice\u202egnp.exe": "bidirectional control U+202E",
	}
	got := map[string]string{}
	sawMissingPack := false
	for _, p := range v.Problems {
		if p.Pack == missing {
			sawMissingPack = true
			continue
		}
		got[p.Path] = p.Reason
	}
	if !sawMissingPack {
		t.Errorf("missing pack directory not reported: %v", v.Problems)
	}
	for path, want := range wantProblems {
		if !strings.Contains(got[path], want) {
			t.Errorf("%s: problem %q, want it to mention %q", path, got[path], want)
		}
	}
	if len(got) != len(wantProblems) {
		t.Errorf("problems %v, want exactly %d", got, len(wantProblems))
	}
	// The good file and the in-pack symlink are served; nothing else is.
	if v.Len() != 2 {
		t.Fatalf("served %d resources, want 2: %v", v.Len(), v.Entries())
	}
	for _, key := range []string{"default:good.png", "default:alias.png"} {
		e, ok := v.Lookup(loc(resources.TypeTexture, key))
		if !ok || read(t, e) != "good" {
			t.Errorf("%s not served as good", key)
		}
	}
}

// Root reads any file whatever its mode, so as root the check runs in a
// child process under uid 65534 (nobody), which is refused for real.
func TestUnreadableFile(t *testing.T) {
	if os.Getenv("PACKS_TEST_UNREADABLE_DIR") != "" {
		v := load(t, Options{Dirs: []string{os.Getenv("PACKS_TEST_UNREADABLE_DIR")}}, nil)
		unreadable := false
		for _, p := range v.Problems {
			if p.Path == "assets/default/texture/locked.png" && strings.Contains(p.Reason, "unreadable") {
				unreadable = true
			}
		}
		if !unreadable || v.Len() != 1 {
			t.Fatalf("problems %v, %d served; want locked.png unreadable and ok.png served", v.Problems, v.Len())
		}
		return
	}
	dir := t.TempDir()
	writeFile(t, dir, "assets/default/texture/ok.png", "ok")
	locked := writeFile(t, dir, "assets/default/texture/locked.png", "locked")
	if err := os.Chmod(locked, 0); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() != 0 {
		t.Setenv("PACKS_TEST_UNREADABLE_DIR", dir)
		TestUnreadableFile(t)
		return
	}
	// Let nobody reach the directory: every parent up from the pack.
	for p := dir; p != "/" && p != "."; p = filepath.Dir(p) {
		if fi, err := os.Stat(p); err == nil && fi.Mode().Perm()&0o005 != 0o005 {
			if err := os.Chmod(p, fi.Mode().Perm()|0o055); err != nil {
				t.Fatal(err)
			}
		}
	}
	// The test binary's own directory is private to root: run a copy.
	self, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "packs.test")
	if err := os.WriteFile(bin, self, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-test.run=^TestUnreadableFile$", "-test.count=1", "-test.v")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "PACKS_TEST_UNREADABLE_DIR="+dir, "GOCACHE=/tmp", "HOME=/tmp")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child as nobody: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "PASS") {
		t.Fatalf("child did not pass:\n%s", out)
	}
}

func TestReloadKeepsIDsAndSkipsUnchangedFiles(t *testing.T) {
	dir := t.TempDir()
	stone := writeFile(t, dir, "assets/default/texture/stone.png", "stone v1")
	writeFile(t, dir, "assets/default/texture/dirt.png", "dirt")
	ids := NewIDs()
	v1 := load(t, Options{Dirs: []string{dir}, IDs: ids}, nil)
	e1, _ := v1.Lookup(loc(resources.TypeTexture, "default:stone.png"))

	// Same size and mtime: the previous hash is reused without reading, which
	// we can see by changing the bytes behind its back.
	fi, _ := os.Stat(stone)
	if err := os.WriteFile(stone, []byte("stone v2"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(stone, fi.ModTime(), fi.ModTime()); err != nil {
		t.Fatal(err)
	}
	v2 := load(t, Options{Dirs: []string{dir}, IDs: ids}, v1)
	e2, _ := v2.Lookup(loc(resources.TypeTexture, "default:stone.png"))
	if e2.Hash != e1.Hash {
		t.Fatal("unchanged size and mtime: file was hashed again")
	}

	// A new mtime: hashed again, same id.
	later := fi.ModTime().Add(2 * time.Second)
	if err := os.Chtimes(stone, later, later); err != nil {
		t.Fatal(err)
	}
	writeFile(t, dir, "assets/default/texture/added.png", "new")
	v3 := load(t, Options{Dirs: []string{dir}, IDs: ids}, v2)
	e3, _ := v3.Lookup(loc(resources.TypeTexture, "default:stone.png"))
	if e3.Hash != resources.Sum([]byte("stone v2")) {
		t.Fatalf("changed mtime: hash %s, want hash of v2", e3.Hash.Short())
	}
	if e3.ID != e1.ID {
		t.Fatalf("id changed across reload: %d → %d", e1.ID, e3.ID)
	}
	added, _ := v3.Lookup(loc(resources.TypeTexture, "default:added.png"))
	if added.ID == e1.ID || added.ID == 0 {
		t.Fatalf("new file got id %d", added.ID)
	}
}

func TestLargeFilesAreReadFromDisk(t *testing.T) {
	dir := t.TempDir()
	big := strings.Repeat("0123456789", 10000)
	writeFile(t, dir, "assets/default/sound/big.ogg", big)
	writeFile(t, dir, "assets/default/sound/small.ogg", "small")
	v := load(t, Options{Dirs: []string{dir}, MemoryMax: 1024}, nil)
	b, _ := v.Lookup(loc(resources.TypeSound, "default:big.ogg"))
	s, _ := v.Lookup(loc(resources.TypeSound, "default:small.ogg"))
	if b.InMemory() || s.InMemory() {
		t.Fatal("files in memory before anyone asked for them")
	}
	read(t, s)
	read(t, b)
	if b.InMemory() || !s.InMemory() {
		t.Fatalf("in memory: big=%v small=%v", b.InMemory(), s.InMemory())
	}
	if read(t, b) != big || b.Hash != resources.Sum([]byte(big)) {
		t.Fatal("big file served wrong")
	}
}

// A file over ChunkedMin is cut into chunks even when memory_max lets it
// be held in memory: one chunk of it would be over the protocol's cap, and
// clients could not fetch it.
func TestLargeFileInMemoryIsStillChunked(t *testing.T) {
	dir := t.TempDir()
	big := strings.Repeat("voxsync!", (ChunkedMin+ChunkedMin/2)/8)
	writeFile(t, dir, "assets/default/sound/big.ogg", big)
	v := load(t, Options{Dirs: []string{dir}, MemoryMax: 64 << 20}, nil)
	e, _ := v.Lookup(loc(resources.TypeSound, "default:big.ogg"))
	read(t, e)
	if !e.InMemory() {
		t.Fatal("not held in memory under a memory_max above its size")
	}
	m, err := e.Manifest(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Chunks) < 2 {
		t.Fatalf("%d bytes in %d chunk(s)", len(big), len(m.Chunks))
	}
	for _, ch := range m.Chunks {
		if ch.Length > manifest.MaxChunkLen {
			t.Fatalf("chunk of %d bytes, over the cap of %d", ch.Length, manifest.MaxChunkLen)
		}
	}
}

func TestMemoryBudget(t *testing.T) {
	dir := t.TempDir()
	for i := range 10 {
		writeFile(t, dir, "assets/default/texture/"+string(rune('a'+i))+".png", strings.Repeat("x", 100))
	}
	v := load(t, Options{Dirs: []string{dir}, MemoryBudget: 350}, nil)
	n := 0
	for _, e := range v.Entries() {
		if read(t, e) != strings.Repeat("x", 100) {
			t.Fatal("wrong bytes")
		}
		if e.InMemory() {
			n++
		}
	}
	if n != 3 {
		t.Fatalf("%d files kept in memory with room for 3", n)
	}
}

// Bytes are read into memory lazily; what is served must still be what was
// hashed, or nothing.
func TestChangedFileIsNotServed(t *testing.T) {
	dir := t.TempDir()
	p := writeFile(t, dir, "assets/default/texture/a.png", "version 1")
	v := load(t, Options{Dirs: []string{dir}}, nil)
	e, _ := v.Lookup(loc(resources.TypeTexture, "default:a.png"))
	os.WriteFile(p, []byte("version 2"), 0o644) // same size, before first use
	if _, err := e.Open(); !errors.Is(err, ErrChanged) {
		t.Fatalf("open of a changed file: %v", err)
	}
	if e.InMemory() {
		t.Fatal("changed bytes cached")
	}
}

// A file swapped for a symlink out of the pack after the scan cannot be
// opened: the check is the kernel's, at open time.
func TestSymlinkSwappedInAfterScan(t *testing.T) {
	dir := t.TempDir()
	secret := writeFile(t, t.TempDir(), "secret", strings.Repeat("s", 100_000))
	p := writeFile(t, dir, "assets/default/sound/a.ogg", strings.Repeat("a", 100_000))
	v := load(t, Options{Dirs: []string{dir}}, nil)
	e, _ := v.Lookup(loc(resources.TypeSound, "default:a.ogg"))
	os.Remove(p)
	if err := os.Symlink(secret, p); err != nil {
		t.Fatal(err)
	}
	if c, err := e.Open(); err == nil {
		buf := make([]byte, 10)
		c.ReadAt(buf, 0)
		c.Close()
		t.Fatalf("opened a symlink leading out of the pack; read %q", buf)
	}
}

// Ids come from names: two servers (or one restarted) with different packs
// give the same name the same id, even when a file is added in the middle
// of the sort order; colliding names still get distinct ids.
func TestIDsStableAcrossRestarts(t *testing.T) {
	a, b := t.TempDir(), t.TempDir()
	for _, name := range []string{"a.png", "c.png", "e.png"} {
		writeFile(t, a, "assets/m/texture/"+name, "v1 "+name)
	}
	for _, name := range []string{"a.png", "b.png", "c.png", "e.png"} {
		writeFile(t, b, "assets/m/texture/"+name, "v1 "+name)
	}
	v1 := load(t, Options{Dirs: []string{a}, IDs: NewIDs()}, nil)
	v2 := load(t, Options{Dirs: []string{b}, IDs: NewIDs()}, nil)
	for _, name := range []string{"m:a.png", "m:c.png", "m:e.png"} {
		e1, _ := v1.Lookup(loc(resources.TypeTexture, name))
		e2, _ := v2.Lookup(loc(resources.TypeTexture, name))
		if e1.ID != e2.ID {
			t.Errorf("%s: id %d in the first run, %d after a restart with b.png added", name, e1.ID, e2.ID)
		}
	}

	// Find two names whose FNV ids collide (a birthday search: ~80k names).
	seen := map[resources.ResourceID]string{}
	var first, second string
	for i := 0; first == ""; i++ {
		k := "n" + strings.Repeat("x", i%3) + itoa(i) + ".png"
		id := nameID(loc(resources.TypeSound, "m:"+k))
		if prev, ok := seen[id]; ok {
			first, second = prev, k
		}
		seen[id] = k
	}
	ids := NewIDs()
	id1 := ids.ID(loc(resources.TypeSound, "m:"+first))
	id2 := ids.ID(loc(resources.TypeSound, "m:"+second))
	if id1 == id2 || id1 == 0 || id2 == 0 {
		t.Fatalf("colliding names %q and %q got ids %d and %d", first, second, id1, id2)
	}
	if again := ids.ID(loc(resources.TypeSound, "m:"+second)); again != id2 {
		t.Fatalf("id of %q changed from %d to %d", second, id2, again)
	}
	// Other types do not collide with these.
	if other := ids.ID(loc(resources.TypeTexture, "m:"+second)); other != nameID(loc(resources.TypeTexture, "m:"+second)) {
		t.Fatalf("texture id %d is not its name's", other)
	}
}

func itoa(i int) string {
	const digits = "0123456789abcdefghijklmnopqrstuvwxyz"
	if i == 0 {
		return "0"
	}
	var b []byte
	for ; i > 0; i /= 36 {
		b = append([]byte{digits[i%36]}, b...)
	}
	return string(b)
}

// A pack.toml broken while the server runs (a developer's typo, saved)
// keeps the pack with its previous settings, and says why. Before, every
// client lost every resource of the pack at the reload. At start, with
// nothing to fall back on, the pack is still refused.
func TestReloadKeepsAPackWhosePackTomlBroke(t *testing.T) {
	low, high := t.TempDir(), t.TempDir()
	writeFile(t, low, "assets/default/texture/stone.png", "low stone")
	writeFile(t, high, "pack.toml", "priority = 10\n")
	writeFile(t, high, "assets/default/texture/stone.png", "high stone")
	writeFile(t, high, "assets/default/texture/dirt.png", "high dirt")
	ids := NewIDs()
	v1 := load(t, Options{Dirs: []string{high, low}, IDs: ids}, nil)
	// Read as strictly as -check-config reads it at start: a typo of
	// priority read leniently left the pack at priority 0, and the low
	// pack's stone won without a word.
	for _, broken := range []struct{ toml, why string }{
		{"priority = \"high\"\n", "priority"},
		{"prioirty = 10\n", "did you mean priority?"},
		{"priority = 99999999\n", "not in -1000000..1000000"},
	} {
		writeFile(t, high, "pack.toml", broken.toml)
		v2 := load(t, Options{Dirs: []string{high, low}, IDs: ids}, v1)
		for key, want := range map[string]string{"stone.png": "high stone", "dirt.png": "high dirt"} {
			e, ok := v2.Lookup(loc(resources.TypeTexture, "default:"+key))
			if !ok {
				t.Fatalf("%q: %s not served after pack.toml broke", broken.toml, key)
			}
			if got := read(t, e); got != want {
				t.Errorf("%q: %s = %q, want %q (the pack's previous priority)", broken.toml, key, got, want)
			}
		}
		if len(v2.Problems) != 1 || v2.Problems[0].Pack != high || !strings.Contains(v2.Problems[0].Reason, "pack.toml") ||
			!strings.Contains(v2.Problems[0].Reason, broken.why) || !strings.Contains(v2.Problems[0].Reason, "previous settings") {
			t.Errorf("%q: problems = %v; want the broken pack.toml (%s), kept with its previous settings", broken.toml, v2.Problems, broken.why)
		}
		// At a first load (the server refuses such a pack before, with
		// configs.CheckPack) the pack is read as far as it goes, and said so.
		if v3 := load(t, Options{Dirs: []string{high}}, nil); len(v3.Packs()) != 1 || len(v3.Problems) != 1 ||
			!strings.Contains(v3.Problems[0].Reason, "read as far as it goes") {
			t.Errorf("%q at start: packs %v, problems %v; want the pack kept, with the problem", broken.toml, v3.Packs(), v3.Problems)
		}
	}
}
