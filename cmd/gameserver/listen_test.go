package main

import (
	"net"
	"os/exec"
	"strings"
	"testing"
)

// A game port already taken is an error before the packs are loaded,
// which with gigabytes of packs takes a while to reach.
func TestTakenPortFailsBeforeLoadingPacks(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	cmd := exec.Command(serverBin, "-listen", taken.Addr().String(), "-admin-listen", "none",
		"-packs", writeTestPack(t), "-log-level", "info")
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("gameserver on a taken port exited 0:\n%s", out)
	}
	if !strings.Contains(string(out), "address already in use") || !strings.Contains(string(out), "setting listen") {
		t.Fatalf("no clear error for the taken port:\n%s", out)
	}
	if strings.Contains(string(out), "packs loaded") {
		t.Fatalf("packs were loaded before the taken port was noticed:\n%s", out)
	}
}
