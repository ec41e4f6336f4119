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
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "gameserver:", err)
		os.Exit(1)
	}
}

func run() error {
	var (
		configPath = flag.String("config", "", "config file (default: built-in defaults, as in configs/server.toml)")
		listen     = flag.String("listen", "", "game port host:port, WebSocket at /ws only (overrides listen)")
		adminAddr  = flag.String("admin-listen", "", "operators' host:port for /metrics, /healthz, /readyz; \"none\" for none (overrides admin_listen)")
		worldPath  = flag.String("world", "", "world file (overrides world)")
		hotReload  = flag.Bool("hot-reload", false, "watch pack directories and re-bind changed resources (overrides hot_reload)")
		logLevel   = flag.String("log-level", "info", "debug, info, warn or error")
		debugAddr  = flag.String("debug-listen", "", "serve Go's pprof profiles on this separate address (off when empty; never expose it publicly)")
		packsFlag  listFlag
		preload    listFlag
	)
	flag.Var(&packsFlag, "packs", "pack directory; repeat or comma-separate (replaces packs)")
	flag.Var(&preload, "preload", "preload pattern; repeat or comma-separate (replaces preload; \"none\" for none)")
	flag.Parse()

	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return fmt.Errorf("-log-level: %w", err)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	cfg := configs.DefaultServer()
	if *configPath != "" {
		var err error
		if cfg, err = configs.LoadServer(*configPath); err != nil {
			return err
		}
	}
	flag.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "listen":
			cfg.Listen = *listen
		case "admin-listen":
			cfg.AdminListen = *adminAddr
			if *adminAddr == "none" {
				cfg.AdminListen = ""
			}
		case "world":
			cfg.World = *worldPath
		case "hot-reload":
			cfg.HotReload = *hotReload
		}
	})
	if packsFlag.set {
		cfg.Packs = packsFlag.vals
	}
	if preload.set {
		cfg.Preload = preload.vals
		if len(preload.vals) == 1 && preload.vals[0] == "none" {
			cfg.Preload = nil
		}
	}
	if err := cfg.Validate(); err != nil {
		return err
	}

	// The admin listener comes first, so /healthz answers and /readyz
	// says "loading" while packs are hashed.
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
		log.Info("admin listening", "admin", base, "metrics", base+"/metrics")
	}

	worldDef, err := configs.LoadWorld(cfg.World)
	if err != nil {
		return err
	}
	w, err := world.New(worldDef)
	if err != nil {
		return err
	}

	ids := packs.NewIDs()
	opts := packs.Options{
		Dirs: cfg.Packs, Builtin: cfg.BuiltinPack, MaxFileSize: cfg.MaxFileSize,
		MemoryMax: cfg.MemoryMax, MemoryBudget: cfg.MemoryBudget, IDs: ids,
	}
	start := time.Now()
	view, err := packs.Load(context.Background(), opts, nil)
	if err != nil {
		return err
	}
	for _, p := range view.Problems {
		log.Warn("skipped pack file", "pack", p.Pack, "path", p.Path, "reason", p.Reason)
	}
	log.Info("packs loaded", "packs", len(view.Packs()), "resources", view.Len(), "bytes", view.TotalSize(),
		"skipped", len(view.Problems), "took", time.Since(start).Round(time.Millisecond))
	warnMissingWorldResources(log, worldDef, view)

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

	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		stopWatching()
		srv.Close()
		return fmt.Errorf("listen on %s (setting listen): %w", cfg.Listen, err)
	}
	hs := &http.Server{Handler: srv.Handler(), ReadHeaderTimeout: 10 * time.Second}
	log.Info("gameserver listening", "ws", "ws://"+ln.Addr().String()+"/ws")

	if *debugAddr != "" {
		go func() {
			log.Info("pprof listening", "addr", *debugAddr)
			if err := http.ListenAndServe(*debugAddr, http.DefaultServeMux); err != nil {
				log.Error("pprof listener", "err", err)
			}
		}()
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
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

// warnMissingWorldResources names world resources no pack provides, so an
// operator sees a typo in world.toml instead of silently missing content.
func warnMissingWorldResources(log *slog.Logger, def configs.World, v *packs.View) {
	for _, n := range def.Nodes {
		for _, r := range n.Resources {
			l, err := resources.ParseLoc(r)
			if err != nil {
				continue // validated already
			}
			if _, ok := v.Lookup(l); !ok {
				log.Warn("world resource not in any pack", "node", n.Name, "resource", r)
			}
		}
	}
}
