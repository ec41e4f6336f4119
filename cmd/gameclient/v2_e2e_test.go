package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/voxsync/voxsync/packets"
)

// freeAddr returns a loopback address nothing listens on now.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func packWith(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, data := range files {
		p := filepath.Join(dir, "assets", "m", "texture", name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// The production workflow: restart the server to change packs. A client
// that stays connected across the restart must end with exactly a fresh
// client's bindings, hear Lost for what is gone, and hear nothing about
// what did not change.
func TestClientFollowsServerRestartWithChangedPacks(t *testing.T) {
	tests := []struct {
		name          string
		before, after map[string]string
		want          []string // m: lines the client prints after the restart, sorted
	}{
		{
			name:   "b unchanged d new a and c gone",
			before: map[string]string{"a.png": "a1", "b.png": "b1", "c.png": "c1"},
			after:  map[string]string{"b.png": "b1", "d.png": "d1"},
			want:   []string{"loaded texture m:d.png (network)", "lost texture m:a.png", "lost texture m:c.png"},
		},
		{
			name:   "file added in the middle of the sort order",
			before: map[string]string{"a.png": "a1", "c.png": "c1", "e.png": "e1"},
			after:  map[string]string{"a.png": "a1", "b.png": "b1", "c.png": "c1", "e.png": "e1"},
			want:   []string{"loaded texture m:b.png (network)"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			addr := freeAddr(t)
			_, srv1 := startServerCmd(t, "-listen", addr, "-packs", packWith(t, tc.before), "-preload", "m:*")
			url := "ws://" + addr + "/ws"

			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			client := exec.CommandContext(ctx, clientBin, "-server", url, "-cache", t.TempDir(), "-json", "-log-level", "error")
			var stdout bytes.Buffer
			client.Stdout = &stdout
			stderr, _ := client.StderrPipe()
			if err := client.Start(); err != nil {
				t.Fatal(err)
			}
			lines := make(chan string, 1000)
			go func() {
				sc := bufio.NewScanner(stderr)
				for sc.Scan() {
					lines <- sc.Text()
				}
				close(lines)
			}()
			next := func(what string) string {
				select {
				case l, ok := <-lines:
					if !ok {
						t.Fatalf("client exited while waiting for %s", what)
					}
					return l
				case <-ctx.Done():
					t.Fatalf("no %s from the client", what)
				}
				return ""
			}
			// Until the client has everything of the first server: its
			// marker for the first Move, and every m: resource loaded.
			loaded := 0
			for complete := false; !complete || loaded < len(tc.before); {
				l := next("first sync")
				complete = complete || strings.HasPrefix(l, "server's bindings complete")
				if strings.HasPrefix(l, "loaded texture m:") {
					loaded++
				}
			}

			srv1.Process.Signal(syscall.SIGTERM)
			srv1.Wait()
			startServerCmd(t, "-listen", addr, "-packs", packWith(t, tc.after), "-preload", "m:*")

			// Everything the client says about m: until the new server's
			// marker, and what follows from it (loads of new content).
			var got []string
			newLoads := 0
			for _, v := range tc.want {
				if strings.HasPrefix(v, "loaded ") {
					newLoads++
				}
			}
			for complete := false; !complete || newLoads > 0; {
				l := next("sync after the restart")
				switch {
				case strings.HasPrefix(l, "server's bindings complete"):
					complete = true
				case strings.Contains(l, " m:"):
					got = append(got, l)
					if strings.HasPrefix(l, "loaded ") {
						newLoads--
					}
				}
			}
			// Anything late would be wrong too: give it a moment to show.
			time.Sleep(300 * time.Millisecond)
			for drained := false; !drained; {
				select {
				case l := <-lines:
					if strings.Contains(l, " m:") {
						got = append(got, l)
					}
				default:
					drained = true
				}
			}
			client.Process.Signal(syscall.SIGTERM)
			for range lines {
			}
			if err := client.Wait(); err != nil {
				t.Fatalf("follow-mode client stopped by SIGTERM: %v (want exit 0)", err)
			}
			slices.Sort(got)
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("after the restart the client printed:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(tc.want, "\n  "))
			}
			var sum result
			if err := json.Unmarshal(stdout.Bytes(), &sum); err != nil {
				t.Fatalf("summary: %v: %q", err, stdout.String())
			}
			fresh := syncOnce(t, url, t.TempDir())
			if sum.Bound != fresh.Bound {
				t.Errorf("reconnected client has %d bindings, a fresh client %d", sum.Bound, fresh.Bound)
			}
		})
	}
}

// runClient runs gameclient -until-synced -json and returns its exit code,
// its summary and its stderr.
func runClient(t *testing.T, args ...string) (int, map[string]any, string) {
	t.Helper()
	cmd := exec.Command(clientBin, append([]string{"-cache", t.TempDir(), "-until-synced", "-json"}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	var sum map[string]any
	if err := json.Unmarshal(stdout.Bytes(), &sum); err != nil {
		t.Fatalf("summary is not JSON: %v: %q (stderr %s)", err, stdout.String(), stderr.String())
	}
	return code, sum, stderr.String()
}

// A server of another protocol version, to check the client's answer.
func otherVersionServer(t *testing.T, version uint16) string {
	up := websocket.Upgrader{}
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer conn.Close()
		conn.ReadMessage()
		// A Welcome of a later version: the version, then fields this
		// client cannot know.
		conn.WriteMessage(websocket.BinaryMessage, append([]byte{byte(packets.TypeWelcome), byte(version), byte(version >> 8)}, "future fields"...))
		conn.ReadMessage()
	}))
	t.Cleanup(hs.Close)
	return "ws" + strings.TrimPrefix(hs.URL, "http") + "/ws"
}

