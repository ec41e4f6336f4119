//go:build !linux

package assetsmgr

import "os"

// reserve does nothing where fallocate is missing: a full disk then shows
// as a failed write.
func reserve(f *os.File, size int64) error { return nil }
