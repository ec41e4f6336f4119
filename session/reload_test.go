package session

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/voxsync/voxsync/configs"
	"github.com/voxsync/voxsync/packs"
	"github.com/voxsync/voxsync/resources"
)

// hotServer serves dirs with hot reload on and every resource preloaded.
func hotServer(t *testing.T, dirs ...string) *testServer {
	return startServer(t, serverSetup{dirs: dirs, hotReload: true, cfg: func(c *configs.Server) {
		c.BuiltinPack = false
		c.Preload = []string{"*"}
		c.HotReload = true
	}})
}

// waitFor returns the first event not yet consumed that matches: events
// of one flush arrive in any order, so what another wait skipped is kept.
func waitFor[T Event](t *testing.T, rec *recorder, match func(T) bool, what string) T {
	t.Helper()
	for i, e := range rec.backlog {
		if v, ok := e.(T); ok && match(v) {
			rec.backlog = append(rec.backlog[:i:i], rec.backlog[i+1:]...)
			return v
		}
	}
	deadline := time.After(15 * time.Second)
	for {
		select {
		case e := <-rec.ch:
			if v, ok := e.(T); ok && match(v) {
				return v
			}
			rec.backlog = append(rec.backlog, e)
		case <-deadline:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func loadedAs(key string, data []byte) func(Loaded) bool {
	h := resources.Sum(data)
	return func(l Loaded) bool { return l.Binding.Ref.Key == key && l.Binding.Hash == h }
}

// joinSynced starts a client on ts and waits until it has n resources.
func joinSynced(t *testing.T, ts *testServer, n int) (*Syncer, *recorder) {
	t.Helper()
	s, rec, _, _ := startSyncer(t, ts.url, nil)
	deadline := time.Now().Add(15 * time.Second)
	for s.Stats().Loaded < n || !s.Synced() {
		if time.Now().After(deadline) {
			t.Fatalf("client not synced: %+v", s.Stats())
		}
		time.Sleep(5 * time.Millisecond)
	}
	return s, rec
}

func TestHotReloadEditorPatterns(t *testing.T) {
	patterns := []struct {
		name  string
		write func(t *testing.T, path string, data []byte)
	}{
		{"write in place", func(t *testing.T, path string, data []byte) {
			f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
			if err != nil {
				t.Fatal(err)
			}
			f.Write(data[:len(data)/2])
			f.Write(data[len(data)/2:])
			f.Close()
		}},
		{"temp file renamed over", func(t *testing.T, path string, data []byte) {
			tmp := path + ".tmp"
			os.WriteFile(tmp, data, 0o644)
			if err := os.Rename(tmp, path); err != nil {
				t.Fatal(err)
			}
		}},
		{"delete then create", func(t *testing.T, path string, data []byte) {
			os.Remove(path)
			time.Sleep(20 * time.Millisecond)
			os.WriteFile(path, data, 0o644)
		}},
	}
	for _, pat := range patterns {
		t.Run(pat.name, func(t *testing.T) {
			dir := t.TempDir()
			v1 := []byte("stone, version 1")
			writePackFile(t, dir, "assets/t/texture/stone.png", v1)
			writePackFile(t, dir, "assets/t/texture/dirt.png", []byte("dirt"))
			ts := hotServer(t, dir)
			s1, rec1 := joinSynced(t, ts, 2)
			_, rec2 := joinSynced(t, ts, 2)

			v2 := []byte("stone, version 2 via " + pat.name)
			pat.write(t, filepath.Join(dir, "assets/t/texture/stone.png"), v2)
			for _, rec := range []*recorder{rec1, rec2} {
				l := waitFor(t, rec, loadedAs("stone.png", v2), "the new stone")
				if l.Replaces != resources.Sum(v1) || l.Source.String() != "network" {
					t.Fatalf("replacement event %+v", l)
				}
			}
			if st := s1.Stats(); st.Bound != 2 || st.Loaded != 2 || st.Failed != 0 {
				t.Fatalf("after reload: %+v", st)
			}
		})
	}
}

func TestHotReloadFallbackLostAndPackDirectories(t *testing.T) {
	low, high := t.TempDir(), t.TempDir()
	extra := filepath.Join(t.TempDir(), "late-pack") // configured, absent at start
	writePackFile(t, low, "pack.toml", []byte("priority = 1\n"))
	writePackFile(t, low, "assets/t/texture/x.png", []byte("x low"))
	writePackFile(t, high, "pack.toml", []byte("priority = 5\n"))
	writePackFile(t, high, "assets/t/texture/x.png", []byte("x high"))
	writePackFile(t, high, "assets/t/texture/y.png", []byte("y high only"))
	ts := hotServer(t, low, high, extra)
	s, rec := joinSynced(t, ts, 2)

	// Deleted with a lower pack beneath: that version takes over, same id.
	os.Remove(filepath.Join(high, "assets/t/texture/x.png"))
	l := waitFor(t, rec, loadedAs("x.png", []byte("x low")), "x to fall back to the low pack")
	if l.Replaces != resources.Sum([]byte("x high")) {
		t.Fatalf("fallback event %+v", l)
	}
	// Deleted with nothing beneath: Lost.
	os.Remove(filepath.Join(high, "assets/t/texture/y.png"))
	waitFor(t, rec, func(l Lost) bool { return l.Binding.Ref.Key == "y.png" }, "y to be lost")

	// A whole pack directory appears: its files override and add.
	os.MkdirAll(filepath.Join(extra, "assets/t/texture"), 0o755)
	os.WriteFile(filepath.Join(extra, "pack.toml"), []byte("priority = 9\n"), 0o644)
	os.WriteFile(filepath.Join(extra, "assets/t/texture/x.png"), []byte("x extra"), 0o644)
	os.WriteFile(filepath.Join(extra, "assets/t/texture/z.png"), []byte("z new"), 0o644)
	waitFor(t, rec, loadedAs("x.png", []byte("x extra")), "x from the new pack")
	waitFor(t, rec, loadedAs("z.png", []byte("z new")), "z, new and preloaded")

	// And disappears entirely: back to the low pack, z lost.
	// (A flush sends its Losts before its Binds.)
	os.RemoveAll(extra)
	waitFor(t, rec, func(l Lost) bool { return l.Binding.Ref.Key == "z.png" }, "z to be lost")
	waitFor(t, rec, loadedAs("x.png", []byte("x low")), "x back from the low pack")
	if st := s.Stats(); st.Bound != 1 || st.Loaded != 1 {
		t.Fatalf("after all that: %+v", st)
	}
	// The server kept running: a new client joins and syncs.
	joinSynced(t, ts, 1)
}

// A large file copied in slowly (open, write, pause, write, …, close) is
// not announced until the writer closes it; a half-written version never
// reaches a client.
func TestHotReloadSlowCopyIsNotAnnouncedHalfWritten(t *testing.T) {
	dir := t.TempDir()
	writePackFile(t, dir, "assets/t/texture/small.png", []byte("small"))
	ts := hotServer(t, dir)
	_, rec := joinSynced(t, ts, 1)

	data := randomBytes(2<<20, 4)
	os.MkdirAll(filepath.Join(dir, "assets/t/model"), 0o755)
	f, err := os.Create(filepath.Join(dir, "assets/t/model/huge.b3d"))
	if err != nil {
		t.Fatal(err)
	}
	const pieces = 6
	for i := range pieces {
		f.Write(data[i*len(data)/pieces : (i+1)*len(data)/pieces])
		time.Sleep(250 * time.Millisecond) // longer than the debounce
	}
	f.Close()
	l := waitFor(t, rec, func(l Loaded) bool { return l.Binding.Ref.Key == "huge.b3d" }, "the copied file")
	if l.Binding.Hash != resources.Sum(data) {
		t.Fatalf("first announced version of the copied file is not the complete one (%d bytes bound)", l.Binding.Size)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	for _, e := range rec.evs {
		if b, ok := e.(Bound); ok && b.Binding.Ref.Key == "huge.b3d" && b.Binding.Hash != resources.Sum(data) {
			t.Fatalf("a partial version was bound: %d bytes", b.Binding.Size)
		}
	}
}

// A checkout touching thousands of files at once: one coalesced reload (or
// very few), every client ends with every new version.
func TestHotReloadCheckoutBurst(t *testing.T) {
	dir := t.TempDir()
	const n = 2000
	for i := range n {
		writePackFile(t, dir, filePath(i), []byte("old "+filePath(i)))
	}
	ts := hotServer(t, dir)
	s, _ := joinSynced(t, ts, n)
	before := ts.watcher.Reloads()
	for i := range n {
		os.WriteFile(filepath.Join(dir, filePath(i)), []byte("new "+filePath(i)), 0o644)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		hits, _ := s.opts.Cache.Lookup(context.Background(), []resources.Hash{resources.Sum([]byte("new " + filePath(n-1)))})
		if len(hits) == 1 && s.Synced() && s.Stats().FromNetwork >= n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("burst not delivered: %+v", s.Stats())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if r := ts.watcher.Reloads() - before; r < 1 || r > 3 {
		t.Fatalf("%d reloads for one burst", r)
	}
	hs := make([]resources.Hash, n)
	for i := range n {
		hs[i] = resources.Sum([]byte("new " + filePath(i)))
	}
	if hits, _ := s.opts.Cache.Lookup(context.Background(), hs); len(hits) != n {
		t.Fatalf("%d of %d new versions in the cache", len(hits), n)
	}
}

func filePath(i int) string {
	return "assets/t/texture/d" + string(rune('a'+i%20)) + "/f" + strings.Repeat("0", 4-len(itoa(i))) + itoa(i) + ".png"
}

func itoa(i int) string {
	if i == 0 {
		return "0"
	}
	var b []byte
	for ; i > 0; i /= 10 {
		b = append([]byte{byte('0' + i%10)}, b...)
	}
	return string(b)
}

// 10,000 files appearing at once: one coalesced reload, nothing breaks.
func TestHotReloadTenThousandEvents(t *testing.T) {
	dir := t.TempDir()
	writePackFile(t, dir, "assets/t/texture/seed.png", []byte("seed"))
	ts := hotServer(t, dir)
	joinSynced(t, ts, 1)
	for i := range 10_000 {
		writePackFile(t, dir, "assets/burst/texture/"+itoa(i%100)+"/"+itoa(i)+".png", []byte(itoa(i)))
	}
	deadline := time.Now().Add(30 * time.Second)
	for ts.View().Len() != 10_001 {
		if time.Now().After(deadline) {
			t.Fatalf("view has %d resources", ts.View().Len())
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond) // let any straggling reload land
	if r := ts.watcher.Reloads(); r > 3 {
		t.Fatalf("%d reloads for one burst of 10,000 files", r)
	}
}

// A file that turns invalid mid-edit is reported and its old version stays
// bound: no Lost, no Bind.
func TestHotReloadInvalidFileKeepsOldVersion(t *testing.T) {
	dir := t.TempDir()
	secret := filepath.Join(t.TempDir(), "secret")
	os.WriteFile(secret, []byte("not for clients"), 0o644)
	writePackFile(t, dir, "assets/t/texture/a.png", []byte("a v1"))
	writePackFile(t, dir, "assets/t/texture/b.png", []byte("b v1"))
	ts := hotServer(t, dir)
	s, rec := joinSynced(t, ts, 2)
	drain(rec) // the join's own Bound and Loaded events

	p := filepath.Join(dir, "assets/t/texture/a.png")
	os.Remove(p)
	os.Symlink(secret, p) // now a link out of the pack
	// A change elsewhere proves reloads go on.
	os.WriteFile(filepath.Join(dir, "assets/t/texture/b.png"), []byte("b v2"), 0o644)
	waitFor(t, rec, loadedAs("b.png", []byte("b v2")), "b v2")
	for _, e := range drain(rec) {
		switch e := e.(type) {
		case Lost:
			t.Fatalf("lost %v", e.Binding.Ref)
		case Bound:
			if e.Binding.Ref.Key == "a.png" {
				t.Fatalf("a.png re-bound to %s", e.Binding.Hash.Short())
			}
		}
	}
	problem := false
	for _, pr := range ts.View().Problems {
		if strings.Contains(pr.Path, "a.png") && strings.Contains(pr.Reason, "still serving the previous version") {
			problem = true
		}
	}
	if !problem || s.Stats().Bound != 2 {
		t.Fatalf("problems %v, stats %+v", ts.View().Problems, s.Stats())
	}
}

func drain(rec *recorder) []Event {
	out := rec.backlog
	rec.backlog = nil
	for {
		select {
		case e := <-rec.ch:
			out = append(out, e)
		case <-time.After(300 * time.Millisecond):
			return out
		}
	}
}

// A client downloading the old version when the file changes ends with
// exactly the new version; whatever it stored verifies.
func TestHotReloadMidDownload(t *testing.T) {
	dir := t.TempDir()
	old := randomBytes(48<<20, 1)
	p := filepath.Join(dir, "assets/t/model/world.b3d")
	writePackFile(t, dir, "assets/t/model/world.b3d", old)
	ts := hotServer(t, dir)
	s, rec, cache, _ := startSyncer(t, ts.url, nil)
	// Replace it as soon as bytes of the old version are flowing.
	deadline := time.Now().Add(10 * time.Second)
	for s.Stats().BytesReceived == 0 {
		if time.Now().After(deadline) {
			t.Fatal("download never started")
		}
		time.Sleep(time.Millisecond)
	}
	newer := randomBytes(1<<20, 2)
	os.WriteFile(p+".tmp", newer, 0o644)
	os.Rename(p+".tmp", p)
	waitFor(t, rec, loadedAs("world.b3d", newer), "the new version")
	if st := s.Stats(); st.Bound != 1 || st.Loaded != 1 {
		t.Fatalf("stats %+v", st)
	}
	// Anything stored is whole: the old version either completed and
	// verified or was never stored.
	hits, _ := cache.Lookup(context.Background(), []resources.Hash{resources.Sum(old), resources.Sum(newer)})
	if _, ok := hits[resources.Sum(newer)]; !ok {
		t.Fatal("new version not in the cache")
	}
	blobs, _ := filepath.Glob(filepath.Join(cache.Dir(), "blobs", "*", "*"))
	for _, b := range blobs {
		data, _ := os.ReadFile(b)
		if resources.Sum(data).String() != filepath.Base(b) {
			t.Fatalf("blob %s does not match its name", filepath.Base(b))
		}
	}
}

// A reload costs each client in proportion to the keys that changed, not to
// everything it has bound: with 2,000 resources bound, one changed file is
// one key re-checked per client (it was every bound key, twice, before).
func TestHotReloadCostFollowsWhatChanged(t *testing.T) {
	const files = 2000
	dir, ts, recs := hotClients(t, files, 3)
	before := map[*Client]int{}
	for _, c := range ts.Clients() {
		c.mu.Lock()
		before[c] = c.bind.rechecked
		c.mu.Unlock()
	}
	v2 := []byte("version 2")
	writePackFile(t, dir, filePath(7), v2)
	for _, rec := range recs {
		waitFor(t, rec, loadedAs(strings.TrimPrefix(filePath(7), "assets/t/texture/"), v2), "the changed file")
	}
	for c, n := range before {
		c.mu.Lock()
		cost := c.bind.rechecked - n
		c.mu.Unlock()
		if cost > 2 {
			t.Errorf("one changed file re-checked %d keys of a client with %d bound", cost, files)
		}
	}
}

// A client that uses the whole preload set holds no state per preloaded
// key: it shares the server's set and keeps only what changed since. With
// a thousand clients and thousands of preloaded resources, per-key maps
// were most of the server's memory.
func TestPreloadedKeysCostNoStatePerClient(t *testing.T) {
	const files = 500
	dir, ts, recs := hotClients(t, files, 2)
	perKey := func(c *Client) int {
		c.mu.Lock()
		defer c.mu.Unlock()
		return len(c.bind.told) + c.bind.uses.Len()
	}
	for _, c := range ts.Clients() {
		if n := perKey(c); n != 0 || c.Bound() != files {
			t.Fatalf("after the join: %d entries of per-key state, %d bound; want 0 and %d", n, c.Bound(), files)
		}
	}
	// One file changed and one removed: two differences per client.
	v2 := []byte("version 2")
	writePackFile(t, dir, filePath(7), v2)
	if err := os.Remove(filepath.Join(dir, filepath.FromSlash(filePath(9)))); err != nil {
		t.Fatal(err)
	}
	gone := strings.TrimPrefix(filePath(9), "assets/t/texture/")
	for _, rec := range recs {
		waitFor(t, rec, loadedAs(strings.TrimPrefix(filePath(7), "assets/t/texture/"), v2), "the changed file")
		waitFor(t, rec, func(l Lost) bool { return l.Binding.Ref.Key == gone }, "the removed file's Lost")
	}
	for _, c := range ts.Clients() {
		if n := perKey(c); n != 2 || c.Bound() != files-1 {
			t.Errorf("after a change and a removal: %d entries of per-key state, %d bound; want 2 and %d", n, c.Bound(), files-1)
		}
	}
	// The game's own uses of a preloaded resource come and go without a
	// Bind or a Lost, and a release of a use it never added is an error.
	loc := resources.Loc{Type: resources.TypeTexture, Ref: resources.Ref{Domain: "t", Key: strings.TrimPrefix(filePath(3), "assets/t/texture/")}}
	c := ts.Clients()[0]
	c.Use(loc)
	if err := c.Release(loc); err != nil {
		t.Fatal(err)
	}
	if err := c.Release(loc); err == nil {
		t.Error("releasing a preloaded resource the game never used was not an error")
	}
	if n := perKey(c); n != 2 || c.Bound() != files-1 {
		t.Errorf("after a game use and release: %d entries of per-key state, %d bound; want 2 and %d", n, c.Bound(), files-1)
	}
}

// hotClients starts a hot-reloading server over a pack of files textures
// ("v1 <i>") and joins n clients that have synced them all.
func hotClients(t *testing.T, files, n int) (string, *testServer, []*recorder) {
	t.Helper()
	dir := t.TempDir()
	for i := range files {
		writePackFile(t, dir, filePath(i), []byte("v1 "+itoa(i)))
	}
	ts := hotServer(t, dir)
	var recs []*recorder
	for range n {
		_, rec := joinSynced(t, ts, files)
		recs = append(recs, rec)
	}
	return dir, ts, recs
}

// A developer who saves a file sees the server say it picked it up, by
// name; a large reload is summed up, not listed.
func TestReloadLogNamesWhatChanged(t *testing.T) {
	dir := t.TempDir()
	writePackFile(t, dir, "assets/m/texture/a.png", []byte("a1"))
	writePackFile(t, dir, "assets/m/texture/b.png", []byte("b1"))
	var log syncBuffer
	ts := startServer(t, serverSetup{dirs: []string{dir}, log: &log})
	writePackFile(t, dir, "assets/m/texture/a.png", []byte("a2"))
	removePackFile(t, dir, "assets/m/texture/b.png")
	for i := range 7 {
		writePackFile(t, dir, fmt.Sprintf("assets/m/texture/n%d.png", i), []byte{byte(i)})
	}
	v, err := packs.Load(context.Background(), packs.Options{Dirs: []string{dir}, Builtin: true, IDs: ts.ids}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ts.SetView(v)
	want := `msg="packs reloaded" added=7 changed=1 removed=1 resources="texture/m:a.png, texture/m:n0.png, texture/m:n1.png, texture/m:n2.png, texture/m:n3.png and 4 more"`
	if !strings.Contains(log.String(), want) {
		t.Errorf("server log:\n%s\nwant a line with\n%s", log.String(), want)
	}
}

// A preload pattern that matches nothing (a typo of a domain) is said at
// start; one that matches is not.
func TestPreloadPatternMatchingNothingIsWarned(t *testing.T) {
	dir := t.TempDir()
	writePackFile(t, dir, "assets/m/texture/a.png", []byte("a"))
	var log syncBuffer
	startServer(t, serverSetup{dirs: []string{dir}, log: &log, cfg: func(c *configs.Server) { c.Preload = []string{"m:*", "nomod:*"} }})
	if got := log.String(); !strings.Contains(got, `msg="preload pattern matches no resource in the packs" pattern=nomod:*`) ||
		strings.Contains(got, "pattern=m:*") {
		t.Errorf("server log:\n%s\nwant a warning for nomod:* only", got)
	}
}
