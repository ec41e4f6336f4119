package assetsmgr

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/voxsync/voxsync/resources"
)

// A second Open of a cache that is open stops at once, names the holder,
// and leaves the holder's temp files alone; after Close the cache opens.
func TestSecondOpenIsRefused(t *testing.T) {
	dir := t.TempDir()
	first := openCache(t, Options{Dir: dir})
	p, err := first.Create(resources.Sum([]byte("x")), 1)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Abort()

	_, err = Open(context.Background(), Options{Dir: dir})
	var inUse *InUseError
	if !errors.As(err, &inUse) || !errors.Is(err, ErrInUse) || inUse.PID != os.Getpid() {
		t.Fatalf("second Open: %v, want an InUseError naming pid %d", err, os.Getpid())
	}
	// In this very process: "in use by process <pid>" would name the
	// caller itself.
	if want := "cache " + dir + " is already open in this process"; !strings.Contains(err.Error(), want) {
		t.Fatalf("message %q does not say %q", err, want)
	}
	if _, err := os.Stat(p.f.Name()); err != nil {
		t.Fatalf("the first cache's temp file: %v", err)
	}
	tmps, _ := filepath.Glob(filepath.Join(dir, "blobs", "*", ".tmp-*"))
	if len(tmps) != 1 {
		t.Fatalf("temp files: %v", tmps)
	}

	p.Abort()
	first.Close()
	openCache(t, Options{Dir: dir})
}
