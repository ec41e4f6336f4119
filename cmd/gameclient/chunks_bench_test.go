package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// BenchmarkResumeAfterKill SIGKILLs a client once the server has sent half
// of a 1 GiB resource, starts it again, and reports the payload the server
// sent over both runs per byte of the resource (the issue asks ≤ 1.01).
func BenchmarkResumeAfterKill(b *testing.B) {
	dir := b.TempDir()
	const size = 1 << 30
	writeRandom(b, filepath.Join(dir, "assets/bench/model/world.b3d"), size, 9)
	url, admin, _ := startServerAdmin(b, "-packs", dir, "-preload", "bench:*", "-world", "none")
	for b.Loop() {
		cache := b.TempDir()
		base := payloadSent(b, admin)
		killAtHalf(b, url, admin, cache, size)
		r := syncChunks(b, url, cache)
		sent := payloadSent(b, admin) - base
		b.ReportMetric(float64(sent)/size, "sent/size")
		b.ReportMetric(float64(r.ResumedBytes)/(1<<20), "resumed-MiB")
		os.RemoveAll(cache)
	}
}

// BenchmarkDeltaUpdate syncs version 1 of a 256 MiB resource, then version
// 2 (1 MiB overwritten in the middle, 100 KiB inserted near the start) from
// another server, and reports what crossed the wire for version 2 (the
// issue asks ≤ 4 MiB; whole, it is 256 MiB).
func BenchmarkDeltaUpdate(b *testing.B) {
	d1, d2 := b.TempDir(), b.TempDir()
	const size = 256 << 20
	v1 := writeRandom(b, filepath.Join(d1, "assets/bench/model/map.bin"), size, 10)
	v2 := append(append(append([]byte{}, v1[:1<<20]...), bytes.Repeat([]byte("v2"), 50<<10)...), v1[1<<20:]...)
	copy(v2[size/2:], bytes.Repeat([]byte{0x5a}, 1<<20))
	p2 := filepath.Join(d2, "assets/bench/model/map.bin")
	os.MkdirAll(filepath.Dir(p2), 0o755)
	if err := os.WriteFile(p2, v2, 0o644); err != nil {
		b.Fatal(err)
	}
	url1 := startServer(b, "-packs", d1, "-preload", "bench:*", "-world", "none")
	url2 := startServer(b, "-packs", d2, "-preload", "bench:*", "-world", "none")
	for b.Loop() {
		cache := b.TempDir()
		syncChunks(b, url1, cache)
		r := syncChunks(b, url2, cache)
		b.ReportMetric(float64(r.WireBytes)/(1<<20), "wire-MiB")
		b.ReportMetric(float64(r.FromLocalChunks)/(1<<20), "local-MiB")
		os.RemoveAll(cache)
	}
}

// jsonCorpus writes n JSON block models and blockstates, shaped like a
// Minecraft-style resource pack's, and returns the directory.
func jsonCorpus(b *testing.B, n int) string {
	dir := b.TempDir()
	for i := range n {
		var s strings.Builder
		if i%3 == 0 {
			fmt.Fprintf(&s, "{\n  \"variants\": {\n")
			for j, facing := range []string{"north", "east", "south", "west"} {
				fmt.Fprintf(&s, "    \"facing=%s,half=bottom\": { \"model\": \"bench:block/stairs_%d\", \"y\": %d, \"uvlock\": true },\n", facing, i, 90*j)
				fmt.Fprintf(&s, "    \"facing=%s,half=top\": { \"model\": \"bench:block/stairs_%d_top\", \"x\": 180, \"y\": %d, \"uvlock\": true }", facing, i, 90*j)
				if j < 3 {
					s.WriteString(",")
				}
				s.WriteString("\n")
			}
			s.WriteString("  }\n}\n")
		} else {
			fmt.Fprintf(&s, "{\n  \"parent\": \"block/cube\",\n  \"textures\": {\n")
			for _, face := range []string{"down", "up", "north", "south", "west", "east"} {
				fmt.Fprintf(&s, "    \"%s\": \"bench:block/ore_%d_%s\",\n", face, i, face)
			}
			fmt.Fprintf(&s, "    \"particle\": \"bench:block/ore_%d_up\"\n  }\n}\n", i)
		}
		p := filepath.Join(dir, "assets/bench/model", "m"+strconv.Itoa(i)+".json")
		os.MkdirAll(filepath.Dir(p), 0o755)
		os.WriteFile(p, []byte(s.String()), 0o644)
	}
	return dir
}

// BenchmarkJSONOnTheWire syncs 2,000 JSON models and blockstates and
// reports wire bytes per resource byte (the issue asks ≤ 0.5).
func BenchmarkJSONOnTheWire(b *testing.B) {
	dir := jsonCorpus(b, 2000)
	url := startServer(b, "-packs", dir, "-preload", "bench:*", "-world", "none")
	for b.Loop() {
		cache := b.TempDir()
		r := syncChunks(b, url, cache)
		b.ReportMetric(float64(r.WireBytes)/float64(r.BytesReceived), "wire/bytes")
		os.RemoveAll(cache)
	}
}

