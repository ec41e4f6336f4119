package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/voxsync/voxsync/internal/mirrortest"
	"github.com/voxsync/voxsync/manifest"
)

// serverBin is gameserver built once by TestMain, run as an operator
// would run it.
var serverBin string

func TestMain(m *testing.M) {
	flag.Parse()
	dir, err := os.MkdirTemp("", "voxsync-gameserver")
	if err != nil {
		panic(err)
	}
	serverBin = filepath.Join(dir, "gameserver")
	build := []string{"build", "-race", "-o", serverBin, "."}
	if f := flag.Lookup("test.bench"); f != nil && f.Value.String() != "" {
		build = []string{"build", "-o", serverBin, "."} // measure without the race detector
	}
	if out, err := exec.Command("go", build...).CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build gameserver: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// writeTestPack writes a pack of small files and one 3 MiB file (several
// chunks) and returns its directory.
func writeTestPack(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	big := make([]byte, 3<<20)
	rand.NewChaCha8([32]byte{4}).Read(big)
	for rel, data := range map[string][]byte{
		"test/texture/stone.png": []byte("\x89PNG stone"),
		"test/texture/dirt.png":  []byte("\x89PNG dirt"),
		"test/model/big.b3d":     big,
	} {
		p := filepath.Join(dir, "assets", filepath.FromSlash(rel))
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// summary is the part of publish's JSON output the tests read.
type summary struct {
	Uploaded, Skipped, Objects, Manifests, Resources int
	BytesUploaded                                    int64 `json:"bytes_uploaded"`
	To, Error                                        string
	Seconds                                          float64
	LoadSeconds                                      float64 `json:"load_seconds"`
	ListSeconds                                      float64 `json:"list_seconds"`
	CutSeconds                                       float64 `json:"cut_seconds"`
}

// runPublishCmd runs gameserver publish with args and env added to the
// test's environment, and returns its exit code, parsed stdout and stderr.
func runPublishCmd(t testing.TB, env []string, args ...string) (int, summary, string) {
	t.Helper()
	cmd := exec.Command(serverBin, append([]string{"publish"}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	var sum summary
	if stdout.Len() > 0 {
		if err := json.Unmarshal(stdout.Bytes(), &sum); err != nil {
			t.Fatalf("stdout is not a JSON summary: %v\n%s", err, stdout.String())
		}
	}
	return code, sum, stderr.String()
}

// fetchAll GETs every content file under dir's layout from base over plain
// HTTP and checks that objects hash to their names and manifests parse.
// It returns how many it fetched.
func fetchAll(t testing.TB, base string, names []string) int {
	t.Helper()
	for _, name := range names {
		resp, err := http.Get(base + name)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("GET %s%s: %s", base, name, resp.Status)
		}
		sum := sha256.Sum256(b)
		switch {
		case strings.HasPrefix(name, "objects/"):
			if hex.EncodeToString(sum[:]) != filepath.Base(name) {
				t.Errorf("GET %s: bytes do not hash to the name", name)
			}
		case strings.HasPrefix(name, "manifests/"):
			whole, _, err := manifest.ParseFile(b)
			if err != nil || hex.EncodeToString(whole[:]) != filepath.Base(name) {
				t.Errorf("GET %s: %v", name, err)
			}
		default:
			if string(b) != "{\"layout\":1}\n" {
				t.Errorf("GET %s: %q", name, b)
			}
		}
	}
	return len(names)
}

// contentNames lists the files of a published directory, slash-separated
// and relative to it.
func contentNames(t testing.TB, dir string) []string {
	t.Helper()
	var names []string
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			rel, _ := filepath.Rel(dir, p)
			names = append(names, filepath.ToSlash(rel))
		}
		return err
	})
	return names
}

// The command an operator runs: publish the packs of a config file to a
// directory, serve it with nginx, fetch everything over HTTP; publishing
// again uploads nothing.
func TestPublishCommandToDirectoryServedByNginx(t *testing.T) {
	pack := writeTestPack(t)
	cfg := filepath.Join(t.TempDir(), "server.toml")
	os.WriteFile(cfg, fmt.Appendf(nil, "packs = [%q]\nbuiltin_pack = false\n", pack), 0o644)
	out := filepath.Join(t.TempDir(), "mirror")

	code, sum, stderr := runPublishCmd(t, nil, "-config", cfg, "-to", out)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if sum.Resources != 3 || sum.Manifests != 1 || sum.Uploaded != sum.Objects+1 || sum.To != out {
		t.Errorf("summary %+v; want the 3 resources of the config's pack, all uploaded to %s", sum, out)
	}
	names := contentNames(t, out)
	if len(names) != sum.Objects+sum.Manifests+1 {
		t.Errorf("%d files published, the summary says %d objects and %d manifests (+ the layout file)", len(names), sum.Objects, sum.Manifests)
	}
	fetchAll(t, mirrortest.StartNginx(t, out).URL, names)

	// Again, the pack given with -packs (over the config's packs).
	code, again, stderr := runPublishCmd(t, nil, "-config", cfg, "-packs", pack, "-to", out)
	if code != 0 || again.Uploaded != 0 || again.Skipped != sum.Uploaded {
		t.Errorf("publish again: exit %d, %+v, %s; want all %d skipped", code, again, stderr, sum.Uploaded)
	}
}

// Publish to a real MinIO as an operator would: credentials in the
// environment, the bucket created, readable by anyone over plain HTTP
// afterwards; publishing again uploads nothing.
func TestPublishCommandToMinIO(t *testing.T) {
	endpoint, key, secret := mirrortest.StartMinIO(t)
	env := []string{"AWS_ACCESS_KEY_ID=" + key, "AWS_SECRET_ACCESS_KEY=" + secret}
	pack := writeTestPack(t)
	args := []string{"-packs", pack, "-to", "s3://voxsync/world1", "-s3-endpoint", endpoint, "-public-read"}

	code, sum, stderr := runPublishCmd(t, env, args...)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if sum.Uploaded == 0 || sum.Uploaded != sum.Objects+sum.Manifests || sum.To != "s3://voxsync/world1/" {
		t.Errorf("summary %+v", sum)
	}
	// What the directory publish writes is what is in the bucket.
	dir := filepath.Join(t.TempDir(), "same")
	if code, _, stderr := runPublishCmd(t, nil, "-packs", pack, "-to", dir); code != 0 {
		t.Fatal(stderr)
	}
	fetchAll(t, endpoint+"/voxsync/world1/", contentNames(t, dir))

	code, again, stderr := runPublishCmd(t, env, args...)
	if code != 0 || again.Uploaded != 0 || again.BytesUploaded != 0 || again.Skipped != sum.Uploaded {
		t.Errorf("publish again: exit %d, %+v, %s; want all %d skipped", code, again, stderr, sum.Uploaded)
	}
}

// Every way an operator can get it wrong exits non-zero with a message
// that says what to do: 2 for the command line, 1 for what went wrong
// doing it.
func TestPublishCommandErrors(t *testing.T) {
	srv := mirrortest.StartMinIOServer(t)
	endpoint := srv.URL
	good := []string{"AWS_ACCESS_KEY_ID=" + mirrortest.MinIORootUser, "AWS_SECRET_ACCESS_KEY=" + mirrortest.MinIORootPassword}
	pack := writeTestPack(t)
	aFile := filepath.Join(t.TempDir(), "file")
	os.WriteFile(aFile, nil, 0o644)
	tests := []struct {
		name string
		env  []string
		args []string
		code int
		want []string
	}{
		{"no -to", good, []string{"-packs", pack}, 2, []string{"-to is required"}},
		{"-to a URL", good, []string{"-to", "https://mirror.example/"}, 2, []string{"want a directory or s3://BUCKET"}},
		{"-to a file", good, []string{"-to", aFile}, 2, []string{"not a directory"}},
		{"-to in a missing directory", good, []string{"-to", "/nonexistent/x/y"}, 2, []string{"parent directory must exist"}},
		{"s3 without endpoint", good, []string{"-to", "s3://bucket/p"}, 2, []string{"needs -s3-endpoint"}},
		{"s3 without a bucket", good, []string{"-to", "s3:///p", "-s3-endpoint", endpoint}, 2, []string{"names no bucket"}},
		{"s3 bucket name invalid", good, []string{"-to", "s3://B_/p", "-s3-endpoint", endpoint}, 2, []string{"s3://B_/p: bucket name"}},
		{"endpoint not a URL", good, []string{"-to", "s3://bucket", "-s3-endpoint", "127.0.0.1:9000"}, 2, []string{"want http://HOST[:PORT]"}},
		{"public-read for a directory", good, []string{"-to", t.TempDir(), "-public-read"}, 2, []string{"are for -to s3://"}},
		{"no credentials", []string{"AWS_ACCESS_KEY_ID=", "AWS_SECRET_ACCESS_KEY="}, []string{"-to", "s3://bucket", "-s3-endpoint", endpoint}, 2, []string{"set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"}},
		{"bad config", good, []string{"-to", t.TempDir(), "-packs", "/nonexistent/pack"}, 1, []string{"pack directory does not exist"}},
		{"wrong secret", []string{"AWS_ACCESS_KEY_ID=" + mirrortest.MinIORootUser, "AWS_SECRET_ACCESS_KEY=wrong"},
			[]string{"-packs", pack, "-to", "s3://bucket", "-s3-endpoint", endpoint}, 1, []string{"check bucket bucket", "AWS_SECRET_ACCESS_KEY does not match"}},
		{"https to an http server", good, []string{"-packs", pack, "-to", "s3://bucket", "-s3-endpoint", strings.Replace(endpoint, "http:", "https:", 1)}, 1,
			[]string{"cannot reach the S3 endpoint", "http:// or https://"}},
		{"unknown flag", good, []string{"-to", "x", "-bucket", "b"}, 2, []string{"flag provided but not defined: -bucket", "Usage: gameserver publish"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, sum, stderr := runPublishCmd(t, tc.env, tc.args...)
			if code != tc.code {
				t.Errorf("exit %d, want %d; stderr:\n%s", code, tc.code, stderr)
			}
			// A failure prints a summary with the error for scripts; a
			// command-line mistake prints nothing on stdout.
			if (tc.code == 1) != (sum.Error != "") || (sum.Error != "" && !strings.Contains(stderr, sum.Error)) {
				t.Errorf("exit %d with summary error %q; stderr:\n%s", code, sum.Error, stderr)
			}
			for _, w := range tc.want {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr lacks %q:\n%s", w, stderr)
				}
			}
		})
	}

	// A key that may only read: the upload is refused, and the message
	// names the object, the permission and what it was refused on.
	t.Run("read-only key", func(t *testing.T) {
		code, _, _ := runPublishCmd(t, good, "-packs", pack, "-to", "s3://locked/p", "-s3-endpoint", endpoint) // creates the bucket
		if code != 0 {
			t.Fatal("publish with the root key failed")
		}
		os.WriteFile(filepath.Join(pack, "assets", "test", "texture", "new.png"), []byte("new"), 0o644)
		ro := readOnlyKey(t, endpoint, "locked")
		code, sum, stderr := runPublishCmd(t, ro, "-packs", pack, "-to", "s3://locked/p", "-s3-endpoint", endpoint)
		for _, w := range []string{"gameserver publish: upload objects/", "Access Denied", "may not s3:PutObject on arn:aws:s3:::locked/p/*"} {
			if !strings.Contains(stderr, w) {
				t.Errorf("stderr lacks %q:\n%s", w, stderr)
			}
		}
		if code != 1 || !strings.Contains(sum.Error, "Access Denied") {
			t.Errorf("exit %d, summary error %q; want 1 and the error in the summary", code, sum.Error)
		}
	})

	t.Run("endpoint down", func(t *testing.T) {
		srv.Kill()
		code, _, stderr := runPublishCmd(t, good, "-packs", pack, "-to", "s3://bucket", "-s3-endpoint", endpoint)
		if code != 1 || !strings.Contains(stderr, "cannot reach the S3 endpoint "+endpoint) {
			t.Errorf("exit %d: %s", code, stderr)
		}
	})
}

