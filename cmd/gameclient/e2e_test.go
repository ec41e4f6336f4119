package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"database/sql"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/voxsync/voxsync/session/probe"
	_ "modernc.org/sqlite"
)

// The binaries under test, built once by TestMain.
var serverBin, clientBin string

func TestMain(m *testing.M) {
	if spec := os.Getenv(floorClientEnv); spec != "" {
		runFloorClient(spec)
		return
	}
	flag.Parse()
	dir, err := os.MkdirTemp("", "voxsync-e2e")
	if err != nil {
		panic(err)
	}
	serverBin, clientBin = filepath.Join(dir, "gameserver"), filepath.Join(dir, "gameclient")
	// Tests check behaviour, with the race detector; benchmarks measure
	// speed and memory, which the race detector would distort.
	build := []string{"build", "-race"}
	if f := flag.Lookup("test.bench"); f != nil && f.Value.String() != "" {
		build = []string{"build"}
	}
	for bin, pkg := range map[string]string{serverBin: "../gameserver", clientBin: "."} {
		if out, err := exec.Command("go", append(build, "-o", bin, pkg)...).CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "build %s: %v\n%s", pkg, err, out)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// startServer runs gameserver and returns its ws URL once it listens.
func startServer(t testing.TB, args ...string) string {
	url, _ := startServerCmd(t, args...)
	return url
}

// startServerCmd also returns the process, for measuring it.
func startServerCmd(t testing.TB, args ...string) (string, *exec.Cmd) {
	t.Helper()
	url, _, cmd := startServerAdmin(t, args...)
	return url, cmd
}

// startServerAdmin also returns the admin listener's base URL
// (http://host:port), where /metrics and /status are.
func startServerAdmin(t testing.TB, args ...string) (string, string, *exec.Cmd) {
	t.Helper()
	url, cmd, log := startServerLog(t, args...)
	admin := ""
	if m := regexp.MustCompile(`admin=(http://\S+)`).FindStringSubmatch(log()); m != nil {
		admin = m[1]
	}
	return url, admin, cmd
}

// startServerLog also returns what the server has logged so far.
func startServerLog(t testing.TB, args ...string) (string, *exec.Cmd, func() string) {
	t.Helper()
	cmd := exec.Command(serverBin, append([]string{"-listen", "127.0.0.1:0", "-admin-listen", "127.0.0.1:0"}, args...)...)
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	})
	var (
		mu  sync.Mutex // guards log
		log strings.Builder
	)
	logged := func() string {
		mu.Lock()
		defer mu.Unlock()
		return log.String()
	}
	re := regexp.MustCompile(`ws=(ws://\S+/ws)`)
	sc := bufio.NewScanner(stderr)
	urlc := make(chan string, 1)
	go func() {
		for sc.Scan() {
			mu.Lock()
			log.WriteString(sc.Text() + "\n")
			mu.Unlock()
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				urlc <- m[1]
			}
			if testing.Verbose() {
				fmt.Fprintln(os.Stderr, "server:", sc.Text())
			}
		}
	}()
	select {
	case u := <-urlc:
		return u, cmd, logged
	case <-time.After(60 * time.Second):
		t.Fatalf("gameserver did not start listening:\n%s", logged())
		return "", nil, nil
	}
}

type result struct {
	Bound         int     `json:"bound"`
	Loaded        int     `json:"loaded"`
	Failed        int     `json:"failed"`
	FromPack      int     `json:"from_pack"`
	FromInline    int     `json:"from_inline"`
	FromBlob      int     `json:"from_blob"`
	FromNetwork   int     `json:"from_network"`
	BytesReceived int64   `json:"bytes_received"`
	Seconds       float64 `json:"seconds"`
	Synced        bool    `json:"synced"`
}

func syncOnce(t *testing.T, url, cache string, extra ...string) result {
	t.Helper()
	r := syncChunks(t, url, cache, extra...)
	if r.Bound == 0 {
		t.Fatalf("nothing bound: %+v", r)
	}
	return r.result
}

