package configs

import (
	"errors"
	"fmt"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strings"

	"github.com/BurntSushi/toml"
)

// Problem is one configuration error: where it is (a file and line, or a
// flag), the setting, and what is wrong with it.
type Problem struct {
	File    string // a path, "flag -packs", or "built-in defaults"
	Line    int    // 0 when not known
	Setting string // empty for a problem with the file as a whole
	Msg     string
}

func (p Problem) Error() string {
	loc := p.File
	if p.Line > 0 {
		loc = fmt.Sprintf("%s:%d", p.File, p.Line)
	}
	if p.Setting == "" {
		return loc + ": " + p.Msg
	}
	return loc + ": " + p.Setting + ": " + p.Msg
}

// Problems is every configuration error found, reported together so that
// one run shows them all. It matches ErrInvalid.
type Problems []Problem

func (ps Problems) Error() string {
	lines := make([]string, len(ps))
	for i, p := range ps {
		lines[i] = p.Error()
	}
	return strings.Join(lines, "\n")
}

func (ps Problems) Unwrap() error { return ErrInvalid }

// asError returns ps as an error, or nil when there are none.
func (ps Problems) asError() error {
	if len(ps) == 0 {
		return nil
	}
	return ps
}

// Source remembers where each server setting came from, so a problem
// points at a line of the file or at a flag.
type Source struct {
	file     string
	lines    map[string]int    // setting → line in file
	flags    map[string]string // setting → the flag that set it last
	problems Problems          // found while reading
}

// DefaultSource is the Source of the built-in defaults.
func DefaultSource() *Source {
	return &Source{file: "built-in defaults", lines: map[string]int{}, flags: map[string]string{}}
}

// SetByFlag records that flag (e.g. "-listen") set setting.
func (src *Source) SetByFlag(setting, flag string) { src.flags[setting] = flag }

// Where returns where setting was set: a file and its line (0 when the
// file does not set it), or "flag -name".
func (src *Source) Where(setting string) (string, int) {
	if f, ok := src.flags[setting]; ok {
		return "flag " + f, 0
	}
	return src.file, src.lines[setting]
}

// ReadServer reads path over the defaults. Every unknown setting and every
// value of the wrong type is collected, with its line; Check then adds
// every invalid value and returns them all.
func ReadServer(path string) (Server, *Source, error) {
	s := DefaultServer()
	src := &Source{file: path, flags: map[string]string{}}
	data, err := os.ReadFile(path)
	if err != nil {
		return s, src, fmt.Errorf("read config: %w", err)
	}
	src.lines, src.problems = decodeStrict(path, string(data), &s)
	if s.AdminListen == "none" {
		s.AdminListen = "" // as -admin-listen none, and world = "none"
	}
	return s, src, nil
}

// Check validates s and returns every problem found while reading it and
// in its values, each named by where it was set; nil if there are none.
func (src *Source) Check(s Server) error {
	ps := slices.Clone(src.problems)
	def := DefaultServer()
	seen := make(map[string]bool)
	for _, p := range ps {
		seen[p.Setting] = true
	}
	// Validate names the first bad setting; put it back to its default
	// and validate again, until no more are found. A setting whose
	// default does not help (it conflicts with another) ends the search.
	for range 64 {
		err := s.Validate()
		if err == nil {
			break
		}
		setting, msg := splitValidation(err)
		if !seen[setting] {
			file, line := src.Where(setting)
			ps = append(ps, Problem{File: file, Line: line, Setting: setting, Msg: msg})
			seen[setting] = true
		}
		if !resetSetting(&s, &def, setting) {
			break
		}
	}
	return ps.asError()
}

// splitValidation takes apart "config: setting: what: invalid configuration".
func splitValidation(err error) (setting, msg string) {
	m := strings.TrimSuffix(err.Error(), ": "+ErrInvalid.Error())
	m = strings.TrimPrefix(m, "config: ")
	setting, msg, ok := strings.Cut(m, ": ")
	if !ok {
		return "", m
	}
	return setting, msg
}

