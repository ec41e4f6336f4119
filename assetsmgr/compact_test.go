package assetsmgr

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"
)

// Eviction gives the database's pages back: after evicting most inline
// blobs the file shrinks and few pages are free, also for a database made
// before incremental vacuum (converted once with VACUUM).
func TestEvictionShrinksTheDatabase(t *testing.T) {
	tests := []struct {
		name string
		old  bool // made without auto_vacuum
	}{
		{"new cache", false},
		{"cache made without auto_vacuum", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			db := filepath.Join(dir, "db.sqlite3")
			if tc.old {
				c := openCache(t, Options{Dir: dir})
				c.Close()
				raw, err := sql.Open("sqlite", db)
				if err != nil {
					t.Fatal(err)
				}
				raw.Exec("PRAGMA auto_vacuum = 0")
				raw.Exec("VACUUM")
				var mode int
				raw.QueryRow("PRAGMA auto_vacuum").Scan(&mode)
				raw.Close()
				if mode != 0 {
					t.Fatalf("auto_vacuum %d after setting it off", mode)
				}
			}
			c := openCache(t, Options{Dir: dir, MaxBytes: 1 << 20})
			var startMode int
			c.db.QueryRow("PRAGMA auto_vacuum").Scan(&startMode)
			if want := map[bool]int{false: 2, true: 0}[tc.old]; startMode != want {
				t.Fatalf("auto_vacuum %d at Open, want %d", startMode, want)
			}
			for i := range 200 {
				put(t, c, pseudoRandom(30_000, byte(i)))
			}
			c.Flush(context.Background())
			c.db.Exec("PRAGMA wal_checkpoint(TRUNCATE)")
			before := fileSizes(db, db+"-wal")
			if n, _, err := c.Trim(context.Background(), nil); err != nil || n < 150 {
				t.Fatalf("trim: %d evicted, %v", n, err)
			}
			after := fileSizes(db, db+"-wal")
			var free, pages, mode int64
			c.db.QueryRow("PRAGMA freelist_count").Scan(&free)
			c.db.QueryRow("PRAGMA page_count").Scan(&pages)
			c.db.QueryRow("PRAGMA auto_vacuum").Scan(&mode)
			if after > before/3 || free*4 > pages || mode != 2 {
				t.Fatalf("after evicting 5 of 6 MB: database %d → %d bytes, %d of %d pages free, auto_vacuum %d", before, after, free, pages, mode)
			}
			res, err := c.Compact(context.Background())
			if err != nil || res.Rewrote || res.BytesAfter > res.BytesBefore {
				t.Fatalf("compact again: %+v, %v", res, err)
			}
		})
	}
}
