// Command gameserver serves resource packs to game clients over WebSocket:
// it runs with zero setup on its built-in pack, or on pack directories
// given in a config file or with -packs.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	_ "net/http/pprof" // served only on -debug-listen
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/voxsync/voxsync/configs"
	"github.com/voxsync/voxsync/internal/buildinfo"
	"github.com/voxsync/voxsync/internal/logformat"
	"github.com/voxsync/voxsync/mirror"
	"github.com/voxsync/voxsync/packs"
	"github.com/voxsync/voxsync/resources"
	"github.com/voxsync/voxsync/session"
	"github.com/voxsync/voxsync/session/world"
)

// listFlag collects a flag given several times or as a comma-separated list.
type listFlag struct {
	vals []string
	set  bool
}

func (l *listFlag) String() string { return strings.Join(l.vals, ",") }
func (l *listFlag) Set(s string) error {
	l.set = true
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			l.vals = append(l.vals, v)
		}
	}
	return nil
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "publish" {
		os.Exit(publishMain(os.Args[2:], os.Stdout, os.Stderr))
	}
	err := run()
	var usage usageError
	switch {
	case errors.As(err, &usage):
		fmt.Fprintln(os.Stderr, "gameserver:", err)
		os.Exit(2)
	case err != nil:
		fmt.Fprintln(os.Stderr, "gameserver:", configError(err))
		os.Exit(1)
	}
}

// usageError is a mistake on the command line; the exit code is 2.
type usageError string

func (e usageError) Error() string { return string(e) }

func run() error {
	var (
		configPath  = flag.String("config", "", "config file (default: built-in defaults, as in configs/server.toml)")
		listen      = flag.String("listen", "", "game port host:port, WebSocket at /ws only (overrides listen)")
		adminAddr   = flag.String("admin-listen", "", "operators' host:port for /metrics, /status, /healthz, /readyz; \"none\" for none (overrides admin_listen)")
		worldPath   = flag.String("world", "", "world file, or \"none\" for no world content (overrides world)")
		hotReload   = flag.Bool("hot-reload", false, "watch pack directories and re-bind changed resources (overrides hot_reload)")
		logLevel    = flag.String("log-level", "info", "debug, info, warn or error")
		logFormat   = flag.String("log-format", "text", "text (key=value lines) or json (one object a line)")
		debugAddr   = flag.String("debug-listen", "", "serve Go's pprof profiles on this separate address (off when empty; never expose it publicly)")
		checkConfig = flag.Bool("check-config", false, "check the configuration, packs' pack.toml and the world file, print the effective configuration, and exit")
		version     = flag.Bool("version", false, "print the version and exit")
		packsFlag   listFlag
		preload     listFlag
	)
	flag.Var(&packsFlag, "packs", "pack directory; repeat or comma-separate (replaces packs)")
	flag.Var(&preload, "preload", "preload pattern; repeat or comma-separate (replaces preload; \"none\" for none)")
	flag.Usage = serverUsage
	flag.Parse()
	if *version {
		fmt.Println(buildinfo.String("gameserver"))
		return nil
	}
	if flag.NArg() > 0 {
		return usageError(fmt.Sprintf("unexpected argument %q; every setting is a flag or in the -config file (see -help)", flag.Arg(0)))
	}

	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return usageError(fmt.Sprintf("-log-level %s: want debug, info, warn or error", *logLevel))
	}
	handler, err := logformat.Handler(os.Stderr, *logFormat, level)
	if err != nil {
		return usageError(err.Error())
	}
	log := slog.New(handler)

	cfg, worldDef, err := loadConfig(flag.CommandLine, *configPath, overrides{
		listen: listen, adminListen: adminAddr, world: worldPath, hotReload: hotReload, packs: &packsFlag, preload: &preload,
	})
	if err != nil {
		return err
	}
	if *checkConfig {
		if err := printConfig(os.Stdout, cfg); err != nil {
			return err
		}
		fmt.Fprintln(os.Stderr, "gameserver: configuration OK")
		return nil
	}

	// Listeners are opened before anything slow, so a taken port is an
	// error at once. The admin listener serves from the start: /healthz
	// answers and /readyz says "loading" while packs are hashed. The game
	// port accepts only once the packs are loaded: a player connecting
	// meanwhile waits in the kernel's queue, not refused.
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s (setting listen): %w", cfg.Listen, err)
	}
	defer ln.Close()
	if *debugAddr != "" {
		ln, err := net.Listen("tcp", *debugAddr)
		if err != nil {
			return fmt.Errorf("listen on %s (flag -debug-listen): %w", *debugAddr, err)
		}
		go http.Serve(ln, http.DefaultServeMux)
		defer ln.Close()
		log.Info("pprof listening", "addr", ln.Addr().String())
	}
	admin := &adminSwitch{}
	if cfg.AdminListen != "" {
		ln, err := net.Listen("tcp", cfg.AdminListen)
		if err != nil {
			return fmt.Errorf("listen on %s (setting admin_listen): %w", cfg.AdminListen, err)
		}
		adminSrv := &http.Server{Handler: admin, ReadHeaderTimeout: 10 * time.Second}
		go adminSrv.Serve(ln)
		defer adminSrv.Close()
		base := "http://" + ln.Addr().String()
		log.Info("admin listening", "admin", base, "status", base+"/status", "metrics", base+"/metrics")
	}

	var w *world.World
	if worldDef != nil {
		if w, err = world.New(*worldDef); err != nil {
			return err
		}
	}

	ids := packs.NewIDs()
	opts := packOptions(cfg, ids)
	start := time.Now()
	view, err := packs.Load(context.Background(), opts, nil)
	if err != nil {
		return err
	}
	for _, p := range view.Problems {
		log.Warn(p.Summary(), "pack", p.Pack, "path", p.Path, "reason", p.Reason)
	}
	log.Info("packs loaded", "packs", len(view.Packs()), "resources", view.Len(), "bytes", view.TotalSize(),
		"skipped", len(view.Problems), "took", time.Since(start).Round(time.Millisecond))
	if worldDef != nil {
		warnMissingWorldResources(log, *worldDef, cfg.World == "", view)
	}

	srv, err := session.NewServer(session.ServerOptions{Config: cfg, View: view, IDs: ids, World: w, Logger: log})
	if err != nil {
		return err
	}
	stopWatching := func() {}
	admin.serve(srv)
	if cfg.HotReload {
		if len(cfg.Packs) == 0 {
			log.Warn("hot_reload is on but no pack directories are configured; only the built-in pack is served")
		}
		watcher, err := packs.NewWatcher(view, packs.WatchOptions{
			Load: opts, Debounce: cfg.ReloadDebounce.Duration, Apply: srv.SetView,
			Logger: slog.New(reloadFailures{log.Handler(), srv}),
		})
		if err != nil {
			srv.Close()
			return fmt.Errorf("watch pack directories (hot_reload): %w", err)
		}
		stopWatching = func() { watcher.Close() }
		log.Info("hot reload on", "packs", cfg.Packs, "debounce", cfg.ReloadDebounce.Duration)
	}

	hs := &http.Server{Handler: srv.Handler(), ReadHeaderTimeout: 10 * time.Second}
	log.Info("gameserver listening", "ws", "ws://"+ln.Addr().String()+"/ws")

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if len(cfg.Mirrors) > 0 {
		go checkMirrors(ctx, log, srv, cfg.Mirrors, view)
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- hs.Serve(ln) }()
	select {
	case err := <-serveErr:
		stopWatching()
		srv.Close()
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	log.Info("shutting down: disconnecting clients")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	hs.Shutdown(shutdownCtx) // stop accepting; hijacked sessions are the Server's
	stopWatching()           // no reload may land on a closing server
	srv.Close()
	if err := <-serveErr; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	log.Info("stopped")
	return nil
}

