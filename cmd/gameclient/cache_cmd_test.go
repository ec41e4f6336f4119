package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// cacheCmd runs "gameclient cache args..." and returns its exit code,
// stdout and stderr.
func cacheCmd(t *testing.T, args ...string) (int, []byte, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, clientBin, append([]string{"cache"}, args...)...)
	// The race detector otherwise sleeps a second at exit; a data race
	// still fails the command (exit 66).
	cmd.Env = append(os.Environ(), "GORACE=atexit_sleep_ms=0 "+os.Getenv("GORACE"))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("gameclient cache %v did not finish in 2 minutes", args)
	}
	return cmd.ProcessState.ExitCode(), stdout.Bytes(), stderr.String()
}

func cacheJSON(t *testing.T, wantCode int, v any, args ...string) {
	t.Helper()
	code, out, stderr := cacheCmd(t, append(args, "-json")...)
	if code != wantCode {
		t.Fatalf("gameclient cache %v: exit %d, want %d\nstdout: %s\nstderr: %s", args, code, wantCode, out, stderr)
	}
	if err := json.Unmarshal(out, v); err != nil {
		t.Fatalf("gameclient cache %v: output is not JSON: %v: %s", args, err, out)
	}
}

type tierJSON struct {
	Entries int64 `json:"entries"`
	Bytes   int64 `json:"bytes"`
}

type statsJSON struct {
	Inline, Blob tierJSON
	// PartialHeld: chunks of interrupted large downloads made durable,
	// which a sync resumes from rather than fetches again.
	PartialHeld int64 `json:"partial_held_bytes"`
}

type lsJSON []struct {
	Hash  string   `json:"hash"`
	Tier  string   `json:"tier"`
	Size  int64    `json:"size"`
	Names []string `json:"names"`
}

