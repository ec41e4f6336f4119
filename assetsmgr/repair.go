package assetsmgr

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/voxsync/voxsync/resources"
	"modernc.org/sqlite"
)

// dbName is the cache database in the cache directory; damagedName, next
// to it, records that a damaged database was seen while the cache was in
// use, so the next Open rebuilds it.
const (
	dbName      = "db.sqlite3"
	damagedName = "db.sqlite3.damaged"
)

// errDamaged is what a failed integrity check returns.
var errDamaged = errors.New("database failed its integrity check")

// sqlite primary result codes that mean the file is not a sound database.
const (
	sqliteCorrupt = 11
	sqliteNotADB  = 26
)

// isDamaged reports whether err says the database file is broken (as
// opposed to unreadable, busy or on a full disk).
func isDamaged(err error) bool {
	if errors.Is(err, errDamaged) {
		return true
	}
	var se *sqlite.Error
	if errors.As(err, &se) {
		switch se.Code() & 0xff {
		case sqliteCorrupt, sqliteNotADB:
			return true
		}
	}
	return false
}

// openDatabase opens the cache database, checking it. A database that is
// damaged (garbage, truncated, not a database, failing quick_check), or
// that a previous run saw damaged, is moved aside as
// db.sqlite3.corrupt-<time> and a new one is made; adoptBlobFiles then
// rebuilds the file tier's index from the blob files.
func openDatabase(ctx context.Context, dir string, log *slog.Logger, now func() time.Time) (db *sql.DB, aside string, err error) {
	path := filepath.Join(dir, dbName)
	_, err = os.Stat(filepath.Join(dir, damagedName))
	if err != nil {
		db, err := openChecked(ctx, path)
		if err == nil || !isDamaged(err) {
			return db, "", err
		}
		log.Warn("cache database is damaged; moving it aside and rebuilding the index from the blob files", "db", path, "err", err)
	} else {
		log.Warn("cache database was found damaged in use; moving it aside and rebuilding the index from the blob files", "db", path)
	}
	aside, err = moveAside(path, now())
	if err != nil {
		return nil, "", fmt.Errorf("move damaged cache database aside: %w", err)
	}
	log.Warn("damaged cache database moved aside; small resources will be fetched again", "to", aside)
	if err := os.Remove(filepath.Join(dir, damagedName)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, "", fmt.Errorf("open cache database: %w", err)
	}
	db, err = openChecked(ctx, path)
	return db, aside, err
}

// openChecked opens the database at path, runs quick_check and applies the
// schema.
func openChecked(ctx context.Context, path string) (*sql.DB, error) {
	if fi, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) || (err == nil && fi.Size() == 0) {
		if err := createDatabase(ctx, path); err != nil {
			return nil, fmt.Errorf("create cache database %s: %w", path, err)
		}
	}
	// WAL with synchronous=FULL: a commit is durable when it returns.
	// mmap_size lets SQLite read pages without a syscall each, which a
	// join reading thousands of small blobs notices.
	dsn := "file:" + path +
		"?_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_pragma=busy_timeout(10000)" +
		"&_pragma=mmap_size(268435456)&_txlock=immediate"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("open cache database %s: %w", path, err)
	}
	db.SetMaxOpenConns(5) // one is the store's writer
	if err := checkDatabase(ctx, db); err != nil {
		db.Close()
		return nil, fmt.Errorf("open cache database %s: %w", path, err)
	}
	if err := migrate(ctx, db); err != nil {
		db.Close()
		return nil, fmt.Errorf("open cache database %s: %w", path, err)
	}
	return db, nil
}

// createDatabase makes a new database with auto_vacuum=INCREMENTAL, which
// must be set before the first table (see Compact). It uses a pool of its
// own: as a pragma on every connection of the cache's pool it would make
// each new connection wait for the write lock.
func createDatabase(ctx context.Context, path string) error {
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=auto_vacuum(2)&_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)")
	if err != nil {
		return err
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	return migrate(ctx, db)
}

// checkDatabase runs PRAGMA quick_check: every page's structure, without
// cross-checking indexes, so it costs one read of the file.
func checkDatabase(ctx context.Context, db *sql.DB) error {
	rows, err := db.QueryContext(ctx, "PRAGMA quick_check")
	if err != nil {
		return fmt.Errorf("check database: %w", err)
	}
	defer rows.Close()
	var problems []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return fmt.Errorf("check database: %w", err)
		}
		if s != "ok" && len(problems) < 3 {
			problems = append(problems, s)
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("check database: %w", err)
	}
	if len(problems) > 0 {
		return fmt.Errorf("%w: %s", errDamaged, strings.Join(problems, "; "))
	}
	return nil
}