// makePack writes a pack with small (inline) and large (blob) files and
// returns the total size of what it holds.
func makePack(t *testing.T) (string, int64) {
	dir := t.TempDir()
	r := rand.New(rand.NewPCG(1, 2))
	var total int64
	write := func(rel string, n int) {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		p := filepath.Join(dir, rel)
		os.MkdirAll(filepath.Dir(p), 0o755)
		os.WriteFile(p, b, 0o644)
		total += int64(n)
	}
	for i := range 40 {
		write(fmt.Sprintf("assets/e2e/texture/t%02d.png", i), 200+i*50)
	}
	write("assets/e2e/sound/big1.ogg", 300_000)
	write("assets/e2e/model/big2.b3d", 1_500_000)
	return dir, total
}

func builtinTotal(t *testing.T, url string) (int, int64) {
	r := syncOnce(t, url, t.TempDir())
	return r.Bound, r.BytesReceived
}

func TestColdWarmAndCorruptCache(t *testing.T) {
	pack, packBytes := makePack(t)
	builtinURL := startServer(t)
	nBuiltin, builtinBytes := builtinTotal(t, builtinURL)

	url := startServer(t, "-packs", pack)
	cache := t.TempDir()

	cold := syncOnce(t, url, cache)
	if cold.Bound != nBuiltin+42 || cold.FromNetwork != cold.Bound {
		t.Fatalf("cold sync: %+v, want %d all from network", cold, nBuiltin+42)
	}
	if cold.BytesReceived != packBytes+builtinBytes {
		t.Fatalf("cold sync received %d bytes, want %d", cold.BytesReceived, packBytes+builtinBytes)
	}

	warm := syncOnce(t, url, cache)
	if warm.BytesReceived != 0 || warm.FromNetwork != 0 || warm.FromInline+warm.FromBlob != warm.Bound || warm.FromBlob != 2 {
		t.Fatalf("warm sync: %+v", warm)
	}

	// Corrupt one entry of each kind; exactly those come from the network.
	db, err := sql.Open("sqlite", filepath.Join(cache, "db.sqlite3"))
	if err != nil {
		t.Fatal(err)
	}
	var inline1, inline2 []byte
	db.QueryRow("SELECT hash FROM inline_blobs ORDER BY hash LIMIT 1").Scan(&inline1)
	db.QueryRow("SELECT hash FROM inline_blobs ORDER BY hash LIMIT 1 OFFSET 1").Scan(&inline2)
	mustExec(t, db, "UPDATE inline_blobs SET data = zeroblob(size) WHERE hash = ?", inline1)
	mustExec(t, db, "DELETE FROM inline_blobs WHERE hash = ?", inline2) // plain miss
	blobs, _ := filepath.Glob(filepath.Join(cache, "blobs", "*", "*"))
	if len(blobs) != 2 {
		t.Fatalf("blob files: %v", blobs)
	}
	os.Truncate(blobs[0], 1000)
	h1 := filepath.Base(blobs[1])
	mustExec(t, db, "DELETE FROM file_blobs WHERE lower(hex(hash)) = ?", h1) // file without row: adopted
	db.Close()

	// The missing row and the truncated file are misses; the zeroed
	// inline entry is a hit whose bytes are verified when they are read,
	// which this client does not do (a game does; see session's
	// TestSyncerFetchesAgainWhatFailsWhenRead). `cache verify` finds it.
	again := syncOnce(t, url, cache)
	if again.FromNetwork != 2 || again.FromBlob != 1 {
		t.Fatalf("after corrupting 3 entries and dropping a blob's row: %+v", again)
	}
	var v struct {
		Bad []struct {
			Tier string `json:"tier"`
		} `json:"bad"`
	}
	cacheJSON(t, 1, &v, "verify", "-cache", cache)
	if len(v.Bad) != 1 || v.Bad[0].Tier != "inline" {
		t.Fatalf("cache verify after the sync: %+v, want the zeroed inline entry", v)
	}
	if r := syncOnce(t, url, cache); r.FromNetwork != 1 {
		t.Fatalf("after verify dropped the zeroed entry: %+v", r)
	}
	final := syncOnce(t, url, cache)
	if final.FromNetwork != 0 || final.BytesReceived != 0 {
		t.Fatalf("after repair: %+v", final)
	}

	// A row whose file is missing.
	blobs, _ = filepath.Glob(filepath.Join(cache, "blobs", "*", "*"))
	os.Remove(blobs[0])
	if r := syncOnce(t, url, cache); r.FromNetwork != 1 {
		t.Fatalf("after deleting a blob file: %+v", r)
	}

	// The client's own copy of the pack is used by hash, nothing fetched.
	if r := syncOnce(t, url, t.TempDir(), "-packs", pack); r.FromPack != 42 || r.FromNetwork != nBuiltin {
		t.Fatalf("with the pack locally: %+v", r)
	}
}

