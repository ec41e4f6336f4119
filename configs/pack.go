package configs

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// PackFile is what a pack's pack.toml may say. The packs package reads it;
// this is its strict check.
type PackFile struct {
	Name        string `toml:"name"`
	Description string `toml:"description"`
	Priority    int    `toml:"priority"`
}

// MaxPackPriority bounds a pack's priority either way, so the built-in
// pack (far below) stays under every configured one.
const MaxPackPriority = 1_000_000

// CheckPacks checks every configured pack directory (see CheckPack), and
// that none is listed twice: "packs/a" and "packs/a/" would load the same
// files twice, at two priorities, and the later would shadow the earlier
// without a word.
func CheckPacks(dirs []string, setIn string, line int) Problems {
	var ps Problems
	seen := make(map[string]string)
	for _, dir := range dirs {
		if dir == "" {
			continue
		}
		key := filepath.Clean(dir)
		if abs, err := filepath.Abs(key); err == nil {
			key = abs
		}
		if first, ok := seen[key]; ok {
			ps = append(ps, Problem{File: setIn, Line: line, Setting: "packs", Msg: fmt.Sprintf("%s: listed twice (also as %s)", dir, first)})
			continue
		}
		seen[key] = dir
		ps = append(ps, CheckPack(dir, setIn, line)...)
	}
	return ps
}

// CheckPack checks a configured pack directory: it exists, it holds an
// assets/ directory, and its pack.toml (if any) has only known settings
// with good values. setIn and line say where the directory was configured
// (a file, or a flag), for the message.
func CheckPack(dir, setIn string, line int) Problems {
	bad := func(msg string, args ...any) Problems {
		return Problems{{File: setIn, Line: line, Setting: "packs", Msg: fmt.Sprintf("%s: %s", dir, fmt.Sprintf(msg, args...))}}
	}
	fi, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if !filepath.IsAbs(dir) {
			// Relative paths are the process's, not the config file's:
			// say where it looked.
			if wd, err := os.Getwd(); err == nil {
				return bad("pack directory does not exist (looked in %s, the working directory)", wd)
			}
		}
		return bad("pack directory does not exist")
	case err != nil:
		return bad("%v", err)
	case !fi.IsDir():
		return bad("not a directory; a pack is a directory holding assets/<domain>/<type>/<key>")
	}
	if fi, err := os.Stat(filepath.Join(dir, "assets")); err != nil || !fi.IsDir() {
		hint := ""
		switch inner := packsInside(dir); {
		case filepath.Base(filepath.Clean(dir)) == "assets":
			hint = fmt.Sprintf("; this looks like a pack's assets/ itself: did you mean %s?", filepath.Dir(filepath.Clean(dir)))
		case len(inner) > 0:
			hint = fmt.Sprintf("; it holds packs: did you mean -packs %s?", joinList(inner))
		}
		return bad("no assets/ directory in it; a pack is a directory holding assets/<domain>/<type>/<key>%s", hint)
	}
	return CheckPackFile(filepath.Join(dir, "pack.toml"))
}

// CheckPackFile checks a pack.toml like server.toml: an unknown setting or
// a bad value is a problem naming the file, the setting and the line. A
// missing file is fine.
func CheckPackFile(path string) Problems {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return Problems{{File: path, Msg: err.Error()}}
	}
	_, ps := ParsePackFile(path, data)
	return ps
}

// ParsePackFile parses a pack.toml's contents strictly (path is for the
// messages): the settings, and every problem with them. The packs package
// reads pack.toml with it, so what -check-config refuses at start a hot
// reload refuses too.
func ParsePackFile(path string, data []byte) (PackFile, Problems) {
	var p PackFile
	lines, ps := decodeStrict(path, string(data), &p)
	if len(ps) == 1 && ps[0].Setting == "" {
		return p, ps // not TOML: nothing more to say
	}
	if _, set := lines["name"]; set && p.Name == "" {
		ps = append(ps, Problem{File: path, Line: lines["name"], Setting: "name", Msg: "empty; leave it out to use the directory's name"})
	}
	if p.Priority < -MaxPackPriority || p.Priority > MaxPackPriority {
		ps = append(ps, Problem{File: path, Line: lines["priority"], Setting: "priority", Msg: fmt.Sprintf("%d not in %d..%d", p.Priority, -MaxPackPriority, MaxPackPriority)})
	}
	return p, ps
}

// packsInside lists the subdirectories of dir that look like packs.
func packsInside(dir string) []string {
	ents, _ := os.ReadDir(dir)
	var out []string
	for _, e := range ents {
		if fi, err := os.Stat(filepath.Join(dir, e.Name(), "assets")); err == nil && fi.IsDir() {
			out = append(out, filepath.Join(dir, e.Name()))
		}
	}
	slices.Sort(out)
	return out
}

func joinList(s []string) string {
	more := ""
	if len(s) > 4 {
		more = fmt.Sprintf(",… (%d packs)", len(s))
		s = s[:4]
	}
	return strings.Join(s, ",") + more
}
