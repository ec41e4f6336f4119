package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"
)

// chunkResult is the part of the JSON summary about chunks and the wire.
type chunkResult struct {
	result
	WireBytes       int64   `json:"wire_bytes"`
	FromLocalChunks int64   `json:"from_local_chunks"`
	ResumedBytes    int64   `json:"resumed_bytes"`
	StreamErrors    int     `json:"stream_errors"`
	SyncSeconds     float64 `json:"sync_seconds"`
}

// syncChunks runs one gameclient -until-synced -json and fails the test
// unless everything bound was loaded.
func syncChunks(t testing.TB, url, cache string, extra ...string) chunkResult {
	t.Helper()
	args := append([]string{"-server", url, "-cache", cache, "-until-synced", "-json", "-timeout", "60s"}, extra...)
	cmd := exec.Command(clientBin, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("gameclient: %v\nstdout: %s\nstderr: %s", err, stdout.String(), stderr.String())
	}
	var r chunkResult
	if err := json.Unmarshal(stdout.Bytes(), &r); err != nil {
		t.Fatalf("summary is not JSON: %v: %q", err, stdout.String())
	}
	if !r.Synced || r.Loaded != r.Bound || r.Failed != 0 {
		t.Fatalf("not synced: %+v\nstderr: %s", r, stderr.String())
	}
	return r
}

// payloadSent reads the server's payload bytes sent from its metrics.
func payloadSent(t testing.TB, admin string) int64 {
	t.Helper()
	_, body := httpGet(t, admin+"/metrics")
	m := regexp.MustCompile(`(?m)^voxsync_server_payload_bytes_sent_total (\S+)$`).FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no payload_bytes_sent_total in metrics")
	}
	f, _ := strconv.ParseFloat(m[1], 64)
	return int64(f)
}

func writeRandom(t testing.TB, p string, size int, seed byte) []byte {
	t.Helper()
	data := make([]byte, size)
	rand.NewChaCha8([32]byte{seed}).Read(data)
	os.MkdirAll(filepath.Dir(p), 0o755)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return data
}

// killAtHalf starts a client and SIGKILLs it once the server has sent half
// of size bytes.
func killAtHalf(t testing.TB, url, admin, cache string, size int64) {
	t.Helper()
	base := payloadSent(t, admin)
	cmd := exec.Command(clientBin, "-server", url, "-cache", cache, "-until-synced")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for payloadSent(t, admin)-base < size/2 {
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatal("download never reached half")
		}
		time.Sleep(time.Millisecond)
	}
	cmd.Process.Kill()
	cmd.Wait()
}

// A client killed (SIGKILL) in the middle of a large download resumes
// from the chunks it had made durable, and receives little twice.
func TestClientKilledMidDownloadResumes(t *testing.T) {
	dir := t.TempDir()
	const size = 128 << 20
	data := writeRandom(t, filepath.Join(dir, "assets/e2e/model/huge.b3d"), size, 5)
	url, admin, _ := startServerAdmin(t, "-packs", dir, "-preload", "e2e:*", "-world", "none")
	cache := t.TempDir()
	killAtHalf(t, url, admin, cache, size)
	if parts, _ := filepath.Glob(filepath.Join(cache, "partial", "*")); len(parts) == 0 {
		t.Fatal("no partial download left by the killed client")
	}
	before := payloadSent(t, admin)
	r := syncChunks(t, url, cache)
	if r.ResumedBytes < size/4 || r.FromNetwork != 1 || r.Bound != 1 {
		t.Fatalf("after a kill at half: %+v", r)
	}
	// Over both runs: the resource once, plus what was in flight or not
	// yet durable at the kill (a few MiB).
	if total := payloadSent(t, admin); total > size+12<<20 {
		t.Fatalf("%d bytes sent over both runs for a %d-byte resource (the second run %d)", total, size, total-before)
	}
	b, err := os.ReadFile(blobFile(cache, data))
	if err != nil || !bytes.Equal(b, data) {
		t.Fatalf("resumed resource is not the resource: %v", err)
	}
	if parts, _ := filepath.Glob(filepath.Join(cache, "partial", "*")); len(parts) != 0 {
		t.Fatalf("partial files left after completing: %v", parts)
	}
	if r := syncChunks(t, url, cache); r.FromBlob != 1 || r.WireBytes != 0 {
		t.Fatalf("third run: %+v", r)
	}
}

func blobFile(cache string, data []byte) string {
	h := fmt.Sprintf("%x", sha256.Sum256(data))
	return filepath.Join(cache, "blobs", h[:2], h)
}

