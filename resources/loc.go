package resources

import (
	"fmt"
	"strings"
)

// Loc is a resource's name within a server: its type and domain:key. Its
// text form "<type>/<domain>:<key>" is used in configuration files.
type Loc struct {
	Type Type
	Ref  Ref
}

func (l Loc) String() string { return l.Type.String() + "/" + l.Ref.String() }

// MarshalText gives the text form, so JSON shows "texture/default:stone.png".
func (l Loc) MarshalText() ([]byte, error) { return []byte(l.String()), nil }

// UnmarshalText parses the text form, as ParseLoc.
func (l *Loc) UnmarshalText(b []byte) error {
	v, err := ParseLoc(string(b))
	if err != nil {
		return err
	}
	*l = v
	return nil
}

// ParseLoc parses "<type>/<domain>:<key>".
func ParseLoc(s string) (Loc, error) {
	ts, rs, ok := strings.Cut(s, "/")
	if !ok {
		return Loc{}, fmt.Errorf("parse %q: want <type>/<domain>:<key>: %w", truncate(s, 80), ErrInvalidRef)
	}
	t, err := ParseType(ts)
	if err != nil {
		return Loc{}, err
	}
	r, err := ParseRef(rs)
	if err != nil {
		return Loc{}, err
	}
	return Loc{t, r}, nil
}

// Pattern selects resources by type, domain and key glob, as used by the
// server's preload setting: "*", "<type>/*", "<domain>:<glob>" or
// "<type>/<domain>:<glob>". In a glob, '*' matches any run of characters,
// '/' included, so "default:*" is every key of the domain.
type Pattern struct {
	anyType bool
	typ     Type
	domain  string // "" matches any domain
	glob    string
}

// ParsePattern parses a pattern.
func ParsePattern(s string) (Pattern, error) {
	p := Pattern{anyType: true, glob: "*"}
	if s == "*" {
		return p, nil
	}
	rest := s
	if ts, after, ok := strings.Cut(s, "/"); ok && !strings.Contains(ts, ":") {
		t, err := ParseType(ts)
		if err != nil {
			return Pattern{}, fmt.Errorf("pattern %q: %w", s, err)
		}
		p.anyType, p.typ, rest = false, t, after
		if rest == "*" {
			return p, nil
		}
	}
	dom, glob, ok := strings.Cut(rest, ":")
	if !ok {
		return Pattern{}, fmt.Errorf("pattern %q: want *, <type>/*, <domain>:<glob> or <type>/<domain>:<glob>: %w", s, ErrInvalidRef)
	}
	if err := ValidateDomain(dom); err != nil {
		return Pattern{}, fmt.Errorf("pattern %q: %w", s, err)
	}
	if glob == "" {
		return Pattern{}, fmt.Errorf("pattern %q: empty key glob: %w", s, ErrInvalidRef)
	}
	p.domain, p.glob = dom, glob
	return p, nil
}

// Match reports whether l is selected.
func (p Pattern) Match(l Loc) bool {
	if !p.anyType && l.Type != p.typ {
		return false
	}
	if p.domain != "" && l.Ref.Domain != p.domain {
		return false
	}
	return globMatch(p.glob, l.Ref.Key)
}

// globMatch matches s against a glob where '*' is any run of bytes; all
// other bytes match themselves. Iterative with one backtrack point, so it
// is linear-ish and cannot blow up on many stars.
func globMatch(glob, s string) bool {
	gi, si := 0, 0
	star, mark := -1, 0
	for si < len(s) {
		switch {
		case gi < len(glob) && glob[gi] == '*':
			star, mark = gi, si
			gi++
		case gi < len(glob) && glob[gi] == s[si]:
			gi++
			si++
		case star >= 0:
			gi = star + 1
			mark++
			si = mark
		default:
			return false
		}
	}
	for gi < len(glob) && glob[gi] == '*' {
		gi++
	}
	return gi == len(glob)
}