// Errors that retrying cannot fix end the client at once, naming the
// cause; errors that may pass are retried until -timeout, and the final
// message names the last cause. The exit code and the summary's outcome
// say which.
func TestExitCodesNameTheCause(t *testing.T) {
	serverURL := startServer(t)
	tokenURL := startServer(t, "-config", writeConfig(t, `auth_token = "sesame"`))
	web := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("<html>a web page</html>")) }))
	defer web.Close()
	webURL := "ws" + strings.TrimPrefix(web.URL, "http") + "/ws"
	unavailable := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "restarting", http.StatusServiceUnavailable)
	}))
	defer unavailable.Close()
	unavailableURL := "ws" + strings.TrimPrefix(unavailable.URL, "http") + "/ws"
	tests := []struct {
		name    string
		args    []string
		code    int
		outcome string
		says    string
		quick   bool // must end well before -timeout
	}{
		{"synced", []string{"-server", serverURL}, 0, "synced", "", true},
		{"malformed URL", []string{"-server", "127.0.0.1:30000"}, 2, "usage", "invalid server URL", true},
		{"http scheme", []string{"-server", "http://127.0.0.1:30000/ws"}, 2, "usage", "want ws://host:port/ws", true},
		{"positional argument", []string{"-server", serverURL, "stray"}, 2, "", "unexpected argument", true},
		{"wrong path (HTTP 404)", []string{"-server", strings.TrimSuffix(serverURL, "/ws") + "/nope"}, 3, "refused", "HTTP 404", true},
		{"plain web server", []string{"-server", webURL}, 3, "refused", "HTTP 200 OK", true},
		{"wrong token", []string{"-server", tokenURL, "-token", "guess"}, 3, "refused", "auth token refused", true},
		{"no token", []string{"-server", tokenURL}, 3, "refused", "auth token missing: this server wants one; give the client -token", true},
		{"other protocol version", []string{"-server", otherVersionServer(t, 3)}, 3, "refused", "server speaks version 3", true},
		{"nothing listening", []string{"-server", "ws://" + freeAddr(t) + "/ws", "-timeout", "2s"}, 4, "timeout", "connection refused", false},
		{"server answering 503 (retried)", []string{"-server", unavailableURL, "-timeout", "2s"}, 4, "timeout", "503 Service Unavailable", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			cmd := exec.Command(clientBin, append([]string{"-cache", t.TempDir(), "-until-synced", "-json", "-timeout", "30s"}, tc.args...)...)
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			took := time.Since(start)
			code := 0
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				code = ee.ExitCode()
			}
			if code != tc.code {
				t.Fatalf("exit %d, want %d\nstdout %s\nstderr %s", code, tc.code, stdout.String(), stderr.String())
			}
			if !strings.Contains(stderr.String(), tc.says) {
				t.Errorf("stderr does not say %q:\n%s", tc.says, stderr.String())
			}
			if tc.outcome != "" {
				var sum map[string]any
				if err := json.Unmarshal(stdout.Bytes(), &sum); err != nil {
					t.Fatalf("summary: %v: %q", err, stdout.String())
				}
				if sum["outcome"] != tc.outcome || sum["synced"] != (tc.code == 0) {
					t.Errorf("summary outcome %v synced %v, want %s and %v", sum["outcome"], sum["synced"], tc.outcome, tc.code == 0)
				}
			}
			if tc.quick && took > 10*time.Second {
				t.Errorf("took %s: an error retrying cannot fix must end the client at once", took)
			}
		})
	}
}

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "server.toml")
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// -until-synced stopped by a signal exits non-zero and says so; the last
// resource failing ends the run at once with exit 1.
func TestInterruptedAndFailedExits(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
		t.Run(sig.String(), func(t *testing.T) {
			cmd := exec.Command(clientBin, "-cache", t.TempDir(), "-until-synced", "-json", "-server", "ws://"+freeAddr(t)+"/ws")
			var stdout bytes.Buffer
			cmd.Stdout = &stdout
			stderr, _ := cmd.StderrPipe()
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			// Signal once it is retrying: its signal handler is installed
			// by then, so the signal tests the client, not the runtime.
			sc := bufio.NewScanner(stderr)
			for sc.Scan() && !strings.Contains(sc.Text(), "reconnecting") {
			}
			go io.Copy(io.Discard, stderr)
			cmd.Process.Signal(sig)
			err := cmd.Wait()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 128+int(sig) {
				t.Fatalf("exit after %s: %v, want %d", sig, err, 128+int(sig))
			}
			var sum map[string]any
			json.Unmarshal(stdout.Bytes(), &sum)
			if sum["outcome"] != "interrupted" || sum["synced"] != false {
				t.Fatalf("summary %s", stdout.String())
			}
		})
	}

	t.Run("last resource fails", func(t *testing.T) {
		// A file larger than memory_max is read from disk when sent; one
		// that changed on disk after loading can never be served as bound.
		pack := t.TempDir()
		p := filepath.Join(pack, "assets", "m", "sound", "big.ogg")
		os.MkdirAll(filepath.Dir(p), 0o755)
		os.WriteFile(p, bytes.Repeat([]byte("a"), 200_000), 0o644)
		url := startServer(t, "-packs", pack, "-preload", "m:*")
		os.WriteFile(p, bytes.Repeat([]byte("b"), 200_000), 0o644)
		start := time.Now()
		code, sum, stderr := runClient(t, "-server", url, "-timeout", "60s")
		if code != 1 || sum["outcome"] != "failed" || sum["failed"] != 1.0 {
			t.Fatalf("exit %d, summary %v\n%s", code, sum, stderr)
		}
		if !strings.Contains(stderr, "FAILED sound m:big.ogg") {
			t.Errorf("stderr does not name the failed resource:\n%s", stderr)
		}
		if took := time.Since(start); took > 20*time.Second {
			t.Errorf("took %s after the failure to exit", took)
		}
	})
}

