package assetsmgr

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/voxsync/voxsync/manifest"
	"github.com/voxsync/voxsync/resources"
)

// Management of partials: Verify, GC (see manage.go).

// verifyPartials re-hashes the recorded chunks of every partial not open,
// and drops those that do not match; a partial whose file is gone is
// forgotten.
func (c *Cache) verifyPartials(ctx context.Context, rep *VerifyReport) error {
	sizes, err := c.partialSizes(ctx, "SELECT hash, size FROM partials")
	if err != nil {
		return fmt.Errorf("verify partials: %w", err)
	}
	buf := make([]byte, manifest.MaxChunkLen)
	for h := range sizes {
		if err := ctx.Err(); err != nil {
			return err
		}
		if !c.claimPartial(h) {
			continue // open: its Commit checks the whole
		}
		err := c.verifyPartial(ctx, h, rep, buf)
		c.releasePartial(h, nil)
		if err != nil {
			return fmt.Errorf("verify partial %s: %w", h.Short(), err)
		}
	}
	return nil
}

// verifyPartial checks one claimed partial.
func (c *Cache) verifyPartial(ctx context.Context, h resources.Hash, rep *VerifyReport, buf []byte) error {
	rows, err := c.partialChunkRows(ctx, h)
	if err != nil {
		return err
	}
	f, err := os.Open(filepath.Join(c.dir, partialDirName, h.String()))
	if err != nil {
		var bytes int64
		for _, r := range rows {
			bytes += r.length
		}
		if len(rows) > 0 {
			rep.Bad = append(rep.Bad, BadEntry{Hash: h, Source: SourcePartial, Size: bytes, Reason: fmt.Sprintf("partial file unreadable (%v): its %d chunks are fetched again", err, len(rows))})
		}
		return c.storeWait(ctx, op{kind: opDeletePartial, hashes: []resources.Hash{h}})
	}
	defer f.Close()
	var bad []chunkRow
	var badBytes int64
	for _, r := range rows {
		rep.Partial++
		rep.Bytes += r.length
		if r.length <= 0 || r.length > int64(len(buf)) {
			bad, badBytes = append(bad, r), badBytes+r.length
			continue
		}
		b := buf[:r.length]
		if _, err := f.ReadAt(b, r.offset); err != nil || resources.Sum(b) != r.chunk {
			bad, badBytes = append(bad, r), badBytes+r.length
		}
	}
	if len(bad) == 0 {
		return nil
	}
	rep.Bad = append(rep.Bad, BadEntry{Hash: h, Source: SourcePartial, Size: badBytes,
		Reason: fmt.Sprintf("%d of %d chunks held do not match their hashes (the first at offset %d)", len(bad), len(rows), bad[0].offset)})
	return c.storeWait(ctx, op{kind: opPartialDrop, hash: h, partial: &partialOp{rows: bad}})
}

// removeStalePartials removes the partials not used for partialMaxIdle,
// except open ones.
func (c *Cache) removeStalePartials(ctx context.Context) (int, int64, error) {
	cutoff := c.now().Add(-partialMaxIdle).Unix()
	sizes, err := c.partialSizes(ctx, "SELECT hash, size FROM partials WHERE last_used < ?", cutoff)
	if err != nil || len(sizes) == 0 {
		return 0, 0, err
	}
	hs := make([]resources.Hash, 0, len(sizes))
	for h := range sizes {
		hs = append(hs, h)
	}
	removed, err := c.removePartials(ctx, hs)
	if err != nil {
		return 0, 0, err
	}
	var bytes int64
	for _, h := range removed {
		bytes += sizes[h]
	}
	if len(removed) > 0 {
		c.log.Info("removed partial resources not used for a week", "partials", len(removed), "bytes", bytes)
	}
	return len(removed), bytes, nil
}

// partialSizes runs a query returning hash and size of partials.
func (c *Cache) partialSizes(ctx context.Context, q string, args ...any) (map[resources.Hash]int64, error) {
	rows, err := c.db.QueryContext(ctx, q, args...)
	if err != nil {
		c.markDamaged(err)
		return nil, fmt.Errorf("read partials: %w", err)
	}
	defer rows.Close()
	out := make(map[resources.Hash]int64)
	for rows.Next() {
		var hb []byte
		var size int64
		if err := rows.Scan(&hb, &size); err != nil {
			return nil, fmt.Errorf("read partials: %w", err)
		}
		if h, ok := scanHash(hb); ok {
			out[h] = size
		}
	}
	if err := rows.Err(); err != nil {
		c.markDamaged(err)
		return nil, fmt.Errorf("read partials: %w", err)
	}
	return out, nil
}

// storeWait queues o and waits until it is applied.
func (c *Cache) storeWait(ctx context.Context, o op) error {
	errc := make(chan error, 1)
	o.done = func(err error) { errc <- err }
	c.store.enqueue(o)
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}
