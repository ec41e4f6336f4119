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
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/voxsync/voxsync/mirror"
	"github.com/voxsync/voxsync/packs"
	"github.com/voxsync/voxsync/publish"
)

// serverUsage is -h for the server, which also names the subcommand.
func serverUsage() {
	w := flag.CommandLine.Output()
	fmt.Fprintf(w, "Usage:\n  gameserver [flags]                 serve the packs to game clients\n")
	fmt.Fprintf(w, "  gameserver publish -to DEST [...]  publish the packs' content to a directory or S3 bucket for HTTP mirrors (gameserver publish -h)\n\nFlags:\n")
	flag.PrintDefaults()
}

// publishSummary is what gameserver publish prints on stdout: the
// publish's Summary, the pack loading before it, and the error if any.
type publishSummary struct {
	publish.Summary
	LoadSeconds float64 `json:"load_seconds"`
	Error       string  `json:"error,omitempty"`
}

// publishMain runs gameserver publish with args (what follows
// "publish") and returns the exit code: 0 done, 1 failed, 2 a mistake on
// the command line.
func publishMain(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := runPublish(ctx, args, stdout, stderr)
	var usage usageError
	switch {
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &usage):
		fmt.Fprintln(stderr, "gameserver publish:", err)
		return 2
	case err != nil:
		fmt.Fprintln(stderr, "gameserver publish:", configError(err))
		return 1
	}
	return 0
}

func runPublish(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	start := time.Now()
	fs := flag.NewFlagSet("gameserver publish", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		configPath = fs.String("config", "", "config file whose packs are published (default: built-in defaults, as in configs/server.toml)")
		to         = fs.String("to", "", "where to publish: a directory, or s3://BUCKET[/PREFIX] (required)")
		endpoint   = fs.String("s3-endpoint", "", "the S3 server's URL for -to s3://…: http://HOST:PORT or https://HOST (the scheme decides TLS)")
		publicRead = fs.Bool("public-read", false, "with -to s3://…: let anyone GET objects under the prefix, so plain HTTP clients and caches can (adds to the bucket policy)")
		workers    = fs.Int("workers", publish.DefaultWorkers, "uploads at once")
		dryRun     = fs.Bool("dry-run", false, "list the destination and report what would be uploaded, changing nothing")
		packsFlag  listFlag
	)
	fs.Var(&packsFlag, "packs", "pack directory; repeat or comma-separate (replaces packs)")
	fs.Usage = func() {
		fmt.Fprintf(stderr, `Usage: gameserver publish -to DIR|s3://BUCKET[/PREFIX] [flags]

Publishes the content of the packs the server would serve (-config, -packs),
content-addressed, for static HTTP mirrors: every object is stored under its
SHA-256, so what is already there is skipped. Prints a JSON summary on stdout.
For S3 the credentials are AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and
AWS_SESSION_TOKEN for temporary ones); the bucket is created if missing.

Flags:
`)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError(err.Error()) // the flag package has printed the usage
	}
	if fs.NArg() > 0 {
		return usageError(fmt.Sprintf("unexpected argument %q; every setting is a flag (see gameserver publish -h)", fs.Arg(0)))
	}
	if *workers < 1 {
		return usageError(fmt.Sprintf("-workers %d: want at least 1", *workers))
	}
	target, s3, err := publishTarget(*to, *endpoint, *publicRead)
	if err != nil {
		return err
	}

	job := publishJob{
		fs: fs, configPath: *configPath, packs: &packsFlag, target: target, s3: s3,
		publicRead: *publicRead, workers: *workers, dryRun: *dryRun, log: slog.New(slog.NewTextHandler(stderr, nil)),
	}
	out, err := job.run(ctx, start)
	out.To = target.String()
	out.DryRun = *dryRun
	out.Seconds = time.Since(start).Seconds()
	if err != nil {
		out.Error = err.Error()
	}
	// One line, as gameclient -json writes: easy to log and to parse.
	if encErr := json.NewEncoder(stdout).Encode(out); encErr != nil && err == nil {
		return fmt.Errorf("write summary: %w", encErr)
	}
	return err
}

// publishJob is a checked command line of gameserver publish.
type publishJob struct {
	fs         *flag.FlagSet
	configPath string
	packs      *listFlag
	target     publish.Target
	s3         *publish.S3 // target, when it is a bucket
	publicRead bool
	workers    int
	dryRun     bool
	log        *slog.Logger
}