// checkMirrors tells the operator whether each mirror serves this server's
// content: clients cope either way (they fetch what a mirror lacks from
// here), so a mistake would otherwise only show as a server doing all the
// sending. A mirror not ready is checked again, 5 s later, then less and
// less often (up to every 5 minutes), so that publishing after the server
// started shows on /status without a restart.
func checkMirrors(ctx context.Context, log *slog.Logger, srv *session.Server, bases []string, v *packs.View) {
	// 16 resources spread over the packs: enough to notice packs not
	// published, or published long ago, without a HEAD per resource.
	var small []resources.Hash
	for _, e := range v.Entries() {
		if e.Size <= packs.ChunkedMin {
			small = append(small, e.Hash)
		}
	}
	var sample []resources.Hash
	for i := range min(16, len(small)) {
		sample = append(sample, small[i*len(small)/min(16, len(small))])
	}
	var pending []string
	for _, b := range bases {
		base, err := mirror.ParseBase(b)
		if err != nil {
			srv.SetMirrorCheck(b, err) // the configuration check refuses these first
			continue
		}
		pending = append(pending, base)
	}
	warned := make(map[string]bool)
	for wait := 5 * time.Second; len(pending) > 0; wait = min(2*wait, 5*time.Minute) {
		var still []string
		for _, base := range pending {
			err := mirror.Check(ctx, base, sample)
			if ctx.Err() != nil {
				return
			}
			srv.SetMirrorCheck(base, err)
			switch {
			case err == nil:
				log.Info("mirror serves this server's content", "mirror", base)
			case !warned[base]:
				warned[base] = true
				log.Warn("mirror not ready; clients fetch from this server meanwhile", "err", err)
				still = append(still, base)
			default:
				still = append(still, base)
			}
		}
		pending = still
		if len(pending) == 0 {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// warnMissingWorldResources names world resources no pack provides, so an
// operator sees a typo in world.toml instead of silently missing content.
// The built-in demo world's resources are in the built-in pack; without it
// one line says so, and how to turn the demo world off.
func warnMissingWorldResources(log *slog.Logger, def configs.World, demo bool, v *packs.View) {
	var missing []string
	for _, n := range def.Nodes {
		for _, r := range n.Resources {
			l, err := resources.ParseLoc(r)
			if err != nil {
				continue // validated already
			}
			if _, ok := v.Lookup(l); !ok {
				missing = append(missing, r)
				if !demo {
					log.Warn("world resource not in any pack", "node", n.Name, "resource", r)
				}
			}
		}
	}
	if demo && len(missing) > 0 {
		log.Warn("the built-in demo world uses resources no pack provides; set world = \"none\" (or -world none) to turn it off",
			"missing", len(missing), "first", missing[0])
	}
}