func TestCacheCommands(t *testing.T) {
	pack, _ := makePack(t)
	url := startServer(t, "-packs", pack)
	cache := t.TempDir()
	cold := syncOnce(t, url, cache)

	var st statsJSON
	cacheJSON(t, 0, &st, "stats", "-cache", cache)
	if st.Blob.Entries != 2 || st.Blob.Bytes != 1_800_000 || st.Inline.Entries == 0 || st.Inline.Bytes+st.Blob.Bytes > cold.BytesReceived {
		t.Fatalf("stats after a cold sync of %d bytes: %+v", cold.BytesReceived, st)
	}

	// ls by type and by domain:key pattern.
	tests := []struct {
		patterns []string
		check    func(ls lsJSON) bool
	}{
		{[]string{"model/e2e:*"}, func(ls lsJSON) bool {
			return len(ls) == 1 && ls[0].Tier == "blob" && ls[0].Size == 1_500_000 && strings.Join(ls[0].Names, ",") == "model/e2e:big2.b3d"
		}},
		{[]string{"texture/*"}, func(ls lsJSON) bool {
			n := 0
			for _, e := range ls {
				for _, name := range e.Names {
					if strings.HasPrefix(name, "texture/e2e:t") {
						n++
					}
				}
			}
			return n == 40
		}},
		{[]string{"e2e:*"}, func(ls lsJSON) bool { return len(ls) == 42 }},
		{[]string{"sound/e2e:*", "model/e2e:*"}, func(ls lsJSON) bool { return len(ls) == 2 }},
		{[]string{"font/nosuch:*"}, func(ls lsJSON) bool { return len(ls) == 0 }},
		{nil, func(ls lsJSON) bool { return int64(len(ls)) == st.Inline.Entries+st.Blob.Entries }},
	}
	for _, tc := range tests {
		var ls lsJSON
		cacheJSON(t, 0, &ls, append([]string{"ls", "-cache", cache}, tc.patterns...)...)
		if !tc.check(ls) {
			t.Errorf("ls %v: %+v", tc.patterns, ls)
		}
	}

	// verify: clean, then damaged (exit 1, dropped), then clean again.
	var v struct {
		Clean bool `json:"clean"`
		Bad   []struct {
			Hash  string   `json:"hash"`
			Tier  string   `json:"tier"`
			Names []string `json:"names"`
		} `json:"bad"`
	}
	cacheJSON(t, 0, &v, "verify", "-cache", cache)
	if !v.Clean {
		t.Fatalf("verify of a fresh cache: %+v", v)
	}
	blobs, _ := filepath.Glob(filepath.Join(cache, "blobs", "*", "*"))
	b, _ := os.ReadFile(blobs[0])
	b[1000] ^= 0xff
	os.WriteFile(blobs[0], b, 0o644)
	db, err := sql.Open("sqlite", filepath.Join(cache, "db.sqlite3"))
	if err != nil {
		t.Fatal(err)
	}
	mustExec(t, db, "UPDATE inline_blobs SET data = zeroblob(size) WHERE hash = (SELECT hash FROM inline_blobs ORDER BY hash LIMIT 1)")
	db.Close()
	cacheJSON(t, 1, &v, "verify", "-cache", cache)
	if v.Clean || len(v.Bad) != 2 {
		t.Fatalf("verify of a damaged cache: %+v", v)
	}
	for _, b := range v.Bad {
		// The sync recorded what each blob was loaded as: the player is
		// told which resource was damaged, not only its hash.
		if len(b.Names) != 1 {
			t.Errorf("corrupt %s entry %s reported with names %v, want the one it was loaded as", b.Tier, b.Hash, b.Names)
		}
	}
	code, out, _ := cacheCmd(t, "verify", "-cache", cache)
	if code != 0 || !strings.Contains(string(out), "all good") {
		t.Fatalf("verify after dropping: exit %d: %s", code, out)
	}
	if r := syncOnce(t, url, cache); r.FromNetwork != 2 {
		t.Fatalf("after verify dropped 2 entries: %+v", r)
	}

	// gc applies a cap now.
	var gc struct {
		Evicted      int   `json:"evicted"`
		EvictedBytes int64 `json:"evicted_bytes"`
		PageSize     int64 `json:"page_size"`
		BytesBefore  int64 `json:"database_bytes_before"`
	}
	cacheJSON(t, 0, &gc, "gc", "-cache", cache, "-cache-max-mib", "1")
	cacheJSON(t, 0, &st, "stats", "-cache", cache)
	if gc.Evicted == 0 || st.Inline.Bytes+st.Blob.Bytes > 1<<20 {
		t.Fatalf("gc to 1 MiB: %+v, then %+v", gc, st)
	}
	if gc.PageSize == 0 || gc.BytesBefore == 0 { // snake_case keys, like the rest
		t.Fatalf("gc's database figures missing from its JSON: %+v", gc)
	}
}

func TestCacheCommandUsageErrors(t *testing.T) {
	cache := t.TempDir()
	syncOnce(t, startServer(t), cache)
	for _, args := range [][]string{
		{},
		{"bogus"},
		{"ls", "-cache", cache, "not a pattern"},
		{"verify", "-cache", cache, "-nope"},
		{"stats", "-cache", cache, "extra"},
		{"gc", "-cache", cache, "-cache-max-mib", "0"},
		{"gc", "-cache", filepath.Join(cache, "missing"), "-cache-max-mib", "0"},
	} {
		code, _, stderr := cacheCmd(t, args...)
		if code != 2 || stderr == "" {
			t.Errorf("cache %v: exit %d, stderr %q; want 2 and a message", args, code, stderr)
		}
	}
	if _, _, stderr := cacheCmd(t, "stat", "-cache", cache); !strings.Contains(stderr, `unknown command "stat"; did you mean stats?`) {
		t.Errorf("cache stat: %q", stderr)
	}
	if code, _, stderr := cacheCmd(t, "verify", "-cache", filepath.Join(cache, "missing")); code != 3 || !strings.Contains(stderr, "no cache at") {
		t.Errorf("verify of a missing cache: exit %d, %q", code, stderr)
	}
	// With -json a failure is still one JSON value on stdout.
	afile := filepath.Join(t.TempDir(), "afile")
	os.WriteFile(afile, nil, 0o644)
	for _, args := range [][]string{
		{"stats", "-json", "-cache", filepath.Join(cache, "missing")},
		{"ls", "-json", "-cache", cache, "not a pattern"},
		{"gc", "-json", "-cache", afile},
		{"verify", "-json", "-cache", cache, "-nope"},
	} {
		code, stdout, _ := cacheCmd(t, args...)
		var v struct{ Error string }
		if err := json.Unmarshal([]byte(stdout), &v); code == 0 || err != nil || v.Error == "" {
			t.Errorf("cache %v: exit %d, stdout %q: want a JSON object with the error", args, code, stdout)
		}
	}
	if _, _, stderr := cacheCmd(t, "gc", "-cache", afile); !strings.Contains(stderr, afile+" is a file, not a directory") {
		t.Errorf("cache gc of a file: %q", stderr)
	}
}

