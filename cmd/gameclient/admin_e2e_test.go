package main

import (
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The operator's endpoints are on the admin listener and not on the game
// port, and the real promtool accepts the live /metrics after a sync.
func TestAdminListenerServesMetricsThatPromtoolAccepts(t *testing.T) {
	promtool := requireTool(t, "promtool", "prometheus")
	url, admin, _ := startServerAdmin(t)
	syncOnce(t, url, t.TempDir())
	game := "http" + strings.TrimSuffix(strings.TrimPrefix(url, "ws"), "/ws")

	tests := []struct {
		name     string
		url      string
		wantCode int
		wantBody string
	}{
		{"game port has no metrics", game + "/metrics", http.StatusNotFound, ""},
		{"healthz", admin + "/healthz", http.StatusOK, "ok"},
		{"readyz", admin + "/readyz", http.StatusOK, "ready: "},
		{"metrics", admin + "/metrics", http.StatusOK, "voxsync_server_sessions_total 1"},
	}
	for _, tc := range tests {
		code, body := httpGet(t, tc.url)
		if code != tc.wantCode || !strings.Contains(body, tc.wantBody) {
			t.Errorf("%s: GET %s: %d, want %d with %q", tc.name, tc.url, code, tc.wantCode, tc.wantBody)
		}
	}

	_, body := httpGet(t, admin+"/metrics")
	for _, want := range []string{"go_goroutines", "process_cpu_seconds_total", "voxsync_server_stream_duration_seconds_bucket",
		`voxsync_server_hashes_served_total{source="disk"}`, `voxsync_server_pack_reloads_total{outcome="applied"}`} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(body)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("promtool check metrics: %v\n%s", err, out)
	}
}

func httpGet(t testing.TB, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// requireTool finds a command a test needs. `make test` installs it (the
// Debian package pkg); run otherwise, a missing tool skips the test with a
// message, but under CI=true it fails it, so CI never passes without it.
func requireTool(t *testing.T, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s not found (Debian package %s; `make test` installs it): %v", name, pkg, err)
	}
	t.Skipf("%s not found; install the Debian package %s, or run `make test`", name, pkg)
	return ""
}

// A hot reload that takes a pack out of service (here: its pack.toml
// broken while the server runs) is counted as partial and shown on the
// status page with the reason.
func TestPartialHotReloadIsCountedAndShown(t *testing.T) {
	pack := filepath.Join(t.TempDir(), "p")
	os.MkdirAll(filepath.Join(pack, "assets", "m", "texture"), 0o755)
	os.WriteFile(filepath.Join(pack, "assets", "m", "texture", "a.png"), []byte("a"), 0o644)
	_, admin, _ := startServerAdmin(t, "-packs", pack, "-hot-reload")

	os.WriteFile(filepath.Join(pack, "pack.toml"), []byte("priority = = 3\n"), 0o644)
	waitStatus(t, admin, func(s statusJSON) bool { return len(s.Reloads) == 1 })
	_, body := httpGet(t, admin+"/status.json")
	if !strings.Contains(body, `"outcome": "partial"`) || !strings.Contains(body, filepath.Join(pack, "pack.toml")) {
		t.Errorf("/status.json does not show the partial reload and its cause:\n%s", body)
	}
	_, metrics := httpGet(t, admin+"/metrics")
	for _, want := range []string{`voxsync_server_pack_reloads_total{outcome="partial"} 1`, `voxsync_server_pack_reloads_total{outcome="applied"} 0`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}
