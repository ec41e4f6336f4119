package assetsmgr

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// reserve allocates size bytes for f without changing its length, so a
// full disk is reported before the first byte arrives rather than half way
// through. Filesystems without fallocate are not reserved on.
func reserve(f *os.File, size int64) error {
	if size <= 0 {
		return nil
	}
	for {
		err := unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_KEEP_SIZE, 0, size)
		switch {
		case errors.Is(err, unix.EINTR):
			continue
		case errors.Is(err, unix.EOPNOTSUPP), errors.Is(err, unix.ENOSYS):
			return nil
		}
		return err
	}
}
