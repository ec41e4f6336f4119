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
	"strings"
	"syscall"
	"time"

	"github.com/voxsync/voxsync/assetsmgr"
	"github.com/voxsync/voxsync/internal/bytesize"
	"github.com/voxsync/voxsync/resources"
)

// Exit codes of the cache commands.
const (
	cacheExitOK      = 0
	cacheExitFailed  = 1 // the command failed; for verify: corrupt entries were found and dropped
	cacheExitUsage   = 2
	cacheExitNotRun  = 3 // verify only: the cache could not be checked
	cacheUsageFormat = `usage: gameclient cache <command> [-cache DIR] [-json] [arguments]

commands:
  stats             entries and bytes per tier, oldest and newest use
  verify            re-hash every entry, drop what is corrupt (keeping a large blob's good chunks), report it
                    (exit 0: all good; 1: corrupt entries dropped; 3: could not check)
  gc                apply the size cap now and give the database's free pages back
                    (-cache-max-mib N, default %d)
  ls [PATTERN...]   list cached blobs, most recently used first; a PATTERN is
                    <type>/*, <domain>:<glob> or <type>/<domain>:<glob>
                    (e.g. texture/*, default:blocks/*)
`
)

// runCache runs "gameclient cache ..." with the arguments after "cache".
// printJSONError is a cache command's failure under -json: one object on
// stdout, {"error": "…"}, where its result would have been.
func printJSONError(msg string) {
	json.NewEncoder(os.Stdout).Encode(struct {
		Error string `json:"error"`
	}{msg})
}

func runCache(args []string) int {
	usage := func() { fmt.Fprintf(os.Stderr, cacheUsageFormat, assetsmgr.DefaultMaxBytes>>20) }
	if len(args) == 0 || args[0] == "-h" || args[0] == "-help" || args[0] == "--help" {
		usage()
		if len(args) == 0 {
			return cacheExitUsage
		}
		return cacheExitOK
	}
	cmd := args[0]
	fs := flag.NewFlagSet("gameclient cache "+cmd, flag.ContinueOnError)
	fs.SetOutput(os.Stderr)
	dir := fs.String("cache", "Cache", "cache directory")
	jsonOut := fs.Bool("json", false, "print the result as JSON on stdout")
	logLevel := fs.String("log-level", "warn", "debug, info, warn or error")
	var cacheMax *int64
	switch cmd {
	case "stats", "verify", "ls":
	case "gc":
		cacheMax = fs.Int64("cache-max-mib", assetsmgr.DefaultMaxBytes>>20, "evict least recently used blobs past this many MiB; negative for no limit")
	default:
		hint := ""
		for _, known := range []string{"stats", "verify", "gc", "ls"} {
			if cmd != "" && (strings.HasPrefix(known, cmd) || strings.HasPrefix(cmd, known)) {
				hint = fmt.Sprintf("; did you mean %s?", known)
			}
		}
		fmt.Fprintf(os.Stderr, "gameclient cache: unknown command %q%s\n", cmd, hint)
		usage()
		return cacheExitUsage
	}
	// Flags may come before, between or after the arguments.
	var positional []string
	for rest := args[1:]; ; {
		if err := fs.Parse(rest); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return cacheExitOK
			}
			if jsonFlagGiven(args[1:]) {
				printJSONError(err.Error())
			}
			return cacheExitUsage
		}
		if fs.NArg() == 0 {
			break
		}
		positional = append(positional, fs.Arg(0))
		rest = fs.Args()[1:]
	}
	// Every failure from here is said on stderr and, with -json, as
	// {"error": "…"} on stdout: a script reads one JSON value either way.
	fail := func(code int, format string, args ...any) int {
		msg := fmt.Sprintf(format, args...)
		fmt.Fprintf(os.Stderr, "gameclient cache %s: %s\n", cmd, msg)
		if *jsonOut {
			printJSONError(msg)
		}
		return code
	}
	var patterns []resources.Pattern
	for _, a := range positional {
		if cmd != "ls" {
			return fail(cacheExitUsage, "unexpected argument %q", a)
		}
		p, err := resources.ParsePattern(a)
		if err != nil {
			return fail(cacheExitUsage, "%v", err)
		}
		patterns = append(patterns, p)
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return fail(cacheExitUsage, "-log-level: %v", err)
	}
	// A cache command that cannot run is a failure, except for verify,
	// whose exit code 1 means it found corrupt entries.
	failed := cacheExitFailed
	if cmd == "verify" {
		failed = cacheExitNotRun
	}
	if cacheMax != nil {
		if err := checkCacheMax(*cacheMax); err != nil {
			return fail(cacheExitUsage, "%v", err)
		}
	}
	if _, err := os.Stat(*dir); err != nil {
		return fail(failed, "no cache at %s: %v", *dir, err)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	opts := assetsmgr.Options{Dir: *dir, Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))}
	if cacheMax != nil {
		opts.MaxBytes = *cacheMax << 20
		if *cacheMax < 0 {
			opts.MaxBytes = -1
		}
	}
	cache, err := assetsmgr.Open(ctx, opts)
	if err != nil {
		return fail(failed, "%v", err)
	}
	defer cache.Close()

	var out any
	var text func(io.Writer)
	code := cacheExitOK
	switch cmd {
	case "stats":
		st, err := cache.Stats(ctx)
		if err != nil {
			return fail(failed, "%v", err)
		}
		out, text = st, func(w io.Writer) { printStats(w, st) }
	case "verify":
		rep, err := cache.Verify(ctx)
		if err != nil {
			return fail(failed, "%v", err)
		}
		res := verifyResult{VerifyReport: rep, OpenReport: cache.Opened()}
		res.Clean = rep.Clean() && res.DatabaseMovedAside == "" && res.RemovedFiles == 0
		if !res.Clean {
			code = cacheExitFailed
		}
		out, text = res, func(w io.Writer) { printVerify(w, res) }
	case "gc":
		rep, err := cache.GC(ctx)
		if err != nil {
			return fail(failed, "%v", err)
		}
		out, text = rep, func(w io.Writer) {
			fmt.Fprintf(w, "evicted %d blobs (%s); database %s → %s\n", rep.Evicted, bytesize.Format(rep.EvictedBytes), bytesize.Format(rep.BytesBefore), bytesize.Format(rep.BytesAfter))
		}
	case "ls":
		var match func(resources.Loc) bool
		if len(patterns) > 0 {
			match = func(l resources.Loc) bool {
				for _, p := range patterns {
					if p.Match(l) {
						return true
					}
				}
				return false
			}
		}
		entries, err := cache.List(ctx, match)
		if err != nil {
			return fail(failed, "%v", err)
		}
		list := make([]lsEntry, 0, len(entries))
		for _, e := range entries {
			le := lsEntry{Hash: e.Hash.String(), Tier: e.Source.String(), Size: e.Size, LastUsed: e.LastUsed, Names: []string{}}
			for _, n := range e.Names {
				le.Names = append(le.Names, n.String())
			}
			list = append(list, le)
		}
		out, text = list, func(w io.Writer) {
			for _, e := range list {
				fmt.Fprintf(w, "%s  %-6s %10s  %s  %s\n", e.Hash[:16], e.Tier, bytesize.Format(e.Size), e.LastUsed.Format(time.DateTime), strings.Join(e.Names, " "))
			}
		}
	}
	if *jsonOut {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		enc.Encode(out)
	} else {
		text(os.Stdout)
	}
	return code
}

