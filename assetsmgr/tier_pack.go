package assetsmgr

import (
	"context"
	"log/slog"

	"github.com/voxsync/voxsync/packs"
	"github.com/voxsync/voxsync/resources"
)

// packTier finds blobs in the client's own resource packs, by content hash
// only: a pack file with the right domain:key but other content is not a
// hit (LuaVox serves such stale files).
type packTier struct {
	view *packs.View
	log  *slog.Logger
}

var _ Tier = (*packTier)(nil)

func (t *packTier) Source() Source { return SourcePack }

func (t *packTier) Lookup(ctx context.Context, hs []resources.Hash) (map[resources.Hash]Blob, error) {
	hits := make(map[resources.Hash]Blob)
	var buf []byte // made at the first file: most lookups find none here
	for _, h := range hs {
		if ctx.Err() != nil {
			return hits, ctx.Err()
		}
		e, ok := t.view.ByHash(h)
		if !ok {
			continue
		}
		c, err := e.Open()
		if err != nil {
			t.log.Warn("pack file unreadable", "pack", e.Pack, "path", e.Path, "err", err)
			continue
		}
		// The index may be older than the file: check the bytes.
		if buf == nil {
			buf = make([]byte, 128<<10)
		}
		err = verifyReader(c, e.Size, h, buf)
		c.Close()
		if err != nil {
			t.log.Warn("pack file changed since indexed; not used", "pack", e.Pack, "path", e.Path, "err", err)
			continue
		}
		hits[h] = Blob{Hash: h, Size: e.Size, Source: SourcePack, open: func() (Content, error) { return e.Open() }}
	}
	return hits, nil
}
