package mirror

import (
	"errors"
	"strings"
	"testing"
)

func TestParseBase(t *testing.T) {
	tests := []struct {
		in, want string
		bad      bool
	}{
		{in: "http://127.0.0.1:9000/bucket/prefix/", want: "http://127.0.0.1:9000/bucket/prefix/"},
		{in: "https://cdn.example/game", want: "https://cdn.example/game/"},
		{in: "http://[::1]:8080", want: "http://[::1]:8080/"},
		{in: "ftp://files.example/game/", bad: true},
		{in: "file:///srv/mirror/", bad: true},
		{in: "cdn.example/game/", bad: true},
		{in: "http:///game/", bad: true},
		{in: "http://user:pw@cdn.example/", bad: true},
		{in: "http://cdn.example/game/?sig=1", bad: true},
		{in: "http://cdn.example/game/#x", bad: true},
		{in: "http://cdn.example/" + strings.Repeat("a", 600), bad: true},
		{in: "http://cdn example/", bad: true},
	}
	for _, tc := range tests {
		got, err := ParseBase(tc.in)
		if tc.bad {
			if !errors.Is(err, ErrBadBase) {
				t.Errorf("ParseBase(%q) = %q, %v; want ErrBadBase", tc.in, got, err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParseBase(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}