func mustExec(t *testing.T, db *sql.DB, q string, args ...any) {
	t.Helper()
	res, err := db.Exec(q, args...)
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := res.RowsAffected(); n != 1 {
		t.Fatalf("%s: %d rows", q, n)
	}
}

func TestLostAfterMovingAway(t *testing.T) {
	url := startServer(t, "-preload", "none")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, clientBin, "-server", url, "-cache", t.TempDir(), "-walk", "-walk-every", "150ms", "-log-level", "error")
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(stderr)
	loaded, lost := 0, 0
	for sc.Scan() && lost == 0 {
		line := sc.Text()
		if strings.HasPrefix(line, "loaded ") {
			loaded++
		}
		if strings.HasPrefix(line, "lost ") {
			lost++
		}
	}
	cmd.Process.Signal(os.Interrupt)
	io.Copy(io.Discard, stderr)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("gameclient exit after SIGINT: %v", err)
	}
	if loaded == 0 || lost == 0 {
		t.Fatalf("walking: %d loaded, %d lost lines", loaded, lost)
	}
}

// A client killed mid-download leaves no half-written entry: the next run
// fetches what is missing and the cache verifies.
// A player visits two servers with a 4 MiB cache cap: after the second
// sync the first server's blobs are evicted, the second's (bound) stay.
func TestCacheStaysUnderItsCap(t *testing.T) {
	mkPack := func(seed byte) (string, []string) {
		dir := t.TempDir()
		var hashes []string
		for i := range 3 {
			b := make([]byte, 1<<20)
			rand.NewChaCha8([32]byte{seed, byte(i)}).Read(b)
			p := filepath.Join(dir, fmt.Sprintf("assets/s%d/model/m%d.b3d", seed, i))
			os.MkdirAll(filepath.Dir(p), 0o755)
			os.WriteFile(p, b, 0o644)
			hashes = append(hashes, fmt.Sprintf("%x", sha256.Sum256(b)))
		}
		return dir, hashes
	}
	p1, h1 := mkPack(1)
	p2, h2 := mkPack(2)
	cache := t.TempDir()
	syncOnce(t, startServer(t, "-packs", p1), cache, "-cache-max-mib", "4")
	syncOnce(t, startServer(t, "-packs", p2), cache, "-cache-max-mib", "4")
	present := func(h string) bool {
		_, err := os.Stat(filepath.Join(cache, "blobs", h[:2], h))
		return err == nil
	}
	for _, h := range h2 {
		if !present(h) {
			t.Fatalf("blob %s of the current server was evicted", h[:12])
		}
	}
	left := 0
	for _, h := range h1 {
		if present(h) {
			left++
		}
	}
	if left > 0 {
		t.Fatalf("%d of the first server's 1 MiB blobs still cached with a 4 MiB cap", left)
	}
}

// gameserver refuses bad configuration with one error naming the setting,
// and on SIGTERM tells connected clients why it goes.
func TestServerBinaryConfigErrorsAndShutdown(t *testing.T) {
	for _, args := range [][]string{
		{"-listen", "nowhere"},
		{"-preload", "textures/*"},
		{"-config", filepath.Join(t.TempDir(), "missing.toml")},
	} {
		out, err := exec.Command(serverBin, args...).CombinedOutput()
		if err == nil {
			t.Fatalf("%v: exit 0", args)
		}
		if lines := strings.Count(strings.TrimSpace(string(out)), "\n"); lines != 0 || !strings.HasPrefix(string(out), "gameserver: ") {
			t.Errorf("%v: want one line of error, got %q", args, out)
		}
	}
	if out, _ := exec.Command(serverBin, "-listen", "nowhere").CombinedOutput(); !strings.Contains(string(out), "listen") {
		t.Errorf("error does not name the setting: %q", out)
	}

	url, cmd := startServerCmd(t)
	c, err := probe.Join(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.WaitBinds(1, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	err = c.WaitBinds(1<<20, 10*time.Second) // reads until the server says goodbye
	if err == nil || !strings.Contains(err.Error(), "shutdown: server shutting down") {
		t.Fatalf("after SIGTERM: %v", err)
	}
}
