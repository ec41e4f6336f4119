package main

import (
	"os/exec"
	"strings"
	"testing"
)

// make run and make run-client take the overrides the README lists.
func TestMakeRunTakesOverrides(t *testing.T) {
	mk := requireTool(t, "make", "make")
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"run defaults", []string{"run"}, "bin/gameserver -listen 127.0.0.1:30000 -admin-listen 127.0.0.1:30001"},
		{"run overrides", []string{"run", "PORT=31000", "ADMIN_PORT=31001", "PACKS=a,b", "ARGS=-hot-reload"},
			"bin/gameserver -listen 127.0.0.1:31000 -admin-listen 127.0.0.1:31001 -packs a,b -hot-reload"},
		{"run-client defaults", []string{"run-client"}, "bin/gameclient -server ws://127.0.0.1:30000/ws -cache Cache -until-synced"},
		{"run-client overrides", []string{"run-client", "HOST=10.0.0.5", "PORT=31000", "CACHE=/tmp/c", "PACKS=mine", "ARGS=-json"},
			"bin/gameclient -server ws://10.0.0.5:31000/ws -cache /tmp/c -until-synced -packs mine -json"},
	}
	for _, tc := range tests {
		out, err := exec.Command(mk, append([]string{"-n", "--no-print-directory", "-C", "../.."}, tc.args...)...).Output()
		if err != nil {
			t.Fatalf("%s: make -n: %v", tc.name, err)
		}
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		if got := strings.TrimSpace(lines[len(lines)-1]); got != tc.want {
			t.Errorf("%s: make %v runs\n%q, want\n%q", tc.name, tc.args, got, tc.want)
		}
	}
}
