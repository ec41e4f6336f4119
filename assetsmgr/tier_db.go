package assetsmgr

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/voxsync/voxsync/resources"
)

// stmtCache holds prepared IN-list statements. Lists are padded to a power
// of two (repeating a hash changes nothing in an IN list), so a few
// statements per query cover every size and no lookup re-parses its SQL.
type stmtCache struct {
	db    *sql.DB
	mu    sync.Mutex // guards stmts
	stmts map[string]*sql.Stmt
}

func (c *stmtCache) get(ctx context.Context, q string) (*sql.Stmt, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if st, ok := c.stmts[q]; ok {
		return st, nil
	}
	st, err := c.db.PrepareContext(ctx, q)
	if err != nil {
		return nil, err
	}
	if c.stmts == nil {
		c.stmts = make(map[string]*sql.Stmt)
	}
	c.stmts[q] = st
	return st, nil
}

func (c *stmtCache) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, st := range c.stmts {
		st.Close()
	}
	c.stmts = nil
}

// preparer hands out prepared statements, each prepared once: the pool's
// (stmtCache) or the store's own connection's (writeConn).
type preparer interface {
	get(ctx context.Context, query string) (*sql.Stmt, error)
}

// queryHashes runs query (which ends in "IN (") over hs in batches of at
// most 512, calling row for each result row.
func queryHashes(ctx context.Context, stmts preparer, query string, hs []resources.Hash, row func(*sql.Rows) error) error {
	const batch = 512
	for len(hs) > 0 {
		n := min(len(hs), batch)
		padded := 1
		for padded < n {
			padded *= 2
		}
		args := hashArgs(hs[:n])
		for len(args) < padded {
			args = append(args, args[n-1])
		}
		st, err := stmts.get(ctx, query+strings.Repeat("?,", padded-1)+"?)")
		if err != nil {
			return err
		}
		rows, err := st.QueryContext(ctx, args...)
		if err != nil {
			return err
		}
		for rows.Next() {
			if err := row(rows); err != nil {
				rows.Close()
				return err
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		hs = hs[n:]
	}
	return nil
}

// hashArgs turns hashes into query arguments.
func hashArgs(hs []resources.Hash) []any {
	args := make([]any, len(hs))
	for i := range hs {
		args[i] = hs[i][:]
	}
	return args
}

func scanHash(b []byte) (resources.Hash, bool) {
	var h resources.Hash
	if len(b) != len(h) {
		return h, false
	}
	copy(h[:], b)
	return h, true
}

// inlineTier finds small blobs stored in sqlite rows.
type inlineTier struct {
	stmts   *stmtCache
	store   *store
	log     *slog.Logger
	corrupt *corruptHooks
}

var _ Tier = (*inlineTier)(nil)

func (t *inlineTier) Source() Source { return SourceInline }

// Lookup reads only what says an entry is there: its bytes are read and
// verified when the blob is first read (Blob.Open, Blob.ReadAll), as a
// blob file's are. A join then costs no read, copy or hash of the ~20 MiB
// of small blobs a player's cache holds, and still nothing corrupt reaches
// the caller.
func (t *inlineTier) Lookup(ctx context.Context, hs []resources.Hash) (map[resources.Hash]Blob, error) {
	hits := make(map[resources.Hash]Blob)
	err := queryHashes(ctx, t.stmts, "SELECT hash, size, last_used FROM inline_blobs WHERE hash IN (", hs, func(r *sql.Rows) error {
		var hb []byte
		var size, used int64
		if err := r.Scan(&hb, &size, &used); err != nil {
			return err
		}
		h, ok := scanHash(hb)
		if !ok {
			return nil
		}
		hits[h] = Blob{Hash: h, Size: size, Source: SourceInline, used: used,
			open: func() (Content, error) {
				// Not the lookup's context: the blob is read later.
				data, err := t.read(context.Background(), h, size)
				if err != nil {
					return nil, err
				}
				return inlineContent{bytes.NewReader(data), data}, nil
			}}
		return nil
	})
	return hits, err
}

// checkInline says whether an inline row's bytes are its blob: its
// recorded size, hashing to h.
func checkInline(data []byte, size int64, h resources.Hash) error {
	switch {
	case int64(len(data)) != size:
		return fmt.Errorf("%d of %d bytes: %w", len(data), size, ErrSizeMismatch)
	case resources.Sum(data) != h:
		return ErrHashMismatch
	}
	return nil
}

// inlineContent is an inline blob's verified bytes.
type inlineContent struct {
	*bytes.Reader
	data []byte
}

func (inlineContent) Close() error { return nil }

// read returns an inline blob's bytes once they match their size and
// hash; an entry that does not is removed, so it is fetched again.
func (t *inlineTier) read(ctx context.Context, h resources.Hash, size int64) ([]byte, error) {
	st, err := t.stmts.get(ctx, "SELECT data FROM inline_blobs WHERE hash = ?")
	if err != nil {
		return nil, fmt.Errorf("read blob %s: %w", h.Short(), err)
	}
	var data []byte
	if err := st.QueryRowContext(ctx, h[:]).Scan(&data); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			err = errors.New("evicted since it was looked up")
		}
		return nil, fmt.Errorf("read blob %s: %w", h.Short(), err)
	}
	if err = checkInline(data, size, h); err == nil {
		return data, nil
	}
	t.log.Warn("corrupt inline cache entry found while reading; fetching it again", "hash", h.Short(), "size", size, "have", len(data))
	t.store.dropCorruptInline(h)
	t.corrupt.fire(h)
	return nil, fmt.Errorf("read blob %s: %w", h.Short(), err)
}

