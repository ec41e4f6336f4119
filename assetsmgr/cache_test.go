package assetsmgr

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/voxsync/voxsync/resources"
)

func openCache(t testing.TB, opts Options) *Cache {
	t.Helper()
	c, err := Open(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func put(t testing.TB, c *Cache, data []byte) resources.Hash {
	t.Helper()
	h := resources.Sum(data)
	errc := make(chan error, 1)
	if err := c.Put(h, data, func(err error) { errc <- err }); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	return h
}

func lookup(t testing.TB, c *Cache, h resources.Hash) (Blob, bool) {
	t.Helper()
	hits, err := c.Lookup(context.Background(), []resources.Hash{h})
	if err != nil {
		t.Fatal(err)
	}
	b, ok := hits[h]
	return b, ok
}

func pseudoRandom(n int, seed byte) []byte {
	b := make([]byte, n)
	x := uint32(seed) + 1
	for i := range b {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		b[i] = byte(x)
	}
	return b
}

func TestPutLookupAcrossRestart(t *testing.T) {
	dir := t.TempDir()
	small := pseudoRandom(1000, 1)
	large := pseudoRandom(200_000, 2)
	c := openCache(t, Options{Dir: dir})
	hs, hl := put(t, c, small), put(t, c, large)
	c.Close()

	c = openCache(t, Options{Dir: dir})
	tests := []struct {
		h    resources.Hash
		data []byte
		src  Source
	}{
		{hs, small, SourceInline},
		{hl, large, SourceBlob},
	}
	for _, tc := range tests {
		b, ok := lookup(t, c, tc.h)
		if !ok || b.Source != tc.src {
			t.Fatalf("%s: hit=%v source=%v, want %v", tc.h.Short(), ok, b.Source, tc.src)
		}
		got, err := b.ReadAll()
		if err != nil || !bytes.Equal(got, tc.data) {
			t.Fatalf("%s: read back wrong (%v)", tc.h.Short(), err)
		}
	}
	// The large one is a file at blobs/<2 hex>/<64 hex>.
	if _, err := os.Stat(filepath.Join(dir, "blobs", hl.String()[:2], hl.String())); err != nil {
		t.Fatal(err)
	}
	if _, ok := lookup(t, c, resources.Sum([]byte("never stored"))); ok {
		t.Fatal("hit for something never stored")
	}
}

func TestPutRefusesWrongHash(t *testing.T) {
	dir := t.TempDir()
	c := openCache(t, Options{Dir: dir})
	for _, n := range []int{100, 100_000} {
		data := pseudoRandom(n, 3)
		wrong := resources.Sum([]byte("other"))
		err := c.Put(wrong, data, func(error) { t.Error("done called for a refused put") })
		if !errors.Is(err, ErrHashMismatch) {
			t.Fatalf("size %d: err = %v", n, err)
		}
		if _, ok := lookup(t, c, wrong); ok {
			t.Fatal("mismatched data stored")
		}
	}
	// A streamed blob that does not match is refused at Commit.
	want := pseudoRandom(100_000, 4)
	h := resources.Sum(want)
	p, err := c.Create(h, int64(len(want)))
	if err != nil {
		t.Fatal(err)
	}
	bad := bytes.Clone(want)
	bad[5000] ^= 1
	p.Write(bad)
	if err := p.Commit(nil); !errors.Is(err, ErrHashMismatch) {
		t.Fatalf("commit of corrupt stream: %v", err)
	}
	p2, _ := c.Create(h, 10)
	if _, err := p2.Write(make([]byte, 11)); !errors.Is(err, ErrSizeMismatch) {
		t.Fatalf("write past size: %v", err)
	}
	p2.Abort()
	c.Flush(context.Background())
	if leftovers, _ := filepath.Glob(filepath.Join(dir, "blobs", "*", ".tmp-*")); len(leftovers) != 0 {
		t.Fatalf("temp files left: %v", leftovers)
	}
}

func TestPackTierMatchesByHashOnly(t *testing.T) {
	pack := t.TempDir()
	stone := []byte("stone from my local pack")
	p := filepath.Join(pack, "assets/default/texture/stone.png")
	os.MkdirAll(filepath.Dir(p), 0o755)
	os.WriteFile(p, stone, 0o644)
	c := openCache(t, Options{Dir: t.TempDir(), Packs: []string{pack}})
	b, ok := lookup(t, c, resources.Sum(stone))
	if !ok || b.Source != SourcePack {
		t.Fatalf("pack file not found by hash: %v %v", ok, b.Source)
	}
	// The server binds default:stone.png with other content: the local file
	// with the same name is not a hit.
	if _, ok := lookup(t, c, resources.Sum([]byte("the server's stone"))); ok {
		t.Fatal("stale pack file served for another hash")
	}
}

func TestPackIndexSkipsUnchangedFilesAndVerifiesHits(t *testing.T) {
	pack, dir := t.TempDir(), t.TempDir()
	p := filepath.Join(pack, "assets/default/sound/dig.ogg")
	os.MkdirAll(filepath.Dir(p), 0o755)
	v1 := []byte("version one")
	os.WriteFile(p, v1, 0o644)
	c := openCache(t, Options{Dir: dir, Packs: []string{pack}})
	c.Flush(context.Background())
	c.Close()

	// Change the bytes but keep size and mtime: the index is trusted for
	// the hash (no rehash at start), and the hit is still verified.
	fi, _ := os.Stat(p)
	os.WriteFile(p, []byte("version two"), 0o644)
	os.Chtimes(p, fi.ModTime(), fi.ModTime())
	c = openCache(t, Options{Dir: dir, Packs: []string{pack}})
	if e, ok := c.PackView().ByHash(resources.Sum(v1)); !ok || e.Path != "assets/default/sound/dig.ogg" {
		t.Fatal("index entry not used on restart")
	}
	if _, ok := lookup(t, c, resources.Sum(v1)); ok {
		t.Fatal("pack file served although its bytes no longer match")
	}
}

func TestCorruptEntriesAreMissesAndRemoved(t *testing.T) {
	tests := []struct {
		name    string
		size    int
		corrupt func(t *testing.T, dir string, db *sql.DB, h resources.Hash)
	}{
		{"truncated blob file", 100_000, func(t *testing.T, dir string, _ *sql.DB, h resources.Hash) {
			os.Truncate(blobPath(filepath.Join(dir, "blobs"), h), 5000)
		}},
		{"flipped byte in blob file", 100_000, func(t *testing.T, dir string, _ *sql.DB, h resources.Hash) {
			p := blobPath(filepath.Join(dir, "blobs"), h)
			b, _ := os.ReadFile(p)
			b[777] ^= 0x40
			os.WriteFile(p, b, 0o644)
		}},
		{"row whose file is missing", 100_000, func(t *testing.T, dir string, _ *sql.DB, h resources.Hash) {
			os.Remove(blobPath(filepath.Join(dir, "blobs"), h))
		}},
		{"blob file without a row, not matching its name", 100_000, func(t *testing.T, dir string, db *sql.DB, h resources.Hash) {
			if _, err := db.Exec("DELETE FROM file_blobs WHERE hash = ?", h[:]); err != nil {
				t.Fatal(err)
			}
			os.Truncate(blobPath(filepath.Join(dir, "blobs"), h), 99_999)
		}},
		{"flipped bytes in inline data", 3000, func(t *testing.T, dir string, db *sql.DB, h resources.Hash) {
			if _, err := db.Exec("UPDATE inline_blobs SET data = zeroblob(3000) WHERE hash = ?", h[:]); err != nil {
				t.Fatal(err)
			}
		}},
		{"inline size differs from row", 3000, func(t *testing.T, dir string, db *sql.DB, h resources.Hash) {
			if _, err := db.Exec("UPDATE inline_blobs SET size = 2999 WHERE hash = ?", h[:]); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			data := pseudoRandom(tc.size, 9)
			c := openCache(t, Options{Dir: dir})
			h := put(t, c, data)
			c.Close()

			db, err := sql.Open("sqlite", filepath.Join(dir, "db.sqlite3"))
			if err != nil {
				t.Fatal(err)
			}
			tc.corrupt(t, dir, db, h)
			db.Close()

			c = openCache(t, Options{Dir: dir})
			var told []resources.Hash
			c.OnCorrupt(func(h resources.Hash) { told = append(told, h) })
			if b, ok := lookup(t, c, h); ok {
				// A hit whose bytes are verified as they are read: the
				// read fails, and the entry is dropped.
				data, err := b.ReadAll()
				if err == nil || !(errors.Is(err, ErrHashMismatch) || errors.Is(err, ErrSizeMismatch)) {
					t.Fatalf("corrupt entry served from %s: %d bytes, err %v", b.Source, len(data), err)
				}
				if len(told) != 1 || told[0] != h {
					t.Fatalf("OnCorrupt told %v, want %s", told, h.Short())
				}
			}
			c.Flush(context.Background())
			var rows int
			c.db.QueryRow("SELECT (SELECT count(*) FROM inline_blobs) + (SELECT count(*) FROM file_blobs)").Scan(&rows)
			if rows != 0 {
				t.Fatalf("%d rows left for the corrupt entry", rows)
			}
			if _, err := os.Stat(blobPath(filepath.Join(dir, "blobs"), h)); err == nil {
				t.Fatal("corrupt blob file left in place")
			}
			// Fetched again, it is stored and served.
			put(t, c, data)
			if _, ok := lookup(t, c, h); !ok {
				t.Fatal("re-fetched entry not served")
			}
		})
	}
}

func TestLastUsedIsUpdated(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	clock := func() time.Time { return now }
	c := openCache(t, Options{Dir: t.TempDir(), Now: clock})
	hs := put(t, c, []byte("small"))
	hl := put(t, c, pseudoRandom(100_000, 5))
	now = now.Add(time.Hour)
	lookup(t, c, hs)
	lookup(t, c, hl)
	c.Flush(context.Background())
	var a, b int64
	c.db.QueryRow("SELECT last_used FROM inline_blobs WHERE hash = ?", hs[:]).Scan(&a)
	c.db.QueryRow("SELECT last_used FROM file_blobs WHERE hash = ?", hl[:]).Scan(&b)
	if a != now.Unix() || b != now.Unix() {
		t.Fatalf("last_used %d and %d, want %d", a, b, now.Unix())
	}
}

func TestOpenRemovesTempFilesAndChecksSchema(t *testing.T) {
	dir := t.TempDir()
	c := openCache(t, Options{Dir: dir})
	c.Close()
	stale := filepath.Join(dir, "blobs", "ab", ".tmp-abcd-123")
	os.MkdirAll(filepath.Dir(stale), 0o755)
	os.WriteFile(stale, []byte("half a blob"), 0o644)
	c = openCache(t, Options{Dir: dir})
	if _, err := os.Stat(stale); err == nil {
		t.Fatal("temp file from a crash left in place")
	}
	var v int
	c.db.QueryRow("PRAGMA user_version").Scan(&v)
	if v != 4 {
		t.Fatalf("schema version %d", v)
	}
	var mode string
	c.db.QueryRow("PRAGMA journal_mode").Scan(&mode)
	if mode != "wal" {
		t.Fatalf("journal_mode %s", mode)
	}
	c.db.Exec("PRAGMA user_version = 99")
	c.Close()
	if _, err := Open(context.Background(), Options{Dir: dir}); !errors.Is(err, ErrNewerSchema) {
		t.Fatalf("newer schema: %v", err)
	}
}

// A full disk gives a clear error and leaves no entry behind. A real one:
// a 1 MiB tmpfs, which needs root; CI runs as root.
func TestFullDisk(t *testing.T) {
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", dir).CombinedOutput(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("cannot mount a tmpfs for the full-disk test: %v %s", err, out)
		}
		t.Skipf("cannot mount a tmpfs (needs root): %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", dir).Run() })
	c := openCache(t, Options{Dir: dir})

	big := pseudoRandom(2<<20, 7)
	err := c.Put(resources.Sum(big), big, func(err error) { t.Errorf("done called: %v", err) })
	if !errors.Is(err, syscall.ENOSPC) || !errors.Is(err, ErrDiskFull) {
		t.Fatalf("2 MiB blob on a 1 MiB disk: err = %v", err)
	}
	// Fill the rest with inline blobs until the database reports the disk full.
	var failed error
	var stored []resources.Hash
	for i := 0; failed == nil && i < 100; i++ {
		data := pseudoRandom(60_000, byte(i))
		h := resources.Sum(data)
		errc := make(chan error, 1)
		if err := c.Put(h, data, func(err error) { errc <- err }); err != nil {
			failed = err
			break
		}
		if err := <-errc; err != nil {
			failed = err
			break
		}
		stored = append(stored, h)
	}
	if failed == nil {
		t.Fatal("100 × 60 KB stored on a 1 MiB disk")
	}
	if !errors.Is(failed, ErrDiskFull) {
		t.Fatalf("full-disk error is not ErrDiskFull: %v", failed)
	}
	if !strings.Contains(failed.Error(), "full") && !strings.Contains(failed.Error(), "no space") {
		t.Fatalf("full-disk error does not say so: %v", failed)
	}
	if _, ok := lookup(t, c, resources.Sum(big)); ok {
		t.Fatal("failed blob is served")
	}
	leftovers, _ := filepath.Glob(filepath.Join(dir, "blobs", "*", "*"))
	if len(leftovers) != 0 {
		t.Fatalf("files left after failed writes: %v", leftovers)
	}
	// What was stored before the disk filled is intact.
	for _, h := range stored {
		if _, ok := lookup(t, c, h); !ok {
			t.Fatalf("entry %s stored before the disk filled is gone", h.Short())
		}
	}
}

