package packs

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/voxsync/voxsync/resources"
)

// quietWatcher watches a pack holding assets/t/texture/stone.png with
// quiet periods of a minute, so that a reload that waits for one misses any
// deadline of the test. It returns the pack and the views applied.
func quietWatcher(t *testing.T) (string, <-chan *View) {
	t.Helper()
	dir := t.TempDir()
	writeRenamed(t, filepath.Join(dir, "assets/t/texture/stone.png"), "stone, version 1")
	return dir, watchPacks(t, WatchOptions{Load: Options{Dirs: []string{dir}}, Debounce: time.Minute, quiet: time.Minute})
}

// watchPacks loads the packs of opts.Load, watches them and returns the
// views applied; all is closed when the test ends.
func watchPacks(t *testing.T, opts WatchOptions) <-chan *View {
	t.Helper()
	view, err := Load(context.Background(), opts.Load, nil)
	if err != nil {
		t.Fatal(err)
	}
	applied := make(chan *View, 8)
	opts.Apply = func(v *View) { applied <- v }
	w, err := NewWatcher(view, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		w.Close()
		view.Close()
		for len(applied) > 0 {
			(<-applied).Close()
		}
	})
	return applied
}

// writeRenamed saves data at path as editors do: a temp file renamed over.
func writeRenamed(t *testing.T, path, data string) {
	t.Helper()
	os.MkdirAll(filepath.Dir(path), 0o755)
	if err := os.WriteFile(path+".tmp", []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path+".tmp", path); err != nil {
		t.Fatal(err)
	}
}

// wantServed waits up to 10 s for a view applied with content in it.
func wantServed(t *testing.T, applied <-chan *View, content string) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case v := <-applied:
			_, ok := v.ByHash(resources.Sum([]byte(content)))
			v.Close()
			if ok {
				return
			}
		case <-deadline:
			t.Fatalf("%q never served", content)
		}
	}
}

// noReload fails if a view is applied within a moment.
func noReload(t *testing.T, applied <-chan *View, what string) {
	t.Helper()
	select {
	case v := <-applied:
		v.Close()
		t.Fatalf("%s was not held for the quiet period", what)
	case <-time.After(300 * time.Millisecond):
	}
}

// A developer's lone save (a temp file renamed over a resource's file) is
// applied at once, not after the quiet period that coalesces a burst; what
// follows soon after still waits for it.
func TestWatcherAppliesALoneSaveAtOnce(t *testing.T) {
	dir, applied := quietWatcher(t)
	stone := filepath.Join(dir, "assets/t/texture/stone.png")
	writeRenamed(t, stone, "stone, version 2")
	wantServed(t, applied, "stone, version 2") // within 10 s: the quiet period is a minute
	writeRenamed(t, stone, "stone, version 3") // may be the start of a burst
	noReload(t, applied, "a save right after a reload")
}

// A file with a new name is not a save of a resource: editors make probe
// and temp files under new names (vim's 4913, JetBrains' ___jb_tmp___),
// which a reload at once would announce to clients as resources.
func TestWatcherHoldsNewNamesForTheQuietPeriod(t *testing.T) {
	dir, applied := quietWatcher(t)
	// Renamed into place, the one way a batch can start with a lone create
	// event (one written in place also has writes).
	writeRenamed(t, filepath.Join(dir, "assets/t/texture/stone.png___jb_tmp___"), "new")
	noReload(t, applied, "a new file")
}

// A file rewritten between being listed and being read — truncated when
// listed, written and closed before the reload asks whether it is open for
// writing, as `printf ... > file` does — is read again as it is now, never
// served as what the first read happened to see (here: nothing).
func TestReloadRereadsAFileChangedWhileRead(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "assets/t/texture/grass.png")
	os.MkdirAll(filepath.Dir(path), 0o755)
	os.WriteFile(path, []byte("grass, version 1"), 0o644)
	opts := Options{Dirs: []string{dir}}
	v1, err := Load(context.Background(), opts, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer v1.Close()

	os.WriteFile(path, nil, 0o644) // listed empty
	hooked := opts
	hooked.holdOpen = true
	hooked.hold = func(string, string) bool {
		// Runs after the listing, before the read: the writer finishes.
		os.WriteFile(path, []byte("grass, version 2"), 0o644)
		return false
	}
	v2, err := Load(context.Background(), hooked, v1)
	if err != nil {
		t.Fatal(err)
	}
	defer v2.Close()
	key := Loc{Type: resources.TypeTexture, Ref: resources.Ref{Domain: "t", Key: "grass.png"}}
	if e, ok := v2.Lookup(key); !ok || e.Hash != resources.Sum([]byte("grass, version 2")) {
		t.Fatalf("file changed while read is served as %+v, want version 2", e)
	}
}

