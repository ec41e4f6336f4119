package assetsmgr

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// ErrInUse is matched (errors.Is) by the error Open returns when another
// process has the cache open.
var ErrInUse = errors.New("cache in use by another process")

// InUseError says which process holds the cache.
type InUseError struct {
	Dir string
	PID int // 0 if the holder had not written its pid yet
}

func (e *InUseError) Error() string {
	if e.PID == os.Getpid() {
		// flock is per open file: a second Open in one process is refused
		// too. "process N" would name the caller itself.
		return fmt.Sprintf("cache %s is already open in this process: share that *assetsmgr.Cache, or close it first", e.Dir)
	}
	who := "another process"
	if e.PID > 0 {
		who = "process " + strconv.Itoa(e.PID)
	}
	return fmt.Sprintf("cache %s is in use by %s: close that client, or give this one another cache directory", e.Dir, who)
}

func (e *InUseError) Is(target error) bool { return target == ErrInUse }

// lockName is the lock file in the cache directory. It holds the pid of
// the process that has the cache open; the lock itself is an flock on it,
// which the kernel drops when that process exits, however it exits. The
// file is never removed: removing it would let two processes lock two
// different files of the same name.
const lockName = "lock"

// dirLock is an exclusive hold on a cache directory.
type dirLock struct{ f *os.File }

// lockDir takes the directory's lock without waiting, or returns an
// *InUseError.
func lockDir(dir string) (*dirLock, error) {
	f, err := os.OpenFile(filepath.Join(dir, lockName), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lock cache: %w", err)
	}
	held, err := tryLock(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("lock cache: %w", err)
	}
	if held {
		b, _ := os.ReadFile(f.Name())
		f.Close()
		pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
		return nil, &InUseError{Dir: dir, PID: pid}
	}
	if err := f.Truncate(0); err == nil {
		f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return &dirLock{f: f}, nil
}

// release drops the lock (closing the file releases the flock).
func (l *dirLock) release() {
	if l != nil && l.f != nil {
		l.f.Close()
		l.f = nil
	}
}
