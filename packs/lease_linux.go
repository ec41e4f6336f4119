package packs

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// openForWriting reports whether any process has path open for writing.
// Linux grants a read lease only when nobody does; inotify would report
// the writer's close, but fsnotify does not expose that event. It fails
// with errors.ErrUnsupported where leases are not allowed (a file owned by
// someone else, without CAP_LEASE).
func openForWriting(path string) (bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	_, err = unix.FcntlInt(f.Fd(), unix.F_SETLEASE, unix.F_RDLCK)
	switch {
	case err == nil:
		unix.FcntlInt(f.Fd(), unix.F_SETLEASE, unix.F_UNLCK)
		return false, nil
	case errors.Is(err, unix.EAGAIN):
		return true, nil
	default:
		return false, errors.ErrUnsupported
	}
}