// At startup too: a file touched while the packs load is read again and
// served, not left out until something else changes (a reviewer's test).
func TestStartupRereadsAFileTouchedWhileRead(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "assets/t/texture/grass.png")
	os.MkdirAll(filepath.Dir(path), 0o755)
	os.WriteFile(path, []byte("grass"), 0o644)
	hooked := Options{Dirs: []string{dir}}
	hooked.hold = func(string, string) bool {
		later := time.Now().Add(time.Second)
		os.Chtimes(path, later, later)
		return false
	}
	v, err := Load(context.Background(), hooked, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	key := Loc{Type: resources.TypeTexture, Ref: resources.Ref{Domain: "t", Key: "grass.png"}}
	if e, ok := v.Lookup(key); !ok || e.Hash != resources.Sum([]byte("grass")) {
		t.Fatalf("a file touched while the packs loaded: served %+v, problems %+v", e, v.Problems)
	}
}

// A pack given as "." (a developer running the server inside the pack) is
// watched like any other (a reviewer's test).
func TestWatcherWatchesTheWorkingDirectoryAsAPack(t *testing.T) {
	dir := t.TempDir()
	writeRenamed(t, filepath.Join(dir, "assets/t/texture/stone.png"), "stone, version 1")
	t.Chdir(dir)
	applied := watchPacks(t, WatchOptions{Load: Options{Dirs: []string{"."}}})
	writeRenamed(t, "assets/t/texture/stone.png", "stone, version 2")
	wantServed(t, applied, "stone, version 2")
}

// A pack directory that is a symlink, switched to a new release as
// deployments do (ln -s v2 tmp && mv -T tmp current), is watched at the
// new release: saves there are reloaded (a reviewer's test).
func TestWatcherFollowsAPackSymlinkSwitchedToANewRelease(t *testing.T) {
	base := t.TempDir()
	for _, rel := range []string{"v1", "v2"} {
		writeRenamed(t, filepath.Join(base, rel, "assets/t/texture/stone.png"), "stone, "+rel)
	}
	cur := filepath.Join(base, "current")
	if err := os.Symlink("v1", cur); err != nil {
		t.Fatal(err)
	}
	applied := watchPacks(t, WatchOptions{Load: Options{Dirs: []string{cur}}})
	want := func(content string) { t.Helper(); wantServed(t, applied, content) }
	writeRenamed(t, filepath.Join(cur, "assets/t/texture/stone.png"), "stone, v1 edited")
	want("stone, v1 edited")
	if err := os.Symlink("v2", cur+".new"); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(cur+".new", cur); err != nil {
		t.Fatal(err)
	}
	want("stone, v2")
	writeRenamed(t, filepath.Join(cur, "assets/t/texture/stone.png"), "stone, v2 edited")
	want("stone, v2 edited")
}

// A pack.toml edit that changes no served file (a new name, a priority
// that reorders nothing) is applied all the same: the status page shows
// the settings in force. Before, such a view was dropped as "nothing
// changed", and the edit surfaced only with some later, unrelated one.
func TestPackSettingsAloneAreApplied(t *testing.T) {
	dir := t.TempDir()
	writeRenamed(t, filepath.Join(dir, "pack.toml"), "priority = 5\n")
	writeRenamed(t, filepath.Join(dir, "assets/t/texture/stone.png"), "stone")
	applied := watchPacks(t, WatchOptions{Load: Options{Dirs: []string{dir}}, Debounce: 20 * time.Millisecond})
	writeRenamed(t, filepath.Join(dir, "pack.toml"), "name = \"renamed\"\npriority = 7\n")
	select {
	case v := <-applied:
		defer v.Close()
		if ps := v.Packs(); len(ps) != 1 || ps[0].Priority != 7 || ps[0].Name != "renamed" {
			t.Errorf("packs after the edit: %v; want one, priority 7, name renamed", ps)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a pack.toml edit was never applied")
	}
}
