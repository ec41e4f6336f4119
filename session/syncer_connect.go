package session

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"time"

	"github.com/gorilla/websocket"
	"github.com/voxsync/voxsync/packets"
)

// CheckURL refuses a server URL that no retry can make work (ErrBadURL);
// Run checks it first, and a program can before it opens anything.
func CheckURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("%w %q: %v; want ws://host:port/ws", ErrBadURL, raw, err)
	}
	if u.Scheme != "ws" && u.Scheme != "wss" {
		return fmt.Errorf("%w %q: scheme %q; want ws://host:port/ws (or wss:// behind TLS)", ErrBadURL, raw, u.Scheme)
	}
	if u.Host == "" || u.Hostname() == "" {
		return fmt.Errorf("%w %q: no host; want ws://host:port/ws", ErrBadURL, raw)
	}
	if p := u.Port(); p != "" {
		if _, err := net.LookupPort("tcp", p); err != nil {
			return fmt.Errorf("%w %q: port %q: %v", ErrBadURL, raw, p, err)
		}
	}
	return nil
}

// connect opens the WebSocket and does the handshake. Its errors say what
// happened in words a player can act on, and are Permanent when retrying
// cannot help: an HTTP answer that is not a WebSocket upgrade (wrong path,
// a web server's page), something that does not speak HTTP at all, or the
// server's refusal. Network errors (refused, reset, timed out, unknown
// host) and HTTP 5xx or 429 (a server shutting down, a proxy whose backend
// restarts) are not permanent: the server may be starting.
func (s *Syncer) connect(ctx context.Context) (*websocket.Conn, *packets.Welcome, error) {
	dialer := websocket.Dialer{HandshakeTimeout: 10 * time.Second, ReadBufferSize: 64 << 10, WriteBufferSize: 16 << 10, NetDialContext: s.opts.NetDialContext}
	conn, resp, err := dialer.DialContext(ctx, s.opts.URL, nil)
	if err != nil {
		if resp != nil && (resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests) {
			// A server shutting down, or a proxy whose backend is
			// restarting: worth trying again.
			return nil, nil, fmt.Errorf("connect to %s: the server answered HTTP %s", s.opts.URL, resp.Status)
		}
		if resp != nil && resp.StatusCode != http.StatusSwitchingProtocols {
			return nil, nil, fmt.Errorf("connect to %s: %w: the server answered HTTP %s instead of a WebSocket upgrade; check the host, port and path (the game server serves /ws)",
				s.opts.URL, ErrNotServer, resp.Status)
		}
		if transientDialError(err) {
			return nil, nil, fmt.Errorf("connect to %s: %w", s.opts.URL, err)
		}
		return nil, nil, fmt.Errorf("connect to %s: %w: %v", s.opts.URL, ErrNotServer, err)
	}

	conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
	hello := &packets.Hello{Version: packets.Version, Client: s.opts.Client, Token: s.opts.Token, Capabilities: s.offered()}
	if err := conn.WriteMessage(websocket.BinaryMessage, packets.Encode(hello)); err != nil {
		conn.Close()
		return nil, nil, fmt.Errorf("send Hello: %w", err)
	}
	conn.SetReadDeadline(time.Now().Add(15 * time.Second))
	welcome, err := readWelcome(conn)
	if err != nil {
		conn.Close()
		return nil, nil, err
	}
	if extra := welcome.Capabilities &^ hello.Capabilities; extra != 0 {
		conn.Close()
		return nil, nil, fmt.Errorf("%w: Welcome chose capabilities 0x%x that Hello did not offer", ErrProtocol, extra)
	}
	return conn, welcome, nil
}

// offered is the capabilities Hello offers.
func (s *Syncer) offered() uint64 {
	var caps uint64
	if !s.opts.NoChunks {
		caps |= packets.CapChunked
	}
	if !s.opts.NoCompression {
		caps |= packets.CapZstd
	}
	if !s.opts.NoMirrors {
		caps |= packets.CapMirrors
	}
	return caps
}

// readWelcome reads the server's answer to Hello. The version is checked
// from the first bytes before the rest is decoded, so a server of another
// version is reported as a version mismatch, not a protocol error.
func readWelcome(conn *websocket.Conn) (*packets.Welcome, error) {
	var buf bytes.Buffer
	if _, err := readMessage(conn, &buf); err != nil {
		return nil, fmt.Errorf("read Welcome: %w", err)
	}
	data := buf.Bytes()
	if v, ok := packets.HelloVersion(data); ok && packets.Type(data[0]) == packets.TypeWelcome && v != packets.Version {
		return nil, fmt.Errorf("%w: %s: protocol version mismatch: the server speaks version %d, this client version %d; use a client and server of the same release",
			ErrRefused, packets.DisconnectVersionMismatch, v, packets.Version)
	}
	p, err := packets.Decode(data)
	if err != nil {
		return nil, fmt.Errorf("read Welcome: %w: %w", ErrProtocol, err)
	}
	switch p := p.(type) {
	case *packets.Welcome:
		return p, nil
	case *packets.Disconnect:
		err := fmt.Errorf("server said %s: %s", p.Code, p.Reason)
		if p.Code.Permanent() {
			return nil, fmt.Errorf("%w: %w", ErrRefused, err)
		}
		return nil, err
	default:
		return nil, fmt.Errorf("%w: expected Welcome, got %s", ErrProtocol, p.Type())
	}
}

// transientDialError reports whether a failed dial may succeed later:
// network-level failures, as opposed to a peer that answered in something
// other than WebSocket-over-HTTP.
func transientDialError(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}
