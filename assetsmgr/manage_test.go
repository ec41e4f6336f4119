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

func TestStatsCountsEachTier(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	c := openCache(t, Options{Dir: t.TempDir(), Now: func() time.Time { return now }})
	put(t, c, pseudoRandom(1000, 1))
	now = now.Add(time.Hour)
	put(t, c, pseudoRandom(2000, 2))
	put(t, c, pseudoRandom(100_000, 3))
	st, err := c.Stats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		got, want any
	}{
		{"inline entries", st.Inline.Entries, int64(2)},
		{"inline bytes", st.Inline.Bytes, int64(3000)},
		{"inline oldest use", st.Inline.OldestUse, time.Unix(1_000_000, 0).UTC()},
		{"inline newest use", st.Inline.NewestUse, now.UTC()},
		{"blob entries", st.Blob.Entries, int64(1)},
		{"blob bytes", st.Blob.Bytes, int64(100_000)},
		{"blob oldest use", st.Blob.OldestUse, now.UTC()},
	}
	for _, tc := range tests {
		if tc.got != tc.want {
			t.Errorf("%s: got %v, want %v", tc.name, tc.got, tc.want)
		}
	}
	if st.Pages == 0 || st.DatabaseBytes == 0 {
		t.Errorf("database size not measured: %+v", st)
	}
}

// Verify finds every kind of damage, drops it, and a second run is clean.
func TestVerifyDropsCorruptEntries(t *testing.T) {
	dir := t.TempDir()
	c := openCache(t, Options{Dir: dir})
	good := []resources.Hash{put(t, c, pseudoRandom(1000, 1)), put(t, c, pseudoRandom(100_000, 2))}
	badInline := put(t, c, pseudoRandom(3000, 3))
	short := put(t, c, pseudoRandom(100_000, 4))
	flipped := put(t, c, pseudoRandom(100_000, 5))
	missing := put(t, c, pseudoRandom(100_000, 6))
	c.Close()

	db, err := sql.Open("sqlite", filepath.Join(dir, "db.sqlite3"))
	if err != nil {
		t.Fatal(err)
	}
	db.Exec("UPDATE inline_blobs SET data = zeroblob(3000) WHERE hash = ?", badInline[:])
	db.Close()
	blobs := filepath.Join(dir, "blobs")
	os.Truncate(blobPath(blobs, short), 50_000)
	b, _ := os.ReadFile(blobPath(blobs, flipped))
	b[5] ^= 1
	os.WriteFile(blobPath(blobs, flipped), b, 0o644)
	os.Remove(blobPath(blobs, missing))

	c = openCache(t, Options{Dir: dir})
	rep, err := c.Verify(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	bad := map[resources.Hash]Source{}
	for _, e := range rep.Bad {
		bad[e.Hash] = e.Source
	}
	want := map[resources.Hash]Source{badInline: SourceInline, short: SourceBlob, flipped: SourceBlob, missing: SourceBlob}
	if len(bad) != len(want) || rep.Clean() || rep.Inline != 2 || rep.Blob != 4 {
		t.Fatalf("verify: %+v, want bad %v", rep, want)
	}
	for h, src := range want {
		if bad[h] != src {
			t.Errorf("%s: reported %v, want %v", h.Short(), bad[h], src)
		}
		if _, err := os.Stat(blobPath(blobs, h)); err == nil {
			t.Errorf("%s: corrupt file left", h.Short())
		}
	}
	var rows int
	c.db.QueryRow("SELECT (SELECT count(*) FROM inline_blobs) + (SELECT count(*) FROM file_blobs)").Scan(&rows)
	if rows != 2 {
		t.Fatalf("%d rows left, want the 2 good ones", rows)
	}
	for _, h := range good {
		if _, ok := lookup(t, c, h); !ok {
			t.Fatalf("good entry %s dropped", h.Short())
		}
	}
	if rep, err := c.Verify(context.Background()); err != nil || !rep.Clean() {
		t.Fatalf("second verify: %+v %v", rep, err)
	}
}

func TestNamesListAndFilter(t *testing.T) {
	c := openCache(t, Options{Dir: t.TempDir(), MaxBytes: 50_000})
	stone, dirt := put(t, c, pseudoRandom(1000, 1)), put(t, c, pseudoRandom(1000, 2))
	big := put(t, c, pseudoRandom(100_000, 3))
	unnamed := put(t, c, pseudoRandom(1000, 4))
	loc := func(s string) resources.Loc {
		l, err := resources.ParseLoc(s)
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	c.Name(stone, loc("texture/default:blocks/stone.png"))
	c.Name(stone, loc("texture/other:stone.png")) // two servers, one blob
	c.Name(dirt, loc("texture/default:blocks/dirt.png"))
	c.Name(big, loc("model/default:tree.b3d"))
	c.Name(resources.Sum([]byte("not cached")), loc("sound/default:x.ogg")) // a pack hit: not recorded
	c.Flush(context.Background())

	all, err := c.List(context.Background(), nil)
	if err != nil || len(all) != 4 {
		t.Fatalf("list all: %d entries, %v", len(all), err)
	}
	tests := []struct {
		pattern string
		want    []resources.Hash
	}{
		{"texture/*", []resources.Hash{stone, dirt}},
		{"model/*", []resources.Hash{big}},
		{"default:blocks/*", []resources.Hash{stone, dirt}},
		{"other:*", []resources.Hash{stone}},
		{"texture/default:*stone*", []resources.Hash{stone}},
		{"sound/*", nil},
	}
	for _, tc := range tests {
		p, err := resources.ParsePattern(tc.pattern)
		if err != nil {
			t.Fatal(err)
		}
		got, err := c.List(context.Background(), p.Match)
		if err != nil {
			t.Fatal(err)
		}
		gotSet := map[resources.Hash]bool{}
		for _, e := range got {
			gotSet[e.Hash] = true
		}
		if len(got) != len(tc.want) {
			t.Errorf("%s: %d entries, want %d", tc.pattern, len(got), len(tc.want))
		}
		for _, h := range tc.want {
			if !gotSet[h] {
				t.Errorf("%s: %s missing", tc.pattern, h.Short())
			}
		}
	}
	var n int
	c.db.QueryRow("SELECT count(*) FROM blob_names").Scan(&n)
	if n != 4 {
		t.Fatalf("%d names recorded, want 4", n)
	}
	_ = unnamed

	// GC evicts to the cap; the evicted blobs' names go with them.
	rep, err := c.GC(context.Background())
	if err != nil || rep.Evicted == 0 {
		t.Fatalf("gc: %+v %v", rep, err)
	}
	c.db.QueryRow("SELECT count(*) FROM blob_names WHERE hash NOT IN (SELECT hash FROM inline_blobs UNION SELECT hash FROM file_blobs)").Scan(&n)
	if n != 0 {
		t.Fatalf("%d names left for evicted blobs", n)
	}
	if size, _ := c.Size(context.Background()); size > 50_000 {
		t.Fatalf("gc left %d bytes over a 50,000 cap", size)
	}
}