// moveAside renames the database and its WAL to names with .corrupt-<time>
// and removes its shared-memory file, so a new database starts clean (a
// WAL left behind would be replayed into it).
func moveAside(path string, now time.Time) (string, error) {
	aside := path + ".corrupt-" + now.UTC().Format("20060102T150405.000000000Z")
	if err := os.Rename(path, aside); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return "", err
	}
	if err := os.Rename(path+"-wal", aside+"-wal"); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return "", err
	}
	if err := os.Remove(path + "-shm"); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return "", err
	}
	if err := syncDir(filepath.Dir(path)); err != nil {
		return "", err
	}
	return aside, nil
}

// markDamaged records that the database was seen damaged in use, so the
// next Open rebuilds it. It logs once per Cache.
func (c *Cache) markDamaged(err error) {
	if !isDamaged(err) {
		return
	}
	c.damagedOnce.Do(func() {
		c.log.Error("cache database is damaged; it will be rebuilt the next time the cache is opened", "err", err)
		if f, err := os.Create(filepath.Join(c.dir, damagedName)); err == nil {
			f.Sync()
			f.Close()
			syncDir(c.dir)
		}
	})
}

// adoptBlobFiles makes the blob files and the file_blobs rows agree, as
// Open's last step, while no other process can write: a file without a row
// whose content hashes to its name (a crash between rename and commit, or
// a rebuilt database) is adopted, with its mtime as last use so eviction
// sees it; one that does not is removed; temp files are removed. Rows
// whose file is missing are left for Lookup, which drops them.
func adoptBlobFiles(ctx context.Context, db *sql.DB, blobs string, log *slog.Logger) (adopted, removed int, err error) {
	known := make(map[resources.Hash]bool)
	rows, err := db.QueryContext(ctx, "SELECT hash FROM file_blobs")
	if err != nil {
		return 0, 0, fmt.Errorf("read blob index: %w", err)
	}
	for rows.Next() {
		var hb []byte
		if err := rows.Scan(&hb); err != nil {
			rows.Close()
			return 0, 0, fmt.Errorf("read blob index: %w", err)
		}
		if h, ok := scanHash(hb); ok {
			known[h] = true
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, 0, fmt.Errorf("read blob index: %w", err)
	}

	type orphan struct {
		path string
		hash resources.Hash
	}
	var orphans []orphan
	prefixes, err := os.ReadDir(blobs)
	if err != nil {
		return 0, 0, fmt.Errorf("list blob files: %w", err)
	}
	for _, pd := range prefixes {
		if !pd.IsDir() {
			continue
		}
		dir := filepath.Join(blobs, pd.Name())
		ents, err := os.ReadDir(dir)
		if err != nil {
			return 0, 0, fmt.Errorf("list blob files: %w", err)
		}
		for _, e := range ents {
			p := filepath.Join(dir, e.Name())
			if strings.HasPrefix(e.Name(), ".tmp-") {
				if os.Remove(p) == nil {
					log.Info("removed unfinished blob file", "path", p)
				}
				continue
			}
			h, err := resources.ParseHash(e.Name())
			if err != nil || h.String() != e.Name() || !e.Type().IsRegular() || e.Name()[:2] != pd.Name() {
				continue // not ours: left alone
			}
			if !known[h] {
				orphans = append(orphans, orphan{p, h})
			}
		}
	}
	if len(orphans) == 0 {
		return 0, 0, nil
	}

	// Hash the orphans on every core; a rebuilt index may have gigabytes.
	type adoptee struct {
		hash        resources.Hash
		size, mtime int64
		fp          string
	}
	var (
		mu   sync.Mutex // guards good and removed
		good []adoptee
		wg   sync.WaitGroup
		next = make(chan orphan)
	)
	for range runtime.GOMAXPROCS(0) {
		wg.Go(func() {
			buf := make([]byte, 256<<10)
			for o := range next {
				fi, err := hashFile(o.path, o.hash, buf)
				mu.Lock()
				if err != nil {
					log.Warn("blob file without a cache row does not match its name; removed", "hash", o.hash.Short(), "err", err)
					if os.Remove(o.path) == nil {
						removed++
					}
				} else {
					good = append(good, adoptee{o.hash, fi.Size(), fi.ModTime().Unix(), fingerprint(fi)})
				}
				mu.Unlock()
			}
		})
	}
	for _, o := range orphans {
		if ctx.Err() != nil {
			break
		}
		next <- o
	}
	close(next)
	wg.Wait()
	if ctx.Err() != nil {
		return 0, removed, ctx.Err()
	}

	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return 0, removed, fmt.Errorf("adopt blob files: %w", err)
	}
	defer tx.Rollback()
	st, err := tx.PrepareContext(ctx, "INSERT OR IGNORE INTO file_blobs (hash, size, last_used, fingerprint) VALUES (?, ?, ?, nullif(?, ''))")
	if err != nil {
		return 0, removed, fmt.Errorf("adopt blob files: %w", err)
	}
	defer st.Close()
	var bytes int64
	for _, a := range good {
		if _, err := st.ExecContext(ctx, a.hash[:], a.size, a.mtime, a.fp); err != nil {
			return 0, removed, fmt.Errorf("adopt blob files: %w", err)
		}
		bytes += a.size
	}
	if err := tx.Commit(); err != nil {
		return 0, removed, fmt.Errorf("adopt blob files: %w", err)
	}
	log.Info("adopted complete blob files that had no cache row", "files", len(good), "bytes", bytes)
	return len(good), removed, nil
}

