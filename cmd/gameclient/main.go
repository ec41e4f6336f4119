// Command gameclient syncs a game client's resources from a gameserver:
// it connects, loads what is bound from its cache or the server, verifies
// and stores it, and reports. With -until-synced it exits the moment the
// server has sent every Bind (its BindsDone marker) and everything bound is
// loaded; otherwise it stays connected and follows Bind and Lost.
//
// Exit codes: 0 synced (or, without -until-synced, stopped by a signal);
// 1 resources failed or another error; 2 usage (bad flag, malformed URL);
// 3 no voxsync server at the URL, or the server refused (version, token);
// 4 -timeout passed; 130 and 143 interrupted by SIGINT and SIGTERM.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/voxsync/voxsync/assetsmgr"
	"github.com/voxsync/voxsync/configs"
	"github.com/voxsync/voxsync/internal/buildinfo"
	"github.com/voxsync/voxsync/internal/bytesize"
	"github.com/voxsync/voxsync/internal/logformat"
	"github.com/voxsync/voxsync/resources"
	"github.com/voxsync/voxsync/session"
)

type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }
func (l *listFlag) Set(s string) error {
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			*l = append(*l, v)
		}
	}
	return nil
}

// summary is the -json output: Stats plus the elapsed time and the outcome.
type summary struct {
	session.Stats
	Seconds float64 `json:"seconds"`
	Synced  bool    `json:"synced"`
	// Outcome is one word: synced, failed, refused, usage, timeout,
	// interrupted, stopped or error; the exit code follows from it.
	Outcome string `json:"outcome"`
	Error   string `json:"error,omitempty"`
}

// Exit codes, documented in the package comment and the README.
const (
	exitOK       = 0
	exitFailed   = 1
	exitUsage    = 2
	exitRefused  = 3
	exitTimeout  = 4
	exitSignaled = 128 // plus the signal number
)

// outcome classifies how a run ended into the summary's word and the exit
// code.
func outcome(err error, sig os.Signal, untilSynced bool) (string, int) {
	switch {
	case sig != nil && !untilSynced:
		return "stopped", exitOK
	case sig != nil:
		code := exitSignaled + 2
		if s, ok := sig.(syscall.Signal); ok {
			code = exitSignaled + int(s)
		}
		return "interrupted", code
	case err == nil:
		return "synced", exitOK
	case errors.Is(err, session.ErrBadURL):
		return "usage", exitUsage
	case session.Permanent(err):
		return "refused", exitRefused
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout", exitTimeout
	case errors.Is(err, session.ErrFailed):
		return "failed", exitFailed
	}
	return "error", exitFailed
}

func main() {
	os.Exit(run())
}

// tuneGC runs the garbage collector less often than Go's default when
// syncing, unless GOGC or GOMEMLIMIT say otherwise. A sync allocates as it
// goes (a buffer for each resource received, rows for the cache) and keeps
// little, and at GOGC=100 collecting cost ~15% of a cold sync's CPU.
// GOGC=400 costs a few MiB of heap (peak RSS of a cold sync of the
// benchmark corpus 34.5 → 39 MiB). The soft limit bounds the heap a large
// live set would grow at GOGC=400; it is far above what a sync keeps live
// (its stream buffers are capped at 64 MiB), since near the limit the
// collector runs almost without pause. The cache commands keep Go's
// defaults: listing a large cache holds all of it live.
func tuneGC() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(400)
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(256 << 20)
	}
}

