package assetsmgr

import (
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/voxsync/voxsync/resources"
)

// A complete blob file without a row (a kill between rename and commit)
// is adopted at Open, not deleted; it keeps its file's age, so eviction
// still collects it when it is never used again.
func TestOpenAdoptsVerifiedBlobFiles(t *testing.T) {
	dir := t.TempDir()
	old := time.Unix(1_000_000, 0)
	// Five minutes after the file's mtime: a lookup does not touch it
	// (last_used is updated only when older than touchGranularity).
	clock := func() time.Time { return old.Add(5 * time.Minute) }
	c := openCache(t, Options{Dir: dir, MaxBytes: 250_000, Now: clock})
	h := put(t, c, pseudoRandom(100_000, 3))
	c.Close()
	db, err := sql.Open("sqlite", filepath.Join(dir, "db.sqlite3"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec("DELETE FROM file_blobs"); err != nil {
		t.Fatal(err)
	}
	db.Close()
	p := blobPath(filepath.Join(dir, "blobs"), h)
	os.Chtimes(p, old, old)

	c = openCache(t, Options{Dir: dir, MaxBytes: 250_000, Now: clock})
	b, ok := lookup(t, c, h)
	if !ok || b.Source != SourceBlob {
		t.Fatalf("blob file without a row not adopted: %v %v", ok, b.Source)
	}
	c.Flush(context.Background())
	var used int64
	c.db.QueryRow("SELECT last_used FROM file_blobs WHERE hash = ?", h[:]).Scan(&used)
	if used != old.Unix() {
		t.Fatalf("adopted last_used %d, want the file's mtime %d", used, old.Unix())
	}

	// Never bound again, it is the oldest and goes first.
	newer := []resources.Hash{put(t, c, pseudoRandom(100_000, 4)), put(t, c, pseudoRandom(100_000, 5))}
	if n, _, err := c.Trim(context.Background(), nil); err != nil || n != 1 {
		t.Fatalf("trim: %d evicted, %v", n, err)
	}
	if _, err := os.Stat(p); err == nil {
		t.Fatal("adopted, unused blob file not evicted")
	}
	for _, h := range newer {
		if _, ok := lookup(t, c, h); !ok {
			t.Fatalf("newer blob %s evicted", h.Short())
		}
	}
}

// A damaged database is moved aside and the index rebuilt from the blob
// files: the large blobs are served again without being fetched; only
// inline ones are lost.
func TestDamagedDatabaseIsRebuilt(t *testing.T) {
	garbage := func(t *testing.T, path string, off int64, n int) {
		f, err := os.OpenFile(path, os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := f.WriteAt(pseudoRandom(n, 99), off); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name   string
		damage func(t *testing.T, dir, db string)
		aside  bool // the old database is kept as db.sqlite3.corrupt-*
	}{
		{"16 KiB of garbage over a page", func(t *testing.T, dir, db string) {
			garbage(t, db, 3*16384, 16384)
		}, true},
		{"truncated", func(t *testing.T, dir, db string) {
			fi, _ := os.Stat(db)
			os.Truncate(db, fi.Size()/2)
		}, true},
		{"garbage file", func(t *testing.T, dir, db string) {
			os.WriteFile(db, pseudoRandom(100_000, 98), 0o644)
		}, true},
		{"garbage header", func(t *testing.T, dir, db string) {
			garbage(t, db, 0, 100)
		}, true},
		{"deleted", func(t *testing.T, dir, db string) {
			os.Remove(db)
		}, false},
		{"seen damaged in use", func(t *testing.T, dir, db string) {
			os.WriteFile(filepath.Join(dir, damagedName), nil, 0o644)
		}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			c := openCache(t, Options{Dir: dir})
			var inline, files []resources.Hash
			for i := range 40 { // several pages of inline rows
				inline = append(inline, put(t, c, pseudoRandom(5000, byte(i))))
			}
			for i := range 3 {
				files = append(files, put(t, c, pseudoRandom(100_000+i, byte(100+i))))
			}
			c.Close()
			db := filepath.Join(dir, "db.sqlite3")
			tc.damage(t, dir, db)

			c = openCache(t, Options{Dir: dir})
			for _, h := range files {
				if b, ok := lookup(t, c, h); !ok || b.Source != SourceBlob {
					t.Fatalf("blob %s not adopted from its file after the rebuild", h.Short())
				}
			}
			served := 0
			for _, h := range inline {
				if b, ok := lookup(t, c, h); ok {
					if data, _ := b.ReadAll(); resources.Sum(data) != h {
						t.Fatalf("inline %s served corrupt", h.Short())
					}
					served++
				}
			}
			if served != 0 && tc.aside {
				t.Logf("%d of %d inline entries survived", served, len(inline))
			}
			var check string
			c.db.QueryRow("PRAGMA integrity_check").Scan(&check)
			if check != "ok" {
				t.Fatalf("integrity_check after the rebuild: %s", check)
			}
			asides, _ := filepath.Glob(db + ".corrupt-*")
			if tc.aside && len(asides) == 0 {
				t.Fatal("damaged database not kept aside")
			}
			if _, err := os.Stat(filepath.Join(dir, damagedName)); err == nil {
				t.Fatal("damage marker left after the rebuild")
			}
			// The new database works.
			h := put(t, c, pseudoRandom(5000, 200))
			if _, ok := lookup(t, c, h); !ok {
				t.Fatal("new entry not served after the rebuild")
			}
		})
	}
}

// Damage that appears while the cache is open fails the lookup, is
// recorded, and the next Open rebuilds the database.
func TestDamageSeenInUseIsRepairedAtNextOpen(t *testing.T) {
	dir := t.TempDir()
	c := openCache(t, Options{Dir: dir})
	var inline []resources.Hash
	for i := range 200 {
		inline = append(inline, put(t, c, pseudoRandom(5000, byte(i))))
	}
	big := put(t, c, pseudoRandom(100_000, 250))
	c.Flush(context.Background())
	if _, err := c.db.Exec("PRAGMA wal_checkpoint(TRUNCATE)"); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(filepath.Join(dir, "db.sqlite3"), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fi, _ := f.Stat()
	for off := int64(4096); off < fi.Size(); off += 4096 {
		f.WriteAt(pseudoRandom(4096, byte(off>>12)), off)
	}
	f.Close()

	if _, err := c.Lookup(context.Background(), inline); err == nil {
		t.Fatal("lookup on a database overwritten with garbage did not fail")
	}
	if _, err := os.Stat(filepath.Join(dir, damagedName)); err != nil {
		t.Fatalf("damage not recorded: %v", err)
	}
	c.Close()

	c = openCache(t, Options{Dir: dir})
	if c.Opened().DatabaseMovedAside == "" {
		t.Fatal("damaged database not moved aside at the next Open")
	}
	if b, ok := lookup(t, c, big); !ok || b.Source != SourceBlob {
		t.Fatal("blob file not adopted after the rebuild")
	}
}
