package main

import (
	"cmp"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/BurntSushi/toml"
	"github.com/voxsync/voxsync/configs"
	"github.com/voxsync/voxsync/packs"
)

// overrides are the flags that replace settings of the config file.
type overrides struct {
	listen, adminListen, world *string
	hotReload                  *bool
	packs, preload             *listFlag
}

// loadConfig reads the config file (or the defaults), applies the flags
// over it, and checks everything an operator can get wrong before anything
// starts: every setting, every pack directory and its pack.toml, and the
// world file. All problems are returned together, as configs.Problems. The
// world is nil when world = "none". Flags are those set on fs; o points at
// their values.
func loadConfig(fs *flag.FlagSet, path string, o overrides) (configs.Server, *configs.World, error) {
	cfg, src := configs.DefaultServer(), configs.DefaultSource()
	if path != "" {
		var err error
		if cfg, src, err = configs.ReadServer(path); err != nil {
			return cfg, nil, err
		}
	}
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "listen":
			cfg.Listen = *o.listen
			src.SetByFlag("listen", "-listen")
		case "admin-listen":
			cfg.AdminListen = *o.adminListen
			if cfg.AdminListen == "none" {
				cfg.AdminListen = ""
			}
			src.SetByFlag("admin_listen", "-admin-listen")
		case "world":
			cfg.World = *o.world
			src.SetByFlag("world", "-world")
		case "hot-reload":
			cfg.HotReload = *o.hotReload
			src.SetByFlag("hot_reload", "-hot-reload")
		case "packs":
			cfg.Packs = o.packs.vals
			src.SetByFlag("packs", "-packs")
		case "preload":
			cfg.Preload = o.preload.vals
			if len(cfg.Preload) == 1 && cfg.Preload[0] == "none" {
				cfg.Preload = nil
			}
			src.SetByFlag("preload", "-preload")
		}
	})

	var ps configs.Problems
	if err := src.Check(cfg); err != nil && !errors.As(err, &ps) {
		return cfg, nil, err
	}
	file, line := src.Where("packs")
	ps = append(ps, configs.CheckPacks(cfg.Packs, file, line)...)
	var world *configs.World
	if cfg.World != configs.NoWorld {
		w, err := configs.LoadWorld(cfg.World)
		var wps configs.Problems
		switch {
		case errors.As(err, &wps):
			ps = append(ps, wps...)
		case err != nil:
			file, line := src.Where("world")
			ps = append(ps, configs.Problem{File: file, Line: line, Setting: "world", Msg: fmt.Sprintf("%v (world = %q turns world content off)", err, configs.NoWorld)})
		}
		world = &w
	}
	if len(ps) > 0 {
		// Found setting by setting, then pack by pack: told file by file
		// (in the order first met), top to bottom, as a person reads them.
		first := map[string]int{}
		for i, p := range ps {
			if _, ok := first[p.File]; !ok {
				first[p.File] = i
			}
		}
		slices.SortStableFunc(ps, func(a, b configs.Problem) int {
			return cmp.Or(cmp.Compare(first[a.File], first[b.File]), cmp.Compare(a.Line, b.Line))
		})
		return cfg, nil, ps
	}
	return cfg, world, nil
}

// packOptions are how the server loads the packs cfg configures; gameserver
// publish loads them the same way, so it publishes what the server serves.
func packOptions(cfg configs.Server, ids *packs.IDs) packs.Options {
	memMax := cfg.MemoryMax
	if memMax == 0 {
		memMax = -1 // memory_max = 0: none (packs reads 0 as its default)
	}
	return packs.Options{
		Dirs: cfg.Packs, Builtin: cfg.BuiltinPack, MaxFileSize: cfg.MaxFileSize,
		MemoryMax: memMax, MemoryBudget: cfg.MemoryBudget, IDs: ids,
	}
}

// printConfig writes the effective configuration as a server.toml. The
// auth token is left out: -check-config runs in CI logs and over
// shoulders, and a secret printed there is no longer one.
func printConfig(w io.Writer, cfg configs.Server) error {
	fmt.Fprintln(w, "# effective gameserver configuration: the file (or the built-in defaults) with flags applied")
	token := cfg.AuthToken
	cfg.AuthToken = ""
	var b strings.Builder
	if err := toml.NewEncoder(&b).Encode(cfg); err != nil {
		return err
	}
	out := b.String()
	if token != "" {
		out = strings.Replace(out, "auth_token = \"\"\n", "# auth_token is set; not shown (saved as a config, this one needs it added back)\n", 1)
	}
	_, err := io.WriteString(w, out)
	return err
}

// configError formats configuration problems for the terminal: one on its
// line, several as a list under a count.
func configError(err error) string {
	var ps configs.Problems
	if !errors.As(err, &ps) || len(ps) == 1 {
		return err.Error()
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%d configuration problems:", len(ps))
	for _, p := range ps {
		b.WriteString("\n  " + p.Error())
	}
	return b.String()
}
