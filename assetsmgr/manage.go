package assetsmgr

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/voxsync/voxsync/manifest"
	"github.com/voxsync/voxsync/resources"
)

// TierStats counts one cache tier.
type TierStats struct {
	Entries   int64     `json:"entries"`
	Bytes     int64     `json:"bytes"`
	OldestUse time.Time `json:"oldest_use,omitzero"`
	NewestUse time.Time `json:"newest_use,omitzero"`
}

// Stats describes the cache's contents.
type Stats struct {
	Dir    string    `json:"dir"`
	Inline TierStats `json:"inline"`
	Blob   TierStats `json:"blob"`
	// Partial counts resources being assembled from chunks; Bytes is their
	// whole size (reserved on disk, counted against MaxBytes), PartialHeld
	// what they hold.
	Partial     TierStats `json:"partial"`
	PartialHeld int64     `json:"partial_held_bytes"`
	// MaxBytes is the size cap Trim applies (negative: none).
	MaxBytes      int64 `json:"max_bytes"`
	DatabaseBytes int64 `json:"database_bytes"` // db.sqlite3 and its WAL
	PageSize      int64 `json:"page_size"`
	Pages         int64 `json:"pages"`
	FreePages     int64 `json:"free_pages"`
	Names         int64 `json:"names"` // recorded type and domain:key names
	// SetAside lists damaged databases moved aside by earlier repairs.
	SetAside []string `json:"set_aside,omitempty"`
}

// Stats counts entries and bytes per tier, with their oldest and newest
// use, and partials the same way.
func (c *Cache) Stats(ctx context.Context) (Stats, error) {
	st := Stats{Dir: c.dir, MaxBytes: c.maxBytes}
	for _, t := range []struct {
		table string
		out   *TierStats
	}{{"inline_blobs", &st.Inline}, {"file_blobs", &st.Blob}, {"partials", &st.Partial}} {
		var oldest, newest sql.NullInt64
		err := c.db.QueryRowContext(ctx, "SELECT count(*), coalesce(sum(size), 0), min(last_used), max(last_used) FROM "+t.table).
			Scan(&t.out.Entries, &t.out.Bytes, &oldest, &newest)
		if err != nil {
			c.markDamaged(err)
			return st, fmt.Errorf("count %s: %w", t.table, err)
		}
		if oldest.Valid {
			t.out.OldestUse, t.out.NewestUse = time.Unix(oldest.Int64, 0).UTC(), time.Unix(newest.Int64, 0).UTC()
		}
	}
	err := c.db.QueryRowContext(ctx, `SELECT (SELECT page_size FROM pragma_page_size), (SELECT page_count FROM pragma_page_count),
		(SELECT freelist_count FROM pragma_freelist_count), (SELECT count(*) FROM blob_names),
		(SELECT coalesce(sum(length), 0) FROM partial_chunks)`).Scan(&st.PageSize, &st.Pages, &st.FreePages, &st.Names, &st.PartialHeld)
	if err != nil {
		return st, fmt.Errorf("measure cache database: %w", err)
	}
	db := filepath.Join(c.dir, dbName)
	st.DatabaseBytes = fileSizes(db, db+"-wal")
	aside, _ := filepath.Glob(db + ".corrupt-*")
	for _, a := range aside {
		if !strings.HasSuffix(a, "-wal") {
			st.SetAside = append(st.SetAside, filepath.Base(a))
		}
	}
	return st, nil
}

// BadEntry is a corrupt entry Verify found and dropped.
type BadEntry struct {
	Hash   resources.Hash `json:"hash"`
	Source Source         `json:"tier"`
	Size   int64          `json:"size"`
	Reason string         `json:"reason"`
	// Names are what the entry was loaded as (see Cache.Name), so a
	// player can tell which texture or sound it was.
	Names []resources.Loc `json:"names,omitempty"`
}

// VerifyReport is what Verify checked and found.
type VerifyReport struct {
	Inline   int64      `json:"inline_checked"`
	Blob     int64      `json:"blob_checked"`
	Partial  int64      `json:"partial_chunks_checked"`
	Bytes    int64      `json:"bytes_checked"`
	Bad      []BadEntry `json:"bad,omitempty"`
	Database string     `json:"database"` // "ok", or what integrity_check found
}

// Clean reports whether nothing was wrong.
func (r VerifyReport) Clean() bool { return len(r.Bad) == 0 && r.Database == "ok" }

