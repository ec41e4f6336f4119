package session_test

import (
	"context"
	"errors"
	"log"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/voxsync/voxsync/assetsmgr"
	"github.com/voxsync/voxsync/resources"
	"github.com/voxsync/voxsync/session"
)

// Example_embedding is the README's "Embedding the client in a game",
// compiled so that it stays true: the code between the README markers is
// the README's, and TestREADMEEmbeddingExample checks that they match.
func Example_embedding() {
	ctx := context.Background()
	x, y, z := 0.0, 0.0, 0.0 // the player's position
	loadTexture := func(b []byte) {}

	// README:begin
	cache, err := assetsmgr.Open(ctx, assetsmgr.Options{Dir: "Cache", Packs: []string{"mypacks"}})
	if err != nil {
		log.Fatal(err)
	}
	defer cache.Close()

	var s *session.Syncer // declared before NewSyncer: the event handler uses it
	s = session.NewSyncer(session.SyncOptions{
		URL:   "ws://play.example.net:30000/ws",
		Cache: cache,
		// OnEvent runs in order, one event at a time, on the goroutine that
		// made the change: the sync waits while it runs. Keep it quick (a
		// large resource is better read on a goroutine of the game's).
		OnEvent: func(e session.Event) {
			switch e := e.(type) {
			case session.Bound: // e.Binding: (type, id) is now domain:key with this hash
			case session.Loaded: // e.Source: pack|inline|blob|network; e.Replaces: the old hash after a server-side change
				blob, err := s.Open(ctx, e.Binding.Hash) // bytes verified as read: blob.ReadAll() or blob.Open()
				if err != nil {
					log.Print(err)
					return
				}
				data, err := blob.ReadAll()
				if err != nil { // a damaged copy: it is fetched again, and Loaded again
					log.Print(err)
					return
				}
				loadTexture(data)
			case session.Lost: // drop e.Binding
			case session.BindsDone: // e.Complete: every resource for the current position is bound (e.Bound of them)
			case session.Progress: // e.Stats, ~10 times a second
			case session.Failed: // e.Err after bounded retries
			}
		},
	})
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- s.Run(runCtx) }() // reconnects with backoff until runCtx ends, or stops at a Permanent error
	s.Move(x, y, z)                       // the player's position, for world content; returns its seq

	// A loading screen: wait until the server's list for this position is
	// complete and all of it is loaded (nil; OnEvent has had every Loaded
	// by then), the last resource failed (errors.Is(err,
	// session.ErrFailed)), or Run stopped (e.g. ErrRefused).
	if err := s.WaitSynced(ctx); errors.Is(err, session.ErrFailed) {
		log.Print("some resources could not be loaded: ", err)
	} else if err != nil {
		log.Fatal(err)
	}

	// Now and then (e.g. after loading a world), keep the cache under its cap:
	bound := s.BoundHashes()
	cache.Trim(ctx, func(h resources.Hash) bool { return bound[h] })

	// Quitting: stop the Syncer and wait for Run to return, then close the
	// cache (deferred above); a cache closed under a running Syncer fails
	// whatever it was storing. Events may come until cache.Close returns
	// (the last stores' Loaded).
	stop()
	<-done
	// README:end
}

// The README shows Example_embedding's code, character for character.
func TestREADMEEmbeddingExample(t *testing.T) {
	src, err := os.ReadFile("example_test.go")
	if err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?s)\t// README:begin\n(.*?)\t// README:end\n`).FindSubmatch(src)
	if m == nil {
		t.Fatal("no README markers in example_test.go")
	}
	var want strings.Builder
	for _, line := range strings.SplitAfter(string(m[1]), "\n") {
		want.WriteString(strings.TrimPrefix(line, "\t"))
	}
	block := regexp.MustCompile("(?s)### Embedding the client in a game\n.*?```go\n(.*?)```").FindSubmatch(readme)
	if block == nil {
		t.Fatal("README has no Go block under \"Embedding the client in a game\"")
	}
	if string(block[1]) != want.String() {
		t.Errorf("README's embedding example differs from Example_embedding; README has:\n%s\nwant:\n%s", block[1], want.String())
	}
}
