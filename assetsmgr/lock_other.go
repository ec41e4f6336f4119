//go:build !unix

package assetsmgr

import "os"

// tryLock does not lock where flock is missing: two processes on one cache
// are not detected there.
func tryLock(f *os.File) (held bool, err error) { return false, nil }
