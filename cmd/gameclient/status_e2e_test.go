package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// statusJSON is the part of /status.json the tests read.
type statusJSON struct {
	Clients []struct {
		Remote  string `json:"remote"`
		Session string `json:"session"`
		Bound   int    `json:"bound"`
		Loaded  int    `json:"loaded"`
	} `json:"clients"`
	Packs []struct {
		Name      string `json:"name"`
		Resources int    `json:"resources"`
	} `json:"packs"`
	Reloads []struct {
		Outcome string `json:"outcome"`
	} `json:"reloads"`
}

// waitStatus polls /status.json until ok accepts it.
func waitStatus(t *testing.T, admin string, ok func(statusJSON) bool) statusJSON {
	t.Helper()
	var st statusJSON
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		_, body := httpGet(t, admin+"/status.json")
		st = statusJSON{}
		if err := json.Unmarshal([]byte(body), &st); err != nil {
			t.Fatalf("/status.json: %v: %s", err, body)
		}
		if ok(st) {
			return st
		}
	}
	t.Fatalf("status never as wanted: %+v", st)
	return st
}

// A person opening /status in a real browser, with a real client
// connected, sees the client with its progress and each pack with its
// count, on a wide screen and on a phone.
//
// VOXSYNC_SCREENSHOT=../../docs/status.png also writes the screenshot the
// README shows.
func TestStatusPageInChromium(t *testing.T) {
	chromium := requireTool(t, "chromium", "chromium")
	pack := filepath.Join(t.TempDir(), "hd-textures")
	write := func(rel string, data []byte) {
		p := filepath.Join(pack, filepath.FromSlash(rel))
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("pack.toml", []byte("name = \"hd-textures\"\ndescription = \"Sharper blocks\"\npriority = 10\n"))
	for i := range 12 {
		write(fmt.Sprintf("assets/hd/texture/block_%02d.png", i), bytes.Repeat([]byte{byte(i)}, 1000+i*5000))
	}
	url, admin, _ := startServerAdmin(t, "-packs", pack, "-hot-reload")

	// A real client, following (it stays connected).
	client := exec.Command(clientBin, "-server", url, "-cache", t.TempDir(), "-log-level", "error")
	if err := client.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Process.Kill(); client.Wait() })
	st := waitStatus(t, admin, func(s statusJSON) bool {
		return len(s.Clients) == 1 && s.Clients[0].Bound > 0 && s.Clients[0].Loaded == s.Clients[0].Bound
	})
	c := st.Clients[0]
	// A hot reload, so the page has one to show.
	write("assets/hd/texture/block_00.png", []byte("edited"))
	waitStatus(t, admin, func(s statusJSON) bool { return len(s.Reloads) == 1 })

	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium), chromedp.NoSandbox, chromedp.DisableGPU, chromedp.WindowSize(1280, 900))
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancel()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	ctx, cancel = context.WithTimeout(ctx, 90*time.Second)
	defer cancel()

	if err := chromedp.Do(ctx, chromedp.Navigate(admin+"/status"), chromedp.WaitVisible("tr.client")); err != nil {
		t.Fatalf("chromium: open /status: %v", err)
	}
	text, err := chromedp.Run(ctx, chromedp.Text("body"))
	if err != nil {
		t.Fatalf("chromium: read the page: %v", err)
	}
	screenshot, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("chromium: screenshot: %v", err)
	}
	for _, want := range []string{
		"Clients (1)",
		c.Remote,
		c.Session[:8],
		fmt.Sprintf("%d / %d loaded", c.Bound, c.Bound),
		"hd-textures",
		"12 resources",
		"builtin",
		"0 added, 1 changed, 0 removed",
		"texture/hd:block_00.png",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("the page does not show %q; it shows:\n%s", want, text)
		}
	}
	if p := os.Getenv("VOXSYNC_SCREENSHOT"); p != "" {
		if err := os.WriteFile(p, screenshot, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	// On a phone: the same facts, and nothing wider than the screen.
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(390, 844), chromedp.Reload(), chromedp.WaitVisible("tr.client")); err != nil {
		t.Fatalf("chromium, phone size: %v", err)
	}
	overflow, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`document.documentElement.scrollWidth > window.innerWidth`))
	if err != nil {
		t.Fatalf("chromium, phone size: %v", err)
	}
	phoneText, err := chromedp.Run(ctx, chromedp.Text("body"))
	if err != nil {
		t.Fatalf("chromium, phone size: %v", err)
	}
	if overflow {
		t.Error("on a 390 px wide screen the page is wider than the screen")
	}
	if !strings.Contains(phoneText, c.Remote) || !strings.Contains(phoneText, "12 resources") {
		t.Errorf("on a phone the page does not show the client and the pack:\n%s", phoneText)
	}
}
