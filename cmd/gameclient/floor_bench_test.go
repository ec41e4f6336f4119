package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// floorClientEnv, when set in a test binary's environment, makes it a
// floor client instead of running tests: "reload|URL|cache dir|store mode"
// (BenchmarkHotReloadProcessesFloor) or "sync|URL|cache dir|FULL or none"
// (BenchmarkColdSyncClientCPU).
//
// A floor client does one job with the parts the real client is made of
// (gorilla/websocket, crypto/sha256, modernc.org/sqlite with the cache's
// settings) and nothing else: no protocol, no state machine, no
// goroutines but main. What the real client costs above a floor is ours
// to cut; a target below the floor cannot be met with these parts on this
// machine.
const floorClientEnv = "VOXSYNC_FLOOR_CLIENT"

func runFloorClient(spec string) {
	f := strings.Split(spec, "|")
	var err error
	switch {
	case len(f) != 4:
		err = fmt.Errorf("%s=%q: want 4 fields", floorClientEnv, spec)
	case f[0] == "reload":
		err = floorReload(f[1], f[2], f[3])
	case f[0] == "sync":
		err = floorSync(f[1], f[2], f[3] == "none")
	default:
		err = fmt.Errorf("unknown floor client %q", f[0])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "floor client:", err)
		os.Exit(1)
	}
}

// floorGC is the collector setting gameclient syncs with (tuneGC).
const floorGC = "GOGC=400"

// floorDialer reads through the same 64 KiB buffer as the Syncer's.
var floorDialer = websocket.Dialer{ReadBufferSize: 64 << 10, WriteBufferSize: 16 << 10}

// floorReload is the least a client process can do for one hot-reloaded
// resource: one goroutine that reads a WebSocket message (a SHA-256 and the
// new bytes), verifies it, commits it to an sqlite cache as our store does
// (WAL, 4 KiB pages, incremental auto-vacuum, synchronous FULL, or NORMAL,
// or no store at all; the statement prepared once) and prints a line. No
// Bind, no request, no lookup, no hand-offs: what is left of the real
// client's work once everything but the parts is gone.
func floorReload(url, dir, mode string) error {
	var st *floorStore
	if mode != "none" {
		var err error
		if st, err = openFloorStore(dir, mode); err != nil {
			return err
		}
	}
	conn, _, err := floorDialer.Dial(url, nil)
	if err != nil {
		return err
	}
	fmt.Fprintln(os.Stderr, "ready")
	var msg []byte
	for {
		msg, err = readMessage(conn, msg)
		if err != nil {
			return nil // the benchmark is over
		}
		if len(msg) < sha256.Size || sha256.Sum256(msg[sha256.Size:]) != [sha256.Size]byte(msg[:sha256.Size]) {
			return fmt.Errorf("message does not verify")
		}
		if st != nil {
			err := st.commit([]floorRow{{hash: msg[:sha256.Size], data: msg[sha256.Size:]}}, false)
			if err != nil {
				return err
			}
		}
		fmt.Fprintln(os.Stderr, "stored")
	}
}

// floorStore is an sqlite cache with our store's settings, tables and
// habits: one connection, statements prepared once, BEGIN IMMEDIATE …
// COMMIT.
type floorStore struct {
	conn                *sql.Conn
	inline, file, named *sql.Stmt
}

// floorRow is a resource to record: inline with its bytes, or a blob
// file already in place (data only for its length); named if typ is set.
type floorRow struct {
	hash, data []byte
	typ, ref   string
	file       bool
}

