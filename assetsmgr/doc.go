// Package assetsmgr is the game client's resource cache. A hash is looked
// up in three tiers, in order: the client's own resource packs, the inline
// cache in sqlite (Cache/db.sqlite3) for small blobs, and the file cache
// (Cache/blobs/<2 hex>/<64 hex>) for large ones.
//
// Every hit is verified against its SHA-256 before its bytes are returned,
// and only verified data is ever stored: a corrupt or truncated entry is a
// miss, removed so the caller fetches it again. A blob file is re-hashed at
// lookup only if its fingerprint (size, mtime, ctime, inode, device)
// changed since it was last verified; otherwise it is verified as it is
// first read, and a mismatch is a read error that drops the entry. Blob
// files are written atomically (temp file, fsync, rename) and database
// writes are batched on one goroutine with statements prepared once.
//
// The cache repairs itself at Open: a damaged database (failing
// quick_check, not a database, or seen damaged in use) is moved aside as
// db.sqlite3.corrupt-<time>, and a blob file without a row whose content
// hashes to its name is adopted rather than fetched again. Only inline
// entries are lost with a damaged database.
//
// A large resource sent as the chunks of a manifest (package manifest) is
// assembled in a partial (partial.go): Cache/partial/<64 hex>, written in
// place chunk by chunk, each chunk verified (manifest.Verify: against the
// whole resource's SHA-256 state at its start and end) before it is
// written and recorded in sqlite only after the file was synced, so it
// resumes after a reconnect or a crash with only the missing chunks, which
// are verified again as read back. Chunks it shares with cached blobs (the
// chunk index) or other partials are copied locally, verified first. A
// partial is never a hit: it becomes a blob only when every chunk has
// verified, the last one against the whole hash. Partials count toward the size
// cap and are evicted like blobs; files without rows are removed at Open,
// never adopted.
//
// One process at a time has a cache directory open: Open takes an flock on
// Cache/lock (which holds the pid) and a second Open fails at once with an
// *InUseError. The kernel drops the lock when the holder exits, even by
// SIGKILL. Open must never touch another process's files.
package assetsmgr
