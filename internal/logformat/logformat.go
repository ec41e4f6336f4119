// Package logformat makes the slog handler both binaries' -log-format flag
// selects, so they log alike.
package logformat

import (
	"fmt"
	"io"
	"log/slog"
)

// Handler returns a text or JSON handler writing to w at level.
func Handler(w io.Writer, format string, level slog.Level) (slog.Handler, error) {
	opts := &slog.HandlerOptions{Level: level}
	switch format {
	case "text":
		return slog.NewTextHandler(w, opts), nil
	case "json":
		return slog.NewJSONHandler(w, opts), nil
	}
	return nil, fmt.Errorf("-log-format: %q is neither text nor json", format)
}