func openFloorStore(dir, sync string) (*floorStore, error) {
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "db.sqlite3")+
		"?_pragma=auto_vacuum(2)&_pragma=journal_mode(WAL)&_pragma=synchronous("+sync+")")
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(1)
	ctx := context.Background()
	for _, q := range []string{
		`CREATE TABLE IF NOT EXISTS inline_blobs (hash BLOB NOT NULL UNIQUE, size INTEGER NOT NULL,
			last_used INTEGER NOT NULL, data BLOB NOT NULL) STRICT`,
		`CREATE TABLE IF NOT EXISTS file_blobs (hash BLOB PRIMARY KEY, size INTEGER NOT NULL,
			last_used INTEGER NOT NULL) STRICT, WITHOUT ROWID`,
		`CREATE TABLE IF NOT EXISTS blob_names (hash BLOB NOT NULL, type TEXT NOT NULL, ref TEXT NOT NULL,
			PRIMARY KEY (hash, type, ref)) STRICT, WITHOUT ROWID`,
	} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			return nil, err
		}
	}
	st := &floorStore{}
	if st.conn, err = db.Conn(ctx); err != nil {
		return nil, err
	}
	for q, p := range map[string]**sql.Stmt{
		`INSERT OR REPLACE INTO inline_blobs (hash, size, last_used, data) VALUES (?, ?, ?, ?)`: &st.inline,
		`INSERT OR REPLACE INTO file_blobs (hash, size, last_used) VALUES (?, ?, ?)`:            &st.file,
		`INSERT OR IGNORE INTO blob_names (hash, type, ref) VALUES (?, ?, ?)`:                   &st.named,
	} {
		if *p, err = st.conn.PrepareContext(ctx, q); err != nil {
			return nil, err
		}
	}
	return st, nil
}

// commit records rows in one transaction.
func (st *floorStore) commit(rows []floorRow, named bool) error {
	ctx := context.Background()
	if _, err := st.conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		return err
	}
	now := time.Now().Unix()
	for _, r := range rows {
		var err error
		if r.file {
			_, err = st.file.ExecContext(ctx, r.hash, len(r.data), now)
		} else {
			_, err = st.inline.ExecContext(ctx, r.hash, len(r.data), now, r.data)
		}
		if err == nil && named {
			_, err = st.named.ExecContext(ctx, r.hash, r.typ, r.ref)
		}
		if err != nil {
			st.conn.ExecContext(ctx, "ROLLBACK")
			return err
		}
	}
	_, err := st.conn.ExecContext(ctx, "COMMIT")
	return err
}

// floorSync is the least a client process can do for a cold sync: read
// every resource from one WebSocket (a first message with the count, then
// one message each: SHA-256 | u16 name length | name | bytes), verify
// each, keep it durably as our cache does (up to 64 KiB in a row with a
// row for its name, larger in a file fsynced and renamed into place with
// a row, the directory fsynced once a batch), committing every 256
// resources and at the end, then print "synced" and exit. With noStore it
// opens no database, verifies and keeps nothing.
func floorSync(url, dir string, noStore bool) error {
	var st *floorStore
	blobs := filepath.Join(dir, "blobs")
	if !noStore {
		var err error
		if st, err = openFloorStore(dir, "FULL"); err != nil {
			return err
		}
		if err := os.MkdirAll(blobs, 0o755); err != nil {
			return err
		}
	}
	conn, _, err := floorDialer.Dial(url, nil)
	if err != nil {
		return err
	}
	defer conn.Close()
	var msg []byte
	if msg, err = readMessage(conn, msg); err != nil || len(msg) != 4 {
		return fmt.Errorf("read count: %v", err)
	}
	var batch []floorRow
	var arena []byte // the batch's inline bytes
	placed := false  // a blob file was renamed into blobs since its last fsync
	commit := func() error {
		if len(batch) == 0 {
			return nil
		}
		if placed {
			if err := syncDir(blobs); err != nil {
				return err
			}
			placed = false
		}
		err := st.commit(batch, true)
		batch, arena = batch[:0], arena[:0]
		return err
	}
	for n := binary.BigEndian.Uint32(msg); n > 0; n-- {
		if msg, err = readMessage(conn, msg); err != nil {
			return err
		}
		if len(msg) < sha256.Size+2 {
			return fmt.Errorf("short message")
		}
		nl := int(binary.BigEndian.Uint16(msg[sha256.Size:]))
		if len(msg) < sha256.Size+2+nl {
			return fmt.Errorf("short message")
		}
		name, data := string(msg[sha256.Size+2:sha256.Size+2+nl]), msg[sha256.Size+2+nl:]
		if sha256.Sum256(data) != [sha256.Size]byte(msg[:sha256.Size]) {
			return fmt.Errorf("%s does not verify", name)
		}
		if noStore {
			continue
		}
		typ, ref, _ := strings.Cut(name, "|")
		if len(data) > 64<<10 {
			if err := floorPlace(filepath.Join(blobs, hex.EncodeToString(msg[:sha256.Size])), data); err != nil {
				return err
			}
			placed = true
			// Only the hash and length are kept: the bytes are on disk.
			batch = append(batch, floorRow{hash: append([]byte(nil), msg[:sha256.Size]...), data: make([]byte, len(data)), typ: typ, ref: ref, file: true})
		} else {
			if cap(arena)-len(arena) < len(msg) {
				// A new arena: rows already in the batch keep the old one.
				arena = make([]byte, 0, max(4<<20, len(msg)))
			}
			start := len(arena)
			arena = append(arena, msg...)
			kept := arena[start:]
			batch = append(batch, floorRow{hash: kept[:sha256.Size], data: kept[sha256.Size+2+nl:], typ: typ, ref: ref})
		}
		if len(batch) == 256 {
			if err := commit(); err != nil {
				return err
			}
		}
	}
	if !noStore {
		if err := commit(); err != nil {
			return err
		}
	}
	fmt.Fprintln(os.Stderr, "synced")
	return nil
}