// resetSetting sets one setting of s to its value in def; false if s has
// no such setting or it already has the default.
func resetSetting(s, def *Server, setting string) bool {
	i, ok := settingFields(reflect.TypeFor[Server]())[setting]
	if !ok {
		return false
	}
	f, d := reflect.ValueOf(s).Elem().Field(i), reflect.ValueOf(def).Elem().Field(i)
	if reflect.DeepEqual(f.Interface(), d.Interface()) {
		return false
	}
	f.Set(d)
	return true
}

// settingFields maps the TOML keys of a struct to its field indexes.
func settingFields(t reflect.Type) map[string]int {
	m := make(map[string]int)
	for i := range t.NumField() {
		if k, _, _ := strings.Cut(t.Field(i).Tag.Get("toml"), ","); k != "" && k != "-" {
			m[k] = i
		}
	}
	return m
}

// keyLine matches a top-level "key = value" line.
var keyLine = regexp.MustCompile(`^\s*("?)([A-Za-z0-9_-]+)("?)\s*=`)

// decodeStrict decodes a flat TOML file into the struct v points to, one
// setting at a time: a setting it does not have is reported with a guess at
// what was meant, and a value of the wrong type is reported and leaves the
// field as it was. It returns each setting's line.
func decodeStrict(file, data string, v any) (map[string]int, Problems) {
	lines := make(map[string]int)
	for i, l := range strings.Split(data, "\n") {
		if strings.HasPrefix(strings.TrimSpace(l), "[") {
			break // tables: not a flat setting
		}
		if m := keyLine.FindStringSubmatch(l); m != nil && m[1] == m[3] {
			if _, dup := lines[m[2]]; !dup {
				lines[m[2]] = i + 1
			}
		}
	}
	var raw map[string]toml.Primitive
	md, err := toml.Decode(data, &raw)
	if err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			return lines, Problems{{File: file, Line: pe.Position.Line, Msg: "not valid TOML: " + pe.Message}}
		}
		return lines, Problems{{File: file, Msg: "not valid TOML: " + err.Error()}}
	}
	rv := reflect.ValueOf(v).Elem()
	fields := settingFields(rv.Type())
	known := make([]string, 0, len(fields))
	for k := range fields {
		known = append(known, k)
	}
	keys := make([]string, 0, len(raw))
	for k := range raw {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b string) int { return lines[a] - lines[b] })
	var ps Problems
	for _, k := range keys {
		i, ok := fields[k]
		if !ok {
			msg := "unknown setting"
			if guess := didYouMean(k, known); guess != "" {
				msg += fmt.Sprintf("; did you mean %s?", guess)
			}
			ps = append(ps, Problem{File: file, Line: lines[k], Setting: k, Msg: msg})
			continue
		}
		f := rv.Field(i)
		tmp := reflect.New(f.Type())
		if err := md.PrimitiveDecode(raw[k], tmp.Interface()); err != nil {
			ps = append(ps, Problem{File: file, Line: lines[k], Setting: k, Msg: fmt.Sprintf("bad value (want %s): %s", typeName(f.Type()), cleanTOMLError(err))})
			continue
		}
		f.Set(tmp.Elem())
	}
	return lines, ps
}

func typeName(t reflect.Type) string {
	switch {
	case t == reflect.TypeFor[Duration]():
		return `a duration such as "10s"`
	case t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.String:
		return "a list of strings"
	case t.Kind() == reflect.Slice:
		return "a list of " + typeName(t.Elem())
	case t.Kind() == reflect.Bool:
		return "true or false"
	case t.Kind() == reflect.String:
		return "a string"
	case t.Kind() >= reflect.Int && t.Kind() <= reflect.Int64:
		return "an integer"
	}
	return t.String()
}

// cleanTOMLError drops what Problem already says (the line and key).
func cleanTOMLError(err error) string {
	var pe toml.ParseError
	if errors.As(err, &pe) {
		return pe.Message
	}
	return strings.TrimPrefix(err.Error(), "toml: ")
}

// didYouMean returns the known name closest to s, if it is close enough to
// be a typo.
func didYouMean(s string, known []string) string {
	slices.Sort(known)
	best, bestD := "", 2+len(s)/8
	for _, k := range known {
		if d := editDistance(s, k); d <= bestD && (best == "" || d < bestD) {
			best, bestD = k, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
