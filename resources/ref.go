package resources

import (
	"fmt"
	"path"
	"strings"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// Limits of a reference, part of the wire protocol.
const (
	MaxDomainLen = 64
	MaxKeyLen    = 256
)

// Ref names a resource as domain:key, e.g. "default:blocks/stone.png". The
// key is a relative slash path below assets/<domain>/<type>/ in a pack.
type Ref struct {
	Domain string
	Key    string
}

func (r Ref) String() string { return r.Domain + ":" + r.Key }

// ParseRef parses and validates "domain:key". The domain may not contain a
// colon, so the first colon separates the two.
func ParseRef(s string) (Ref, error) {
	d, k, ok := strings.Cut(s, ":")
	if !ok {
		return Ref{}, fmt.Errorf("parse reference %q: missing ':' between domain and key: %w", truncate(s, 80), ErrInvalidRef)
	}
	r := Ref{Domain: d, Key: k}
	if err := r.Validate(); err != nil {
		return Ref{}, err
	}
	return r, nil
}

// Validate checks the domain and key rules. Keys become file paths on both
// sides, so anything that could escape a directory or mean different files on
// different systems is refused.
func (r Ref) Validate() error {
	if err := ValidateDomain(r.Domain); err != nil {
		return err
	}
	return ValidateKey(r.Key)
}

// ValidateDomain checks that d matches [a-z0-9_.-]{1,64}.
func ValidateDomain(d string) error {
	if len(d) == 0 || len(d) > MaxDomainLen {
		return fmt.Errorf("validate domain %q: length %d not in 1..%d: %w", truncate(d, 80), len(d), MaxDomainLen, ErrInvalidRef)
	}
	for i := 0; i < len(d); i++ {
		c := d[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-') {
			return fmt.Errorf("validate domain %q: character %q not in [a-z0-9_.-]: %w", truncate(d, 80), c, ErrInvalidRef)
		}
	}
	return nil
}

// ValidateKey checks that k is a clean relative slash path of at most 256
// bytes with no "..", backslash or NUL, in valid UTF-8 and Unicode NFC
// form, without control characters or bidirectional controls. NFC makes a
// name that looks the same one name: a file saved as NFD (as macOS tools
// may do) is refused with its NFC spelling rather than served as a second
// resource beside its NFC twin.
func ValidateKey(k string) error {
	bad := func(why string) error {
		return fmt.Errorf("validate key %q: %s: %w", truncate(k, 80), why, ErrInvalidRef)
	}
	switch {
	case len(k) == 0:
		return bad("empty")
	case len(k) > MaxKeyLen:
		return bad(fmt.Sprintf("%d bytes, more than %d", len(k), MaxKeyLen))
	case strings.IndexByte(k, 0) >= 0:
		return bad("contains NUL")
	case strings.IndexByte(k, '\\') >= 0:
		return bad("contains a backslash")
	case strings.HasPrefix(k, "/"):
		return bad("absolute path")
	case k == ".":
		return bad("names the directory itself")
	case path.Clean(k) != k:
		return bad("not a clean path")
	case !utf8.ValidString(k):
		return bad("not valid UTF-8")
	}
	for _, r := range k {
		switch {
		case r < 0x20 || (r >= 0x7f && r <= 0x9f):
			return bad(fmt.Sprintf("contains control character U+%04X", r))
		case isBidiControl(r):
			return bad(fmt.Sprintf("contains bidirectional control U+%04X, which can make a name display as another", r))
		}
	}
	if !norm.NFC.IsNormalString(k) {
		return bad(fmt.Sprintf("not in Unicode NFC form; rename it to %q", norm.NFC.String(k)))
	}
	for el := range strings.SplitSeq(k, "/") {
		if el == ".." {
			return bad(`contains ".."`)
		}
	}
	return nil
}

// Binding is what a Bind tells a client: resource (type, id) is currently
// domain:key with this content hash and size.
type Binding struct {
	Type Type
	ID   ResourceID
	Ref  Ref
	Hash Hash
	Size uint64
}

// Key returns the (type, id) the binding is for.
func (b Binding) Key() Key { return Key{b.Type, b.ID} }

// isBidiControl reports the Unicode bidirectional formatting characters
// (ALM, LRM, RLM, embeddings, overrides, isolates).
func isBidiControl(r rune) bool {
	return r == 0x061c || r == 0x200e || r == 0x200f || (r >= 0x202a && r <= 0x202e) || (r >= 0x2066 && r <= 0x2069)
}
