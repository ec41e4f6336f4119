package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"

	"github.com/voxsync/voxsync/session"
)

// adminSwitch is the admin listener's handler from the moment the process
// starts: /healthz answers at once, /readyz says "loading" until the
// server exists, and then everything is the server's AdminHandler.
type adminSwitch struct {
	h atomic.Pointer[http.Handler]
}

func (a *adminSwitch) serve(srv *session.Server) {
	h := srv.AdminHandler()
	a.h.Store(&h)
}

func (a *adminSwitch) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if h := a.h.Load(); h != nil {
		(*h).ServeHTTP(w, r)
		return
	}
	switch r.URL.Path {
	case "/healthz":
		fmt.Fprintln(w, "ok")
	default:
		http.Error(w, "not ready: loading packs", http.StatusServiceUnavailable)
	}
}

// reloadFailures passes the pack watcher's log records through and counts
// each failed reload on the server, for its metrics and status page. The
// watcher reports a failed reload only by logging it.
type reloadFailures struct {
	slog.Handler
	srv *session.Server
}

func (h reloadFailures) Handle(ctx context.Context, r slog.Record) error {
	if r.Level >= slog.LevelError && strings.HasPrefix(r.Message, "pack reload failed") {
		var cause error = fmt.Errorf("%s", r.Message)
		r.Attrs(func(a slog.Attr) bool {
			if a.Key == "err" {
				cause = fmt.Errorf("%v", a.Value.Any())
			}
			return true
		})
		h.srv.ReloadFailed(cause)
	}
	return h.Handler.Handle(ctx, r)
}

func (h reloadFailures) WithAttrs(as []slog.Attr) slog.Handler {
	return reloadFailures{h.Handler.WithAttrs(as), h.srv}
}

func (h reloadFailures) WithGroup(name string) slog.Handler {
	return reloadFailures{h.Handler.WithGroup(name), h.srv}
}
