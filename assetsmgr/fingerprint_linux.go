package assetsmgr

import (
	"fmt"
	"io/fs"
	"syscall"
)

// fingerprint identifies a file's state: size, mtime, ctime (which no
// user-space call can set back), inode and device. A write, truncation,
// replacement, touch or copy changes it. "" means the file cannot be
// fingerprinted and must be re-hashed at every lookup.
func fingerprint(fi fs.FileInfo) string {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return ""
	}
	return fmt.Sprintf("%d:%d.%09d:%d.%09d:%d:%d", fi.Size(), st.Mtim.Sec, st.Mtim.Nsec, st.Ctim.Sec, st.Ctim.Nsec, st.Ino, st.Dev)
}
