//go:build !linux

package session

import "net"

// limitUnsent is a no-op where TCP_NOTSENT_LOWAT is not available.
func limitUnsent(net.Conn) {}

// bytesAcked is unknown where TCP_INFO is not available: every write then
// has a plain write_timeout deadline.
func bytesAcked(net.Conn) (uint64, bool) { return 0, false }