// procCPU returns a process's user+system CPU time so far.
func procCPU(b *testing.B, pid int) time.Duration {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	// Fields after the command name (which may hold spaces) in parentheses.
	f := strings.Fields(string(data[bytes.LastIndexByte(data, ')')+2:]))
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * 10 * time.Millisecond // USER_HZ is 100
}

// BenchmarkCompressionCostOnCompressedMedia syncs the ~2,600-file corpus
// (PNG, OGG and binary models, as incompressible as real ones) from a
// server with compression on and one with it off, alternately, and reports
// the CPU each side spent per sync, on over off (the issue asks for no
// measurable difference). Each server compresses each content once, so its
// first sync is left out.
func BenchmarkCompressionCostOnCompressedMedia(b *testing.B) {
	dir, _ := benchCorpus(b)
	cfg := filepath.Join(b.TempDir(), "off.toml")
	os.WriteFile(cfg, []byte("compression = false\n"), 0o644)
	urlOn, _, on := startServerAdmin(b, "-packs", dir, "-world", "none")
	urlOff, _, off := startServerAdmin(b, "-config", cfg, "-packs", dir, "-world", "none")
	run := func(url string, srv *exec.Cmd) (client, server time.Duration, wire, bytes int64) {
		before := procCPU(b, srv.Process.Pid)
		r, cpu := clientCPU(b, url, tmpfsDir(b))
		time.Sleep(50 * time.Millisecond) // let the server's session end
		return cpu, procCPU(b, srv.Process.Pid) - before, r.WireBytes, r.BytesReceived
	}
	run(urlOn, on)
	run(urlOff, off)
	for b.Loop() {
		c1, s1, w1, n1 := run(urlOn, on)
		c0, s0, _, _ := run(urlOff, off)
		b.ReportMetric(c1.Seconds()/c0.Seconds(), "client-cpu-on/off")
		b.ReportMetric(s1.Seconds()/max(s0.Seconds(), 0.01), "server-cpu-on/off")
		b.ReportMetric(float64(w1)/float64(n1), "wire/bytes")
		b.ReportMetric(c1.Seconds(), "client-cpu-s")
		b.ReportMetric(s1.Seconds(), "server-cpu-s")
	}
}

// BenchmarkOneGiBThroughput syncs a 1 GiB resource cold and reports the
// client's rate against the floor measured in the same run: with the cache
// on tmpfs, single-core `openssl dgst -sha256` of the file (the issue asks
// ≥ 0.8 of it); on disk, `dd … conv=fsync` of 1 GiB (≥ 0.9). It also
// reports the client's CPU time per GiB. -no-chunks fetches it whole, for
// comparison: the "whole" sub-benchmarks.
func BenchmarkOneGiBThroughput(b *testing.B) {
	dir := b.TempDir()
	const size = 1 << 30
	pack := filepath.Join(dir, "assets/bench/model/world.b3d")
	writeRandom(b, pack, size, 11)
	url := startServer(b, "-packs", dir, "-preload", "bench:*", "-world", "none")
	for _, run := range []struct{ where, mode string }{{"tmpfs", "chunks"}, {"disk", "chunks"}, {"tmpfs", "whole"}, {"disk", "whole"}} {
		where := run.where
		b.Run(run.where+"/"+run.mode, func(b *testing.B) {
			for b.Loop() {
				var cache string
				var floor float64
				if where == "tmpfs" {
					cache = tmpfsDir(b)
					floor = timeRate(b, size, "openssl", "dgst", "-sha256", pack)
				} else {
					cache = b.TempDir()
					out := filepath.Join(cache, "dd.out")
					floor = timeRate(b, size, "dd", "if=/dev/zero", "of="+out, "bs=1M", "count=1024", "conv=fsync")
					os.Remove(out)
				}
				var extra []string
				if run.mode == "whole" {
					extra = append(extra, "-no-chunks")
				}
				r, cpu := clientCPU(b, url, cache, extra...)
				rate := float64(r.BytesReceived) / r.SyncSeconds
				b.ReportMetric(cpu.Seconds()/(float64(r.BytesReceived)/(1<<30)), "client-cpu-s/GiB")
				b.ReportMetric(rate/1e6, "MB/s")
				b.ReportMetric(floor/1e6, "floor-MB/s")
				b.ReportMetric(rate/floor, "of-floor")
				os.RemoveAll(cache)
			}
		})
	}
}

// timeRate runs a command and returns size bytes per second of its run.
func timeRate(b *testing.B, size int64, name string, args ...string) float64 {
	start := time.Now()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		b.Fatalf("%s: %v: %s", name, err, out)
	}
	return float64(size) / time.Since(start).Seconds()
}

// clientCPU runs one gameclient -until-synced and returns its summary and
// the CPU time it used.
func clientCPU(b *testing.B, url, cache string, extra ...string) (chunkResult, time.Duration) {
	b.Helper()
	cmd := exec.Command(clientBin, append([]string{"-server", url, "-cache", cache, "-until-synced", "-json"}, extra...)...)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		b.Fatalf("gameclient: %v: %s", err, errb.String())
	}
	var r chunkResult
	if err := json.Unmarshal([]byte(out.String()), &r); err != nil {
		b.Fatalf("summary %q: %v", out.String(), err)
	}
	return r, cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
}
