package resources

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func TestTypeRoundTrip(t *testing.T) {
	want := []string{"nodestate", "particle", "animation", "model", "texture", "sound", "font"}
	for i, name := range want {
		typ := Type(i)
		if got := typ.String(); got != name {
			t.Errorf("Type(%d).String() = %q, want %q", i, got, name)
		}
		p, err := ParseType(name)
		if err != nil || p != typ {
			t.Errorf("ParseType(%q) = %v, %v; want %v", name, p, err, typ)
		}
	}
	for _, bad := range []string{"", "Texture", "textures", "blob"} {
		if _, err := ParseType(bad); !errors.Is(err, ErrInvalidType) {
			t.Errorf("ParseType(%q) err = %v, want ErrInvalidType", bad, err)
		}
	}
	if Type(NumTypes).Valid() {
		t.Error("Type(NumTypes).Valid() = true")
	}
	if _, err := Type(200).MarshalText(); !errors.Is(err, ErrInvalidType) {
		t.Errorf("MarshalText of invalid type: err = %v", err)
	}
}

func TestHashParse(t *testing.T) {
	h := Sum([]byte("stone"))
	tests := []struct {
		name    string
		in      string
		want    Hash
		wantErr bool
	}{
		{"lower", h.String(), h, false},
		{"upper", strings.ToUpper(h.String()), h, false},
		{"short", h.String()[:63], Hash{}, true},
		{"long", h.String() + "0", Hash{}, true},
		{"non-hex", "zz" + h.String()[2:], Hash{}, true},
		{"empty", "", Hash{}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseHash(tc.in)
			if tc.wantErr {
				if !errors.Is(err, ErrInvalidHash) {
					t.Fatalf("err = %v, want ErrInvalidHash", err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %v, %v; want %v", got, err, tc.want)
			}
		})
	}
}

func TestHashTextAndMapKey(t *testing.T) {
	a, b := Sum([]byte("a")), Sum([]byte("b"))
	m := map[Hash]string{a: "a", b: "b"}
	data, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	var back map[Hash]string
	if err := json.Unmarshal(data, &back); err != nil {
		t.Fatal(err)
	}
	if back[a] != "a" || back[b] != "b" || len(back) != 2 {
		t.Fatalf("round trip through JSON map keys: %v", back)
	}
	if a.Short() != a.String()[:12] {
		t.Errorf("Short = %q", a.Short())
	}
	if !(Hash{}).IsZero() || a.IsZero() {
		t.Error("IsZero wrong")
	}
	// SHA-256 of the empty string, a well-known vector.
	if got := Sum(nil).String(); got != "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" {
		t.Errorf("Sum(nil) = %s", got)
	}
}

func TestParseRef(t *testing.T) {
	long := strings.Repeat("a", MaxKeyLen)
	tests := []struct {
		in      string
		want    Ref
		wantErr bool
	}{
		{"default:stone.png", Ref{"default", "stone.png"}, false},
		{"my_mod-2.x:blocks/ore/iron.png", Ref{"my_mod-2.x", "blocks/ore/iron.png"}, false},
		{"d:" + long, Ref{"d", long}, false},
		{"d:" + long + "a", Ref{}, true},
		{strings.Repeat("a", 64) + ":k", Ref{strings.Repeat("a", 64), "k"}, false},
		{strings.Repeat("a", 65) + ":k", Ref{}, true},
		{"nocolon", Ref{}, true},
		{":key", Ref{}, true},
		{"Default:key", Ref{}, true},
		{"dom ain:key", Ref{}, true},
		{"d:", Ref{}, true},
		{"d:.", Ref{}, true},
		{"d:../etc/passwd", Ref{}, true},
		{"d:a/../b", Ref{}, true},
		{"d:a/..", Ref{}, true},
		{"d:/abs", Ref{}, true},
		{"d:a//b", Ref{}, true},
		{"d:a/./b", Ref{}, true},
		{"d:a/", Ref{}, true},
		{"d:a\\b", Ref{}, true},
		{"d:a\x00b", Ref{}, true},
		{"d:..hidden", Ref{"d", "..hidden"}, false}, // a name starting with dots is not ".."
		{"d:k:with:colons", Ref{"d", "k:with:colons"}, false},
		{"d:caf\u00e9.png", Ref{"d", "caf\u00e9.png"}, false}, // NFC é
		{"d:\u6728\u6750/\u77f3.png", Ref{"d", "\u6728\u6750/\u77f3.png"}, false},
		{"d:cafe\u0301.png", Ref{}, true},       // NFD: e + combining acute
		{"d:caf\xe9.png", Ref{}, true},          // Latin-1 byte: not UTF-8
		{"d:a\tb", Ref{}, true},                 // control character
		{"d:a\u0085b", Ref{}, true},             // C1 control
		{"d:a\x7fb", Ref{}, true},               // DEL
		{"d:invoice\u202egnp.exe", Ref{}, true}, // right-to-left override
		{"d:a\u2066b", Ref{}, true},             // isolate
	}
	for _, tc := range tests {
		got, err := ParseRef(tc.in)
		if tc.wantErr {
			if !errors.Is(err, ErrInvalidRef) {
				t.Errorf("ParseRef(%q) = %v, %v; want ErrInvalidRef", tc.in, got, err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParseRef(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
		if got.String() != tc.in {
			t.Errorf("String() = %q, want %q", got.String(), tc.in)
		}
	}
}

func TestUses(t *testing.T) {
	u := NewUses()
	type step struct {
		op        string // "use" or "release"
		key       Key
		wantEdge  bool
		wantErrIs error
	}
	stone := Key{TypeTexture, 1}
	dirt := Key{TypeTexture, 2}
	sound := Key{TypeSound, 1} // same id, other type: independent
	steps := []step{
		{"use", stone, true, nil},
		{"use", stone, false, nil},
		{"use", sound, true, nil},
		{"release", dirt, false, ErrNotInUse},
		{"release", stone, false, nil},
		{"release", stone, true, nil},
		{"release", stone, false, ErrNotInUse},
		{"use", stone, true, nil},
		{"use", Key{Type(9), 1}, false, ErrInvalidType},
		{"release", Key{Type(9), 1}, false, ErrInvalidType},
	}
	for i, s := range steps {
		var edge bool
		var err error
		if s.op == "use" {
			edge, err = u.Use(s.key.Type, s.key.ID)
		} else {
			edge, err = u.Release(s.key.Type, s.key.ID)
		}
		if s.wantErrIs != nil {
			if !errors.Is(err, s.wantErrIs) {
				t.Fatalf("step %d %s %v: err = %v, want %v", i, s.op, s.key, err, s.wantErrIs)
			}
			continue
		}
		if err != nil || edge != s.wantEdge {
			t.Fatalf("step %d %s %v: edge=%v err=%v, want edge=%v", i, s.op, s.key, edge, err, s.wantEdge)
		}
	}
	if u.Count(TypeTexture, 1) != 1 || u.Count(TypeSound, 1) != 1 || u.InUse(TypeTexture, 2) {
		t.Fatalf("counts wrong: stone=%d sound=%d", u.Count(TypeTexture, 1), u.Count(TypeSound, 1))
	}
	if u.Len() != 2 {
		t.Fatalf("Len = %d, want 2", u.Len())
	}
	seen := map[Key]bool{}
	u.Each(func(k Key) { seen[k] = true })
	if !seen[stone] || !seen[sound] || len(seen) != 2 {
		t.Fatalf("Each saw %v", seen)
	}
}

func TestParseLoc(t *testing.T) {
	l, err := ParseLoc("texture/default:blocks/stone.png")
	if err != nil || l.Type != TypeTexture || l.Ref != (Ref{"default", "blocks/stone.png"}) {
		t.Fatalf("ParseLoc = %v, %v", l, err)
	}
	if l.String() != "texture/default:blocks/stone.png" {
		t.Fatalf("String = %q", l)
	}
	for _, bad := range []string{"default:stone.png", "textures/default:x", "texture/default:../x", "texture/"} {
		if _, err := ParseLoc(bad); err == nil {
			t.Errorf("ParseLoc(%q) accepted", bad)
		}
	}
}

func TestPattern(t *testing.T) {
	stone := Loc{TypeTexture, Ref{"default", "blocks/stone.png"}}
	dig := Loc{TypeSound, Ref{"default", "dig.ogg"}}
	modTex := Loc{TypeTexture, Ref{"mymod", "ui/icon.png"}}
	tests := []struct {
		pattern string
		want    [3]bool // stone, dig, modTex
	}{
		{"*", [3]bool{true, true, true}},
		{"texture/*", [3]bool{true, false, true}},
		{"default:*", [3]bool{true, true, false}},
		{"texture/default:*", [3]bool{true, false, false}},
		{"default:blocks/*", [3]bool{true, false, false}},
		{"*:*", [3]bool{}}, // "*" is not a valid domain: rejected below
		{"mymod:*.png", [3]bool{false, false, true}},
		{"default:*.ogg", [3]bool{false, true, false}},
		{"texture/mymod:ui/icon.png", [3]bool{false, false, true}},
		{"sound/default:d*g.o*", [3]bool{false, true, false}},
	}
	for _, tc := range tests {
		p, err := ParsePattern(tc.pattern)
		if tc.pattern == "*:*" {
			if err == nil {
				t.Errorf("ParsePattern(%q) accepted an invalid domain", tc.pattern)
			}
			continue
		}
		if err != nil {
			t.Fatalf("ParsePattern(%q): %v", tc.pattern, err)
		}
		got := [3]bool{p.Match(stone), p.Match(dig), p.Match(modTex)}
		if got != tc.want {
			t.Errorf("%q matches %v, want %v", tc.pattern, got, tc.want)
		}
	}
	for _, bad := range []string{"", "textures/*", "default", "default:", "Bad:*"} {
		if _, err := ParsePattern(bad); err == nil {
			t.Errorf("ParsePattern(%q) accepted", bad)
		}
	}
	if globMatch("a*b*c*d*e*f*g*h*z", strings.Repeat("a", 5000)) {
		t.Error("pathological glob matched")
	}
}

// A Loc is its text form in JSON, both ways; bad text is an error.
func TestLocJSON(t *testing.T) {
	l := Loc{Type: TypeTexture, Ref: Ref{Domain: "default", Key: "blocks/stone.png"}}
	b, err := json.Marshal([]Loc{l})
	if err != nil || string(b) != `["texture/default:blocks/stone.png"]` {
		t.Fatalf("marshal: %s, %v", b, err)
	}
	var back []Loc
	if err := json.Unmarshal(b, &back); err != nil || len(back) != 1 || back[0] != l {
		t.Fatalf("unmarshal: %v, %v", back, err)
	}
	if err := json.Unmarshal([]byte(`["stone.png"]`), &back); err == nil {
		t.Fatal("a name without type and domain was accepted")
	}
}
