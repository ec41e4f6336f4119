// Package probe is a minimal protocol client for load tests and
// benchmarks: it joins, waits for its Binds, requests everything, verifies
// each stream against its hash and throws the bytes away. It keeps no
// cache, so many probes in one process measure the server, not disks.
package probe

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"net"
	"net/netip"
	"syscall"
	"time"

	"github.com/google/uuid"
	"github.com/gorilla/websocket"
	"github.com/voxsync/voxsync/packets"
	"github.com/voxsync/voxsync/resources"
)

// Client is one probe connection. Not safe for concurrent use.
type Client struct {
	conn   *websocket.Conn
	Limits packets.Limits
	Binds  map[resources.Key]resources.Binding
}

// Join dials url and completes the handshake.
func Join(ctx context.Context, url string) (*Client, error) {
	return JoinFrom(ctx, url, netip.Addr{})
}

// Loopback returns the source address for the i-th of many probes on one
// machine: 127.0.0.1 for the first 8, then 127.0.1.1, and so on, so a test
// with thousands of clients stays within the server's default per-address
// connection limit, as clients from many hosts would.
func Loopback(i int) netip.Addr {
	n := i/8 + 1
	return netip.AddrFrom4([4]byte{127, byte(n >> 16), byte(n >> 8), byte(n)})
}

// JoinFrom dials url from the local address from (any if zero) and
// completes the handshake.
func JoinFrom(ctx context.Context, url string, from netip.Addr) (*Client, error) {
	d := websocket.Dialer{ReadBufferSize: 4096, WriteBufferSize: 4096}
	nd := &net.Dialer{Control: limitReceiveBuffer}
	if from.IsValid() {
		nd.LocalAddr = &net.TCPAddr{IP: from.AsSlice()}
	}
	d.NetDialContext = nd.DialContext
	conn, _, err := d.DialContext(ctx, url, nil)
	if err != nil {
		return nil, fmt.Errorf("probe: dial: %w", err)
	}
	conn.SetReadLimit(packets.MaxPacketSize)
	if err := conn.WriteMessage(websocket.BinaryMessage, packets.Encode(&packets.Hello{Version: packets.Version, Client: uuid.New()})); err != nil {
		conn.Close()
		return nil, fmt.Errorf("probe: hello: %w", err)
	}
	c := &Client{conn: conn, Binds: make(map[resources.Key]resources.Binding)}
	p, err := c.read(30 * time.Second)
	if err != nil {
		conn.Close()
		return nil, err
	}
	w, ok := p.(*packets.Welcome)
	if !ok {
		conn.Close()
		return nil, fmt.Errorf("probe: expected Welcome, got %s", p.Type())
	}
	c.Limits = w.Limits
	return c, nil
}

// DisconnectError is the server's Disconnect, e.g. "server full".
type DisconnectError struct {
	Code   packets.DisconnectCode
	Reason string
}

func (e *DisconnectError) Error() string {
	return fmt.Sprintf("probe: server disconnected: %s: %s", e.Code, e.Reason)
}

// ReceiveBuffer is each probe's kernel receive buffer. Many probes in one
// process stand for players on many machines, but here they share one
// kernel's TCP memory: with Linux's receive autotuning (up to 32 MiB a
// socket on this machine) a thousand slow readers push it into memory
// pressure, where it drops packets and stalls connections for seconds — a
// load no real server sees from remote players, whose buffers live on their
// own machines. A fixed 128 KiB (the kernel doubles it) still lets one
// loopback stream run at hundreds of megabytes a second.
const ReceiveBuffer = 128 << 10

func limitReceiveBuffer(network, address string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, ReceiveBuffer)
	})
	if err != nil {
		return err
	}
	return serr
}

// Close closes the connection.
func (c *Client) Close() error { return c.conn.Close() }

// Conn returns the WebSocket, for tests that misbehave on purpose.
func (c *Client) Conn() *websocket.Conn { return c.conn }