// Luanti never evicts; we keep the cache under MaxBytes, least recently
// used first, and never evict what is bound now.
// Blobs last used in the same second, as a sync stores them: the largest
// goes first, so that as few go as can. Before, `cache gc` on a cache over
// its cap because of one large blob evicted every small blob first, and
// then the large one too.
func TestTrimEvictsTheLargestOfTheSameAge(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	c := openCache(t, Options{Dir: t.TempDir(), MaxBytes: 200_000, Now: func() time.Time { return now }})
	var small []resources.Hash
	for i := range 10 { // inline
		small = append(small, put(t, c, pseudoRandom(10_000, byte(i))))
	}
	big := put(t, c, pseudoRandom(300_000, 99)) // a blob file
	c.Flush(context.Background())
	if _, _, err := c.Trim(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	if _, ok := lookup(t, c, big); ok {
		t.Error("the large blob survived")
	}
	for _, h := range small {
		if _, ok := lookup(t, c, h); !ok {
			t.Errorf("small blob %s evicted though the large one alone made room", h.Short())
		}
	}
}

func TestTrimEvictsLeastRecentlyUsed(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	clock := func() time.Time { return now }
	dir := t.TempDir()
	c := openCache(t, Options{Dir: dir, MaxBytes: 300_000, Now: clock})
	var hs []resources.Hash
	for i := range 6 { // 6 × 100 KB, above the inline threshold: blob files
		now = now.Add(time.Hour)
		hs = append(hs, put(t, c, pseudoRandom(100_000, byte(i))))
	}
	now = now.Add(time.Hour)
	small := put(t, c, pseudoRandom(10_000, 77)) // newer than all but hs[0], inline
	// Touch hs[0]: now it is the most recently used.
	now = now.Add(time.Hour)
	lookup(t, c, hs[0])
	c.Flush(context.Background())
	keep := hs[1] // old, but bound right now

	n, freed, err := c.Trim(context.Background(), func(h resources.Hash) bool { return h == keep })
	if err != nil {
		t.Fatal(err)
	}
	size, _ := c.Size(context.Background())
	if size > 270_000 || n == 0 || freed < 300_000 {
		t.Fatalf("after trim: %d bytes left (limit 300,000, target 270,000), %d removed, %d freed", size, n, freed)
	}
	for h, want := range map[resources.Hash]bool{hs[0]: true, keep: true, small: true, hs[2]: false, hs[3]: false} {
		if _, ok := lookup(t, c, h); ok != want {
			t.Errorf("%s present=%v, want %v", h.Short(), ok, want)
		}
	}
	if _, err := os.Stat(blobPath(filepath.Join(dir, "blobs"), hs[2])); err == nil {
		t.Error("evicted blob file still on disk")
	}
	// Under the limit, Trim does nothing.
	if n, _, _ := c.Trim(context.Background(), nil); n != 0 {
		t.Fatalf("second trim removed %d", n)
	}
}

// A read that found an inline copy corrupt queues its removal; if a good
// copy was stored again before the removal runs (the Syncer fetches one at
// once), the good copy stays.
func TestCorruptDropSparesAGoodCopyStoredSince(t *testing.T) {
	c := openCache(t, Options{Dir: t.TempDir()})
	data := []byte("a good copy, stored again after a bad read")
	h := put(t, c, data)
	c.store.dropCorruptInline(h) // as a read of the old, damaged copy would
	if err := c.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	b, ok := lookup(t, c, h)
	if !ok {
		t.Fatal("the good copy was removed by the drop of the damaged one")
	}
	if got, err := b.ReadAll(); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read %q, %v", got, err)
	}
}

