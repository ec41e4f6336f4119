//go:build linux

package session

import (
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// The game port's handler wraps each connection to count what it sends;
// the send limit and the progress watchdog must still reach the socket
// (they silently did nothing through the wrapper once).
func TestSocketLimitsReachTheGamePortsConnections(t *testing.T) {
	ts := startServer(t, serverSetup{})
	join(t, ts.url)
	c := waitClients(t, ts, 1)[0]
	nc := c.conn.NetConn()
	if _, ok := nc.(*trackedConn); !ok {
		t.Fatalf("the game port's connection is a %T, not the counting wrapper this test is about", nc)
	}
	if _, ok := bytesAcked(nc); !ok {
		t.Fatal("bytesAcked cannot read TCP_INFO through the wrapper: the progress watchdog is off")
	}
	rc, err := nc.(syscall.Conn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var lowat int
	rc.Control(func(fd uintptr) { lowat, err = unix.GetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_NOTSENT_LOWAT) })
	if err != nil || lowat != notSentLowat {
		t.Fatalf("TCP_NOTSENT_LOWAT = %d (%v), want %d", lowat, err, notSentLowat)
	}
}
