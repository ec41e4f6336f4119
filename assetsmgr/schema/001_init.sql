-- Small blobs live in the database: reading a few KB from a row is faster
-- than opening a file (see docs/benchmarks.md). A rowid table, because
-- WITHOUT ROWID suits only small rows.
CREATE TABLE inline_blobs (
    hash      BLOB    NOT NULL UNIQUE CHECK (length(hash) = 32),
    size      INTEGER NOT NULL,
    last_used INTEGER NOT NULL, -- unix seconds
    data      BLOB    NOT NULL
) STRICT;

-- Large blobs live in Cache/blobs/<2 hex>/<64 hex>; this row is the record
-- that the file is complete and verified.
CREATE TABLE file_blobs (
    hash      BLOB    PRIMARY KEY CHECK (length(hash) = 32),
    size      INTEGER NOT NULL,
    last_used INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

-- Hashes of the client's local pack files, so a restart does not rehash a
-- file whose size and mtime are unchanged.
CREATE TABLE pack_index (
    pack  TEXT    NOT NULL,
    path  TEXT    NOT NULL,
    size  INTEGER NOT NULL,
    mtime INTEGER NOT NULL, -- unix nanoseconds
    hash  BLOB    NOT NULL CHECK (length(hash) = 32),
    PRIMARY KEY (pack, path)
) STRICT, WITHOUT ROWID;