// floorPlace writes a blob file as the cache does: a temp file, fsynced,
// renamed into place (the directory is fsynced by the caller, once for a
// batch).
func floorPlace(final string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(final), ".tmp-*")
	if err != nil {
		return err
	}
	if _, err := tmp.Write(data); err == nil {
		err = tmp.Sync()
	}
	if err == nil {
		err = tmp.Close()
	}
	if err == nil {
		err = os.Rename(tmp.Name(), final)
	}
	if err != nil {
		os.Remove(tmp.Name())
	}
	return err
}

// syncDir fsyncs a directory, making the renames into it durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// readMessage reads the next message into buf's storage, growing it only
// for a larger message than any before (gorilla's ReadMessage allocates
// every message, which is not what a floor should pay).
func readMessage(conn *websocket.Conn, buf []byte) ([]byte, error) {
	_, r, err := conn.NextReader()
	if err != nil {
		return nil, err
	}
	buf = buf[:0]
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return nil, err
		}
	}
}

// BenchmarkHotReloadProcessesFloor is BenchmarkHotReloadProcesses's floor
// on this machine: 100 floor client processes (runFloorClient), caches on
// disk, each sent a new 60 KB resource at once; the latency is from the
// send to each process's line. It leaves out everything the real system
// adds (noticing the rename, hashing it, Bind, request, lookup), so the
// real figure cannot be below it. store=FULL is durable when reported, as
// ours is; NORMAL survives a crash of the process but not of the machine;
// none stores nothing.
func BenchmarkHotReloadProcessesFloor(b *testing.B) {
	const clients = 100
	bin, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}
	for _, mode := range []string{"FULL", "NORMAL", "none"} {
		b.Run("store="+mode, func(b *testing.B) {
			var mu sync.Mutex
			var conns []*websocket.Conn
			up := websocket.Upgrader{}
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				c, err := up.Upgrade(w, r, nil)
				if err != nil {
					return
				}
				mu.Lock()
				conns = append(conns, c)
				mu.Unlock()
			}))
			defer srv.Close()
			url := "ws" + strings.TrimPrefix(srv.URL, "http")
			stored := make(chan time.Time, clients*4)
			var pids []int
			cacheRoot := b.TempDir()
			for i := range clients {
				dir := filepath.Join(cacheRoot, itoa(i))
				os.MkdirAll(dir, 0o755)
				cmd := exec.Command(bin, "-test.run", "^$")
				cmd.Env = append(os.Environ(), floorGC, floorClientEnv+"=reload|"+url+"|"+dir+"|"+mode)
				stderr, _ := cmd.StderrPipe()
				if err := cmd.Start(); err != nil {
					b.Fatal(err)
				}
				defer func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() }()
				pids = append(pids, cmd.Process.Pid)
				ready := make(chan struct{})
				go func() {
					sc := bufio.NewScanner(stderr)
					for sc.Scan() {
						switch sc.Text() {
						case "ready":
							close(ready)
						case "stored":
							stored <- time.Now()
						default:
							b.Error(sc.Text())
						}
					}
				}()
				select {
				case <-ready:
				case <-time.After(30 * time.Second):
					b.Fatalf("floor client %d did not start", i)
				}
			}
			for {
				mu.Lock()
				n := len(conns)
				mu.Unlock()
				if n == clients {
					break
				}
				time.Sleep(time.Millisecond)
			}
			time.Sleep(500 * time.Millisecond)
			cpu := func() (sum time.Duration) {
				for _, pid := range pids {
					sum += procCPU(b, pid)
				}
				return sum
			}
			cpu0 := cpu()
			msg := make([]byte, sha256.Size+60_000)
			var lat []time.Duration
			for b.Loop() {
				rand.Read(msg[sha256.Size:])
				sum := sha256.Sum256(msg[sha256.Size:])
				copy(msg, sum[:])
				start := time.Now()
				for _, c := range conns {
					if err := c.WriteMessage(websocket.BinaryMessage, msg); err != nil {
						b.Fatal(err)
					}
				}
				for range clients {
					select {
					case at := <-stored:
						lat = append(lat, at.Sub(start))
					case <-time.After(30 * time.Second):
						b.Fatal("a floor client did not store the message")
					}
				}
				time.Sleep(20 * time.Millisecond)
			}
			b.ReportMetric(float64((cpu()-cpu0).Microseconds())/1000/float64(b.N)/clients, "client-ms/reload")
			reportLatency(b, lat)
			for _, c := range conns {
				c.Close()
			}
		})
	}
}

