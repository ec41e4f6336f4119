package assetsmgr

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"github.com/voxsync/voxsync/resources"
)

// DefaultMaxBytes caps the cache (inline and blob files together) unless
// Options.MaxBytes says otherwise.
const DefaultMaxBytes = 4 << 30

// Size returns the bytes held by the inline and blob tiers, and reserved
// by partials (their whole size: it is reserved on disk at OpenPartial).
func (c *Cache) Size(ctx context.Context) (int64, error) {
	var n int64
	err := c.db.QueryRowContext(ctx,
		`SELECT (SELECT coalesce(sum(size), 0) FROM inline_blobs) + (SELECT coalesce(sum(size), 0) FROM file_blobs)
			+ (SELECT coalesce(sum(size), 0) FROM partials)`).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("measure cache: %w", err)
	}
	return n, nil
}

// Trim evicts the least recently used blobs until the cache holds at most
// 90% of its MaxBytes, if it holds more than MaxBytes; hashes for which
// keep returns true (those bound right now) are never evicted. Partials
// count and are evicted like blobs, by their last use, except those open.
// It returns the number of blobs and partials and the bytes removed. Rows
// go first and files after, so a crash in between leaves only an orphan
// file, which the next Open adopts (as least recently used) or, for a
// partial, removes. When evicted inline rows leave a quarter or more of
// the database's pages free, it is compacted.
func (c *Cache) Trim(ctx context.Context, keep func(resources.Hash) bool) (int, int64, error) {
	if c.maxBytes < 0 {
		return 0, 0, nil
	}
	total, err := c.Size(ctx)
	if err != nil || total <= c.maxBytes {
		return 0, 0, err
	}
	target := c.maxBytes / 10 * 9
	return c.evict(ctx, total-target, keep, true)
}

// MakeRoom evicts the least recently used blobs and partials, except
// those keep returns true for and partials open, until need bytes are
// freed or nothing evictable is left, whatever the size cap: for a
// resource the disk has no room for (ErrDiskFull, see Shortfall) beside
// what the cache holds. It returns the entries and bytes removed. Unlike
// Trim it does not compact the database: it runs while a download waits.
func (c *Cache) MakeRoom(ctx context.Context, need int64, keep func(resources.Hash) bool) (int, int64, error) {
	if need <= 0 {
		return 0, 0, nil
	}
	// The eviction's commit needs room too (see reserveSize).
	released := releaseReserve(c.dir)
	n, freed, err := c.evict(ctx, need, keep, false)
	if n > 0 && released > 0 {
		// Hold it again if what went left clear room for it: files
		// free the disk, inline rows only pages of the database.
		if holdReserve(c.dir, need+tightHeadroom) {
			released = 0
		}
	}
	if n > 0 {
		c.log.Warn("disk full: evicted cached resources no longer bound to make room", "entries", n, "bytes", freed)
	}
	if released > 0 {
		c.log.Warn("disk full: gave back the cache's reserve to make room", "bytes", released)
	}
	return n, freed + released, err
}

// evict removes the least recently used entries, but keep's, to free need
// bytes (see Trim); for trim (Trim, not MakeRoom) as few entries as can
// go, and the database is compacted after.
func (c *Cache) evict(ctx context.Context, need int64, keep func(resources.Hash) bool, trim bool) (int, int64, error) {
	victims, err := c.lruVictims(ctx, need, keep, trim)
	if err != nil {
		return 0, 0, err
	}
	var inline, files, partials []resources.Hash
	var freed int64
	sizes := make(map[resources.Hash]int64)
	for _, v := range victims {
		switch v.kind {
		case victimFile:
			files = append(files, v.hash)
		case victimPartial:
			partials = append(partials, v.hash)
			sizes[v.hash] = v.size
			continue // counted once removed
		default:
			inline = append(inline, v.hash)
		}
		freed += v.size
	}
	// Files first: their rows gone, they free the disk. Inline rows in
	// small transactions: on a full disk each must fit in the log's room
	// (store.tight).
	var deletes []op
	if len(files) > 0 {
		deletes = append(deletes, op{kind: opDeleteFile, hashes: files})
	}
	for rest := inline; len(rest) > 0; rest = rest[min(len(rest), deleteBatch):] {
		deletes = append(deletes, op{kind: opDeleteInline, hashes: rest[:min(len(rest), deleteBatch)]})
	}
	errs := make([]error, len(deletes))
	var wg sync.WaitGroup
	for i, o := range deletes {
		wg.Add(1)
		o.done = func(err error) { errs[i] = err; wg.Done() }
		c.store.enqueue(o)
	}
	wg.Wait()
	if len(files) > 0 && errs[0] == nil {
		for _, h := range files {
			os.Remove(blobPath(filepath.Join(c.dir, "blobs"), h))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return 0, 0, fmt.Errorf("trim cache: %w", err)
	}
	var removed []resources.Hash
	if len(partials) > 0 {
		if removed, err = c.removePartials(ctx, partials); err != nil {
			return 0, 0, fmt.Errorf("trim cache: %w", err)
		}
		for _, h := range removed {
			freed += sizes[h]
		}
	}
	evicted := len(inline) + len(files) + len(removed)
	if evicted > 0 {
		c.log.Info("cache trimmed", "blobs", len(inline)+len(files), "partials", len(removed), "bytes", freed, "limit", c.maxBytes)
	}
	if trim && len(inline) > 0 {
		// Evicted inline rows leave free pages; give them back.
		if share, err := c.freeShare(ctx); err == nil && share >= compactThreshold {
			if res, err := c.Compact(ctx); err != nil {
				c.log.Warn("cache database not compacted", "err", err)
			} else {
				c.log.Info("cache database compacted", "bytes_before", res.BytesBefore, "bytes_after", res.BytesAfter)
			}
		}
	}
	return evicted, freed, nil
}

// deleteBatch is how many inline rows one queued delete removes.
const deleteBatch = 128

type victimKind int

const (
	victimInline victimKind = iota
	victimFile
	victimPartial
)

type victim struct {
	hash resources.Hash
	size int64
	kind victimKind
}

// lruVictims lists blobs oldest first until need bytes are covered. Of
// those last used in the same second (a sync stores thousands in one), the
// largest go first if fewest, so that as few go as can (Trim, well above
// what one blob needs), else the smallest, so that no more bytes go than
// needed (MakeRoom, for one resource).
func (c *Cache) lruVictims(ctx context.Context, need int64, keep func(resources.Hash) bool, fewest bool) ([]victim, error) {
	order := "ASC"
	if fewest {
		order = "DESC"
	}
	rows, err := c.db.QueryContext(ctx, `
		SELECT hash, size, 0 AS kind, last_used FROM inline_blobs
		UNION ALL
		SELECT hash, size, 1 AS kind, last_used FROM file_blobs
		UNION ALL
		SELECT hash, size, 2 AS kind, last_used FROM partials
		ORDER BY last_used ASC, size `+order)
	if err != nil {
		return nil, fmt.Errorf("trim cache: %w", err)
	}
	defer rows.Close()
	var out []victim
	for need > 0 && rows.Next() {
		var hb []byte
		var v victim
		var used int64
		if err := rows.Scan(&hb, &v.size, &v.kind, &used); err != nil {
			return nil, fmt.Errorf("trim cache: %w", err)
		}
		h, ok := scanHash(hb)
		if !ok || (keep != nil && keep(h)) || (v.kind == victimPartial && c.partialTaken(h)) {
			continue
		}
		v.hash = h
		out = append(out, v)
		need -= v.size
	}
	return out, rows.Err()
}