// readOnlyKey returns the environment of a key that may read bucket and
// not write it.
func readOnlyKey(t testing.TB, endpoint, bucket string) []string {
	t.Helper()
	key, secret, token := mirrortest.MinIOReadOnlyKey(t, endpoint, bucket)
	return []string{"AWS_ACCESS_KEY_ID=" + key, "AWS_SECRET_ACCESS_KEY=" + secret, "AWS_SESSION_TOKEN=" + token}
}

func TestServerHelpMentionsPublish(t *testing.T) {
	out, _ := exec.Command(serverBin, "-h").CombinedOutput()
	if !strings.Contains(string(out), "gameserver publish -to") {
		t.Errorf("gameserver -h does not mention publish:\n%s", out)
	}
	out, err := exec.Command(serverBin, "publish", "-h").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "-s3-endpoint") {
		t.Errorf("gameserver publish -h: %v\n%s", err, out)
	}
}

// A publish to a directory killed part-way (SIGKILL, nothing cleaned up)
// leaves only whole files under content names and no layout file; the
// next publish completes the base, skipping what the first one wrote.
func TestPublishCommandKilledMidwayThenRunAgain(t *testing.T) {
	pack := writeTestPack(t)
	big := make([]byte, 48<<20) // ~400 chunks, each written and synced
	rand.NewChaCha8([32]byte{5}).Read(big)
	os.WriteFile(filepath.Join(pack, "assets", "test", "model", "huge.b3d"), big, 0o644)
	out := filepath.Join(t.TempDir(), "mirror")

	cmd := exec.Command(serverBin, "publish", "-packs", pack, "-to", out, "-workers", "2")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if len(contentNames(t, out)) >= 20 {
			break
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatal("publish wrote nothing in 30 s")
		}
	}
	cmd.Process.Kill()
	cmd.Wait()

	written := contentNames(t, out)
	var whole []string
	for _, name := range written {
		switch {
		case name == "voxsync-mirror.json":
			t.Fatal("the layout file was written before the publish finished")
		case strings.HasPrefix(filepath.Base(name), ".voxsync-tmp-"):
			// a file being written when killed: ignored, and removed
			// once old
		default:
			whole = append(whole, name)
		}
	}
	if len(whole) >= 400 {
		t.Fatalf("the publish finished before it was killed (%d files); the test needs a larger pack", len(whole))
	}
	fetchAll(t, mirrortest.StartNginx(t, out).URL, whole) // every content name holds whole, right bytes

	code, sum, stderr := runPublishCmd(t, nil, "-packs", pack, "-to", out)
	if code != 0 {
		t.Fatalf("publish after the kill: exit %d: %s", code, stderr)
	}
	if sum.Skipped < len(whole) || sum.Uploaded == 0 {
		t.Errorf("publish after the kill: %+v; want the %d files written before it skipped, the rest uploaded", sum, len(whole))
	}
	names := contentNames(t, out)
	var final []string
	for _, n := range names {
		if !strings.HasPrefix(filepath.Base(n), ".voxsync-tmp-") {
			final = append(final, n)
		}
	}
	if len(final) != sum.Objects+sum.Manifests+1 {
		t.Errorf("%d files after the second publish; want %d objects, %d manifests and the layout file", len(final), sum.Objects, sum.Manifests)
	}
}