// A cold sync of more resources than the server's max pending (1,024) and
// the cache's write queue (1,024 operations) holds at once: the client keeps
// within the limit (one session, no 'limit exceeded') and the cache's
// callbacks never wait on the cache's own full queue (they once did, and
// the client hung).
func TestColdSyncPastThePendingLimit(t *testing.T) {
	pack := t.TempDir()
	for i := range 3000 {
		p := filepath.Join(pack, "assets", "many", "texture", fmt.Sprintf("d%02d", i%30), fmt.Sprintf("f%04d.png", i))
		os.MkdirAll(filepath.Dir(p), 0o755)
		b := make([]byte, 200+(i*37)%3000)
		for j := range b {
			b[j] = byte(i*7 + j)
		}
		os.WriteFile(p, b, 0o644)
	}
	url := startServer(t, "-packs", pack, "-preload", "many:*")
	for range 3 {
		cmd := exec.Command(clientBin, "-server", url, "-cache", t.TempDir(), "-until-synced", "-json", "-timeout", "60s")
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		done := make(chan error, 1)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("gameclient: %v\n%s", err, stderr.String())
			}
		case <-time.After(90 * time.Second):
			cmd.Process.Kill()
			t.Fatalf("gameclient hung\n%s", stderr.String())
		}
		var r result
		json.Unmarshal(stdout.Bytes(), &r)
		var sum map[string]any
		json.Unmarshal(stdout.Bytes(), &sum)
		if r.Bound < 3000 || r.Loaded != r.Bound || sum["sessions"] != 1.0 {
			t.Fatalf("summary %s\n%s", stdout.String(), stderr.String())
		}
	}
}
