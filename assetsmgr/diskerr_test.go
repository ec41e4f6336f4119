package assetsmgr

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/voxsync/voxsync/resources"
)

// mountTmpfs mounts a tmpfs of the given size (e.g. "1m") on a new temp
// directory, which needs root; CI runs as root.
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("cannot mount a tmpfs: %v %s", err, out)
		}
		t.Skipf("cannot mount a tmpfs (needs root): %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", dir).Run() })
	return dir
}

func remount(t *testing.T, dir, mode string) {
	t.Helper()
	if out, err := exec.Command("mount", "-o", "remount,"+mode, dir).CombinedOutput(); err != nil {
		t.Fatalf("remount %s %s: %v %s", dir, mode, err, out)
	}
}

// A read-only cache directory is refused with a message that says so and
// what to do, not sqlite's "unable to open database file"; nothing in it
// is lost.
func TestReadOnlyCacheDirectory(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T) (dir string, readOnly, writable func())
	}{
		{"read-only filesystem", func(t *testing.T) (string, func(), func()) {
			dir := mountTmpfs(t, "8m")
			return dir, func() { remount(t, dir, "ro") }, func() { remount(t, dir, "rw") }
		}},
		{"directory without write permission", func(t *testing.T) (string, func(), func()) {
			if os.Geteuid() == 0 {
				t.Skip("root ignores directory permissions")
			}
			dir := t.TempDir()
			return dir, func() { os.Chmod(dir, 0o555) }, func() { os.Chmod(dir, 0o755) }
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir, readOnly, writable := tc.setup(t)
			c := openCache(t, Options{Dir: dir})
			small, large := put(t, c, pseudoRandom(3000, 1)), put(t, c, pseudoRandom(100_000, 2))
			c.Close()

			readOnly()
			_, err := Open(context.Background(), Options{Dir: dir})
			if !errors.Is(err, ErrNotWritable) {
				t.Fatalf("Open on a read-only cache: %v, want ErrNotWritable", err)
			}
			for _, want := range []string{"cache directory " + dir + " is not writable", "make it writable"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("message %q does not say %q", err, want)
				}
			}
			writable()
			c = openCache(t, Options{Dir: dir})
			for _, h := range []resources.Hash{small, large} {
				if _, ok := lookup(t, c, h); !ok {
					t.Fatalf("entry %s lost after a refused Open", h.Short())
				}
			}
		})
	}
}

// Create reserves a blob's size first: on a full disk it fails at once
// with ErrDiskFull, before any byte is received, and leaves no file.
func TestCreateOnFullDiskFailsAtOnce(t *testing.T) {
	dir := mountTmpfs(t, "1m")
	c := openCache(t, Options{Dir: dir})
	h := resources.Sum([]byte("a blob that will not fit"))
	p, err := c.Create(h, 2<<20)
	if err == nil {
		p.Abort()
		t.Fatal("Create of a 2 MiB blob on a 1 MiB disk succeeded")
	}
	// The figures a player can act on: 2 MiB needed, under 1 MiB free.
	if !errors.Is(err, ErrDiskFull) || !strings.Contains(err.Error(), "is full") || !strings.Contains(err.Error(), "2.0 MiB needed") ||
		!strings.Contains(err.Error(), "KiB free") || !strings.Contains(err.Error(), "free 1.") {
		t.Fatalf("Create on a full disk: %v", err)
	}
	if files, _ := filepath.Glob(filepath.Join(dir, "blobs", "*", "*")); len(files) != 0 {
		t.Fatalf("files left: %v", files)
	}
}