// A dry run prints what it would upload and writes nothing.
func TestPublishCommandDryRun(t *testing.T) {
	out := filepath.Join(t.TempDir(), "mirror")
	code, sum, stderr := runPublishCmd(t, nil, "-packs", writeTestPack(t), "-to", out, "-dry-run")
	if code != 0 || sum.Uploaded == 0 || sum.Uploaded != sum.Objects+sum.Manifests {
		t.Errorf("dry run: exit %d, %+v, %s", code, sum, stderr)
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Errorf("dry run created %s: %v", out, err)
	}
}

// -public-read is checked the way players' clients will use it: an
// anonymous GET. A policy that denies it (or a store that blocks public
// access) fails the publish with what to look at, instead of leaving every
// player to fall back to the game server in silence.
func TestPublishPublicReadDenied(t *testing.T) {
	endpoint, key, secret := mirrortest.StartMinIO(t)
	env := []string{"AWS_ACCESS_KEY_ID=" + key, "AWS_SECRET_ACCESS_KEY=" + secret}
	c, err := minio.New(strings.TrimPrefix(endpoint, "http://"), &minio.Options{Creds: credentials.NewStaticV4(key, secret, "")})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := c.MakeBucket(ctx, "voxsync", minio.MakeBucketOptions{}); err != nil {
		t.Fatal(err)
	}
	deny := `{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Principal":{"AWS":["*"]},"Action":["s3:GetObject"],"Resource":["arn:aws:s3:::voxsync/world1/*"]}]}`
	if err := c.SetBucketPolicy(ctx, "voxsync", deny); err != nil {
		t.Fatal(err)
	}
	code, sum, stderr := runPublishCmd(t, env, "-packs", writeTestPack(t), "-to", "s3://voxsync/world1", "-s3-endpoint", endpoint, "-public-read")
	if code != 1 || sum.Uploaded == 0 || !strings.Contains(stderr, "not readable anonymously") {
		t.Fatalf("exit %d, %+v:\n%s", code, sum, stderr)
	}
}
