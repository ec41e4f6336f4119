package assetsmgr

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"github.com/voxsync/voxsync/resources"
)

// The cache's own blob file never takes the disk's last bytes: small blobs
// stored after it can still be made room for. Before, a blob file as large
// as the disk took could leave it 147 KiB free and no reserve, and every
// later run failed all of its small blobs, with 9.8 MB of free pages in
// the database.
func TestBlobFileLeavesRoomForSmallBlobs(t *testing.T) {
	dir := mountTmpfs(t, "20m")
	ctx := context.Background()
	var mu sync.Mutex
	bound := make(map[resources.Hash]bool)
	bind := func(h resources.Hash) {
		mu.Lock()
		bound[h] = true
		mu.Unlock()
	}
	keep := func(h resources.Hash) bool {
		mu.Lock()
		defer mu.Unlock()
		return bound[h]
	}
	open := func() *Cache {
		c, err := Open(ctx, Options{Dir: dir})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.Keep(keep))
		return c
	}
	// putSmall stores n blobs of 10 KB, bound, and returns how many failed.
	putSmall := func(c *Cache, seed uint64, n int) (failed int) {
		errs := make(chan error, n)
		for i := range n {
			b := chachaBytes(seed<<16+uint64(i), 10_000)
			h := resources.Sum(b)
			bind(h)
			if err := c.Put(h, b, func(err error) { errs <- err }); err != nil {
				errs <- err
			}
		}
		for range n {
			if err := <-errs; err != nil {
				failed++
			}
		}
		return failed
	}

	c := open()
	if n := putSmall(c, 1, 1000); n != 0 {
		t.Fatalf("server A: %d of 1000 small blobs failed", n)
	}
	c.Close()

	// Server B binds one blob file, as large as the disk takes once A's
	// blobs are evicted.
	c = open()
	mu.Lock()
	clear(bound)
	mu.Unlock()
	free := func() int64 { f, _, _ := diskSpace(dir); return f }
	size := free() + reserveSize
	var big resources.Hash
	for try := 0; ; try++ {
		b := chachaBytes(99, int(size))
		big = resources.Sum(b)
		bind(big)
		done := make(chan error, 1)
		err := c.Put(big, b, func(err error) { done <- err })
		if err == nil {
			err = <-done
		}
		if err == nil {
			break
		}
		if !errors.Is(err, ErrDiskFull) || try == 3 {
			t.Fatalf("blob file of %d bytes: %v", size, err)
		}
		if try == 0 {
			if _, _, err := c.MakeRoom(ctx, Shortfall(err), keep); err != nil {
				t.Fatal(err)
			}
			size = free() - 64<<10 // the disk's last bytes, if the cache gives them
		} else {
			size -= Shortfall(err)
		}
	}
	c.Close()

	// Servers C: small blobs beside B's, bound, run after run.
	for run := range 3 {
		c = open()
		bind(big)
		if n := putSmall(c, uint64(3+run), 300); n != 0 {
			t.Errorf("run %d: %d of 300 small blobs failed beside the blob file; %d bytes free", run, n, free())
		}
		c.Close()
	}
}

// A barrier (Flush) queued after small blobs that the store carries to a
// batch of their own, their log having no room in this one, completes
// after them: Flush promises that everything queued before it is durable.
// Before, the barrier completed first, and gameclient printed its summary
// before some resources were stored.
func TestFlushWaitsForCarriedBlobs(t *testing.T) {
	dir := mountTmpfs(t, "32m")
	c := openCache(t, Options{Dir: dir})
	free, _, _ := diskSpace(dir)
	if err := os.WriteFile(filepath.Join(dir, "filler"), make([]byte, free-3200<<10), 0o644); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var order []string
	record := func(what string, done chan<- struct{}) func(error) {
		return func(err error) {
			mu.Lock()
			order = append(order, fmt.Sprintf("%s:%v", what, err))
			mu.Unlock()
			done <- struct{}{}
		}
	}
	// Hold the store, so that what follows arrives as one batch.
	gate, held := make(chan struct{}), make(chan struct{})
	c.store.enqueue(op{kind: opBarrier, done: func(error) { close(held); <-gate }})
	<-held
	done := make(chan struct{}, 3)
	for i := range 2 {
		b := chachaBytes(uint64(50+i), 600_000)
		// Tried once for room already: judged against the floor only.
		c.store.enqueue(op{kind: opInline, hash: resources.Sum(b), size: int64(len(b)), data: b, roomTried: true, done: record(fmt.Sprint("blob", i), done)})
	}
	c.store.enqueue(op{kind: opBarrier, done: record("barrier", done)})
	close(gate)
	for range 3 {
		<-done
	}
	if want := []string{"blob0:<nil>", "blob1:<nil>", "barrier:<nil>"}; !slices.Equal(order, want) {
		t.Errorf("done in order %v, want %v", order, want)
	}
}
