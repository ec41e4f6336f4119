package main

import (
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// runServer runs gameserver to completion (for commands that exit at once)
// and returns its exit code, stdout and stderr.
func runServer(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.Command(serverBin, args...)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, stdout.String(), stderr.String()
	case errors.As(err, &ee):
		return ee.ExitCode(), stdout.String(), stderr.String()
	}
	t.Fatal(err)
	return 0, "", ""
}

// A new user who mistypes a path or a setting is told at once, with every
// mistake, where it is, and what was probably meant.
func TestServerRefusesBadConfigurationAtOnce(t *testing.T) {
	root := t.TempDir()
	pack := filepath.Join(root, "mypack")
	os.MkdirAll(filepath.Join(pack, "assets", "m", "texture"), 0o755)
	os.WriteFile(filepath.Join(pack, "assets", "m", "texture", "a.png"), []byte("a"), 0o644)
	badPack := filepath.Join(root, "badpack")
	os.MkdirAll(filepath.Join(badPack, "assets"), 0o755)
	os.WriteFile(filepath.Join(badPack, "pack.toml"), []byte("name = \"bad\"\npriorty = 2\n"), 0o644)
	world := filepath.Join(root, "world.toml")
	os.WriteFile(world, []byte("region_size = 16\nnodes_per_region = 1\n[[node]]\nname = \"x\"\nwieght = 1\n"), 0o644)
	config := writeConfig(t, "chunk_sise = 4096\nmax_clients = 0\npacks = [\""+filepath.Join(root, "mypak")+"\"]\n")
	packsFirst := writeConfig(t, "packs = [\""+filepath.Join(root, "mypak")+"\"]\nhot_reloda = true\n")

	tests := []struct {
		name string
		args []string
		code int
		want []string // lines of stderr, in order
	}{
		{"typo in a pack path", []string{"-packs", filepath.Join(root, "mypak")}, 1, []string{
			"gameserver: flag -packs: packs: " + filepath.Join(root, "mypak") + ": pack directory does not exist"}},
		{"assets/ given for the pack", []string{"-packs", filepath.Join(pack, "assets")}, 1, []string{
			"gameserver: flag -packs: packs: " + filepath.Join(pack, "assets") + ": no assets/ directory in it; a pack is a directory holding assets/<domain>/<type>/<key>; this looks like a pack's assets/ itself: did you mean " + pack + "?"}},
		{"unknown key in pack.toml", []string{"-packs", badPack}, 1, []string{
			"gameserver: " + filepath.Join(badPack, "pack.toml") + ":2: priorty: unknown setting; did you mean priority?"}},
		{"every problem of a file at once", []string{"-config", config}, 1, []string{
			"gameserver: 3 configuration problems:",
			"  " + config + ":1: chunk_sise: unknown setting; did you mean chunk_size?",
			"  " + config + ":2: max_clients: 0 must be positive",
			"  " + config + ":3: packs: " + filepath.Join(root, "mypak") + ": pack directory does not exist"}},
		{"problems in the order of the file's lines", []string{"-config", packsFirst}, 1, []string{
			"gameserver: 2 configuration problems:",
			"  " + packsFirst + ":1: packs: " + filepath.Join(root, "mypak") + ": pack directory does not exist",
			"  " + packsFirst + ":2: hot_reloda: unknown setting; did you mean hot_reload?"}},
		{"a pack listed twice", []string{"-packs", pack + "," + pack + "/"}, 1, []string{
			"gameserver: flag -packs: packs: " + pack + "/: listed twice (also as " + pack + ")"}},
		{"a port without a host", []string{"-listen", "39290"}, 1, []string{
			`gameserver: flag -listen: listen: "39290" has no port; want host:port, e.g. 127.0.0.1:39290 (this machine only) or :39290 (every interface)`}},
		{"an unknown log level", []string{"-log-level", "verbose"}, 2, []string{
			"gameserver: -log-level verbose: want debug, info, warn or error"}},
		{"typo in the world file", []string{"-world", world}, 1, []string{
			"gameserver: " + world + ":5: node.wieght: unknown setting; did you mean weight?"}},
		{"a stray argument", []string{"-packs", pack, "extra"}, 2, []string{
			`gameserver: unexpected argument "extra"; every setting is a flag or in the -config file (see -help)`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, _, stderr := runServer(t, tc.args...)
			if code != tc.code {
				t.Errorf("exit %d, want %d", code, tc.code)
			}
			if got := strings.Split(strings.TrimSpace(stderr), "\n"); strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("stderr:\n%s\nwant:\n%s", stderr, strings.Join(tc.want, "\n"))
			}
		})
	}
}