// A Lookup from a done callback, which runs on the store's goroutine (the
// Syncer delivers Loaded from there, and a game's handler looks up what
// it was told about), never waits for the store: its touches of entries
// last used long ago once went into the store's queue with a blocking
// send, and the 1,025th deadlocked the store with itself.
func TestLookupFromADoneCallbackNeverBlocks(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	// Not openCache: if the store is stuck, its Close would hang the test
	// instead of failing it.
	c, err := Open(context.Background(), Options{Dir: t.TempDir(), Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	old := put(t, c, []byte("used an hour ago"))
	mu.Lock()
	now = now.Add(time.Hour)
	mu.Unlock()
	finished := make(chan int, 1)
	data := []byte("stored now")
	if err := c.Put(resources.Sum(data), data, func(error) {
		n := 0
		for range 2000 { // each finds old stale, and touches it
			if hits, err := c.Lookup(context.Background(), []resources.Hash{old}); err == nil && len(hits) == 1 {
				n++
			}
		}
		finished <- n
	}); err != nil {
		t.Fatal(err)
	}
	select {
	case n := <-finished:
		if n != 2000 {
			t.Fatalf("%d of 2000 lookups found the entry", n)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("lookups from a done callback blocked: the store waits for itself")
	}
	defer c.Close()
	c.Flush(context.Background())
	var used int64
	c.db.QueryRow("SELECT last_used FROM inline_blobs WHERE hash = ?", old[:]).Scan(&used)
	if used != clock().Unix() {
		t.Errorf("last_used %d, want the touch applied (%d)", used, clock().Unix())
	}
}
