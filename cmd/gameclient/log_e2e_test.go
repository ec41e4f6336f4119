package main

import (
	"bufio"
	"encoding/json"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// With -log-format json every log line of both binaries is one JSON
// object; a bad format is a usage error.
func TestLogFormatJSON(t *testing.T) {
	cmd := exec.Command(serverBin, "-listen", "127.0.0.1:0", "-admin-listen", "none", "-log-format", "json")
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() })
	url := make(chan string, 1)
	var notJSON []string // written by the reader until done is closed
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			var rec map[string]any
			if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
				notJSON = append(notJSON, sc.Text())
				continue
			}
			if rec["msg"] == "gameserver listening" {
				url <- rec["ws"].(string)
			}
		}
	}()
	var ws string
	select {
	case ws = <-url:
	case <-time.After(60 * time.Second):
		t.Fatal("gameserver did not log its address")
	}

	out, err := exec.Command(clientBin, "-server", ws, "-cache", t.TempDir(), "-until-synced", "-log-format", "json", "-log-level", "info").CombinedOutput()
	if err != nil {
		t.Fatalf("gameclient: %v\n%s", err, out)
	}
	var logged int
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if !strings.HasPrefix(line, "{") {
			continue // the summary and progress lines are for people
		}
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil || rec["level"] != "INFO" {
			t.Errorf("gameclient log line: %q: %v", line, err)
		}
		logged++
	}
	if logged == 0 {
		t.Errorf("no JSON log lines from gameclient -log-level info:\n%s", out)
	}

	// Shut the server down, so its last lines are read too.
	cmd.Process.Signal(syscall.SIGTERM)
	<-done
	if len(notJSON) > 0 {
		t.Errorf("gameserver log lines that are not JSON: %q", notJSON)
	}

	for _, bin := range []string{serverBin, clientBin} {
		err := exec.Command(bin, "-log-format", "xml").Run()
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 {
			t.Errorf("%s -log-format xml: %v, want exit 2", bin, err)
		}
	}
}
