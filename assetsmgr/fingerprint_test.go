package assetsmgr

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/voxsync/voxsync/resources"
)

func fileTierOf(c *Cache) *fileTier { return c.files }

// A blob file whose fingerprint is unchanged since it was verified is not
// re-hashed at lookup; one that was touched, rewritten or replaced is.
func TestUnchangedBlobFilesAreNotRehashed(t *testing.T) {
	dir := t.TempDir()
	c := openCache(t, Options{Dir: dir})
	data := pseudoRandom(1<<20, 1)
	h := put(t, c, data)
	p := blobPath(filepath.Join(dir, "blobs"), h)
	c.Close()

	tests := []struct {
		name    string
		change  func(t *testing.T)
		rehash  bool
		present bool
	}{
		{"stored, then looked up", func(t *testing.T) {}, false, true},
		{"looked up again", func(t *testing.T) {}, false, true},
		{"touched", func(t *testing.T) {
			now := time.Now().Add(time.Minute)
			os.Chtimes(p, now, now)
		}, true, true},
		{"after the re-hash", func(t *testing.T) {}, false, true},
		{"rewritten with the same bytes", func(t *testing.T) { os.WriteFile(p, data, 0o644) }, true, true},
		{"one byte flipped, mtime put back", func(t *testing.T) {
			fi, _ := os.Stat(p)
			b, _ := os.ReadFile(p)
			b[12345] ^= 1
			os.WriteFile(p, b, 0o644)
			os.Chtimes(p, fi.ModTime(), fi.ModTime()) // ctime still moves
		}, true, false},
	}
	for _, tc := range tests {
		tc.change(t)
		c = openCache(t, Options{Dir: dir})
		b, ok := lookup(t, c, h)
		if n := fileTierOf(c).rehashes.Load(); ok != tc.present || (n > 0) != tc.rehash {
			t.Fatalf("%s: present %v (want %v), re-hashed %d (want %v)", tc.name, ok, tc.present, n, tc.rehash)
		}
		if ok {
			got, err := b.ReadAll()
			if err != nil || resources.Sum(got) != h {
				t.Fatalf("%s: ReadAll: %v", tc.name, err)
			}
		}
		c.Close()
	}
}

// Bit rot that leaves the fingerprint alone (simulated by recording the
// damaged file's fingerprint) is caught when the bytes are read: Open and
// ReadAll return no corrupt byte, and the entry is dropped.
func TestCorruptionBehindAnUnchangedFingerprintIsCaughtOnRead(t *testing.T) {
	for _, read := range []struct {
		name string
		fn   func(Blob) ([]byte, error)
	}{
		{"ReadAll", Blob.ReadAll},
		{"Open and ReadAt", func(b Blob) ([]byte, error) {
			c, err := b.Open()
			if err != nil {
				return nil, err
			}
			defer c.Close()
			out := make([]byte, 100)
			_, err = c.ReadAt(out, 1000)
			return out, err
		}},
	} {
		t.Run(read.name, func(t *testing.T) {
			dir := t.TempDir()
			c := openCache(t, Options{Dir: dir})
			h := put(t, c, pseudoRandom(200_000, 2))
			p := blobPath(filepath.Join(dir, "blobs"), h)
			b, _ := os.ReadFile(p)
			b[1050] ^= 1
			os.WriteFile(p, b, 0o644)
			fi, _ := os.Stat(p)
			if _, err := c.db.Exec("UPDATE file_blobs SET fingerprint = ? WHERE hash = ?", fingerprint(fi), h[:]); err != nil {
				t.Fatal(err)
			}

			blob, ok := lookup(t, c, h)
			if !ok || fileTierOf(c).rehashes.Load() != 0 {
				t.Fatalf("lookup with a matching fingerprint: hit %v, re-hashed %d", ok, fileTierOf(c).rehashes.Load())
			}
			got, err := read.fn(blob)
			if !errors.Is(err, ErrHashMismatch) {
				t.Fatalf("reading a corrupt blob: %v (%d bytes), want ErrHashMismatch", err, len(got))
			}
			c.Flush(context.Background())
			if _, ok := lookup(t, c, h); ok {
				t.Fatal("corrupt entry still served after a read caught it")
			}
			if _, err := os.Stat(p); err == nil {
				t.Fatal("corrupt blob file left in place")
			}
		})
	}
}
