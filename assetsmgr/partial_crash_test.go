package assetsmgr

import (
	"bufio"
	"context"
	"database/sql"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/voxsync/voxsync/manifest"
	"github.com/voxsync/voxsync/resources"
)

// The partial crash harness: a child process (this test binary, in
// TestPartialCrashChild) opens a partial and Puts its chunks from two
// goroutines, printing "synced N" after each durability flush; the parent
// kills it with SIGKILL at a random moment, again and again. After every
// kill, as the dead child left the cache: integrity_check passes; every
// recorded chunk's bytes are in the partial file and match (or the
// partial already became its blob, which verifies whole); and at least the
// N the child last reported are held when the cache is opened again.

const (
	crashChildEnv  = "ASSETSMGR_PARTIAL_CRASH_DIR"
	crashKillsWant = 24
	crashSize      = 8 << 20
	crashSeed      = 99
)

func crashResource(t testing.TB) ([]byte, resources.Hash) {
	data := chachaBytes(crashSeed, crashSize)
	return data, resources.Sum(data)
}

// TestPartialCrashChild is the child's side; it runs only when the parent
// sets crashChildEnv.
func TestPartialCrashChild(t *testing.T) {
	dir := os.Getenv(crashChildEnv)
	if dir == "" {
		t.Skip("the child of TestPartialCrashSafety")
	}
	data, h := crashResource(t)
	m := fixedManifest(t, data, testChunk)
	c, err := Open(context.Background(), Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	var out sync.Mutex // guards stdout lines
	say := func(format string, args ...any) {
		out.Lock()
		fmt.Fprintf(os.Stdout, format+"\n", args...)
		out.Unlock()
	}
	c.partialFlushed = func(_ resources.Hash, n int) { say("synced %d", n) }
	p, err := c.OpenPartial(context.Background(), h, m)
	if err != nil {
		t.Fatal(err)
	}
	todo := p.Missing()
	say("ready %d", len(m.Chunks)-len(todo))
	r := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 3))
	r.Shuffle(len(todo), func(i, j int) { todo[i], todo[j] = todo[j], todo[i] })
	next := make(chan int)
	var wg sync.WaitGroup
	for g := range 2 {
		wg.Go(func() {
			for i := range next {
				if err := p.Put(i, chunkOf(data, m, i)); err != nil {
					t.Error(err)
				}
				say("put")
				// About 40 MB/s: flushes by size and by time in a run.
				time.Sleep(time.Duration(2+(g+i)%3) * time.Millisecond)
			}
		})
	}
	for _, i := range todo {
		next <- i
	}
	close(next)
	wg.Wait()
	errc := make(chan error, 1)
	if err := p.Commit(func(err error) { errc <- err }); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	say("committed")
	c.Close()
}

func TestPartialCrashSafety(t *testing.T) {
	if testing.Short() {
		t.Skip("kills child processes")
	}
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rnd := rand.New(rand.NewPCG(seed, 11))
	data, h := crashResource(t)
	m := fixedManifest(t, data, testChunk)
	start := time.Now()

	var kills, runs, completed, checkedChunks int
	var held, lostTotal, lostMax int // chunks held in dir; lost to kills
	// Kills land at a random moment of a run (start-up included); a run
	// that ends before its kill narrows the window for the next ones into
	// the same cache, which have less left to do.
	coldWindow := 400 * time.Millisecond
	window := coldWindow
	dir, cold := t.TempDir(), true
	for kills < crashKillsWant {
		if runs > 4*crashKillsWant {
			t.Fatalf("only %d of %d runs were killed before they ended", kills, runs)
		}
		runs++
		cmd := exec.Command(os.Args[0], "-test.run=^TestPartialCrashChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), crashChildEnv+"="+dir, "GORACE=atexit_sleep_ms=0 "+os.Getenv("GORACE"))
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stderr = io.Discard
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		var synced, puts int
		var committed bool
		readDone := make(chan struct{})
		go func() {
			defer close(readDone)
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				f := strings.Fields(sc.Text())
				switch {
				case len(f) == 2 && f[0] == "synced":
					n, _ := strconv.Atoi(f[1])
					synced = max(synced, n)
				case len(f) == 1 && f[0] == "put":
					puts++
				case len(f) == 1 && f[0] == "committed":
					committed = true
				}
			}
		}()
		d := time.Duration(rnd.Int64N(int64(window))) + time.Millisecond
		time.Sleep(d)
		cmd.Process.Kill()
		<-readDone
		cmd.Wait()
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			kills++
		} else if !committed {
			t.Fatalf("child ended without being killed or committing: %v", cmd.ProcessState)
		} else {
			window = max(d, 20*time.Millisecond)
			if cold {
				coldWindow = window
			}
		}
		cold = false
		checkedChunks += checkPartialAfterCrash(t, dir, h, data, synced)
		after, complete := reopenAfterCrash(t, dir, h, m, synced)
		if !complete {
			// Put by the killed run but not durable: fetched again.
			lost := max(0, held+puts-after)
			lostTotal, lostMax = lostTotal+lost, max(lostMax, lost)
			held = after
		} else {
			completed++
			dir, window, cold, held = t.TempDir(), coldWindow, true, 0 // start over
		}
	}
	t.Logf("%d SIGKILLs in %d runs (%d resources completed), %d recorded chunks checked, in %s; "+
		"chunks put but not durable at a kill: %d in all, at most %d (%d KiB)",
		kills, runs, completed, checkedChunks, time.Since(start).Round(time.Millisecond), lostTotal, lostMax, lostMax*testChunk>>10)
}

