package session

import (
	"context"
	"fmt"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/voxsync/voxsync/configs"
)

// freeAddr returns a loopback address nothing listens on now.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// eventNames sorts a run of events into the keys each kind names.
type eventNames struct {
	bound, lost, loaded, replaced, failed []string
}

func namesOf(evs []Event) eventNames {
	var n eventNames
	for _, e := range evs {
		switch e := e.(type) {
		case Bound:
			n.bound = append(n.bound, e.Binding.Ref.Key)
		case Lost:
			n.lost = append(n.lost, e.Binding.Ref.Key)
		case Loaded:
			if e.Replaces.IsZero() {
				n.loaded = append(n.loaded, e.Binding.Ref.Key)
			} else {
				n.replaced = append(n.replaced, e.Binding.Ref.Key)
			}
		case Failed:
			n.failed = append(n.failed, e.Binding.Ref.Key)
		}
	}
	for _, s := range []*[]string{&n.bound, &n.lost, &n.loaded, &n.replaced, &n.failed} {
		slices.Sort(*s)
	}
	return n
}

// A client that reconnects to a restarted server with other packs ends with
// exactly the bindings a fresh client gets, hears of exactly what changed,
// and fetches only content it does not have.
func TestSyncerAfterServerRestartWithChangedPacks(t *testing.T) {
	tests := []struct {
		name          string
		before, after map[string]string
		want          eventNames // events after the restart
	}{
		{
			name:   "b unchanged d new a and c gone",
			before: map[string]string{"a.png": "a1", "b.png": "b1", "c.png": "c1"},
			after:  map[string]string{"b.png": "b1", "d.png": "d1"},
			want:   eventNames{bound: []string{"d.png"}, lost: []string{"a.png", "c.png"}, loaded: []string{"d.png"}},
		},
		{
			name:   "file added in the middle of the sort order",
			before: map[string]string{"a.png": "a1", "c.png": "c1", "e.png": "e1"},
			after:  map[string]string{"a.png": "a1", "b.png": "b1", "c.png": "c1", "e.png": "e1"},
			want:   eventNames{bound: []string{"b.png"}, loaded: []string{"b.png"}},
		},
		{
			name:   "content changed",
			before: map[string]string{"a.png": "a1", "b.png": "b1"},
			after:  map[string]string{"a.png": "a2 longer", "b.png": "b1"},
			want:   eventNames{bound: []string{"a.png"}, replaced: []string{"a.png"}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			addr := freeAddr(t)
			packOf := func(files map[string]string) string {
				dir := t.TempDir()
				for name, data := range files {
					writePackFile(t, dir, "assets/m/texture/"+name, []byte(data))
				}
				return dir
			}
			cfg := func(c *configs.Server) { c.BuiltinPack = false; c.Preload = []string{"texture/m:*"} }
			ts1 := startServer(t, serverSetup{dirs: []string{packOf(tc.before)}, addr: addr, cfg: cfg})
			s, rec, _, _ := startSyncer(t, ts1.url, nil)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			if err := s.WaitSynced(ctx); err != nil {
				t.Fatal(err)
			}
			before := s.Stats()
			// Events are delivered just after the state changes: wait for
			// the first session's Loaded events, then mark where it ends.
			var mark int
			for {
				rec.mu.Lock()
				mark = len(rec.evs)
				n := len(namesOf(rec.evs).loaded)
				rec.mu.Unlock()
				if n == len(tc.before) {
					break
				}
				time.Sleep(time.Millisecond)
			}

			ts1.stop()
			for s.Stats().Sessions < 2 || !s.Synced() {
				// A fresh server at the same address, other packs.
				if s.Stats().Sessions == 1 && ts1 != nil {
					ts1 = nil
					startServer(t, serverSetup{dirs: []string{packOf(tc.after)}, addr: addr, cfg: cfg})
				}
				if ctx.Err() != nil {
					t.Fatalf("not synced after the restart: %+v", s.Stats())
				}
				time.Sleep(5 * time.Millisecond)
			}
			time.Sleep(50 * time.Millisecond) // let the last events be delivered
			rec.mu.Lock()
			after := slices.Clone(rec.evs[mark:])
			rec.mu.Unlock()

			got := namesOf(after)
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("events after the restart:\n got  %+v\n want %+v", got, tc.want)
			}
			st := s.Stats()
			if st.Bound != len(tc.after) {
				t.Errorf("%d bound after the restart, a fresh client has %d", st.Bound, len(tc.after))
			}
			// Only new content crossed the network.
			var want int64
			for name, data := range tc.after {
				if tc.before[name] != data {
					want += int64(len(data))
				}
			}
			if got := st.BytesReceived - before.BytesReceived; got != want {
				t.Errorf("%d bytes received after the restart, want %d (only what changed)", got, want)
			}
			// A fresh client agrees on every binding.
			fresh, _, _, _ := startSyncer(t, ts1url(addr), nil)
			if err := fresh.WaitSynced(ctx); err != nil {
				t.Fatal(err)
			}
			if a, b := s.BoundHashes(), fresh.BoundHashes(); fmt.Sprint(a) != fmt.Sprint(b) {
				t.Errorf("reconnected client has %d hashes bound, a fresh one %d", len(a), len(b))
			}
		})
	}
}

func ts1url(addr string) string { return "ws://" + addr + "/ws" }
