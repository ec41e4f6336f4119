package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/voxsync/voxsync/internal/mirrortest"
)

// mirroredSetup publishes packs to a directory on tmpfs, serves it with a
// real nginx, and starts a server over packs that names it.
func mirroredSetup(b *testing.B, packs ...string) (url, admin string, ngx *mirrortest.Server) {
	return mirroredSetupT(b, "", packs...)
}

// mirroredSetupT also takes more settings for the server's configuration.
func mirroredSetupT(b testing.TB, settings string, packs ...string) (url, admin string, ngx *mirrortest.Server) {
	b.Helper()
	pub, err := os.MkdirTemp("/dev/shm", "voxsync-pub")
	if err != nil {
		pub = b.TempDir()
	}
	b.Cleanup(func() { os.RemoveAll(pub) })
	publishTo(b, nil, "-packs", strings.Join(packs, ","), "-to", pub)
	ngx = mirrortest.StartNginx(b, pub)
	cfg := filepath.Join(b.TempDir(), "server.toml")
	q := make([]string, len(packs))
	for i, p := range packs {
		q[i] = strconv.Quote(p)
	}
	body := fmt.Sprintf("packs = [%s]\nbuiltin_pack = false\npreload = [\"*\"]\nworld = \"none\"\nmirrors = [%q]\n%s\n", strings.Join(q, ", "), ngx.URL, settings)
	if err := os.WriteFile(cfg, []byte(body), 0o644); err != nil {
		b.Fatal(err)
	}
	url, admin, _ = startServerAdmin(b, "-config", cfg)
	return url, admin, ngx
}

// BenchmarkColdSyncWithMirror: the ~2,600-file corpus plus a 256 MiB
// resource, synced cold from the game server alone (-no-mirrors) and with
// one nginx mirror, alternately, both caches on tmpfs. The issue asks for
// ≥ 90% of bytes from the mirror and no more time than in-band alone.
func BenchmarkColdSyncWithMirror(b *testing.B) {
	corpusDir, _ := benchCorpus(b)
	big := b.TempDir()
	writeRandom(b, filepath.Join(big, "assets/bench/sound/ambience.ogg"), 256<<20, 12)
	url, _, _ := mirroredSetup(b, corpusDir, big)
	var inband, mirrored time.Duration
	var share float64
	for b.Loop() {
		cache := tmpfsDir(b)
		r, _ := syncMirrored(b, url, filepath.Join(cache, "a"), "-no-mirrors", "-cache-max-mib", "-1")
		inband += time.Duration(r.SyncSeconds * float64(time.Second))
		r, _ = syncMirrored(b, url, filepath.Join(cache, "b"), "-cache-max-mib", "-1")
		mirrored += time.Duration(r.SyncSeconds * float64(time.Second))
		share += float64(r.BytesFromMirrors) / float64(r.BytesReceived)
		os.RemoveAll(cache)
	}
	n := float64(b.N)
	b.ReportMetric(inband.Seconds()*1000/n, "ms-in-band")
	b.ReportMetric(mirrored.Seconds()*1000/n, "ms-mirror")
	b.ReportMetric(mirrored.Seconds()/inband.Seconds(), "mirror/in-band")
	b.ReportMetric(100*share/n, "%-from-mirror")
}

// procWchar reads a process's bytes written (sendfile included).
func procWchar(pid int) int64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "wchar: "); ok {
			n, _ := strconv.ParseInt(v, 10, 64)
			return n
		}
	}
	return 0
}

// BenchmarkMirrorKilledMidResource: nginx is killed once it has sent half
// of a 1 GiB resource; the sync completes from the game server. The issue
// asks for ≤ 1% of bytes fetched twice.
func BenchmarkMirrorKilledMidResource(b *testing.B) {
	const size = 1 << 30
	pack := b.TempDir()
	writeRandom(b, filepath.Join(pack, "assets/bench/model/world.b3d"), size, 13)
	for b.Loop() {
		b.StopTimer()
		url, _, ngx := mirroredSetup(b, pack)
		cache := tmpfsDir(b)
		b.StartTimer()
		var wg sync.WaitGroup
		done := make(chan struct{})
		wg.Go(func() {
			base := procWchar(ngx.Pid())
			for procWchar(ngx.Pid())-base < size/2 {
				select {
				case <-done:
					return
				case <-time.After(2 * time.Millisecond):
				}
			}
			ngx.Kill()
		})
		r, _ := syncMirrored(b, url, cache, "-cache-max-mib", "-1")
		close(done)
		wg.Wait()
		twice := r.WireBytes - size // mirror bodies cut off by the kill included
		b.ReportMetric(100*float64(twice)/size, "%-fetched-twice")
		b.ReportMetric(100*float64(r.BytesFromMirrors)/size, "%-from-mirror")
		b.ReportMetric(r.SyncSeconds, "s-sync")
		os.RemoveAll(cache)
	}
}

// BenchmarkHundredClientsWithMirror: 100 gameclient processes sync the
// corpus plus a 16 MiB resource at once, first without, then with one
// nginx mirror, with the server's mirror_help at its default (8: a player
// joining on their own also takes from the server what slow mirrors have
// not got to; in a join storm like this one the mirrors do the work) and
// 0 (never). The issue asks that the game server send ≤ 10% of the payload
// bytes with the mirror.
func BenchmarkHundredClientsWithMirror(b *testing.B) {
	corpusDir, _ := benchCorpus(b)
	big := b.TempDir()
	writeRandom(b, filepath.Join(big, "assets/bench/sound/music.ogg"), 16<<20, 14)
	for _, help := range []int{8, 0} {
		b.Run(fmt.Sprintf("mirror_help=%d", help), func(b *testing.B) {
			hundredClients(b, fmt.Sprintf("mirror_help = %d", help), corpusDir, big)
		})
	}
}

func hundredClients(b *testing.B, settings string, packs ...string) {
	url, admin, _ := mirroredSetupT(b, settings, packs...)
	run := func(extra ...string) (sent int64, took time.Duration) {
		before := metric(b, admin, "voxsync_server_payload_bytes_sent_total")
		root := tmpfsDir(b)
		start := time.Now()
		var wg sync.WaitGroup
		for i := range 100 {
			wg.Go(func() {
				if _, _, err := runMirrored(url, filepath.Join(root, strconv.Itoa(i)), append([]string{"-cache-max-mib", "-1"}, extra...)...); err != nil {
					b.Error(err)
				}
			})
		}
		wg.Wait()
		took = time.Since(start)
		os.RemoveAll(root)
		return metric(b, admin, "voxsync_server_payload_bytes_sent_total") - before, took
	}
	for b.Loop() {
		alone, tAlone := run("-no-mirrors")
		with, tWith := run()
		b.ReportMetric(float64(with)/float64(alone), "server-bytes-ratio")
		b.ReportMetric(float64(alone)/(1<<20), "MiB-sent-alone")
		b.ReportMetric(float64(with)/(1<<20), "MiB-sent-with-mirror")
		b.ReportMetric(tAlone.Seconds(), "s-alone")
		b.ReportMetric(tWith.Seconds(), "s-with-mirror")
	}
}
