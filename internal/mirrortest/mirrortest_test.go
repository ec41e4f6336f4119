package mirrortest

import (
	"context"
	"io"
	"net/http"
	"net/http/httptrace"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// nginx serves the directory's files byte for byte over kept-alive
// connections, 404s what is not there, and is gone after Kill.
func TestNginxServesTheDirectoryUntilKilled(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "objects", "ab"), 0o755)
	want := strings.Repeat("voxel ", 100000) // 600 KB: sent with sendfile
	os.WriteFile(filepath.Join(dir, "objects", "ab", "abc"), []byte(want), 0o644)
	os.WriteFile(filepath.Join(dir, "voxsync-mirror.json"), []byte(`{"layout":1}`), 0o644)
	srv := StartNginx(t, dir)
	if !strings.HasPrefix(srv.URL, "http://127.0.0.1:") || !strings.HasSuffix(srv.URL, "/") {
		t.Fatalf("URL %q, want http://127.0.0.1:PORT/", srv.URL)
	}

	reused := 0
	tests := []struct {
		name, path, body, ctype string
		code                    int
	}{
		{"object", "objects/ab/abc", want, "application/octet-stream", 200},
		{"layout file", "voxsync-mirror.json", `{"layout":1}`, "application/json", 200},
		{"missing", "objects/cd/cde", "", "", 404},
		{"object again", "objects/ab/abc", want, "application/octet-stream", 200},
	}
	for _, tc := range tests {
		trace := &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) {
			if i.Reused {
				reused++
			}
		}}
		req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), "GET", srv.URL+tc.path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.code || (tc.code == 200 && (string(body) != tc.body || resp.Header.Get("Content-Type") != tc.ctype)) {
			t.Errorf("%s: GET %s: %d %q, %d bytes; want %d %q, %d bytes", tc.name, tc.path, resp.StatusCode,
				resp.Header.Get("Content-Type"), len(body), tc.code, tc.ctype, len(tc.body))
		}
	}
	if reused < len(tests)-1 {
		t.Errorf("%d of %d requests reused a connection: keep-alive is off", reused, len(tests))
	}

	srv.Kill()
	if resp, err := http.Get(srv.URL + "voxsync-mirror.json"); err == nil {
		resp.Body.Close()
		t.Fatalf("killed nginx still answers: %s", resp.Status)
	}
	srv.Kill() // and again, as cleanup will
}

// MinIO answers its health check and S3 requests (here: an anonymous
// bucket listing is refused, as S3 refuses it), and is gone after Kill.
func TestMinIOAnswersUntilKilled(t *testing.T) {
	srv := StartMinIOServer(t)
	resp, err := http.Get(srv.URL + "/minio/health/live")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("health: %v %v", resp, err)
	}
	resp.Body.Close()
	resp, err = http.Get(srv.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 403 || !strings.Contains(string(body), "AccessDenied") {
		t.Errorf("anonymous ListBuckets: %s %s, want 403 AccessDenied", resp.Status, body)
	}
	srv.Kill()
	if _, err := http.Get(srv.URL + "/minio/health/live"); err == nil {
		t.Fatal("killed MinIO still answers")
	}
}

// `make tools` builds the MinIO version the skip message names.
func TestMakefilePinsTheSameMinIO(t *testing.T) {
	mk, err := os.ReadFile("../../Makefile")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(mk), "MINIO_VERSION := "+MinIOVersion+"\n") {
		t.Errorf("the Makefile's MINIO_VERSION is not %s", MinIOVersion)
	}
}
