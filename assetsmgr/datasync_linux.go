package assetsmgr

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// datasync makes f's data durable, and the metadata needed to read it
// back (its size), without waiting for the rest (mtime).
func datasync(f *os.File) error {
	for {
		err := unix.Fdatasync(int(f.Fd()))
		if !errors.Is(err, unix.EINTR) {
			return err
		}
	}
}
