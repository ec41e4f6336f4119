//go:build !linux

package assetsmgr

import "os"

// reserve does nothing where fallocate is missing: a full disk then shows
// as a failed write.
func reserve(f *os.File, size int64) error { return nil }

// allocate gives f size bytes of allocated blocks by writing zeros.
func allocate(f *os.File, size int64) error { return writeZeros(f, size) }

// diskSpace cannot tell here: the room check before a commit is skipped.
func diskSpace(dir string) (free, size int64, ok bool) { return 0, 0, false }
