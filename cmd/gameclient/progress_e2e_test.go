package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// In a real terminal (tmux) of each width, gameclient's progress is one
// line that fits and is redrawn in place, log lines are printed above it on
// their own lines, and its final state is on screen just before the
// summary.
func TestProgressLineInATerminal(t *testing.T) {
	tmux := requireTool(t, "tmux", "tmux")
	pack := filepath.Join(t.TempDir(), "big")
	for i := range 24 {
		p := filepath.Join(pack, "assets", "big", "texture", fmt.Sprintf("t%02d.png", i))
		os.MkdirAll(filepath.Dir(p), 0o755)
		os.WriteFile(p, bytes.Repeat([]byte{byte(i), 1, 2, 3}, 20_000+i*20_000), 0o644)
	}
	url := startServer(t, "-packs", pack)
	// A tmux server of our own, so nobody else's sessions are touched,
	// with a config of our own. scroll-on-clear off: by default tmux copies
	// the screen into the scrollback when a program erases the screen from
	// its top row, as redrawing a line that sits on the top row does, and
	// the test reads the scrollback to see every line ever drawn.
	socket := fmt.Sprintf("voxsync-test-%d", os.Getpid())
	conf := filepath.Join(t.TempDir(), "tmux.conf")
	if err := os.WriteFile(conf, []byte("set -g scroll-on-clear off\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tm := func(args ...string) (string, error) {
		out, err := exec.Command(tmux, append([]string{"-L", socket, "-f", conf}, args...)...).CombinedOutput()
		return string(out), err
	}
	t.Cleanup(func() { tm("kill-server") })

	for _, width := range []int{40, 72, 120} {
		t.Run(fmt.Sprintf("%d columns", width), func(t *testing.T) {
			name := fmt.Sprintf("w%d", width)
			cmd := fmt.Sprintf("%s -server %s -cache %s -until-synced -log-level info; echo EXIT=$?; sleep 600",
				clientBin, url, t.TempDir())
			if out, err := tm("new-session", "-d", "-s", name, "-x", fmt.Sprint(width), "-y", "30", cmd); err != nil {
				t.Fatalf("tmux new-session: %v: %s", err, out)
			}
			defer tm("kill-session", "-t", name)
			var screen string
			for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(100 * time.Millisecond) {
				// The whole history, as the terminal shows it (wrapped lines
				// stay split).
				out, err := tm("capture-pane", "-p", "-S", "-", "-t", name)
				if err != nil {
					t.Fatalf("tmux capture-pane: %v: %s", err, out)
				}
				screen = out
				if strings.Contains(screen, "EXIT=") || time.Now().After(deadline) {
					break
				}
			}
			if !strings.Contains(screen, "EXIT=0") {
				t.Fatalf("gameclient did not sync:\n%s", screen)
			}
			rows := strings.Split(strings.TrimRight(screen, "\n"), "\n")
			progressRow := regexp.MustCompile(`^(\d+)/(\d+) \[`)
			bar, summary := -1, -1
			for i, row := range rows {
				if progressRow.MatchString(row) {
					if bar >= 0 {
						t.Errorf("a second progress line at row %d (it must be redrawn in place):\n%s", i, screen)
					}
					bar = i
				}
				if strings.Contains(row, " bound, ") && strings.Contains(row, " loaded (") {
					summary = i
				}
				if strings.Contains(row, "level=") && progressRow.MatchString(row[strings.Index(row, "level="):]) {
					t.Errorf("a log line glued to the progress line: %q", row)
				}
			}
			if bar < 0 || summary != bar+1 {
				t.Fatalf("want the final progress line just before the summary:\n%s", screen)
			}
			m := progressRow.FindStringSubmatch(rows[bar])
			if m[1] != m[2] || !strings.HasPrefix(rows[summary], m[2]+" bound, "+m[2]+" loaded") {
				t.Errorf("final progress line %q does not show everything loaded, as the summary %q says", rows[bar], rows[summary])
			}
			if n := utf8.RuneCountInString(rows[bar]); n >= width {
				t.Errorf("progress line of %d columns in a terminal of %d: %q; it must leave the last column free", n, width, rows[bar])
			}
			if !strings.Contains(rows[bar], "##") {
				t.Errorf("progress line without a bar: %q", rows[bar])
			}
			if !regexp.MustCompile(`\] [0-9.]+ MiB/[0-9.]+ MiB`).MatchString(rows[bar]) {
				t.Errorf("progress line without bytes done/total: %q", rows[bar])
			}
			// Log lines are whole lines above it (joined where the
			// terminal wrapped them).
			joined, _ := tm("capture-pane", "-p", "-J", "-S", "-", "-t", name)
			before, _, _ := strings.Cut(joined, m[0])
			if !regexp.MustCompile(`(?m)^time=\S+ level=INFO msg=connected server=\S+ session=\S+$`).MatchString(before) {
				t.Errorf("the log line of the connection is not on its own line above the progress line:\n%s", joined)
			}
		})
	}
}