func TestServerCheckConfigAndVersion(t *testing.T) {
	code, stdout, stderr := runServer(t, "-check-config", "-listen", "127.0.0.1:4567", "-world", "none")
	if code != 0 || !strings.Contains(stdout, `listen = "127.0.0.1:4567"`) || !strings.Contains(stdout, `world = "none"`) ||
		!strings.Contains(stdout, `chunk_size = 65536`) || !strings.Contains(stderr, "configuration OK") {
		t.Errorf("-check-config: exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	for _, bin := range []string{serverBin, clientBin} {
		out, err := exec.Command(bin, "-version").Output()
		name := filepath.Base(bin)
		if err != nil || !strings.HasPrefix(string(out), name+" ") || !strings.Contains(string(out), "protocol 2") {
			t.Errorf("%s -version: %v: %q", name, err, out)
		}
	}
}

// -check-config output ends up in CI logs: the auth token is not in it,
// and the rest of the configuration still is.
func TestServerCheckConfigHidesTheToken(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "server.toml")
	if err := os.WriteFile(cfg, []byte("auth_token = \"hunter2-very-secret\"\nworld = \"none\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := runServer(t, "-config", cfg, "-check-config")
	if code != 0 || strings.Contains(stdout+stderr, "hunter2") || !strings.Contains(stdout, "# auth_token is set; not shown (") ||
		!strings.Contains(stdout, `world = "none"`) {
		t.Errorf("-check-config: exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	// Without a token there is nothing to hide, and the setting reads as unset.
	code, stdout, _ = runServer(t, "-check-config", "-world", "none")
	if code != 0 || !strings.Contains(stdout, `auth_token = ""`) {
		t.Errorf("-check-config without a token: exit %d\nstdout:\n%s", code, stdout)
	}
}

func TestServerDebugListenTakenIsAnError(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	code, _, stderr := runServer(t, "-listen", "127.0.0.1:0", "-admin-listen", "none", "-debug-listen", ln.Addr().String())
	if code != 1 || !strings.Contains(stderr, "gameserver: listen on "+ln.Addr().String()+" (flag -debug-listen): ") {
		t.Errorf("exit %d, stderr %q", code, stderr)
	}
}

// Without world content the server says nothing about it; with the demo
// world but without the built-in pack it says so once, with the fix.
func TestServerWorldNoneLogsNoWarnings(t *testing.T) {
	pack := filepath.Join(t.TempDir(), "p")
	os.MkdirAll(filepath.Join(pack, "assets", "m", "texture"), 0o755)
	os.WriteFile(filepath.Join(pack, "assets", "m", "texture", "a.png"), []byte("a"), 0o644)
	tests := []struct {
		name  string
		world string
		warns int
	}{
		{"world none", `world = "none"`, 0},
		{"demo world without its pack", ``, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			config := writeConfig(t, "builtin_pack = false\npacks = [\""+pack+"\"]\n"+tc.world+"\n")
			_, _, log := startServerLog(t, "-config", config)
			if got := strings.Count(log(), "level=WARN"); got != tc.warns {
				t.Errorf("%d warnings, want %d:\n%s", got, tc.warns, log())
			}
		})
	}
}
