package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// waitForLockHolder waits until the cache's lock file names pid.
func waitForLockHolder(t *testing.T, cache string, pid int) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		b, _ := os.ReadFile(filepath.Join(cache, "lock"))
		if strings.TrimSpace(string(b)) == strconv.Itoa(pid) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("gameclient %d never locked the cache (lock file: %q)", pid, b)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Two gameclients on one cache: the second stops at once, says which
// process has the cache, and leaves the first's in-progress files alone;
// once the first is killed (no clean shutdown) the cache opens again.
func TestSecondClientOnOneCacheIsRefused(t *testing.T) {
	url := startServer(t)
	cache := t.TempDir()
	first := exec.Command(clientBin, "-server", url, "-cache", cache, "-log-level", "error")
	firstOut, _ := first.StderrPipe()
	if err := first.Start(); err != nil {
		t.Fatal(err)
	}
	defer first.Process.Kill()
	waitForLockHolder(t, cache, first.Process.Pid)
	// Once it has loaded something its Open, which clears leftovers, is over.
	sc := bufio.NewScanner(firstOut)
	for sc.Scan() && !strings.HasPrefix(sc.Text(), "loaded ") {
	}
	go io.Copy(io.Discard, firstOut)
	// Stands in for a download the first client has in progress.
	tmp := filepath.Join(cache, "blobs", "ab", ".tmp-ab12-1")
	os.MkdirAll(filepath.Dir(tmp), 0o755)
	if err := os.WriteFile(tmp, []byte("half a blob"), 0o644); err != nil {
		t.Fatal(err)
	}

	second := exec.Command(clientBin, "-server", url, "-cache", cache, "-until-synced", "-json")
	var stdout, stderr bytes.Buffer
	second.Stdout, second.Stderr = &stdout, &stderr
	err := second.Run()
	if code := second.ProcessState.ExitCode(); err == nil || code != 1 {
		t.Fatalf("second client on the same cache: exit %d (%v), stdout %q", code, err, stdout.String())
	}
	want := "cache " + cache + " is in use by process " + strconv.Itoa(first.Process.Pid)
	if !strings.Contains(stderr.String(), want) {
		t.Fatalf("second client's error %q does not say %q", stderr.String(), want)
	}
	var sum struct{ Outcome, Error string }
	if err := json.Unmarshal(stdout.Bytes(), &sum); err != nil || sum.Outcome != "error" || !strings.Contains(sum.Error, want) {
		t.Fatalf("-json printed %q (%v); want an error summary saying %q", stdout.String(), err, want)
	}
	if _, err := os.Stat(tmp); err != nil {
		t.Fatalf("the first client's temp file: %v", err)
	}
	if err := first.Process.Signal(syscall.Signal(0)); err != nil {
		t.Fatalf("first client: %v", err)
	}

	first.Process.Kill()
	first.Wait()
	syncOnce(t, url, cache) // the kernel dropped the dead client's lock
	if _, err := os.Stat(tmp); err == nil {
		t.Fatal("a dead client's temp file was left in place")
	}
}

// A damaged or lost database costs only the small (inline) resources: the
// client rebuilds the index from the blob files and does not download
// them again.
func TestDamagedDatabaseKeepsBlobFiles(t *testing.T) {
	pack, _ := makePack(t)
	url := startServer(t, "-packs", pack)
	const bigBytes = 300_000 + 1_500_000 // makePack's two blob-sized files
	tests := []struct {
		name   string
		damage func(t *testing.T, db string)
	}{
		{"16 KiB of garbage over a page", func(t *testing.T, db string) {
			fi, err := os.Stat(db)
			if err != nil || fi.Size() < 4*16384 {
				t.Fatalf("database too small to damage a middle page: %v %v", fi, err)
			}
			f, _ := os.OpenFile(db, os.O_WRONLY, 0)
			junk := make([]byte, 16384)
			for i := range junk {
				junk[i] = byte(i*7 + 3)
			}
			f.WriteAt(junk, 2*16384)
			f.Close()
		}},
		{"truncated", func(t *testing.T, db string) {
			fi, _ := os.Stat(db)
			os.Truncate(db, fi.Size()/3)
		}},
		{"deleted by hand", func(t *testing.T, db string) {
			os.Remove(db)
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cache := t.TempDir()
			cold := syncOnce(t, url, cache)
			tc.damage(t, filepath.Join(cache, "db.sqlite3"))
			r := syncOnce(t, url, cache, "-log-level", "error")
			if r.FromBlob != 2 || r.BytesReceived != cold.BytesReceived-bigBytes {
				t.Fatalf("after the damage: %+v; want both blob files kept and %d bytes fetched", r, cold.BytesReceived-bigBytes)
			}
			if r := syncOnce(t, url, cache); r.FromNetwork != 0 {
				t.Fatalf("run after the repair: %+v", r)
			}
		})
	}
}

