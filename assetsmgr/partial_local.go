package assetsmgr

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"sync"

	"github.com/voxsync/voxsync/resources"
)

// Deltas: a chunk a partial needs may already be on this machine, in a blob
// assembled from chunks earlier (the chunk index) or in another partial.
// Such places are hints: the bytes are read and verified as the chunk
// (manifest.Verify) before they are written, and a hint whose bytes are not
// the chunk its name says is dropped.

// localSource is a place a chunk's bytes may be.
type localSource struct {
	path    string
	offset  int64
	owner   resources.Hash // the blob or partial holding it
	partial bool
}

// copyLocal fills the partial's missing chunks from local copies.
func (p *Partial) copyLocal(ctx context.Context) error {
	c := p.c
	need := make(map[resources.Hash][]int)
	p.mu.Lock()
	for i, ch := range p.m.Chunks {
		if p.state[i] == chunkMissing {
			need[ch.Hash] = append(need[ch.Hash], i)
		}
	}
	p.mu.Unlock()
	if len(need) == 0 {
		return nil
	}
	hs := make([]resources.Hash, 0, len(need))
	for h := range need {
		hs = append(hs, h)
	}
	sources := make(map[resources.Hash][]localSource)
	add := func(chunk, owner resources.Hash, off, n int64, partial bool) {
		idx, ok := need[chunk]
		if !ok || n != int64(p.m.Chunks[idx[0]].Length) {
			return
		}
		src := localSource{offset: off, owner: owner, partial: partial}
		if partial {
			src.path = filepath.Join(c.dir, partialDirName, owner.String())
		} else {
			src.path = blobPath(filepath.Join(c.dir, "blobs"), owner)
		}
		sources[chunk] = append(sources[chunk], src)
	}
	scan := func(partial bool) func(*sql.Rows) error {
		return func(r *sql.Rows) error {
			var cb, ob []byte
			var off, n int64
			if err := r.Scan(&cb, &ob, &off, &n); err != nil {
				return err
			}
			chunk, ok1 := scanHash(cb)
			owner, ok2 := scanHash(ob)
			if ok1 && ok2 {
				add(chunk, owner, off, n, partial)
			}
			return nil
		}
	}
	if err := queryHashes(ctx, c.stmts, "SELECT chunk, blob, offset, length FROM chunk_index WHERE chunk IN (", hs, scan(false)); err != nil {
		c.markDamaged(err)
		return fmt.Errorf("look up local chunks: %w", err)
	}
	if err := queryHashes(ctx, c.stmts, "SELECT chunk, hash, offset, length FROM partial_chunks WHERE chunk IN (", hs, scan(true)); err != nil {
		c.markDamaged(err)
		return fmt.Errorf("look up local chunks: %w", err)
	}
	if len(sources) == 0 {
		return nil
	}

	type task struct {
		i    int
		hash resources.Hash
		from []localSource
	}
	var tasks []task
	for chunk, from := range sources {
		for _, i := range need[chunk] {
			tasks = append(tasks, task{i, chunk, from})
		}
	}
	// In order of where they are read: a blob is read front to back.
	sort.Slice(tasks, func(a, b int) bool {
		x, y := tasks[a].from[0], tasks[b].from[0]
		if x.path != y.path {
			return x.path < y.path
		}
		return x.offset < y.offset
	})

	var (
		mu          sync.Mutex // guards the three below
		goneBlobs   = make(map[resources.Hash]bool)
		badRefs     []chunkRef
		badPartials = make(map[resources.Hash][]chunkRow)
		wg          sync.WaitGroup
		errOnce     sync.Once
		firstErr    error
		next        = make(chan task)
	)
	for range min(runtime.GOMAXPROCS(0), 4) {
		wg.Go(func() {
			files := make(map[string]*os.File)
			defer func() {
				for _, f := range files {
					f.Close()
				}
			}()
			buf := make([]byte, 0, 1<<20)
			for t := range next {
				ch := p.m.Chunks[t.i]
				for _, src := range t.from {
					mu.Lock()
					gone := !src.partial && goneBlobs[src.owner]
					mu.Unlock()
					if gone {
						continue
					}
					f, ok := files[src.path]
					if !ok {
						var err error
						if f, err = os.Open(src.path); err != nil {
							if !src.partial && errors.Is(err, fs.ErrNotExist) {
								mu.Lock()
								goneBlobs[src.owner] = true
								mu.Unlock()
							}
							continue
						}
						files[src.path] = f
					}
					b := buf[:ch.Length]
					_, err := f.ReadAt(b, src.offset)
					if err == nil {
						err = p.m.Verify(p.hash, t.i, b)
						if err != nil && resources.Sum(b) == t.hash {
							// The copy is the chunk its name says, but
							// not what this manifest's hash states
							// say: the manifest is wrong, not the
							// copy, which is kept. Fetched instead.
							continue
						}
					}
					if err != nil {
						c.log.Warn("local copy of a chunk does not match its hash; not copied", "chunk", t.hash.Short(), "in", src.owner.Short(), "offset", src.offset, "partial", src.partial)
						mu.Lock()
						switch {
						case !src.partial:
							badRefs = append(badRefs, chunkRef{chunk: t.hash, blob: src.owner})
						case src.owner != p.hash && !c.partialTaken(src.owner):
							// An open partial's own Commit finds it.
							badPartials[src.owner] = append(badPartials[src.owner], chunkRow{offset: src.offset, length: int64(ch.Length), chunk: t.hash})
						}
						mu.Unlock()
						continue
					}
					if err := p.write(t.i, b, chunkLocal); err != nil {
						errOnce.Do(func() { firstErr = err })
					}
					break
				}
			}
		})
	}
	var cancelled error
feed:
	for _, t := range tasks {
		select {
		case next <- t:
		case <-ctx.Done():
			cancelled = ctx.Err()
			break feed
		}
	}
	close(next)
	wg.Wait()

	if len(goneBlobs) > 0 || len(badRefs) > 0 {
		var blobs []resources.Hash
		for h := range goneBlobs {
			blobs = append(blobs, h)
		}
		c.store.enqueue(op{kind: opDropChunkIndex, hashes: blobs, partial: &partialOp{refs: badRefs}})
	}
	for h, rows := range badPartials {
		c.store.enqueue(op{kind: opPartialDrop, hash: h, partial: &partialOp{rows: rows}})
	}
	if firstErr != nil {
		return firstErr
	}
	return cancelled
}
