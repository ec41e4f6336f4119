package assetsmgr

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// reserve allocates size bytes for f without changing its length, so a
// full disk is reported before the first byte arrives rather than half way
// through. Filesystems without fallocate are only checked for room.
//
// On tmpfs, fallocate allocates and zeroes every page up front, which the
// writes then fill again: a fifth of the client's CPU for a 1 GiB
// download. There, free space is checked instead (ENOSPC if what f still
// needs is not free), which reports a full filesystem just as early but
// does not hold the space against other writers.
//
// Either way the disk's last floor bytes (see roomFloor) stay free: they
// are what an eviction needs to commit.
func reserve(f *os.File, size int64) error {
	if size <= 0 {
		return nil
	}
	var fs unix.Statfs_t
	if err := unix.Fstatfs(int(f.Fd()), &fs); err == nil && fs.Blocks > 0 {
		room, err := roomFor(f, size, &fs)
		if err != nil {
			return err
		}
		if room.need > 0 { // nothing to keep free for blocks already held
			_, room.kept = keptFree(int64(fs.Blocks) * int64(fs.Frsize))
			room.need += room.kept
		}
		if room.need > room.free {
			return room
		}
		if fs.Type == unix.TMPFS_MAGIC {
			return nil
		}
	}
	for {
		err := unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_KEEP_SIZE, 0, size)
		switch {
		case errors.Is(err, unix.EINTR):
			continue
		case errors.Is(err, unix.EOPNOTSUPP), errors.Is(err, unix.ENOSYS):
			return nil
		case errors.Is(err, unix.ENOSPC):
			// Say how much is missing.
			if unix.Fstatfs(int(f.Fd()), &fs) == nil {
				if room, err := roomFor(f, size, &fs); err == nil {
					return room
				}
			}
		}
		return err
	}
}

// roomFor is what f still needs to hold size bytes (its allocated blocks
// count), and what fs, f's filesystem, has free.
func roomFor(f *os.File, size int64, fs *unix.Statfs_t) (*noRoom, error) {
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return nil, err
	}
	return &noRoom{need: size - st.Blocks*512, free: int64(fs.Bavail) * int64(fs.Frsize)}, nil
}

// allocate gives f size bytes of allocated blocks: fallocate where the
// filesystem has it, zeros written where not.
func allocate(f *os.File, size int64) error {
	for {
		err := unix.Fallocate(int(f.Fd()), 0, 0, size)
		switch {
		case err == nil:
			return nil
		case errors.Is(err, unix.EINTR):
			continue
		case errors.Is(err, unix.EOPNOTSUPP), errors.Is(err, unix.ENOSYS):
			return writeZeros(f, size)
		}
		return err
	}
}

// diskSpace is what the filesystem holding dir has free for this user,
// and its size, and whether it could tell.
func diskSpace(dir string) (free, size int64, ok bool) {
	var fs unix.Statfs_t
	if unix.Statfs(dir, &fs) != nil {
		return 0, 0, false
	}
	return int64(fs.Bavail) * int64(fs.Frsize), int64(fs.Blocks) * int64(fs.Frsize), true
}
