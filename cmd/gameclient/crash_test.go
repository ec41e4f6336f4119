package main

import (
	"database/sql"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// crashKills is how many SIGKILLs must land while a gameclient runs.
const crashKills = 50

// The crash harness: a real gameclient is killed with SIGKILL at random
// moments of a sync, again and again. After every kill the database passes
// integrity_check as the dead client left it; the next start finds nothing
// corrupt and leaves no row without its data and no data without its row;
// and a full sync then downloads exactly what was not yet durable.
func TestCrashHarness(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rnd := rand.New(rand.NewPCG(seed, 12))

	pack := t.TempDir()
	write := func(rel string, n int) {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rnd.Uint32())
		}
		p := filepath.Join(pack, rel)
		os.MkdirAll(filepath.Dir(p), 0o755)
		os.WriteFile(p, b, 0o644)
	}
	for i := range 200 {
		write(fmt.Sprintf("assets/crash/texture/t%03d.png", i), 1000+rnd.IntN(20_000))
	}
	for i := range 8 {
		write(fmt.Sprintf("assets/crash/model/m%d.b3d", i), 256<<10+rnd.IntN(3<<20))
	}
	url := startServer(t, "-packs", pack)
	cold := syncOnce(t, url, t.TempDir())
	total := cold.BytesReceived
	// Kills land at a random moment within what a sync takes; a run that
	// ends before its kill narrows the window for the warmer runs after it.
	coldWindow := min(time.Duration(cold.Seconds*float64(time.Second)), 2*time.Second)

	kills, runs := 0, 0
	var slept, checking time.Duration
	for cacheNo := 0; kills < crashKills; cacheNo++ {
		if runs > 3*crashKills {
			t.Fatalf("only %d of %d runs were killed before they ended", kills, runs)
		}
		cache := t.TempDir()
		window := coldWindow
		for range 5 { // five kills into each cache: cold, then part-warm syncs
			runs++
			cmd := exec.Command(clientBin, "-server", url, "-cache", cache, "-until-synced", "-log-level", "error")
			cmd.Env = append(os.Environ(), "GORACE=atexit_sleep_ms=0 "+os.Getenv("GORACE"))
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			d := time.Duration(rnd.Int64N(int64(window)) + 1)
			slept += d
			time.Sleep(d)
			cmd.Process.Kill()
			cmd.Wait()
			if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
				kills++
			} else {
				window = max(d, 20*time.Millisecond) // it was done within d
			}
			t0 := time.Now()
			checkAfterCrash(t, cache)
			checking += time.Since(t0)
		}
		// What is durable now is not downloaded again.
		var st statsJSON
		cacheJSON(t, 0, &st, "stats", "-cache", cache)
		r := syncOnce(t, url, cache)
		durable := st.Inline.Bytes + st.Blob.Bytes + st.PartialHeld
		if want := total - durable; r.BytesReceived != want {
			t.Fatalf("cache %d: full sync after the kills received %d bytes, want %d (total %d, %d durable: %d inline, %d in blobs, %d chunks of partial downloads)",
				cacheNo, r.BytesReceived, want, total, durable, st.Inline.Bytes, st.Blob.Bytes, st.PartialHeld)
		}
	}
	t.Logf("%d SIGKILLs landed in %d runs; cold window %s, sleeping %s, checking %s", kills, runs, coldWindow, slept, checking)
}

// checkAfterCrash checks a cache a killed client left behind.
func checkAfterCrash(t *testing.T, cache string) {
	t.Helper()
	dbPath := filepath.Join(cache, "db.sqlite3")
	if _, err := os.Stat(dbPath); err == nil {
		db, err := sql.Open("sqlite", dbPath)
		if err != nil {
			t.Fatal(err)
		}
		var check string
		err = db.QueryRow("PRAGMA integrity_check").Scan(&check)
		db.Close()
		if err != nil || check != "ok" {
			t.Fatalf("integrity_check after a kill: %q %v", check, err)
		}
	}

	// The next start: verify re-hashes everything and must find nothing
	// wrong (exit 0); its Open adopts a blob file whose row was not yet
	// written.
	var v struct {
		Clean bool `json:"clean"`
	}
	cacheJSON(t, 0, &v, "verify", "-cache", cache)

	db, err := sql.Open("sqlite", dbPath)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows := map[string]bool{}
	rs, err := db.Query("SELECT lower(hex(hash)) FROM file_blobs")
	if err != nil {
		t.Fatal(err)
	}
	for rs.Next() {
		var h string
		rs.Scan(&h)
		rows[h] = true
	}
	rs.Close()
	files, _ := filepath.Glob(filepath.Join(cache, "blobs", "*", "*"))
	for _, f := range files {
		name := filepath.Base(f)
		if strings.HasPrefix(name, ".tmp-") {
			t.Fatalf("temp file left after the next start: %s", f)
		}
		if _, err := hex.DecodeString(name); err != nil || !rows[name] {
			t.Fatalf("blob file without a row after the next start: %s", f)
		}
		delete(rows, name)
	}
	for h := range rows {
		t.Fatalf("row without its blob file after the next start: %s", h)
	}
}
