package assetsmgr

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// reserve allocates size bytes for f without changing its length, so a
// full disk is reported before the first byte arrives rather than half way
// through. Filesystems without fallocate are not reserved on.
//
// On tmpfs, fallocate allocates and zeroes every page up front, which the
// writes then fill again: a fifth of the client's CPU for a 1 GiB
// download. There, free space is checked instead (ENOSPC if what f still
// needs is not free), which reports a full filesystem just as early but
// does not hold the space against other writers.
func reserve(f *os.File, size int64) error {
	if size <= 0 {
		return nil
	}
	var fs unix.Statfs_t
	if err := unix.Fstatfs(int(f.Fd()), &fs); err == nil && fs.Type == unix.TMPFS_MAGIC {
		var st unix.Stat_t
		if err := unix.Fstat(int(f.Fd()), &st); err != nil {
			return err
		}
		need := size - st.Blocks*512
		if free := int64(fs.Bavail) * int64(fs.Frsize); fs.Blocks > 0 && need > free {
			return &noRoom{need: need, free: free}
		}
		return nil
	}
	for {
		err := unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_KEEP_SIZE, 0, size)
		switch {
		case errors.Is(err, unix.EINTR):
			continue
		case errors.Is(err, unix.EOPNOTSUPP), errors.Is(err, unix.ENOSYS):
			return nil
		case errors.Is(err, unix.ENOSPC):
			// Say how much is missing. Allocated blocks count against
			// what is still needed, as on tmpfs above.
			var st unix.Stat_t
			if unix.Fstatfs(int(f.Fd()), &fs) == nil && unix.Fstat(int(f.Fd()), &st) == nil {
				return &noRoom{need: size - st.Blocks*512, free: int64(fs.Bavail) * int64(fs.Frsize)}
			}
		}
		return err
	}
}
