package assetsmgr

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
)

// CompactResult says what Compact reclaimed.
type CompactResult struct {
	FreePagesBefore int64 `json:"free_pages_before"` // free pages in the database before
	PageSize        int64 `json:"page_size"`
	BytesBefore     int64 `json:"database_bytes_before"` // size of db.sqlite3 (and its WAL) before
	BytesAfter      int64 `json:"database_bytes_after"`  // and after
	Rewrote         bool  `json:"rewrote"`               // the database was rewritten (VACUUM) to enable incremental vacuum
}

// Compact gives the database's free pages back to the filesystem. New
// databases use auto_vacuum=INCREMENTAL, so this is an incremental_vacuum;
// a database made before that is rewritten once with VACUUM, which also
// switches it over. It runs on the store goroutine, between batches.
func (c *Cache) Compact(ctx context.Context) (CompactResult, error) {
	var res CompactResult
	errc := make(chan error, 1)
	c.store.enqueue(op{kind: opCompact, compact: &res, done: func(err error) { errc <- err }})
	select {
	case err := <-errc:
		if err != nil {
			return res, fmt.Errorf("compact cache database: %w", classifyDiskError(c.dir, err))
		}
		return res, nil
	case <-ctx.Done():
		return res, ctx.Err()
	}
}

// compactThreshold: Trim compacts when at least this share of the
// database's pages are free.
const compactThreshold = 0.25

// compact runs on the store goroutine.
func (s *store) compact(res *CompactResult) error {
	ctx := context.Background()
	path := filepath.Join(s.cacheDir, dbName)
	res.BytesBefore = fileSizes(path, path+"-wal")
	var mode int64
	if err := s.db.QueryRowContext(ctx, "PRAGMA freelist_count").Scan(&res.FreePagesBefore); err != nil {
		return err
	}
	if err := s.db.QueryRowContext(ctx, "PRAGMA page_size").Scan(&res.PageSize); err != nil {
		return err
	}
	if err := s.db.QueryRowContext(ctx, "PRAGMA auto_vacuum").Scan(&mode); err != nil {
		return err
	}
	switch {
	case mode != 2:
		// A database made before incremental vacuum: VACUUM applies the
		// mode set just before it on the same connection.
		conn, err := s.db.Conn(ctx)
		if err != nil {
			return err
		}
		defer conn.Close()
		if _, err := conn.ExecContext(ctx, "PRAGMA auto_vacuum = INCREMENTAL"); err != nil {
			return err
		}
		if _, err := conn.ExecContext(ctx, "VACUUM"); err != nil {
			return err
		}
		res.Rewrote = true
	case res.FreePagesBefore > 0:
		if _, err := s.db.ExecContext(ctx, "PRAGMA incremental_vacuum"); err != nil {
			return err
		}
	}
	// The pages leave the file when the WAL is checkpointed into it.
	if _, err := s.db.ExecContext(ctx, "PRAGMA wal_checkpoint(TRUNCATE)"); err != nil {
		return err
	}
	res.BytesAfter = fileSizes(path, path+"-wal")
	return nil
}

func fileSizes(paths ...string) int64 {
	var n int64
	for _, p := range paths {
		if fi, err := os.Stat(p); err == nil {
			n += fi.Size()
		}
	}
	return n
}

// freeShare returns the share of the database's pages that are free.
func (c *Cache) freeShare(ctx context.Context) (float64, error) {
	var free, total int64
	if err := c.db.QueryRowContext(ctx, "SELECT (SELECT freelist_count FROM pragma_freelist_count), (SELECT page_count FROM pragma_page_count)").Scan(&free, &total); err != nil {
		return 0, err
	}
	if total == 0 {
		return 0, nil
	}
	return float64(free) / float64(total), nil
}
