package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/voxsync/voxsync/internal/mirrortest"
)

// mirrorResult is the part of the JSON summary about sources.
type mirrorResult struct {
	chunkResult
	BytesFromMirrors int64 `json:"bytes_from_mirrors"`
	BytesInBand      int64 `json:"bytes_in_band"`
	MirrorObjects    int   `json:"mirror_objects"`
	Mirrors          []struct {
		URL      string `json:"url"`
		Objects  int    `json:"objects"`
		NotFound int    `json:"not_found"`
		Failures int    `json:"failures"`
		Demoted  bool   `json:"demoted"`
	} `json:"mirrors"`
}

// syncMirrored runs gameclient -until-synced -json and returns its summary
// and what it logged; it fails the test unless everything was loaded.
func syncMirrored(t testing.TB, url, cache string, extra ...string) (mirrorResult, string) {
	t.Helper()
	r, logged, err := runMirrored(url, cache, extra...)
	if err != nil {
		t.Fatal(err)
	}
	return r, logged
}

// runMirrored is syncMirrored for any goroutine.
func runMirrored(url, cache string, extra ...string) (mirrorResult, string, error) {
	args := append([]string{"-server", url, "-cache", cache, "-until-synced", "-json", "-timeout", "120s"}, extra...)
	cmd := exec.Command(clientBin, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	var r mirrorResult
	if err := cmd.Run(); err != nil {
		return r, stderr.String(), fmt.Errorf("gameclient: %v\nstdout: %s\nstderr: %s", err, stdout.String(), stderr.String())
	}
	if err := json.Unmarshal(stdout.Bytes(), &r); err != nil {
		return r, stderr.String(), fmt.Errorf("summary is not JSON: %v: %q", err, stdout.String())
	}
	if !r.Synced || r.Loaded != r.Bound || r.Failed != 0 {
		return r, stderr.String(), fmt.Errorf("not synced: %+v\nstderr: %s", r, stderr.String())
	}
	return r, stderr.String(), nil
}

// publishTo runs `gameserver publish` and returns its JSON summary.
func publishTo(t testing.TB, env []string, args ...string) map[string]any {
	t.Helper()
	cmd := exec.Command(serverBin, append([]string{"publish"}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("gameserver publish %v: %v\n%s%s", args, err, stdout.String(), stderr.String())
	}
	var sum map[string]any
	if err := json.Unmarshal(stdout.Bytes(), &sum); err != nil {
		t.Fatalf("publish summary is not JSON: %v: %q", err, stdout.String())
	}
	return sum
}

// mirrorConfig writes a server config naming mirrors.
func mirrorConfig(t testing.TB, pack string, mirrors ...string) string {
	t.Helper()
	q := make([]string, len(mirrors))
	for i, m := range mirrors {
		q[i] = strconv.Quote(m)
	}
	p := filepath.Join(t.TempDir(), "server.toml")
	body := fmt.Sprintf("packs = [%q]\nbuiltin_pack = false\nmirrors = [%s]\n", pack, strings.Join(q, ", "))
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// metric reads one of the server's counters from its admin listener.
func metric(t testing.TB, admin, name string) int64 {
	t.Helper()
	_, body := httpGet(t, admin+"/metrics")
	m := regexp.MustCompile(`(?m)^` + name + ` (\S+)$`).FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no %s in metrics", name)
	}
	f, _ := strconv.ParseFloat(m[1], 64)
	return int64(f)
}

// The whole path as an operator sets it up: publish the packs to a
// directory, serve it with a real nginx, name it in the server's mirrors.
// Players then get everything from nginx, verified; when nginx dies, from
// the game server, with no error shown.
func TestPublishedNginxMirror(t *testing.T) {
	pack, total := makePack(t)
	pub := t.TempDir()
	sum := publishTo(t, nil, "-packs", pack, "-to", pub)
	if sum["uploaded"].(float64) == 0 {
		t.Fatalf("publish uploaded nothing: %v", sum)
	}
	ngx := mirrortest.StartNginx(t, pub)
	url, admin, _ := startServerAdmin(t, "-config", mirrorConfig(t, pack, ngx.URL))

	r, logged := syncMirrored(t, url, t.TempDir())
	if r.BytesFromMirrors != total || r.BytesInBand != 0 || r.WireBytes != total || len(r.Mirrors) != 1 || r.Mirrors[0].Objects == 0 {
		t.Fatalf("from mirrors %d of %d, in band %d: %+v", r.BytesFromMirrors, total, r.BytesInBand, r)
	}
	if strings.Contains(logged, "level=WARN") || strings.Contains(logged, "level=ERROR") {
		t.Errorf("a healthy mirror logged warnings:\n%s", logged)
	}
	if sent := metric(t, admin, "voxsync_server_payload_bytes_sent_total"); sent != 0 {
		t.Errorf("server sent %d payload bytes; nginx had everything", sent)
	}
	if got := metric(t, admin, "voxsync_server_mirror_bytes_total"); got != total {
		t.Errorf("server's mirror_bytes_total = %d, want %d (the client's report)", got, total)
	}

	// nginx gone: a fresh player still gets everything, from the game
	// server, and the operator reads why in one line.
	ngx.Kill()
	r, logged = syncMirrored(t, url, t.TempDir())
	if r.BytesInBand != total || r.BytesFromMirrors != 0 || r.Mirrors[0].Failures == 0 {
		t.Fatalf("after nginx died: %+v", r)
	}
	if !strings.Contains(logged, "mirror failed; fetching from the other sources meanwhile") || !strings.Contains(logged, ngx.URL) {
		t.Errorf("no clear log line about the dead mirror:\n%s", logged)
	}
}

// A mirror URL that is not http(s) is the operator's mistake: the server
// refuses the configuration, naming the file, line and setting.
func TestServerRefusesABadMirrorURL(t *testing.T) {
	pack, _ := makePack(t)
	cfg := mirrorConfig(t, pack, "ftp://files.example/game/")
	out, err := exec.Command(serverBin, "-config", cfg, "-listen", "127.0.0.1:0", "-admin-listen", "none").CombinedOutput()
	if err == nil {
		t.Fatalf("server started with an ftp mirror:\n%s", out)
	}
	if !strings.Contains(string(out), cfg+":3: mirrors:") || !strings.Contains(string(out), "not http:// or https://") {
		t.Fatalf("unclear refusal:\n%s", out)
	}
}

// A real MinIO bucket as the mirror: publish with -public-read, then
// players fetch with plain anonymous GETs.
func TestPublishedMinIOMirror(t *testing.T) {
	pack, total := makePack(t)
	endpoint, key, secret := mirrortest.StartMinIO(t)
	env := []string{"AWS_ACCESS_KEY_ID=" + key, "AWS_SECRET_ACCESS_KEY=" + secret}
	publishTo(t, env, "-packs", pack, "-to", "s3://game/v1", "-s3-endpoint", endpoint, "-public-read")
	url, admin, _ := startServerAdmin(t, "-config", mirrorConfig(t, pack, endpoint+"/game/v1/"))
	start := time.Now()
	r, _ := syncMirrored(t, url, t.TempDir())
	if r.BytesFromMirrors != total || r.BytesInBand != 0 {
		t.Fatalf("from MinIO %d of %d, in band %d: %+v", r.BytesFromMirrors, total, r.BytesInBand, r)
	}
	if sent := metric(t, admin, "voxsync_server_payload_bytes_sent_total"); sent != 0 {
		t.Errorf("server sent %d payload bytes", sent)
	}
	t.Logf("synced %d bytes from MinIO in %s", total, time.Since(start))
}

// At start the server tells its operator whether each mirror serves its
// content: a mirror named but never published to would otherwise only
// show as a server doing all the sending.
func TestServerChecksItsMirrors(t *testing.T) {
	pack, _ := makePack(t)
	empty := mirrortest.StartNginx(t, t.TempDir()) // published to later
	pub := t.TempDir()
	publishTo(t, nil, "-packs", pack, "-to", pub)
	good := mirrortest.StartNginx(t, pub)
	_, _, logged := startServerLog(t, "-config", mirrorConfig(t, pack, empty.URL, good.URL))
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(logged(), "mirror serves this server's content") || !strings.Contains(logged(), "mirror not ready") {
		if time.Now().After(deadline) {
			t.Fatalf("no verdict on the mirrors:\n%s", logged())
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The status page says the same.
	admin := regexp.MustCompile(`admin=(http://\S+)`).FindStringSubmatch(logged())
	if admin == nil {
		t.Fatalf("no admin listener in the log:\n%s", logged())
	}
	_, body := httpGet(t, admin[1]+"/status.json")
	var st struct {
		Mirrors []struct {
			URL     string `json:"url"`
			Ready   bool   `json:"ready"`
			Problem string `json:"problem"`
		} `json:"mirrors"`
	}
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatal(err)
	}
	if len(st.Mirrors) != 2 || st.Mirrors[0].URL != empty.URL || st.Mirrors[0].Ready || !strings.Contains(st.Mirrors[0].Problem, "gameserver publish") ||
		st.Mirrors[1].URL != good.URL || !st.Mirrors[1].Ready {
		t.Errorf("status.json mirrors: %+v", st.Mirrors)
	}
	// Published after the server started: the next check (5 s later)
	// finds it, without a restart.
	publishTo(t, nil, "-packs", pack, "-to", empty.Dir)
	deadline = time.Now().Add(30 * time.Second)
	for {
		_, body := httpGet(t, admin[1]+"/status.json")
		if err := json.Unmarshal([]byte(body), &st); err != nil {
			t.Fatal(err)
		}
		if len(st.Mirrors) == 2 && st.Mirrors[0].Ready {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a mirror published after the start is still not ready: %+v", st.Mirrors)
		}
		time.Sleep(200 * time.Millisecond)
	}
	for _, line := range strings.Split(logged(), "\n") {
		switch {
		case strings.Contains(line, "mirror not ready") && (!strings.Contains(line, empty.URL) || !strings.Contains(line, "gameserver publish")):
			t.Errorf("unclear warning: %s", line)
		case strings.Contains(line, "mirror serves this server's content") && !strings.Contains(line, good.URL) && !strings.Contains(line, empty.URL):
			t.Errorf("wrong mirror named: %s", line)
		}
	}
}
