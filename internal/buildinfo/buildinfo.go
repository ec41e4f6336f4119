// Package buildinfo says what a binary was built from, for -version. It
// reads what the Go toolchain stamped into the binary and nothing else.
package buildinfo

import (
	"fmt"
	"runtime/debug"

	"github.com/voxsync/voxsync/packets"
)

// String describes the build of the named binary: module version, VCS
// revision (with "+dirty" if the tree had changes), Go version and the
// protocol version it speaks.
func String(binary string) string {
	version, rev, goVersion := "(unknown)", "", ""
	if bi, ok := debug.ReadBuildInfo(); ok {
		version, goVersion = bi.Main.Version, bi.GoVersion
		var dirty bool
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				dirty = s.Value == "true"
			}
		}
		if len(rev) > 12 {
			rev = rev[:12]
		}
		if rev != "" && dirty {
			rev += "+dirty"
		}
	}
	out := fmt.Sprintf("%s %s", binary, version)
	if rev != "" {
		out += " rev " + rev
	}
	if goVersion != "" {
		out += " " + goVersion
	}
	return out + fmt.Sprintf(" protocol %d", packets.Version)
}