// run loads the configuration and the packs and publishes them. The
// summary is what was done before any error.
func (j publishJob) run(ctx context.Context, start time.Time) (publishSummary, error) {
	var out publishSummary
	cfg, _, err := loadConfig(j.fs, j.configPath, overrides{packs: j.packs})
	if err != nil {
		return out, err
	}
	if j.s3 != nil && !j.dryRun {
		// Before the packs are hashed, so a wrong endpoint or key fails
		// at once.
		if err := j.s3.EnsureBucket(ctx, j.publicRead); err != nil {
			return out, err
		}
	}
	// Listing the destination and hashing the packs are independent, and
	// either can take seconds (a large bucket, a large pack): one waits
	// on the network, the other on the CPU.
	type listed struct {
		have map[string]int64
		err  error
		took time.Duration
	}
	listCtx, stopListing := context.WithCancel(ctx)
	defer stopListing()
	listing := make(chan listed, 1)
	go func() {
		t0 := time.Now()
		have, err := j.target.List(listCtx)
		listing <- listed{have, err, time.Since(t0)}
	}()
	view, err := packs.Load(ctx, packOptions(cfg, packs.NewIDs()), nil)
	if err != nil {
		return out, fmt.Errorf("load packs: %w", err)
	}
	defer view.Close()
	for _, p := range view.Problems {
		j.log.Warn("skipped pack file: not published", "pack", p.Pack, "path", p.Path, "reason", p.Reason)
	}
	out.LoadSeconds = time.Since(start).Seconds()
	l := <-listing
	out.ListSeconds = l.took.Seconds()
	if l.err != nil {
		return out, l.err
	}

	out.Summary, err = publish.Publish(ctx, view, j.target, publish.Options{Workers: j.workers, DryRun: j.dryRun, Listing: l.have})
	out.ListSeconds = l.took.Seconds()
	if err == nil && j.s3 != nil && j.publicRead && !j.dryRun {
		// What players' clients will do: an anonymous GET. A policy
		// grant can be overridden (a Deny, a store that blocks public
		// access); better the operator hears it now than from nobody.
		base := j.s3.PublicBase()
		if cerr := mirror.Check(ctx, base, nil); cerr != nil {
			err = fmt.Errorf("-public-read: %s is not readable anonymously, although the bucket policy grants it (a Deny statement, or the store blocks public access?): %w", base, cerr)
		}
	}
	return out, err
}

// publishTarget checks -to and the flags that go with it, and returns the
// base; s3 is the same base when it is a bucket.
func publishTarget(to, endpoint string, publicRead bool) (publish.Target, *publish.S3, error) {
	if to == "" {
		return nil, nil, usageError("-to is required: a directory (served by nginx or any static web server) or s3://BUCKET[/PREFIX]")
	}
	bucket, prefix, isS3, err := publish.ParseS3URL(to)
	if err != nil {
		return nil, nil, usageError("-to " + err.Error())
	}
	if !isS3 {
		if strings.Contains(to, "://") {
			return nil, nil, usageError(fmt.Sprintf("-to %q: want a directory or s3://BUCKET[/PREFIX]", to))
		}
		if endpoint != "" || publicRead {
			return nil, nil, usageError("-s3-endpoint and -public-read are for -to s3://…; a directory is as public as the web server serving it makes it")
		}
		if fi, err := os.Stat(to); err == nil && !fi.IsDir() {
			return nil, nil, usageError(fmt.Sprintf("-to %s: not a directory", to))
		}
		if _, err := os.Stat(filepath.Dir(filepath.Clean(to))); err != nil {
			return nil, nil, usageError(fmt.Sprintf("-to %s: its parent directory must exist: %v", to, err))
		}
		return publish.NewDir(to), nil, nil
	}
	if endpoint == "" {
		return nil, nil, usageError("-to s3://… needs -s3-endpoint, e.g. http://127.0.0.1:9000 for a local MinIO or https://s3.REGION.amazonaws.com")
	}
	region := os.Getenv("AWS_REGION")
	if region == "" {
		region = os.Getenv("AWS_DEFAULT_REGION")
	}
	s3, err := publish.NewS3(publish.S3Options{
		Endpoint: endpoint, Bucket: bucket, Prefix: prefix, Region: region,
		AccessKey: os.Getenv("AWS_ACCESS_KEY_ID"), SecretKey: os.Getenv("AWS_SECRET_ACCESS_KEY"),
		SessionToken: os.Getenv("AWS_SESSION_TOKEN"),
	})
	if err != nil {
		return nil, nil, usageError(err.Error())
	}
	return s3, s3, nil
}
