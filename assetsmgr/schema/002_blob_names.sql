-- The names (type and domain:key) a cached blob was loaded under, so
-- `gameclient cache ls` can filter by them. A blob may have several names
-- (servers reuse content); a row goes when its blob is evicted or dropped.
CREATE TABLE blob_names (
    hash BLOB NOT NULL CHECK (length(hash) = 32),
    type TEXT NOT NULL, -- resources.Type name, e.g. "texture"
    ref  TEXT NOT NULL, -- domain:key
    PRIMARY KEY (hash, type, ref)
) STRICT, WITHOUT ROWID;
