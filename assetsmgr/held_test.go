package assetsmgr

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/voxsync/voxsync/resources"
)

// waitHeld waits until the cache's set of held hashes is filled.
func waitHeld(t *testing.T, c *Cache) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !c.held.ready.Load(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("set of held hashes never filled")
		}
	}
}

// putFile stores data as a blob file whatever its size.
func putFile(t *testing.T, c *Cache, data []byte) resources.Hash {
	t.Helper()
	h := resources.Sum(data)
	p, err := c.Create(h, int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	p.Write(data)
	errc := make(chan error, 1)
	if err := p.Commit(func(err error) { errc <- err }); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	return h
}

// The set that answers misses from memory must never turn a cached blob
// into a miss: not one stored by an earlier run (it is read from the
// database), not one stored after it was filled (the store adds it).
func TestHeldSetNeverHidesACachedBlob(t *testing.T) {
	dir := t.TempDir()
	c := openCache(t, Options{Dir: dir})
	var before []resources.Hash
	for i := range 40 {
		before = append(before, put(t, c, pseudoRandom(500+i, byte(i))))
	}
	before = append(before, putFile(t, c, pseudoRandom(3000, 200)))
	c.Close()

	c = openCache(t, Options{Dir: dir})
	absent := resources.Sum([]byte("never stored"))
	if _, ok := lookup(t, c, absent); ok {
		t.Fatal("absent hash found")
	}
	waitHeld(t, c) // the miss filled it
	if c.held.mayHold(absent) {
		t.Fatal("a hash never stored is not ruled out: misses still query the database")
	}
	hits, err := c.Lookup(context.Background(), before)
	if err != nil || len(hits) != len(before) {
		t.Fatalf("blobs of an earlier run: %d of %d found (%v)", len(hits), len(before), err)
	}

	inline := put(t, c, pseudoRandom(700, 99))
	file := putFile(t, c, pseudoRandom(5000, 98))
	for _, h := range []resources.Hash{inline, file} {
		b, ok := lookup(t, c, h)
		if !ok {
			t.Fatalf("blob %s stored after the set was filled is a miss", h.Short())
		}
		if data, err := b.ReadAll(); err != nil || resources.Sum(data) != h {
			t.Fatalf("blob %s: %v", h.Short(), err)
		}
	}
}

// Names given with a blob are written in its transaction: they are listed
// the moment its done is called, and naming it again writes nothing more.
func TestNamesGivenWithABlobCommitWithIt(t *testing.T) {
	c := openCache(t, Options{Dir: t.TempDir()})
	stone := resources.Loc{Type: resources.TypeTexture, Ref: resources.Ref{Domain: "default", Key: "stone.png"}}
	alias := resources.Loc{Type: resources.TypeTexture, Ref: resources.Ref{Domain: "other", Key: "stone.png"}}
	tree := resources.Loc{Type: resources.TypeModel, Ref: resources.Ref{Domain: "default", Key: "tree.b3d"}}

	small, big := pseudoRandom(900, 1), pseudoRandom(int(c.InlineMax())+1, 2)
	listed := make(chan []Entry, 2)
	done := func(err error) {
		if err != nil {
			t.Error(err)
		}
		// Called on the store's goroutine before any later batch: what
		// is listed now was in the blob's own commit.
		all, err := c.List(context.Background(), nil)
		if err != nil {
			t.Error(err)
		}
		listed <- all
	}
	if err := c.Put(resources.Sum(small), small, done, stone, alias); err != nil {
		t.Fatal(err)
	}
	got := <-listed
	if len(got) != 1 || len(got[0].Names) != 2 {
		t.Fatalf("inline blob at done: %+v, want it with 2 names", got)
	}
	p, err := c.Create(resources.Sum(big), int64(len(big)))
	if err != nil {
		t.Fatal(err)
	}
	p.Write(big)
	if err := p.Commit(done, tree); err != nil {
		t.Fatal(err)
	}
	got = <-listed
	named := 0
	for _, e := range got {
		if e.Hash == resources.Sum(big) && len(e.Names) == 1 && e.Names[0] == tree {
			named++
		}
	}
	if named != 1 {
		t.Fatalf("blob file at done: %+v, want it named %s", got, tree)
	}

	// A large resource assembled from chunks.
	data := chachaBytes(7, 4*testChunk)
	m := fixedManifest(t, data, testChunk)
	part, err := c.OpenPartial(context.Background(), resources.Sum(data), m)
	if err != nil {
		t.Fatal(err)
	}
	putChunks(t, part, data, m, []int{0, 1, 2, 3})
	ambience := resources.Loc{Type: resources.TypeSound, Ref: resources.Ref{Domain: "default", Key: "ambience.ogg"}}
	if err := part.Commit(done, ambience); err != nil {
		t.Fatal(err)
	}
	got = <-listed
	named = 0
	for _, e := range got {
		if e.Hash == resources.Sum(data) && len(e.Names) == 1 && e.Names[0] == ambience {
			named++
		}
	}
	if named != 1 {
		t.Fatalf("chunked blob at done: %+v, want it named %s", got, ambience)
	}

	c.Name(resources.Sum(small), stone) // what a Loaded event does
	c.store.namesMu.Lock()
	queued := len(c.store.names)
	c.store.namesMu.Unlock()
	if queued != 0 {
		t.Fatalf("naming a blob again queued %d names for another commit", queued)
	}
}

// A blob stored again after it was evicted gets its names again: the
// eviction took them with it (a reviewer's test).
func TestNamesComeBackWithABlobStoredAgain(t *testing.T) {
	c := openCache(t, Options{Dir: t.TempDir(), MaxBytes: 1})
	stone := resources.Loc{Type: resources.TypeTexture, Ref: resources.Ref{Domain: "default", Key: "stone.png"}}
	data := pseudoRandom(900, 7)
	h := resources.Sum(data)
	store := func() {
		errc := make(chan error, 1)
		if err := c.Put(h, data, func(err error) { errc <- err }, stone); err != nil {
			t.Fatal(err)
		}
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
	store()
	if n, _, err := c.Trim(context.Background(), nil); err != nil || n != 1 {
		t.Fatalf("trim: %d, %v", n, err)
	}
	store() // fetched again
	all, err := c.List(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 1 || len(all[0].Names) != 1 {
		t.Fatalf("blob stored again after eviction: %+v, want it named %v", all, stone)
	}
}

// A later process naming its hits (a warm join) writes only the names
// not recorded yet: here one new name among many recorded ones, for blobs
// with one name and with two.
func TestNamesOfHitsRecordOnlyWhatIsNew(t *testing.T) {
	dir := t.TempDir()
	loc := func(key string) resources.Loc {
		return resources.Loc{Type: resources.TypeTexture, Ref: resources.Ref{Domain: "default", Key: key}}
	}
	c := openCache(t, Options{Dir: dir})
	var hs []resources.Hash
	for i := range 300 {
		h := put(t, c, pseudoRandom(500, byte(i)))
		hs = append(hs, h)
		c.Name(h, loc(fmt.Sprintf("b%d.png", i)))
	}
	c.Name(hs[7], loc("second.png"))
	c.Flush(context.Background())
	c.Close()

	c = openCache(t, Options{Dir: dir})
	for i, h := range hs {
		c.Name(h, loc(fmt.Sprintf("b%d.png", i)))
	}
	c.Name(hs[7], loc("second.png"))
	c.Name(hs[7], loc("third.png")) // the same content bound under another name
	c.Name(hs[9], loc("other.png"))
	c.Flush(context.Background())
	var n int
	if err := c.db.QueryRow("SELECT count(*) FROM blob_names").Scan(&n); err != nil || n != 303 {
		t.Fatalf("%d names recorded (%v), want 303", n, err)
	}
	for _, want := range []struct {
		h   resources.Hash
		key string
	}{{hs[7], "third.png"}, {hs[7], "second.png"}, {hs[9], "other.png"}, {hs[9], "b9.png"}} {
		if err := c.db.QueryRow("SELECT 1 FROM blob_names WHERE hash = ? AND ref = ?", want.h[:], "default:"+want.key).Scan(&n); err != nil {
			t.Errorf("%s not named %s: %v", want.h.Short(), want.key, err)
		}
	}
}

// A lookup racing Close must not start the fill after Close waited for it
// (the race detector's WaitGroup misuse, a reviewer's test).
func TestLookupRacingCloseStartsNoFill(t *testing.T) {
	dir := t.TempDir()
	c := openCache(t, Options{Dir: dir})
	for i := range 2000 {
		data := pseudoRandom(64, byte(i))
		data[0], data[1] = byte(i), byte(i>>8)
		c.Put(resources.Sum(data), data, nil)
	}
	c.Flush(context.Background())
	c.Close()
	for range 20 {
		c, err := Open(context.Background(), Options{Dir: dir})
		if err != nil {
			t.Fatal(err)
		}
		looked := make(chan struct{})
		go func() {
			defer close(looked)
			c.Lookup(context.Background(), []resources.Hash{resources.Sum([]byte("absent"))})
		}()
		time.Sleep(time.Millisecond)
		c.Close()
		<-looked
	}
}

// A blob found corrupt while read is fetched again at once; when the store
// is busy, the good copy's store and the corrupt copy's drop share a batch,
// and the drop must not delete the good copy's row and names (a
// reviewer's test).
func TestRefetchedBlobSurvivesTheCorruptDrop(t *testing.T) {
	ctx := context.Background()
	c := openCache(t, Options{Dir: t.TempDir()})
	stone := resources.Loc{Type: resources.TypeTexture, Ref: resources.Ref{Domain: "default", Key: "stone.png"}}
	data := pseudoRandom(200_000, 9)
	h := resources.Sum(data)
	store := func(wait bool) chan error {
		errc := make(chan error, 1)
		if err := c.Put(h, data, func(err error) { errc <- err }, stone); err != nil {
			t.Fatal(err)
		}
		if wait {
			if err := <-errc; err != nil {
				t.Fatal(err)
			}
		}
		return errc
	}
	store(true)
	b, ok := lookup(t, c, h)
	if !ok || b.Source != SourceBlob {
		t.Fatalf("stored blob: %+v, %v", b, ok)
	}
	content, err := b.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer content.Close()
	path := blobPath(filepath.Join(c.dir, "blobs"), h)
	damaged, _ := os.ReadFile(path)
	damaged[100] ^= 1
	os.WriteFile(path, damaged, 0o644)

	busy, release := make(chan struct{}), make(chan struct{})
	c.store.enqueue(op{kind: opBarrier, done: func(error) { close(busy); <-release }})
	<-busy
	if _, err := content.ReadAt(make([]byte, 10), 0); err == nil {
		t.Fatal("a damaged blob was read without error")
	}
	refetched := store(false) // what the Syncer's OnCorrupt hook does
	close(release)
	if err := <-refetched; err != nil {
		t.Fatal(err)
	}
	c.Flush(ctx)
	if _, ok := lookup(t, c, h); !ok {
		t.Fatal("the good copy stored after the damage was found is gone")
	}
	all, err := c.List(ctx, nil)
	if err != nil || len(all) != 1 || len(all[0].Names) != 1 {
		t.Fatalf("listed %+v (%v), want the blob named %s", all, err, stone)
	}
}
