package session

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/voxsync/voxsync/packs"
)

func TestStatusShowsClientsPacksAndReloads(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "mine")
	writePackFile(t, dir, "pack.toml", []byte("name = \"mine\"\npriority = 3\n"))
	writePackFile(t, dir, "assets/m/texture/a.png", []byte("a1"))
	writePackFile(t, dir, "assets/m/texture/b.png", []byte("b1"))
	ts := startServer(t, serverSetup{dirs: []string{dir}})
	total := ts.View().Len()
	c, _ := join(t, ts.url)
	c.binds(total)

	st := ts.Status()
	if len(st.Clients) != 1 {
		t.Fatalf("%d clients in status, want 1", len(st.Clients))
	}
	cs := st.Clients[0]
	if cs.Bound != total || cs.Loaded != total || cs.Outstanding != 0 || cs.Protocol != 2 || cs.BytesSent == 0 || cs.ConnectedSince.IsZero() {
		t.Errorf("client status %+v; want %d bound and loaded, protocol 2, bytes sent and a start time", cs, total)
	}
	if len(st.Packs) != 2 || st.Packs[0].Name != "mine" || st.Packs[0].Resources != 2 || st.Packs[0].Bytes != 4 || st.Packs[0].LastOutcome != "loaded" {
		t.Errorf("packs %+v; want mine (2 resources, 4 bytes) first, then the built-in pack", st.Packs)
	}
	if st.Totals.Clients != 1 || st.Totals.Sessions != 1 || st.Totals.Resources != total {
		t.Errorf("totals %+v", st.Totals)
	}

	// A reload that changes a and removes b, then one that fails.
	writePackFile(t, dir, "assets/m/texture/a.png", []byte("a2"))
	writePackFile(t, dir, "assets/m/texture/c.png", []byte("c1"))
	removePackFile(t, dir, "assets/m/texture/b.png")
	v, err := packs.Load(context.Background(), packs.Options{Dirs: []string{dir}, Builtin: true, IDs: ts.ids}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ts.SetView(v)
	ts.ReloadFailed(errors.New("open pack mine: permission denied"))

	st = ts.Status()
	if len(st.Reloads) != 2 {
		t.Fatalf("reloads %+v, want 2", st.Reloads)
	}
	failed, applied := st.Reloads[0], st.Reloads[1]
	if failed.Outcome != ReloadFailed || !strings.Contains(failed.Error, "permission denied") {
		t.Errorf("newest reload %+v, want the failure", failed)
	}
	if applied.Outcome != ReloadApplied || applied.Added != 1 || applied.Changed != 1 || applied.Removed != 1 ||
		strings.Join(applied.ChangedNames, ",") != "texture/m:a.png" || strings.Join(applied.RemovedNames, ",") != "texture/m:b.png" {
		t.Errorf("applied reload %+v", applied)
	}
	if st.Packs[0].LastOutcome != ReloadApplied {
		t.Errorf("pack %+v does not show the reload that changed it", st.Packs[0])
	}
	if st.Totals.ReloadsApplied != 1 || st.Totals.ReloadsFailed != 1 {
		t.Errorf("totals %+v", st.Totals)
	}

	// The same in JSON and on the page.
	code, body := get(t, ts.admin.URL+"/status.json")
	var js Status
	if err := json.Unmarshal([]byte(body), &js); code != 200 || err != nil || len(js.Clients) != 1 || len(js.Reloads) != 2 {
		t.Errorf("/status.json: %d %v %s", code, err, firstLine(body))
	}
	code, page := get(t, ts.admin.URL+"/status")
	for _, want := range []string{cs.Remote, "mine", "2 resources", "texture/m:b.png", "permission denied"} {
		if code != 200 || !strings.Contains(page, want) {
			t.Errorf("/status (%d) lacks %q", code, want)
		}
	}
	if strings.Contains(page, "<script") || strings.Contains(page, "http://") || strings.Contains(page, "https://") {
		t.Error("/status loads or links something external")
	}
}

func removePackFile(t *testing.T, dir, rel string) {
	t.Helper()
	if err := os.Remove(filepath.Join(dir, filepath.FromSlash(rel))); err != nil {
		t.Fatal(err)
	}
}

// /status.json lists are [] when empty, never null: a script's
// `jq '.clients | length'` works on an idle server, and '.clients[].streams'
// on an idle client.
func TestStatusListsAreNeverNull(t *testing.T) {
	ts := startServer(t, serverSetup{})
	check := func(when string) {
		t.Helper()
		data, err := json.Marshal(ts.Status())
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(data, []byte("null")) {
			t.Errorf("%s: status has a null: %s", when, data)
		}
	}
	check("no clients")
	c, _ := join(t, ts.url)
	c.binds(ts.View().Len())
	check("an idle client")
}
