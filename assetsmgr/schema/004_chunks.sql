-- Large resources arrive as the chunks of a manifest (package manifest),
-- each named by its SHA-256. See partial.go.

-- Where a chunk's bytes can be found in a cached blob file: length bytes at
-- offset of blob. Written when a blob assembled from chunks is committed,
-- and deleted with the blob. A chunk in several blobs has a row for each
-- (one per blob: the first place it occurs). A row is a hint, never trusted:
-- the bytes are verified against the chunk's hash before they are copied.
CREATE TABLE chunk_index (
    chunk  BLOB    NOT NULL CHECK (length(chunk) = 32),
    blob   BLOB    NOT NULL CHECK (length(blob) = 32),
    offset INTEGER NOT NULL,
    length INTEGER NOT NULL,
    PRIMARY KEY (chunk, blob)
) STRICT, WITHOUT ROWID;
CREATE INDEX chunk_index_by_blob ON chunk_index (blob);

-- A resource being assembled from chunks in Cache/partial/<64 hex of hash>.
-- It becomes a blob (a file_blobs row) only once its whole hash is checked.
CREATE TABLE partials (
    hash      BLOB    PRIMARY KEY CHECK (length(hash) = 32),
    size      INTEGER NOT NULL,
    manifest  BLOB    NOT NULL CHECK (length(manifest) = 32), -- manifest.Digest
    created   INTEGER NOT NULL, -- unix seconds
    last_used INTEGER NOT NULL  -- unix seconds
) STRICT, WITHOUT ROWID;

-- The chunks a partial holds: a row is written only after the partial's
-- file was synced with the chunk's bytes, so a row is a chunk on disk.
CREATE TABLE partial_chunks (
    hash   BLOB    NOT NULL CHECK (length(hash) = 32), -- the partial's resource
    offset INTEGER NOT NULL,
    length INTEGER NOT NULL,
    chunk  BLOB    NOT NULL CHECK (length(chunk) = 32),
    PRIMARY KEY (hash, offset)
) STRICT, WITHOUT ROWID;
CREATE INDEX partial_chunks_by_chunk ON partial_chunks (chunk);
