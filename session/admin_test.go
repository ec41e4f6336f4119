package session

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

// The game port serves the WebSocket only; the admin listener serves the
// operator's endpoints.
func TestAdminEndpointsAreOffTheGamePort(t *testing.T) {
	ts := startServer(t, serverSetup{})
	tests := []struct {
		name     string
		base     string
		path     string
		wantCode int
		wantBody string
	}{
		{"metrics not on game port", ts.http.URL, "/metrics", http.StatusNotFound, ""},
		{"status not on game port", ts.http.URL, "/status", http.StatusNotFound, ""},
		{"metrics", ts.admin.URL, "/metrics", http.StatusOK, "voxsync_server_resources "},
		{"healthz", ts.admin.URL, "/healthz", http.StatusOK, "ok"},
		{"readyz", ts.admin.URL, "/readyz", http.StatusOK, "ready: "},
		{"no websocket on admin", ts.admin.URL, "/ws", http.StatusNotFound, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, body := get(t, tc.base+tc.path)
			if code != tc.wantCode || !strings.Contains(body, tc.wantBody) {
				t.Errorf("GET %s: %d %q, want %d containing %q", tc.path, code, firstLine(body), tc.wantCode, tc.wantBody)
			}
		})
	}
	ts.Server.Close()
	if code, body := get(t, ts.admin.URL+"/readyz"); code != http.StatusServiceUnavailable {
		t.Errorf("readyz after Close: %d %q, want 503", code, body)
	}
}

func get(t *testing.T, url string) (int, string) {
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

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return s
}