// fileTier finds large blobs stored as files under blobs/, each with a row
// in file_blobs recording that it is complete.
type fileTier struct {
	stmts    *stmtCache
	dir      string // the blobs directory
	store    *store
	log      *slog.Logger
	corrupt  *corruptHooks
	rehashes atomic.Int64 // files re-hashed by Lookup, for tests
}

var _ Tier = (*fileTier)(nil)

func (t *fileTier) Source() Source { return SourceBlob }

func blobPath(dir string, h resources.Hash) string {
	s := h.String()
	return dir + string(os.PathSeparator) + s[:2] + string(os.PathSeparator) + s
}

// Lookup re-hashes a blob file only when its fingerprint (size, mtime,
// ctime, inode, device) differs from the one recorded when it was last
// verified. A file whose fingerprint is unchanged is a hit whose bytes are
// verified as they are first read (Blob.Open, Blob.ReadAll): nothing
// corrupt reaches the caller, and a join does not re-read every large
// blob.
func (t *fileTier) Lookup(ctx context.Context, hs []resources.Hash) (map[resources.Hash]Blob, error) {
	type row struct {
		size, used int64
		fp         string
	}
	rows := make(map[resources.Hash]row)
	err := queryHashes(ctx, t.stmts, "SELECT hash, size, last_used, coalesce(fingerprint, '') FROM file_blobs WHERE hash IN (", hs, func(r *sql.Rows) error {
		var hb []byte
		var rw row
		if err := r.Scan(&hb, &rw.size, &rw.used, &rw.fp); err != nil {
			return err
		}
		if h, ok := scanHash(hb); ok {
			rows[h] = rw
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	hits := make(map[resources.Hash]Blob)
	var rehashed []resources.Hash
	var fps []string
	var buf []byte
	for _, h := range hs {
		if ctx.Err() != nil {
			break
		}
		p := blobPath(t.dir, h)
		rw, hasRow := rows[h]
		size := rw.size
		if !hasRow {
			// A file without a row is not recorded complete: a miss. It
			// may be one the store is placing right now, so it is left
			// alone; the next Open adopts it if it verifies.
			continue
		}
		if fi, err := os.Stat(p); err == nil && rw.fp != "" && fi.Size() == size && fingerprint(fi) == rw.fp {
			hits[h] = Blob{Hash: h, Size: size, Source: SourceBlob, used: rw.used, open: t.openChecked(p, h, size)}
			continue
		}
		if buf == nil {
			buf = make([]byte, 256<<10)
		}
		t.rehashes.Add(1)
		fp, err := t.verify(p, h, size, buf)
		if err != nil {
			t.log.Warn("corrupt blob cache entry; fetching again", "hash", h.Short(), "err", err)
			t.store.dropCorruptFile(h)
			continue
		}
		if fp != rw.fp && fp != "" {
			rehashed, fps = append(rehashed, h), append(fps, fp)
		}
		hits[h] = Blob{Hash: h, Size: size, Source: SourceBlob, open: func() (Content, error) { return os.Open(p) }, used: rw.used}
	}
	if len(rehashed) > 0 {
		t.store.enqueue(op{kind: opFingerprint, hashes: rehashed, fps: fps})
	}
	return hits, ctx.Err()
}

// openChecked opens a blob file that was not re-hashed at lookup: its
// bytes are verified on the first read, before any is returned; a
// mismatch drops the entry so it is fetched again.
func (t *fileTier) openChecked(p string, h resources.Hash, size int64) func() (Content, error) {
	return func() (Content, error) {
		f, err := os.Open(p)
		if err != nil {
			return nil, err
		}
		return &checkedContent{f: f, hash: h, size: size, bad: t.drop}, nil
	}
}

// drop removes a blob file found corrupt after it was looked up.
func (t *fileTier) drop(h resources.Hash, why error) {
	t.log.Warn("corrupt blob cache entry found while reading; fetching it again", "hash", h.Short(), "err", why)
	t.store.dropCorruptFile(h)
	t.corrupt.fire(h)
}

// checkedContent verifies the whole file against its hash on the first
// ReadAt, and returns no byte unless it matches.
type checkedContent struct {
	f    *os.File
	hash resources.Hash
	size int64
	bad  func(resources.Hash, error)

	once sync.Once
	err  error // set by once
}

func (c *checkedContent) ReadAt(p []byte, off int64) (int, error) {
	c.once.Do(func() {
		if err := verifyReader(c.f, c.size, c.hash, make([]byte, 256<<10)); err != nil {
			c.err = fmt.Errorf("read blob %s: %w", c.hash.Short(), err)
			c.bad(c.hash, err)
		}
	})
	if c.err != nil {
		return 0, c.err
	}
	return c.f.ReadAt(p, off)
}

func (c *checkedContent) Close() error { return c.f.Close() }

// readAllChecked reads and verifies the whole blob in one pass.
func (c *checkedContent) readAll() ([]byte, error) {
	out := make([]byte, c.size)
	n, err := io.ReadFull(c.f, out)
	if err != nil && !(errors.Is(err, io.EOF) && c.size == 0) {
		err = fmt.Errorf("%d of %d bytes: %w", n, c.size, ErrSizeMismatch)
	} else if resources.Sum(out) != c.hash {
		err = ErrHashMismatch
	} else {
		return out, nil
	}
	c.bad(c.hash, err)
	return nil, fmt.Errorf("read blob %s: %w", c.hash.Short(), err)
}

// verify re-hashes the file at p and returns its fingerprint from before
// it was read.
func (t *fileTier) verify(p string, h resources.Hash, size int64, buf []byte) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return "", errors.New("row without a file")
		}
		return "", err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", err
	}
	if fi.Size() != size {
		return "", ErrSizeMismatch
	}
	return fingerprint(fi), verifyReader(f, size, h, buf)
}