// Verify re-hashes every inline and blob entry and drops those that do
// not match (a row without its file, a short file, other bytes; a blob
// that came as chunks becomes a partial of itself holding its good
// chunks, as when a sync finds it damaged), re-hashes
// every recorded chunk of the partials not open and drops the chunks that
// do not match (one BadEntry per partial, Source SourcePartial), and runs
// the database's full integrity_check; a damaged database is marked so
// the next Open rebuilds it.
func (c *Cache) Verify(ctx context.Context) (VerifyReport, error) {
	var rep VerifyReport
	rep.Database = "ok"
	rows, err := c.db.QueryContext(ctx, "PRAGMA integrity_check")
	if err != nil {
		c.markDamaged(err)
		rep.Database = err.Error()
	} else {
		var problems []string
		for rows.Next() {
			var s string
			if rows.Scan(&s) == nil && s != "ok" && len(problems) < 5 {
				problems = append(problems, s)
			}
		}
		rerr := rows.Err()
		rows.Close()
		if rerr != nil {
			problems = append(problems, rerr.Error())
		}
		if len(problems) > 0 {
			rep.Database = strings.Join(problems, "; ")
			c.markDamaged(fmt.Errorf("%w: %s", errDamaged, rep.Database))
		}
	}

	var badInline, badFile []resources.Hash
	// Inline rows, a page at a time in hash order.
	after := []byte{} // not nil: nil would bind as NULL
	for {
		n := 0
		err := func() error {
			rows, err := c.db.QueryContext(ctx, "SELECT hash, size, data FROM inline_blobs WHERE hash > ? ORDER BY hash LIMIT 256", after)
			if err != nil {
				return err
			}
			defer rows.Close()
			for rows.Next() {
				var hb, data []byte
				var size int64
				if err := rows.Scan(&hb, &size, &data); err != nil {
					return err
				}
				n++
				after = hb
				h, ok := scanHash(hb)
				if !ok {
					continue
				}
				rep.Inline++
				rep.Bytes += int64(len(data))
				if err := checkInline(data, size, h); err != nil {
					reason := "content does not match its hash"
					if errors.Is(err, ErrSizeMismatch) {
						reason = fmt.Sprintf("%d bytes stored, %d recorded", len(data), size)
					}
					rep.Bad = append(rep.Bad, BadEntry{Hash: h, Source: SourceInline, Size: size, Reason: reason})
					badInline = append(badInline, h)
				}
			}
			return rows.Err()
		}()
		if err != nil {
			c.markDamaged(err)
			return rep, fmt.Errorf("verify inline entries: %w", err)
		}
		if n == 0 {
			break
		}
	}

	// Blob files.
	type fileRow struct {
		h    resources.Hash
		size int64
	}
	var files []fileRow
	frows, err := c.db.QueryContext(ctx, "SELECT hash, size FROM file_blobs")
	if err != nil {
		c.markDamaged(err)
		return rep, fmt.Errorf("verify blob files: %w", err)
	}
	for frows.Next() {
		var hb []byte
		var fr fileRow
		if err := frows.Scan(&hb, &fr.size); err != nil {
			frows.Close()
			return rep, fmt.Errorf("verify blob files: %w", err)
		}
		if h, ok := scanHash(hb); ok {
			fr.h = h
			files = append(files, fr)
		}
	}
	frows.Close()
	if err := frows.Err(); err != nil {
		c.markDamaged(err)
		return rep, fmt.Errorf("verify blob files: %w", err)
	}
	ft := c.files
	buf := make([]byte, 256<<10)
	for _, fr := range files {
		if err := ctx.Err(); err != nil {
			return rep, err
		}
		rep.Blob++
		rep.Bytes += fr.size
		if _, err := ft.verify(blobPath(ft.dir, fr.h), fr.h, fr.size, buf); err != nil {
			reason := err.Error()
			if errors.Is(err, ErrSizeMismatch) {
				reason = "file size does not match"
			}
			rep.Bad = append(rep.Bad, BadEntry{Hash: fr.h, Source: SourceBlob, Size: fr.size, Reason: reason})
			badFile = append(badFile, fr.h)
		}
	}

	if err := c.verifyPartials(ctx, &rep); err != nil {
		return rep, err
	}

	// Names first: dropping an entry drops its names.
	for i, b := range rep.Bad {
		if b.Source != SourcePartial {
			rep.Bad[i].Names = c.namesOf(ctx, b.Hash)
		}
	}
	if len(badInline) > 0 {
		c.store.enqueue(op{kind: opDeleteInline, hashes: badInline})
	}
	// As when a sync finds one: a blob file assembled from chunks becomes
	// a partial download of itself, so the next sync re-verifies its
	// chunks and fetches only the damaged ones (a 4-byte scratch in a
	// 40 MiB blob cost 40 MiB after verify, 192 KiB without it).
	for _, h := range badFile {
		c.store.dropCorruptFile(h)
	}
	if err := c.Flush(ctx); err != nil {
		return rep, fmt.Errorf("drop corrupt entries: %w", err)
	}
	// The drop may have committed in a batch of its own, whose error
	// Flush does not see: check its outcome instead.
	scratch := &VerifyReport{}
	buf = make([]byte, manifest.MaxChunkLen)
	for _, h := range badFile {
		var one int
		switch err := c.db.QueryRowContext(ctx, "SELECT 1 FROM file_blobs WHERE hash = ?", h[:]).Scan(&one); {
		case err == nil:
			return rep, fmt.Errorf("drop corrupt blob file %s: its record is still there", h.Short())
		case !errors.Is(err, sql.ErrNoRows):
			return rep, fmt.Errorf("drop corrupt blob file %s: %w", h.Short(), err)
		}
		// A salvaged blob's partial took every chunk record, the damaged
		// ones too: drop those now, as the next sync would, so that a
		// second verify finds the cache clean.
		if c.claimPartial(h) {
			err := c.verifyPartial(ctx, h, scratch, buf)
			c.releasePartial(h, nil)
			if err != nil {
				return rep, fmt.Errorf("verify salvaged chunks of %s: %w", h.Short(), err)
			}
		}
	}
	return rep, nil // the report says what was dropped: no log of it too
}