// BenchmarkColdSyncClientCPU syncs the ~2,600-file corpus into an empty
// cache on tmpfs, alternating two client processes in each iteration:
// gameclient -until-synced against gameserver, and the floor client
// (floorSync) against a server that only sends the files. It reports the
// CPU (user + system) of each process per sync; the issue asks the
// client's to be half of version 1's (0.12 s), 60 ms.
func BenchmarkColdSyncClientCPU(b *testing.B) {
	dir, info := benchCorpus(b)
	url := startServer(b, "-packs", dir)

	// The floor's server: the count, then each file as
	// SHA-256 | u16 name length | "type|domain:key" | bytes.
	var msgs [][]byte
	for _, p := range info.Paths {
		data, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(p)))
		if err != nil {
			b.Fatal(err)
		}
		parts := strings.SplitN(p, "/", 4) // assets/<domain>/<type>/<key>
		name := parts[2] + "|" + parts[1] + ":" + parts[3]
		sum := sha256.Sum256(data)
		msg := append(sum[:], byte(len(name)>>8), byte(len(name)))
		msgs = append(msgs, append(append(msg, name...), data...))
	}
	up := websocket.Upgrader{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		c.WriteMessage(websocket.BinaryMessage, binary.BigEndian.AppendUint32(nil, uint32(len(msgs))))
		for _, m := range msgs {
			if c.WriteMessage(websocket.BinaryMessage, m) != nil {
				return
			}
		}
		c.ReadMessage() // until the client hangs up
	}))
	defer srv.Close()
	floorURL := "ws" + strings.TrimPrefix(srv.URL, "http")
	bin, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}

	root := tmpfsDir(b)
	cpu := func(cmd *exec.Cmd) time.Duration {
		var stderr strings.Builder
		cmd.Stderr = &stderr
		if err := cmd.Run(); err != nil {
			b.Fatalf("%s: %v\n%s", cmd.Path, err, stderr.String())
		}
		return cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	}
	var ours, floor, bare time.Duration
	i := 0
	for b.Loop() {
		i++
		ours += cpu(exec.Command(clientBin, "-server", url, "-cache", filepath.Join(root, fmt.Sprintf("ours%d", i)),
			"-until-synced", "-json", "-cache-max-mib", "-1"))
		fdir := filepath.Join(root, fmt.Sprintf("floor%d", i))
		os.MkdirAll(fdir, 0o755)
		cmd := exec.Command(bin, "-test.run", "^$")
		cmd.Env = append(os.Environ(), floorGC, floorClientEnv+"=sync|"+floorURL+"|"+fdir+"|FULL")
		floor += cpu(cmd)
		cmd = exec.Command(bin, "-test.run", "^$")
		cmd.Env = append(os.Environ(), floorGC, floorClientEnv+"=sync|"+floorURL+"|"+fdir+"|none")
		bare += cpu(cmd)
	}
	n := float64(b.N)
	b.ReportMetric(float64(ours.Microseconds())/1000/n, "client-cpu-ms")
	b.ReportMetric(float64(floor.Microseconds())/1000/n, "floor-cpu-ms")
	b.ReportMetric(float64(bare.Microseconds())/1000/n, "floor-nostore-cpu-ms")
	b.ReportMetric(ours.Seconds()/floor.Seconds(), "ratio-vs-floor")
}
