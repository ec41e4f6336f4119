package assetsmgr

import (
	"errors"
	"fmt"
	"io/fs"
	"syscall"

	"github.com/voxsync/voxsync/internal/bytesize"
	"modernc.org/sqlite"
)

// Sentinels for disk conditions a player has to act on (errors.Is).
var (
	ErrNotWritable = errors.New("cache directory is not writable")
	ErrDiskFull    = errors.New("disk holding the cache is full")
)

// sqlite primary result codes for disk conditions.
const (
	sqliteReadOnly = 8
	sqliteFull     = 13
	sqliteCantOpen = 14
	// The shared-memory index of the write-ahead log could not grow
	// (SQLITE_IOERR_SHMSIZE): the disk is full.
	sqliteIOErrShmSize = 10 | 19<<8
)

// diskError wraps a disk condition so its message says what happened and
// what to do, keeping the cause for errors.Is/As.
type diskError struct {
	kind  error // ErrNotWritable or ErrDiskFull
	dir   string
	cause error
}

func (e *diskError) Error() string {
	switch e.kind {
	case ErrNotWritable:
		return fmt.Sprintf("cache directory %s is not writable (%v): make it writable for this user (or mount it read-write), or use another cache directory", e.dir, e.cause)
	}
	var nr *noRoom
	if errors.As(e.cause, &nr) && nr.need > nr.free {
		return fmt.Sprintf("disk holding the cache %s is full (%v): free %s on it, or use a cache directory on a disk with more room",
			e.dir, e.cause, bytesize.Format(nr.need-nr.free))
	}
	return fmt.Sprintf("disk holding the cache %s is full (%v): free some space on it, or use a cache directory on a disk with more room", e.dir, e.cause)
}

// noRoom is a reservation the disk has no room for: ENOSPC, with the
// figures a player needs to act on it. need includes kept, what the cache
// keeps free on the disk for evicting (see store.holdBackForRoom).
type noRoom struct{ need, free, kept int64 }

func (e *noRoom) Error() string {
	if e.kept > 0 {
		return fmt.Sprintf("%s needed beside the %s the cache keeps free to evict, %s free",
			bytesize.Format(e.need-e.kept), bytesize.Format(e.kept), bytesize.Format(e.free))
	}
	return fmt.Sprintf("%s needed, %s free", bytesize.Format(e.need), bytesize.Format(e.free))
}

func (e *noRoom) Unwrap() error { return syscall.ENOSPC }

// Shortfall is how many more bytes the disk needed for the reservation
// that failed with err (ErrDiskFull), or 0 if err does not say.
func Shortfall(err error) int64 {
	var nr *noRoom
	if errors.As(err, &nr) && nr.need > nr.free {
		return nr.need - nr.free
	}
	return 0
}

func (e *diskError) Unwrap() []error { return []error{e.kind, e.cause} }

// classifyDiskError returns err wrapped as a not-writable or disk-full
// error if that is what it is, and err unchanged otherwise.
func classifyDiskError(dir string, err error) error {
	if err == nil {
		return nil
	}
	var de *diskError
	if errors.As(err, &de) {
		return err
	}
	if kind := diskErrorKind(err); kind != nil {
		return &diskError{kind: kind, dir: dir, cause: err}
	}
	return err
}

func diskErrorKind(err error) error {
	switch {
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT):
		return ErrDiskFull
	case errors.Is(err, syscall.EROFS), errors.Is(err, fs.ErrPermission):
		return ErrNotWritable
	}
	var se *sqlite.Error
	if errors.As(err, &se) {
		if se.Code() == sqliteIOErrShmSize {
			return ErrDiskFull
		}
		switch se.Code() & 0xff {
		case sqliteFull:
			return ErrDiskFull
		case sqliteReadOnly, sqliteCantOpen:
			return ErrNotWritable
		}
	}
	return nil
}
