package buildinfo

import (
	"strings"
	"testing"
)

func TestStringNamesBinaryAndProtocol(t *testing.T) {
	got := String("gameserver")
	for _, want := range []string{"gameserver ", " protocol 2"} {
		if !strings.Contains(got, want) {
			t.Errorf("String() = %q, want it to contain %q", got, want)
		}
	}
}
