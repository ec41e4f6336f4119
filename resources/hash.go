package resources

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
)

// HashSize is the size of a SHA-256 digest.
const HashSize = sha256.Size

// Hash is the SHA-256 of a resource's bytes: its identity. Equal hashes mean
// equal content, so a hash is all a cache or a request needs. It is a value
// type usable as a map key.
type Hash [HashSize]byte

// Sum returns the hash of b.
func Sum(b []byte) Hash { return Hash(sha256.Sum256(b)) }

// String returns the 64-character lowercase hex form.
func (h Hash) String() string { return hex.EncodeToString(h[:]) }

// Short returns the first 12 hex characters, for log lines.
func (h Hash) Short() string { return hex.EncodeToString(h[:6]) }

// IsZero reports whether h is all zero bytes, which no real content hashes to
// in practice; it marks "no hash".
func (h Hash) IsZero() bool { return h == Hash{} }

// ParseHash parses the 64-character hex form, upper or lower case.
func ParseHash(s string) (Hash, error) {
	var h Hash
	if len(s) != 2*HashSize {
		return h, fmt.Errorf("parse hash %q: want %d hex characters, have %d: %w", truncate(s, 80), 2*HashSize, len(s), ErrInvalidHash)
	}
	if _, err := hex.Decode(h[:], []byte(s)); err != nil {
		return Hash{}, fmt.Errorf("parse hash %q: %v: %w", truncate(s, 80), err, ErrInvalidHash)
	}
	return h, nil
}

func (h Hash) MarshalText() ([]byte, error) { return []byte(h.String()), nil }

func (h *Hash) UnmarshalText(b []byte) error {
	v, err := ParseHash(string(b))
	if err != nil {
		return err
	}
	*h = v
	return nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