// checkPartialAfterCrash checks the cache as the killed child left it,
// before anything opens it, and returns how many recorded chunks it
// verified.
func checkPartialAfterCrash(t *testing.T, dir string, h resources.Hash, data []byte, synced int) int {
	t.Helper()
	dbPath := filepath.Join(dir, dbName)
	if _, err := os.Stat(dbPath); err != nil {
		if synced > 0 {
			t.Fatalf("no database, but the child reported %d chunks synced", synced)
		}
		return 0
	}
	db, err := sql.Open("sqlite", dbPath)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var check string
	if err := db.QueryRow("PRAGMA integrity_check").Scan(&check); err != nil || check != "ok" {
		t.Fatalf("integrity_check after a kill: %q %v", check, err)
	}
	rows, err := db.Query("SELECT offset, length, chunk FROM partial_chunks WHERE hash = ?", h[:])
	if err != nil {
		if strings.Contains(err.Error(), "no such table") && synced == 0 {
			return 0 // killed before the schema was applied
		}
		t.Fatal(err)
	}
	var recorded []chunkRow
	for rows.Next() {
		var r chunkRow
		var cb []byte
		if err := rows.Scan(&r.offset, &r.length, &cb); err != nil {
			t.Fatal(err)
		}
		copy(r.chunk[:], cb)
		recorded = append(recorded, r)
	}
	rows.Close()

	f, err := os.Open(partialFile(dir, h))
	if err != nil {
		// Killed between Commit's rename and its commit: the file is the
		// blob now, complete and verified; the next Open adopts it.
		b, rerr := os.ReadFile(blobPath(filepath.Join(dir, "blobs"), h))
		if rerr != nil || resources.Sum(b) != h {
			if len(recorded) > 0 {
				t.Fatalf("%d chunks recorded, but the partial file is gone and no complete blob is there: %v", len(recorded), err)
			}
		}
		return 0
	}
	defer f.Close()
	for _, r := range recorded {
		b := make([]byte, r.length)
		if _, err := f.ReadAt(b, r.offset); err != nil {
			t.Fatalf("recorded chunk at %d+%d not on disk: %v", r.offset, r.length, err)
		}
		if resources.Sum(b) != r.chunk || r.chunk != resources.Sum(data[r.offset:r.offset+r.length]) {
			t.Fatalf("recorded chunk at %d+%d has other bytes than its hash says", r.offset, r.length)
		}
	}
	if len(recorded) < synced {
		// Fewer rows than the child saw committed, unless the partial was
		// committed as a blob meanwhile (its rows go in the same commit).
		var n int
		db.QueryRow("SELECT count(*) FROM file_blobs WHERE hash = ?", h[:]).Scan(&n)
		if n == 0 {
			t.Fatalf("%d chunks recorded, but the child reported %d synced", len(recorded), synced)
		}
	}
	return len(recorded)
}

// reopenAfterCrash opens the cache as the next run would and checks what
// it holds: the chunks held, or that the resource is complete.
func reopenAfterCrash(t *testing.T, dir string, h resources.Hash, m *manifest.Manifest, synced int) (held int, complete bool) {
	t.Helper()
	c, err := Open(context.Background(), Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if b, ok := lookup(t, c, h); ok {
		got, err := b.ReadAll()
		if err != nil || resources.Sum(got) != h {
			t.Fatalf("complete resource read back wrong: %v", err)
		}
		return len(m.Chunks), true
	}
	p, err := c.OpenPartial(context.Background(), h, m)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	held = len(m.Chunks) - len(p.Missing())
	if held < synced {
		t.Fatalf("reopened partial holds %d chunks, but the child reported %d synced", held, synced)
	}
	return held, false
}
