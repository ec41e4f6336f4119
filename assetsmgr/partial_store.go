package assetsmgr

import "github.com/voxsync/voxsync/resources"

// The store's statements for partials and the chunk index (see partial.go).
// They run on the store goroutine, inside its group-commit transaction.

// commitPartialOp applies one partial or chunk index op.
func commitPartialOp(tx *writeConn, o op, now int64) error {
	po := o.partial
	switch o.kind {
	case opPartialOpen:
		if po.reset {
			if _, err := tx.Exec(`DELETE FROM partial_chunks WHERE hash = ?`, o.hash[:]); err != nil {
				return err
			}
		}
		if err := deleteChunkRows(tx, o, po.rows); err != nil {
			return err
		}
		_, err := tx.Exec(`INSERT INTO partials (hash, size, manifest, created, last_used) VALUES (?1, ?2, ?3, ?4, ?4)
			ON CONFLICT (hash) DO UPDATE SET size = excluded.size, manifest = excluded.manifest, last_used = excluded.last_used`,
			o.hash[:], po.size, po.digest[:], now)
		return err
	case opPartialChunks:
		res, err := tx.Exec(`UPDATE partials SET last_used = ? WHERE hash = ?`, now, o.hash[:])
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil || n == 0 {
			// Only for a partial that still exists: a flush racing a
			// discard or an eviction must not leave rows behind.
			return err
		}
		for _, r := range po.rows {
			if _, err := tx.Exec(`INSERT OR REPLACE INTO partial_chunks (hash, offset, length, chunk) VALUES (?, ?, ?, ?)`,
				o.hash[:], r.offset, r.length, r.chunk[:]); err != nil {
				return err
			}
		}
	case opPartialDrop:
		return deleteChunkRows(tx, o, po.rows)
	case opDeletePartial:
		for _, h := range o.hashes {
			if err := deletePartialRows(tx, h); err != nil {
				return err
			}
		}
	case opDropChunkIndex:
		for _, h := range o.hashes {
			if _, err := tx.Exec(`DELETE FROM chunk_index WHERE blob = ?`, h[:]); err != nil {
				return err
			}
		}
		for _, r := range po.refs {
			if _, err := tx.Exec(`DELETE FROM chunk_index WHERE chunk = ? AND blob = ?`, r.chunk[:], r.blob[:]); err != nil {
				return err
			}
		}
	}
	return nil
}

// salvageRows makes the chunk index rows of blob file h, found corrupt,
// the records of a partial of h, whose file salvage put in place of any
// earlier one. It reports whether a partial keeps them; a blob fetched
// whole has none.
func salvageRows(tx *writeConn, h resources.Hash, now int64) (bool, error) {
	if err := deletePartialRows(tx, h); err != nil {
		return false, err
	}
	res, err := tx.Exec(`INSERT INTO partials (hash, size, manifest, created, last_used)
		SELECT ?1, size, zeroblob(32), ?2, ?2 FROM file_blobs WHERE hash = ?1 AND EXISTS (SELECT 1 FROM chunk_index WHERE blob = ?1)`, h[:], now)
	if err != nil {
		return false, err
	}
	if n, err := res.RowsAffected(); err != nil || n == 0 {
		return false, err
	}
	_, err = tx.Exec(`INSERT OR REPLACE INTO partial_chunks (hash, offset, length, chunk)
		SELECT blob, offset, length, chunk FROM chunk_index WHERE blob = ?`, h[:])
	return err == nil, err
}

// deletePartialRows forgets partial h.
func deletePartialRows(tx *writeConn, h resources.Hash) error {
	if _, err := tx.Exec(`DELETE FROM partial_chunks WHERE hash = ?`, h[:]); err != nil {
		return err
	}
	_, err := tx.Exec(`DELETE FROM partials WHERE hash = ?`, h[:])
	return err
}

func deleteChunkRows(tx *writeConn, o op, rows []chunkRow) error {
	for _, r := range rows {
		if _, err := tx.Exec(`DELETE FROM partial_chunks WHERE hash = ? AND offset = ?`, o.hash[:], r.offset); err != nil {
			return err
		}
	}
	return nil
}

// commitPlacedPartial records, once a partial's file is the blob o.hash,
// where each of its chunks is, and forgets the partial.
func commitPlacedPartial(tx *writeConn, o op) error {
	for _, r := range o.partial.rows {
		if _, err := tx.Exec(`INSERT OR IGNORE INTO chunk_index (chunk, blob, offset, length) VALUES (?, ?, ?, ?)`,
			r.chunk[:], o.hash[:], r.offset, r.length); err != nil {
			return err
		}
	}
	return deletePartialRows(tx, o.hash)
}
