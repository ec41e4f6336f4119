package assetsmgr

import (
	"os"

	"golang.org/x/sys/unix"
)

// startWriteback asks the kernel to begin writing [off, off+n) of f to disk
// without waiting. With plenty of RAM, Linux would otherwise hold a large
// download's pages dirty until the final fsync, which then stalls for
// seconds; started early, the disk works while the network does.
func startWriteback(f *os.File, off, n int64) {
	unix.SyncFileRange(int(f.Fd()), off, n, unix.SYNC_FILE_RANGE_WRITE)
}