func run() int {
	if len(os.Args) > 1 && os.Args[1] == "cache" {
		return runCache(os.Args[2:])
	}
	tuneGC()
	var (
		server      = flag.String("server", "ws://127.0.0.1:30000/ws", "server WebSocket URL")
		cacheDir    = flag.String("cache", "Cache", "cache directory")
		untilSynced = flag.Bool("until-synced", false, "exit 0 once every bound resource is loaded and verified; non-zero on failure")
		jsonOut     = flag.Bool("json", false, "print the summary as one JSON object on stdout")
		walk        = flag.Bool("walk", false, "walk through the demo world, one region (16 blocks) a step")
		walkEvery   = flag.Duration("walk-every", 2*time.Second, "with -walk: time between steps")
		timeout     = flag.Duration("timeout", 5*time.Minute, "with -until-synced: give up after this long")
		token       = flag.String("token", "", "auth token, if the server wants one")
		logLevel    = flag.String("log-level", "warn", "debug, info, warn or error")
		logFormat   = flag.String("log-format", "text", "text (key=value lines) or json (one object a line)")
		cacheMax    = flag.Int64("cache-max-mib", assetsmgr.DefaultMaxBytes>>20, "evict least recently used blobs past this many MiB (bound ones are kept); negative for no limit")
		version     = flag.Bool("version", false, "print the version and exit")
		noChunks    = flag.Bool("no-chunks", false, "fetch large resources whole: no manifests, resume or deltas")
		noCompress  = flag.Bool("no-compression", false, "do not offer zstd: every stream comes raw")
		noMirrors   = flag.Bool("no-mirrors", false, "fetch everything from the game server, even when it names mirrors")
		localPacks  listFlag
	)
	flag.Var(&localPacks, "packs", "local resource pack directory; repeat or comma-separate")
	flag.Usage = func() {
		w := flag.CommandLine.Output()
		fmt.Fprintf(w, "Usage: gameclient [flags]           sync from a server (flags below)\n")
		fmt.Fprintf(w, "       gameclient cache stats|verify|gc|ls [-cache DIR] [-json] ...   look at or tidy the cache (gameclient cache -help)\n\nFlags:\n")
		flag.PrintDefaults()
	}
	// Parsed here, not by flag.Parse, which exits on a bad flag: with
	// -json a script still reads one object.
	flag.CommandLine.Init(os.Args[0], flag.ContinueOnError)
	if err := flag.CommandLine.Parse(os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		// flag has said what is wrong, and shown the flags, on stderr.
		if jsonFlagGiven(os.Args[1:]) {
			json.NewEncoder(os.Stdout).Encode(summary{Outcome: "usage", Error: err.Error()})
		}
		return exitUsage
	}

	if *version {
		fmt.Println(buildinfo.String("gameclient"))
		return exitOK
	}
	// A usage error is found before the cache is opened (or made):
	// nothing to undo. With -json a script still reads one object.
	usage := func(msg string) int {
		if *jsonOut {
			json.NewEncoder(os.Stdout).Encode(summary{Outcome: "usage", Error: msg})
		}
		fmt.Fprintln(os.Stderr, "gameclient:", msg)
		return exitUsage
	}
	if flag.NArg() > 0 {
		if flag.Arg(0) == "cache" {
			// gameclient -cache DIR cache stats: the command comes first.
			return usage(fmt.Sprintf("unexpected argument %q; a cache command comes first, its flags after it: gameclient cache %s -cache %s",
				flag.Arg(0), strings.Join(flag.Args()[1:], " "), *cacheDir))
		}
		return usage(fmt.Sprintf("unexpected argument %q; every setting is a flag (see -help)", flag.Arg(0)))
	}
	if err := checkCacheMax(*cacheMax); err != nil {
		return usage(err.Error())
	}
	if *untilSynced && *timeout <= 0 {
		return usage(fmt.Sprintf("-timeout %s: must be positive (e.g. 10m); without -until-synced the client runs until stopped", *timeout))
	}
	err := session.CheckURL(*server)
	if err == nil {
		err = checkPacks(localPacks)
	}
	if err != nil {
		return usage(err.Error())
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return usage(fmt.Sprintf("-log-level %s: want debug, info, warn or error", *logLevel))
	}
	// Log lines go through the progress display, which prints them above
	// its line.
	if _, err := logformat.Handler(io.Discard, *logFormat, level); err != nil {
		return usage(err.Error())
	}
	out := newReporter(os.Stderr, *untilSynced)
	defer out.finish(session.Stats{}) // on an early return; a no-op after the one below
	handler, _ := logformat.Handler(out, *logFormat, level)
	log := slog.New(handler)
	start := time.Now()

	// The first SIGINT or SIGTERM stops the run; which one decides the
	// exit code, so it is kept.
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	var sig os.Signal
	sigSeen := make(chan struct{})
	go func() {
		select {
		case sig = <-sigs:
			close(sigSeen)
			stop()
		case <-ctx.Done():
		}
	}()
	signaled := func() os.Signal {
		select {
		case <-sigSeen:
			return sig
		default:
			return nil
		}
	}

	maxBytes := *cacheMax << 20
	if *cacheMax < 0 {
		maxBytes = -1
	}
	cache, err := assetsmgr.Open(ctx, assetsmgr.Options{Dir: *cacheDir, Packs: localPacks, Logger: log, MaxBytes: maxBytes})
	if err != nil {
		if *jsonOut {
			// Scripts read one object whatever happened.
			json.NewEncoder(os.Stdout).Encode(summary{Outcome: "error", Error: err.Error()})
		}
		fmt.Fprintln(os.Stderr, "gameclient:", err)
		return exitFailed
	}
	defer cache.Close()

	syncer := session.NewSyncer(session.SyncOptions{URL: *server, Cache: cache, Token: *token, Logger: log, OnEvent: out.event,
		NoChunks: *noChunks, NoCompression: *noCompress, NoMirrors: *noMirrors})

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	runErr := make(chan error, 1)
	go func() { runErr <- syncer.Run(runCtx) }()
	syncer.Move(0, 0, 0) // players spawn at the origin

	var result error
	if *untilSynced {
		waitCtx, cancelWait := context.WithTimeout(ctx, *timeout)
		err := syncer.WaitSynced(waitCtx)
		cancelWait()
		switch {
		case err == nil:
		case errors.Is(err, context.DeadlineExceeded):
			st := syncer.Stats()
			msg := fmt.Sprintf("not synced after %s: %d of %d resources loaded", *timeout, st.Loaded, st.Bound)
			if !syncer.BindsKnown() {
				msg += "; the server has not yet sent the full list"
			}
			if last := syncer.LastError(); last != nil {
				msg += "; last error: " + last.Error()
			}
			result = timeoutError(msg)
		case errors.Is(err, session.ErrFailed):
			result = fmt.Errorf("%w (see the log above)", err)
		default:
			result = err
		}
		cancel()
		<-runErr
	} else {
		if *walk {
			go walkWorld(runCtx, syncer, *walkEvery)
		}
		select {
		case <-ctx.Done():
		case err := <-runErr:
			result = err
		}
		cancel()
	}
	s := signaled()
	if s != nil && *untilSynced {
		result = fmt.Errorf("stopped by %s before everything was loaded", signalName(s))
	}
	if err := cache.Flush(context.Background()); err != nil && result == nil {
		result = err
	}
	bound := syncer.BoundHashes()
	if _, _, err := cache.Trim(context.Background(), func(h resources.Hash) bool { return bound[h] }); err != nil {
		log.Warn("cache trim failed", "err", err)
	}
	out.finish(syncer.Stats())

	st := syncer.Stats()
	word, code := outcome(result, s, *untilSynced)
	sum := summary{Stats: st, Seconds: time.Since(start).Seconds(), Synced: syncer.Synced(), Outcome: word}
	if result != nil {
		sum.Error = result.Error()
	}
	if *jsonOut {
		json.NewEncoder(os.Stdout).Encode(sum)
	} else {
		fmt.Printf("%d bound, %d loaded (%d pack, %d inline, %d blob, %d network), %d failed, %s received in %.2fs",
			st.Bound, st.Loaded, st.FromPack, st.FromInline, st.FromBlob, st.FromNetwork, st.Failed, bytesize.Format(st.BytesReceived), sum.Seconds)
		if st.BytesFromMirrors > 0 {
			fmt.Printf(" (%s from mirrors, %s from the game server)", bytesize.Format(st.BytesFromMirrors), bytesize.Format(st.BytesInBand))
		}
		fmt.Println()
	}
	if result != nil && code != exitOK {
		fmt.Fprintln(os.Stderr, "gameclient:", result)
	}
	return code
}