// The sync's flag mistakes: exit code 2 and a line saying what is wrong,
// before anything is opened or dialled.
func TestClientUsageErrors(t *testing.T) {
	pack := filepath.Join(t.TempDir(), "mypack")
	if err := os.MkdirAll(filepath.Join(pack, "assets", "m", "texture"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-until-synced", "-timeout", "0"}, "gameclient: -timeout 0s: must be positive"},
		{[]string{"-until-synced", "-timeout", "-1s"}, "gameclient: -timeout -1s: must be positive"},
		{[]string{"extra"}, `gameclient: unexpected argument "extra"`},
		{[]string{"-server", "http://127.0.0.1:1/ws"}, `gameclient: invalid server URL "http://127.0.0.1:1/ws": scheme "http"`},
		{[]string{"-log-level", "verbose"}, "gameclient: -log-level verbose: want debug, info, warn or error"},
		{[]string{"-cache-max-mib", "0"}, "gameclient: -cache-max-mib 0: want a size in MiB"},
		{[]string{"cache", "stats"}, "a cache command comes first, its flags after it: gameclient cache stats -cache "},
		{[]string{"-nope"}, "flag provided but not defined: -nope"},
		{[]string{"-timeout", "abc"}, `invalid value "abc" for flag -timeout`},
		{[]string{"-packs", pack + "," + pack + "/"}, "gameclient: -packs " + pack + "/: listed twice (also as " + pack + ")"},
		{[]string{"-cache-max-mib", "9007199254740992"}, "gameclient: -cache-max-mib 9007199254740992: want a size in MiB"},
		// A -packs slip would otherwise serve nothing without a word.
		{[]string{"-packs", pack + "-missing"}, "gameclient: -packs " + pack + "-missing: pack directory does not exist"},
		{[]string{"-packs", filepath.Join(pack, "assets")}, "this looks like a pack's assets/ itself: did you mean " + pack + "?"},
	} {
		cache := filepath.Join(t.TempDir(), "cache")
		// A flag let through would run the client until stopped.
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, clientBin, append([]string{"-server", "ws://127.0.0.1:1/ws", "-cache", cache}, tc.args...)...)
		out, _ := cmd.CombinedOutput()
		if code := cmd.ProcessState.ExitCode(); code != 2 || !strings.Contains(string(out), tc.want) {
			t.Errorf("%v: exit %d, %q; want exit 2 and %q", tc.args, code, out, tc.want)
		}
		if _, err := os.Stat(cache); err == nil {
			t.Errorf("%v: the cache directory was created", tc.args)
		}
		// With -json, the same error as the one object a script reads.
		cmd = exec.CommandContext(ctx, clientBin, append([]string{"-json", "-server", "ws://127.0.0.1:1/ws", "-cache", cache}, tc.args...)...)
		stdout, _ := cmd.Output()
		var sum struct{ Outcome, Error string }
		if err := json.Unmarshal(stdout, &sum); err != nil || sum.Outcome != "usage" || !strings.Contains("gameclient: "+sum.Error, tc.want) {
			t.Errorf("%v -json: stdout %q; want outcome usage and %q", tc.args, stdout, tc.want)
		}
	}
}