// mountTmpfs mounts a tmpfs of the given size on a new temp directory,
// which needs root; CI runs as root.
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("cannot mount a tmpfs: %v %s", err, out)
		}
		t.Skipf("cannot mount a tmpfs (needs root): %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", dir).Run() })
	return dir
}

// runClientOnCache runs gameclient on cache -until-synced -json and returns its exit code,
// summary and stderr.
func runClientOnCache(t *testing.T, url, cache string, extra ...string) (int, map[string]any, string) {
	t.Helper()
	cmd := exec.Command(clientBin, append([]string{"-server", url, "-cache", cache, "-until-synced", "-json"}, extra...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.Run()
	var sum map[string]any
	json.Unmarshal(stdout.Bytes(), &sum)
	return cmd.ProcessState.ExitCode(), sum, stderr.String()
}

// A read-only cache directory: one line that says what and what to do,
// and the cache is intact once writable again.
func TestReadOnlyCacheDirectoryIsExplained(t *testing.T) {
	url := startServer(t)
	cache := mountTmpfs(t, "16m")
	syncOnce(t, url, cache)
	if out, err := exec.Command("mount", "-o", "remount,ro", cache).CombinedOutput(); err != nil {
		t.Fatalf("remount ro: %v %s", err, out)
	}
	code, _, stderr := runClientOnCache(t, url, cache)
	want := "gameclient: cache directory " + cache + " is not writable"
	if code != 1 || !strings.HasPrefix(stderr, want) || strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, "make it writable") {
		t.Fatalf("read-only cache: exit %d, stderr %q; want one line starting %q", code, stderr, want)
	}
	if out, err := exec.Command("mount", "-o", "remount,rw", cache).CombinedOutput(); err != nil {
		t.Fatalf("remount rw: %v %s", err, out)
	}
	if r := syncOnce(t, url, cache); r.FromNetwork != 0 {
		t.Fatalf("after making it writable again: %+v", r)
	}
}

// A full disk fails the resources that do not fit at once, saying the disk
// is full, instead of waiting for the connection to time out.
func TestFullDiskFailsAtOnce(t *testing.T) {
	pack, _ := makePack(t) // holds a 1.5 MB blob
	url := startServer(t, "-packs", pack)
	cache := mountTmpfs(t, "1m")
	code, sum, stderr := runClientOnCache(t, url, cache, "-timeout", "40s")
	msg, _ := sum["error"].(string)
	if code != 1 || !strings.Contains(msg, "resources failed to load") {
		t.Fatalf("full disk: exit %d, error %q; want failed resources, not a timeout\nstderr: %s", code, msg, stderr)
	}
	if !strings.Contains(stderr, "disk holding the cache "+cache+" is full") || !strings.Contains(stderr, "MiB needed") ||
		!strings.Contains(stderr, "or use a cache directory on a disk with more room") {
		t.Fatalf("full disk: stderr does not say the disk is full, by how much, and what to do:\n%s", stderr)
	}
}

// A disk with room for one copy of a large resource takes its next
// version: what no key is bound to any more (the old version) is evicted
// to make room, whatever the size cap, instead of failing every run.
func TestFullDiskMakesRoomForANewVersion(t *testing.T) {
	v1, v2 := t.TempDir(), t.TempDir()
	const rel = "assets/e2e/model/map.bin"
	writeRandom(t, filepath.Join(v1, rel), 3_000_000, 41)
	writeRandom(t, filepath.Join(v2, rel), 3_000_000, 42)
	url1, url2 := startServer(t, "-packs", v1), startServer(t, "-packs", v2)
	for _, mode := range [][]string{{}, {"-no-chunks"}} {
		t.Run(fmt.Sprint("flags", mode), func(t *testing.T) {
			cache := mountTmpfs(t, "4m")
			if code, sum, stderr := runClientOnCache(t, url1, cache, mode...); code != 0 {
				t.Fatalf("version 1: exit %d %v\n%s", code, sum, stderr)
			}
			code, sum, stderr := runClientOnCache(t, url2, cache, mode...)
			if code != 0 || !strings.Contains(stderr, "evicted cached resources no longer bound") {
				t.Fatalf("version 2 on a disk with room for one: exit %d %v\n%s", code, sum, stderr)
			}
		})
	}
}

// twoServers starts two game servers without world content, each with
// 1,000 textures of 10 KB (stored inline), all different, and returns their
// URLs.
func twoServers(t *testing.T) (string, string) {
	t.Helper()
	const n, size = 1000, 10_000
	packA, packB := t.TempDir(), t.TempDir()
	data := make([]byte, size)
	for i := range n {
		for server, pack := range []string{packA, packB} {
			rand.NewChaCha8([32]byte{byte(server), byte(i), byte(i >> 8)}).Read(data)
			p := filepath.Join(pack, fmt.Sprintf("assets/s%d/texture/t%04d.png", server, i))
			os.MkdirAll(filepath.Dir(p), 0o755)
			if err := os.WriteFile(p, data, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	return startServer(t, "-packs", packA, "-world", "none"), startServer(t, "-packs", packB, "-world", "none")
}

// syncAll runs the client on cache against url and fails the test unless
// every resource loaded; it returns the stderr.
func syncAll(t *testing.T, what, url, cache string) string {
	t.Helper()
	code, sum, stderr := runClientOnCache(t, url, cache)
	if code != 0 || sum["loaded"] != sum["bound"] {
		t.Fatalf("%s: exit %d %v\n%s", what, code, sum, stderr)
	}
	return stderr
}

// A disk with room for one server's small resources takes another's: the
// inline entries no key binds any more make room, as blob files do. Before,
// once sqlite had filled the disk, half of the second server's resources
// failed on every run until the cache was deleted by hand.
func TestFullDiskMakesRoomForSmallResources(t *testing.T) {
	urlA, urlB := twoServers(t)
	// Each server's resources take about 12 MB of database pages, the log
	// comes on top; two servers' do not fit.
	cache := mountTmpfs(t, "20m")
	for i, url := range []string{urlA, urlB, urlB, urlA, urlB} {
		stderr := syncAll(t, fmt.Sprintf("sync %d, on a disk with room for one server's resources", i), url, cache)
		if i == 1 && !strings.Contains(stderr, "evicted cached resources no longer bound") {
			t.Errorf("sync %d: nothing evicted:\n%s", i, stderr)
		}
	}
}

// Another program filled the disk to the last byte: the cache still makes
// room, out of its reserve (an eviction's deletes are a commit, which needs
// room in the database's log).
func TestDiskFilledByAnotherProgramStillEvicts(t *testing.T) {
	urlA, urlB := twoServers(t)
	cache := mountTmpfs(t, "32m")
	syncAll(t, "server A", urlA, cache)
	filler, err := os.Create(filepath.Join(cache, "filler"))
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64<<10)
	for {
		if _, err := filler.Write(buf); err != nil {
			break // ENOSPC: the disk is full
		}
	}
	filler.Close()
	stderr := syncAll(t, "server B on a disk another program filled", urlB, cache)
	if !strings.Contains(stderr, "gave back the cache's reserve") || !strings.Contains(stderr, "evicted cached resources no longer bound") {
		t.Errorf("server B: reserve not given back or nothing evicted:\n%s", stderr)
	}
	syncAll(t, "server A again", urlA, cache)
}

// A first sync that fits a tiny disk still fits: the room the cache keeps
// free for evicting scales with the disk. With a fixed 1 MiB, a 1 MiB
// disk took none of 88 small resources.
func TestTinyDiskTakesWhatFits(t *testing.T) {
	pack := t.TempDir()
	for i := range 64 {
		writeRandom(t, filepath.Join(pack, fmt.Sprintf("assets/f/texture/t%03d.png", i)), 2000, byte(i))
	}
	url := startServer(t, "-packs", pack)
	syncAll(t, "1 MiB disk, 64 resources of 2 KB", url, filepath.Join(mountTmpfs(t, "1m"), "cache"))
}
