//go:build linux

package session

import (
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// notSentLowat caps the bytes a connection may have queued in the kernel
// but not yet sent. Without it Linux autotunes send buffers up to megabytes
// per socket, and a thousand cold joins at once pushed the kernel into TCP
// memory pressure, where it stalls connections for longer than
// write_timeout and healthy clients were dropped as slow. With it a write
// waits until the client has taken what is queued, so the write deadline
// measures a client's progress rather than the kernel's memory.
const notSentLowat = 128 << 10

// limitUnsent applies notSentLowat to a TCP connection, or one that wraps
// it and exposes the socket (syscall.Conn: the server's own byte-counting
// wrapper); other kinds of connection (tests over pipes) are left alone.
func limitUnsent(c net.Conn) {
	tc, ok := c.(syscall.Conn)
	if !ok {
		return
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return
	}
	rc.Control(func(fd uintptr) {
		unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_NOTSENT_LOWAT, notSentLowat)
	})
}

// bytesAcked returns how many bytes the peer has acknowledged on a TCP
// connection: what the progress watchdog compares.
func bytesAcked(c net.Conn) (uint64, bool) {
	tc, ok := c.(syscall.Conn)
	if !ok {
		return 0, false
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return 0, false
	}
	var acked uint64
	var got bool
	rc.Control(func(fd uintptr) {
		if info, err := unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO); err == nil {
			acked, got = info.Bytes_acked, true
		}
	})
	return acked, got
}