// hashFile checks that the file at p hashes to h and returns its state
// before it was read.
func hashFile(p string, h resources.Hash, buf []byte) (fs.FileInfo, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	d := sha256.New()
	if _, err := io.CopyBuffer(d, f, buf); err != nil {
		return nil, err
	}
	var got resources.Hash
	d.Sum(got[:0])
	if got != h {
		return nil, fmt.Errorf("hash %s: %w", got.Short(), ErrHashMismatch)
	}
	return fi, nil
}

// cleanPartials makes the partial files and their rows agree, at Open
// after adoptBlobFiles: a partial file without a row (its rows were lost
// with a damaged database, or a crash came between creating it and its
// row) is removed, never adopted, since a partial is not named by its
// content; a partial row without its file is deleted. If that file became
// its blob (a crash between the rename and the commit; adoptBlobFiles just
// adopted it), the chunks it recorded go to the chunk index first.
func cleanPartials(ctx context.Context, db *sql.DB, dir string, log *slog.Logger) (removed int, err error) {
	known := make(map[resources.Hash]bool)
	rows, err := db.QueryContext(ctx, "SELECT hash FROM partials")
	if err != nil {
		return 0, fmt.Errorf("read partials: %w", err)
	}
	for rows.Next() {
		var hb []byte
		if err := rows.Scan(&hb); err != nil {
			rows.Close()
			return 0, fmt.Errorf("read partials: %w", err)
		}
		if h, ok := scanHash(hb); ok {
			known[h] = true
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, fmt.Errorf("read partials: %w", err)
	}

	pdir := filepath.Join(dir, partialDirName)
	ents, err := os.ReadDir(pdir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return 0, fmt.Errorf("list partial files: %w", err)
	}
	onDisk := make(map[resources.Hash]bool)
	for _, e := range ents {
		h, err := resources.ParseHash(e.Name())
		if err != nil || h.String() != e.Name() || !e.Type().IsRegular() {
			continue // not ours: left alone
		}
		if known[h] {
			onDisk[h] = true
			continue
		}
		if os.Remove(filepath.Join(pdir, e.Name())) == nil {
			log.Info("removed a partial resource file without a cache row", "hash", h.Short())
			removed++
		}
	}
	var gone []resources.Hash
	for h := range known {
		if !onDisk[h] {
			gone = append(gone, h)
		}
	}
	if len(gone) == 0 {
		return removed, nil
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return removed, fmt.Errorf("forget partials without a file: %w", err)
	}
	defer tx.Rollback()
	for _, h := range gone {
		for _, q := range []string{
			`INSERT OR IGNORE INTO chunk_index (chunk, blob, offset, length)
				SELECT chunk, hash, offset, length FROM partial_chunks
				WHERE hash = ?1 AND EXISTS (SELECT 1 FROM file_blobs WHERE hash = ?1)`,
			`DELETE FROM partial_chunks WHERE hash = ?1`,
			`DELETE FROM partials WHERE hash = ?1`,
		} {
			if _, err := tx.ExecContext(ctx, q, h[:]); err != nil {
				return removed, fmt.Errorf("forget partials without a file: %w", err)
			}
		}
	}
	if err := tx.Commit(); err != nil {
		return removed, fmt.Errorf("forget partials without a file: %w", err)
	}
	log.Info("forgot partial resources whose file is gone", "partials", len(gone))
	return removed + len(gone), nil
}