// signalName is how a person knows the signals gameclient stops on.
func signalName(s os.Signal) string {
	switch s {
	case os.Interrupt:
		return "SIGINT (Ctrl-C)"
	case syscall.SIGTERM:
		return "SIGTERM"
	}
	return s.String()
}

// timeoutError reads as its message and matches context.DeadlineExceeded.
type timeoutError string

func (e timeoutError) Error() string { return string(e) }
func (e timeoutError) Unwrap() error { return context.DeadlineExceeded }

func walkWorld(ctx context.Context, s *session.Syncer, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	x := 0.0
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			x += 16
			s.Move(x, 0, 0)
		}
	}
}

// checkPacks checks the -packs directories as the server checks its own:
// a pack that does not exist, is a file, or holds no assets/ (the most
// common slip: naming the assets/ directory itself) would otherwise serve
// nothing without a word, and the player would download what they have.
// Their pack.toml is not held against them: the client uses a pack's
// files by hash, never its priority, and a problem there is a warning.
func checkPacks(dirs []string) error {
	var msgs []string
	for _, p := range configs.CheckPacks(dirs, "", 0) {
		if p.Setting == "packs" { // about the directory: its message starts with it
			msgs = append(msgs, "-packs "+p.Msg)
		}
	}
	if len(msgs) == 0 {
		return nil
	}
	return errors.New(strings.Join(msgs, "\n"))
}

// maxCacheMiB bounds -cache-max-mib: its bytes must fit an int64.
const maxCacheMiB = 1 << 40

// checkCacheMax refuses a -cache-max-mib that would not mean what it says:
// 0, which assetsmgr reads as its default (4 GiB), and sizes whose bytes
// overflow (read as no cap, or as 0).
func checkCacheMax(mib int64) error {
	if mib == 0 || mib > maxCacheMiB {
		return fmt.Errorf("-cache-max-mib %d: want a size in MiB (e.g. 1024), or -1 for no limit", mib)
	}
	return nil
}

// jsonFlagGiven reports whether args ask for -json, for answering a
// command line that did not parse: whether the flag package got to it
// depends on where the bad flag was.
func jsonFlagGiven(args []string) bool {
	for _, a := range args {
		switch a {
		case "--":
			return false
		case "-json", "--json", "-json=true", "--json=true", "-json=1", "--json=1":
			return true
		}
	}
	return false
}
