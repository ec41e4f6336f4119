package resources

import "fmt"

// Type is an asset type. Its name is also the folder name under
// assets/<domain>/ in a resource pack, so the names are part of the pack
// format and must never change.
type Type uint8

const (
	TypeNodestate Type = iota
	TypeParticle
	TypeAnimation
	TypeModel
	TypeTexture
	TypeSound
	TypeFont

	// NumTypes is the number of valid types; valid types are 0..NumTypes-1,
	// so per-type tables can be plain arrays.
	NumTypes = 7
)

var typeNames = [NumTypes]string{
	TypeNodestate: "nodestate",
	TypeParticle:  "particle",
	TypeAnimation: "animation",
	TypeModel:     "model",
	TypeTexture:   "texture",
	TypeSound:     "sound",
	TypeFont:      "font",
}

// Types lists every valid type in wire order.
func Types() []Type {
	ts := make([]Type, NumTypes)
	for i := range ts {
		ts[i] = Type(i)
	}
	return ts
}

// Valid reports whether t is one of the seven asset types.
func (t Type) Valid() bool { return t < NumTypes }

func (t Type) String() string {
	if t.Valid() {
		return typeNames[t]
	}
	return fmt.Sprintf("type(%d)", uint8(t))
}

// ParseType returns the type whose folder name is s.
func ParseType(s string) (Type, error) {
	for i, n := range typeNames {
		if n == s {
			return Type(i), nil
		}
	}
	return 0, fmt.Errorf("parse type %q: %w", s, ErrInvalidType)
}

func (t Type) MarshalText() ([]byte, error) {
	if !t.Valid() {
		return nil, fmt.Errorf("marshal type %d: %w", uint8(t), ErrInvalidType)
	}
	return []byte(t.String()), nil
}

func (t *Type) UnmarshalText(b []byte) error {
	v, err := ParseType(string(b))
	if err != nil {
		return err
	}
	*t = v
	return nil
}

// ResourceID identifies a resource within one type for the lifetime of a
// server. Ids of different types are independent.
type ResourceID uint32

// Key is a (type, id) pair: what a Bind or Lost is about.
type Key struct {
	Type Type
	ID   ResourceID
}

func (k Key) String() string { return fmt.Sprintf("%s#%d", k.Type, k.ID) }