type verifyResult struct {
	assetsmgr.VerifyReport
	assetsmgr.OpenReport
	Clean bool `json:"clean"`
}

type lsEntry struct {
	Hash     string    `json:"hash"`
	Tier     string    `json:"tier"`
	Size     int64     `json:"size"`
	LastUsed time.Time `json:"last_used"`
	Names    []string  `json:"names"` // type/domain:key
}

func printStats(w io.Writer, st assetsmgr.Stats) {
	fmt.Fprintf(w, "cache %s\n", st.Dir)
	for _, t := range []struct {
		name string
		s    assetsmgr.TierStats
	}{{"inline", st.Inline}, {"blob", st.Blob}} {
		used := "never used"
		if t.s.Entries > 0 {
			used = "used " + t.s.OldestUse.Local().Format(time.DateTime) + " … " + t.s.NewestUse.Local().Format(time.DateTime)
		}
		fmt.Fprintf(w, "  %-6s %7d entries %10s  %s\n", t.name, t.s.Entries, bytesize.Format(t.s.Bytes), used)
	}
	if st.Partial.Entries > 0 {
		fmt.Fprintf(w, "  partial downloads: %d, %s of %s held (resumed when a server binds them)\n",
			st.Partial.Entries, bytesize.Format(st.PartialHeld), bytesize.Format(st.Partial.Bytes))
	}
	limit := "no size cap"
	if st.MaxBytes >= 0 {
		limit = "size cap " + bytesize.Format(st.MaxBytes)
	}
	fmt.Fprintf(w, "  database %s, %d of %d pages free; %d names; %s\n", bytesize.Format(st.DatabaseBytes), st.FreePages, st.Pages, st.Names, limit)
	for _, a := range st.SetAside {
		fmt.Fprintf(w, "  damaged database kept aside: %s\n", a)
	}
}

func printVerify(w io.Writer, r verifyResult) {
	if r.DatabaseMovedAside != "" {
		fmt.Fprintf(w, "database was damaged: moved aside to %s and rebuilt from the blob files\n", r.DatabaseMovedAside)
	}
	if r.Adopted > 0 {
		fmt.Fprintf(w, "adopted %d complete blob files that had no record\n", r.Adopted)
	}
	if r.RemovedFiles > 0 {
		fmt.Fprintf(w, "removed %d unrecorded blob files that did not match their name\n", r.RemovedFiles)
	}
	if r.Database != "ok" {
		fmt.Fprintf(w, "database integrity check failed (%s): it will be rebuilt the next time the cache is opened\n", r.Database)
	}
	for _, b := range r.Bad {
		what := bytesize.Format(b.Size)
		for _, n := range b.Names {
			what += ", " + n.Type.String() + " " + n.Ref.String()
		}
		fmt.Fprintf(w, "corrupt %s entry %s (%s): %s; dropped\n", b.Source, b.Hash, what, b.Reason)
	}
	fmt.Fprintf(w, "checked %d inline and %d blob entries and %d chunks of partial downloads (%s): ", r.Inline, r.Blob, r.Partial, bytesize.Format(r.VerifyReport.Bytes))
	if r.Clean {
		fmt.Fprintln(w, "all good")
	} else {
		if len(r.Bad) == 1 {
			fmt.Fprintln(w, "1 corrupt entry dropped; it is fetched again when a server binds it")
		} else {
			fmt.Fprintf(w, "%d corrupt entries dropped; they are fetched again when a server binds them\n", len(r.Bad))
		}
	}
}