func (c *Client) read(timeout time.Duration) (packets.Packet, error) {
	c.conn.SetReadDeadline(time.Now().Add(timeout))
	_, data, err := c.conn.ReadMessage()
	if err != nil {
		return nil, fmt.Errorf("probe: read: %w", err)
	}
	p, err := packets.Decode(data)
	if err != nil {
		return nil, fmt.Errorf("probe: %w", err)
	}
	if d, ok := p.(*packets.Disconnect); ok {
		return nil, &DisconnectError{Code: d.Code, Reason: d.Reason}
	}
	return p, nil
}

// WaitBinds reads until n bindings are known.
func (c *Client) WaitBinds(n int, timeout time.Duration) error {
	for len(c.Binds) < n {
		p, err := c.read(timeout)
		if err != nil {
			return err
		}
		if b, ok := p.(*packets.Bind); ok {
			for _, e := range b.Entries {
				c.Binds[e.Key()] = e
			}
		}
	}
	return nil
}

// WaitBindOf reads until a Bind of hash h arrives and returns when it did.
func (c *Client) WaitBindOf(h resources.Hash, timeout time.Duration) (time.Time, error) {
	deadline := time.Now().Add(timeout)
	for {
		p, err := c.read(time.Until(deadline))
		if err != nil {
			return time.Time{}, err
		}
		if b, ok := p.(*packets.Bind); ok {
			for _, e := range b.Entries {
				c.Binds[e.Key()] = e
				if e.Hash == h {
					return time.Now(), nil
				}
			}
		}
	}
}

// FetchAll requests every bound hash and reads until each has arrived and
// verified. It returns the payload bytes received.
func (c *Client) FetchAll(timeout time.Duration) (int64, error) {
	want := make(map[resources.Hash]bool)
	var hs []resources.Hash
	for _, b := range c.Binds {
		if !want[b.Hash] {
			want[b.Hash] = true
			hs = append(hs, b.Hash)
		}
	}
	// Keep within the announced pending limit, as the reference client
	// does: request more as streams complete.
	outstanding := 0
	more := func() error {
		room := int(c.Limits.MaxPending) - outstanding
		for room > 0 && len(hs) > 0 {
			n := min(len(hs), int(c.Limits.MaxRequestHashes), room)
			r := &packets.ResourceRequest{Wants: make([]packets.Want, n)}
			for i := range n {
				r.Wants[i].Hash = hs[i]
			}
			if err := c.conn.WriteMessage(websocket.BinaryMessage, packets.Encode(r)); err != nil {
				return fmt.Errorf("probe: request: %w", err)
			}
			hs, room, outstanding = hs[n:], room-n, outstanding+n
		}
		return nil
	}
	if err := more(); err != nil {
		return 0, err
	}
	type stream struct {
		hash resources.Hash
		sum  hash.Hash
	}
	streams := make(map[uint32]*stream)
	var total int64
	for len(want) > 0 {
		p, err := c.read(timeout)
		if err != nil {
			return total, err
		}
		switch p := p.(type) {
		case *packets.InitResSend:
			streams[p.Stream] = &stream{hash: p.Hash, sum: sha256.New()}
		case *packets.ChunkSend:
			s := streams[p.Stream]
			if s == nil {
				return total, fmt.Errorf("probe: chunk for unknown stream %d", p.Stream)
			}
			s.sum.Write(p.Data)
			total += int64(len(p.Data))
			if p.Last {
				var got resources.Hash
				s.sum.Sum(got[:0])
				if got != s.hash {
					return total, errors.New("probe: stream does not match its hash " + s.hash.Short())
				}
				delete(want, s.hash)
				delete(streams, p.Stream)
				outstanding--
				if err := more(); err != nil {
					return total, err
				}
			}
		case *packets.ResourceError:
			return total, fmt.Errorf("probe: server error for %s: %s", p.Hash.Short(), p.Message)
		}
	}
	return total, nil
}