// namesOf returns what h was loaded as, as far as the cache recorded it.
func (c *Cache) namesOf(ctx context.Context, h resources.Hash) []resources.Loc {
	rows, err := c.db.QueryContext(ctx, "SELECT type, ref FROM blob_names WHERE hash = ? ORDER BY type, ref", h[:])
	if err != nil {
		return nil
	}
	defer rows.Close()
	var names []resources.Loc
	for rows.Next() {
		var ts, rs string
		if rows.Scan(&ts, &rs) != nil {
			return names
		}
		if l, ok := scanName(ts, rs); ok {
			names = append(names, l)
		}
	}
	return names
}

// scanName parses a blob_names row's type and ref; a row this client
// cannot parse (written by a newer one) is skipped.
func scanName(ts, rs string) (resources.Loc, bool) {
	t, terr := resources.ParseType(ts)
	r, rerr := resources.ParseRef(rs)
	return resources.Loc{Type: t, Ref: r}, terr == nil && rerr == nil
}

// Entry is one cached blob, for listing.
type Entry struct {
	Hash     resources.Hash  `json:"hash"`
	Source   Source          `json:"tier"`
	Size     int64           `json:"size"`
	LastUsed time.Time       `json:"last_used"`
	Names    []resources.Loc `json:"names,omitempty"`
}

// List returns the cached blobs (inline and blob tiers), most recently
// used first, with the names they were loaded under. With match, only
// blobs with a name it accepts are listed; blobs never named are then
// left out.
func (c *Cache) List(ctx context.Context, match func(resources.Loc) bool) ([]Entry, error) {
	names := make(map[resources.Hash][]resources.Loc)
	rows, err := c.db.QueryContext(ctx, "SELECT hash, type, ref FROM blob_names ORDER BY type, ref")
	if err != nil {
		c.markDamaged(err)
		return nil, fmt.Errorf("list cache: %w", err)
	}
	for rows.Next() {
		var hb []byte
		var ts, rs string
		if err := rows.Scan(&hb, &ts, &rs); err != nil {
			rows.Close()
			return nil, fmt.Errorf("list cache: %w", err)
		}
		h, ok := scanHash(hb)
		if l, lok := scanName(ts, rs); ok && lok {
			names[h] = append(names[h], l)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list cache: %w", err)
	}

	rows, err = c.db.QueryContext(ctx, `SELECT hash, size, last_used, 0 FROM inline_blobs
		UNION ALL SELECT hash, size, last_used, 1 FROM file_blobs`)
	if err != nil {
		c.markDamaged(err)
		return nil, fmt.Errorf("list cache: %w", err)
	}
	defer rows.Close()
	var out []Entry
	for rows.Next() {
		var hb []byte
		var e Entry
		var used int64
		var file bool
		if err := rows.Scan(&hb, &e.Size, &used, &file); err != nil {
			return nil, fmt.Errorf("list cache: %w", err)
		}
		h, ok := scanHash(hb)
		if !ok {
			continue
		}
		e.Hash, e.LastUsed, e.Names, e.Source = h, time.Unix(used, 0).UTC(), names[h], SourceInline
		if file {
			e.Source = SourceBlob
		}
		if match != nil && !anyMatch(e.Names, match) {
			continue
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list cache: %w", err)
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].LastUsed.Equal(out[j].LastUsed) {
			return out[i].LastUsed.After(out[j].LastUsed)
		}
		return out[i].Hash.String() < out[j].Hash.String()
	})
	return out, nil
}

func anyMatch(ls []resources.Loc, match func(resources.Loc) bool) bool {
	for _, l := range ls {
		if match(l) {
			return true
		}
	}
	return false
}

// GCReport is what GC did.
type GCReport struct {
	Evicted      int   `json:"evicted"`
	EvictedBytes int64 `json:"evicted_bytes"`
	// StalePartials were not used for partialMaxIdle (7 days) and removed.
	StalePartials      int   `json:"stale_partials"`
	StalePartialsBytes int64 `json:"stale_partials_bytes"`
	CompactResult
}

// GC removes partials not used for 7 days (except open ones), applies the
// size cap now (evicting least recently used blobs and partials; none is
// protected, as no server binds anything) and gives the database's free
// pages back.
func (c *Cache) GC(ctx context.Context) (GCReport, error) {
	var rep GCReport
	var err error
	db := filepath.Join(c.dir, dbName)
	before := fileSizes(db, db+"-wal")
	if rep.StalePartials, rep.StalePartialsBytes, err = c.removeStalePartials(ctx); err != nil {
		return rep, err
	}
	if rep.Evicted, rep.EvictedBytes, err = c.Trim(ctx, nil); err != nil {
		return rep, err
	}
	rep.CompactResult, err = c.Compact(ctx)
	rep.BytesBefore = before // Trim may have compacted already
	return rep, err
}
