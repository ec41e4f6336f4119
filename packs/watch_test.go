package packs

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/voxsync/voxsync/resources"
)

// A developer's lone save (a temp file renamed over the old one) is
// applied at once, not after the quiet period that coalesces a burst; what
// follows soon after still waits for it.
func TestWatcherAppliesALoneSaveAtOnce(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "assets/t/texture/stone.png")
	os.MkdirAll(filepath.Dir(path), 0o755)
	save := func(data string) {
		if err := os.WriteFile(path+".tmp", []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(path+".tmp", path); err != nil {
			t.Fatal(err)
		}
	}
	save("stone, version 1")
	opts := Options{Dirs: []string{dir}}
	view, err := Load(context.Background(), opts, nil)
	if err != nil {
		t.Fatal(err)
	}
	applied := make(chan *View, 4)
	// Quiet periods of a minute: a reload that waits for one fails the
	// test's deadline.
	w, err := NewWatcher(view, WatchOptions{Load: opts, Debounce: time.Minute, quiet: time.Minute, Apply: func(v *View) { applied <- v }})
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

	save("stone, version 2")
	select {
	case v := <-applied:
		_, ok := v.ByHash(resources.Sum([]byte("stone, version 2")))
		v.Close()
		if !ok {
			t.Fatal("reloaded view lacks the saved version")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a lone save waited for the quiet period")
	}

	save("stone, version 3") // right after a reload: may be the start of a burst
	select {
	case v := <-applied:
		v.Close()
		t.Fatal("a save right after a reload was not held for the quiet period")
	case <-time.After(300 * time.Millisecond):
	}
}