// Bytes damaged in a killed client's partial download are caught by their
// chunk's hash when it resumes, and fetched again.
func TestCorruptChunkOnDiskIsFetchedAgain(t *testing.T) {
	dir := t.TempDir()
	const size = 64 << 20
	data := writeRandom(t, filepath.Join(dir, "assets/e2e/model/huge.b3d"), size, 6)
	url, admin, _ := startServerAdmin(t, "-packs", dir, "-preload", "e2e:*", "-world", "none")
	cache := t.TempDir()
	killAtHalf(t, url, admin, cache, size)
	parts, _ := filepath.Glob(filepath.Join(cache, "partial", "*"))
	if len(parts) != 1 {
		t.Fatalf("partial files %v", parts)
	}
	// Overwrite the first 4 MiB, which a download that got to half has.
	f, err := os.OpenFile(parts[0], os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt(bytes.Repeat([]byte{0xA5}, 4<<20), 0)
	f.Close()
	r := syncChunks(t, url, cache)
	if r.BytesReceived < 4<<20 {
		t.Fatalf("the damaged 4 MiB were not fetched again: %+v", r)
	}
	b, err := os.ReadFile(blobFile(cache, data))
	if err != nil || !bytes.Equal(b, data) {
		t.Fatalf("resource after repairing damaged chunks differs: %v", err)
	}
}

// A blob assembled from chunks that `cache verify` finds damaged keeps
// its good chunks: the next sync fetches only the damaged one, as when the
// sync itself finds the damage. Before, verify deleted the whole file and
// the next sync fetched all of it again.
func TestVerifyKeepsTheGoodChunksOfADamagedBlob(t *testing.T) {
	dir := t.TempDir()
	const size = 40 << 20
	data := writeRandom(t, filepath.Join(dir, "assets/e2e/sound/big.ogg"), size, 8)
	url, _, _ := startServerAdmin(t, "-packs", dir, "-preload", "e2e:*", "-world", "none")
	cache := t.TempDir()
	syncChunks(t, url, cache)
	f, err := os.OpenFile(blobFile(cache, data), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte("dent"), size/2)
	f.Close()
	var v struct {
		Bad []struct{ Hash string }
	}
	cacheJSON(t, 1, &v, "verify", "-cache", cache)
	if len(v.Bad) != 1 {
		t.Fatalf("verify found %+v, want the damaged blob", v.Bad)
	}
	// What was wrong was dealt with: verify again finds nothing.
	cacheJSON(t, 0, &v, "verify", "-cache", cache)
	r := syncChunks(t, url, cache)
	if r.BytesReceived > 2<<20 || r.ResumedBytes < size-2<<20 {
		t.Fatalf("after verify dropped a 4-byte dent: %d bytes fetched again, %d kept; want one chunk fetched (%+v)", r.BytesReceived, r.ResumedBytes, r)
	}
	if b, err := os.ReadFile(blobFile(cache, data)); err != nil || !bytes.Equal(b, data) {
		t.Fatalf("repaired blob differs from the resource: %v", err)
	}
}

// A new version of a large resource costs only its changed chunks.
func TestDeltaUpdateAfterServerRestart(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "assets/e2e/model/map.bin")
	v1 := writeRandom(t, p, 32<<20, 7)
	url, _, srv := startServerAdmin(t, "-packs", dir, "-preload", "e2e:*", "-world", "none")
	cache := t.TempDir()
	if r := syncChunks(t, url, cache); r.WireBytes < 32<<20 {
		t.Fatalf("cold: %+v", r)
	}
	srv.Process.Kill()
	srv.Wait()
	// 1 MiB overwritten in the middle, 100 KiB inserted near the start.
	v2 := append(append(append([]byte{}, v1[:1<<20]...), bytes.Repeat([]byte("new"), 100<<10/3)...), v1[1<<20:]...)
	copy(v2[16<<20:], bytes.Repeat([]byte{7}, 1<<20))
	os.WriteFile(p, v2, 0o644)
	url2, _, _ := startServerAdmin(t, "-packs", dir, "-preload", "e2e:*", "-world", "none")
	r := syncChunks(t, url2, cache)
	if r.WireBytes > 4<<20 || r.FromLocalChunks < 28<<20 {
		t.Fatalf("delta update: %d bytes on the wire, %d from local chunks: %+v", r.WireBytes, r.FromLocalChunks, r)
	}
	b, err := os.ReadFile(blobFile(cache, v2))
	if err != nil || !bytes.Equal(b, v2) {
		t.Fatalf("version 2 assembled wrong: %v", err)
	}
}

// JSON models come compressed, unless the client refuses zstd.
func TestCompressionOfferedAndRefused(t *testing.T) {
	dir := t.TempDir()
	var total int64
	for i := range 300 {
		var b bytes.Buffer
		b.WriteString("{\n  \"parent\": \"block/cube_all\",\n  \"textures\": {\n")
		for j := range 5 {
			b.WriteString("    \"layer" + strconv.Itoa(j) + "\": \"e2e:block/stone_" + strconv.Itoa(i) + "_" + strconv.Itoa(j) + "\",\n")
		}
		b.WriteString("    \"particle\": \"e2e:block/stone\"\n  }\n}\n")
		p := filepath.Join(dir, "assets/e2e/model/m"+strconv.Itoa(i)+".json")
		os.MkdirAll(filepath.Dir(p), 0o755)
		os.WriteFile(p, b.Bytes(), 0o644)
		total += int64(b.Len())
	}
	url := startServer(t, "-packs", dir, "-preload", "e2e:*", "-world", "none")
	on := syncChunks(t, url, t.TempDir())
	off := syncChunks(t, url, t.TempDir(), "-no-compression")
	if on.BytesReceived != off.BytesReceived || on.BytesReceived < total {
		t.Fatalf("resource bytes: %d with zstd, %d without, %d in the pack", on.BytesReceived, off.BytesReceived, total)
	}
	if on.WireBytes*2 > on.BytesReceived || off.WireBytes != off.BytesReceived {
		t.Fatalf("wire bytes %d of %d with zstd (want ≤ half), %d of %d refused (want equal)", on.WireBytes, on.BytesReceived, off.WireBytes, off.BytesReceived)
	}
}
