package session

import (
	"bytes"
	"fmt"
	"io"

	"github.com/gorilla/websocket"
	"github.com/voxsync/voxsync/packets"
)

// errMessageTooLarge: a peer sent a message over packets.MaxPacketSize.
var errMessageTooLarge = fmt.Errorf("message over %d bytes, the protocol's largest packet", packets.MaxPacketSize)

// readMessage reads the next message into buf, at most MaxPacketSize
// bytes. A larger message returns errMessageTooLarge with the connection
// still usable, so the reader can answer with a Disconnect that says why
// (gorilla's own read limit would close with code 1009 and no reason). The
// rest of the oversized message is skipped by the next read, never stored.
func readMessage(conn *websocket.Conn, buf *bytes.Buffer) (int, error) {
	typ, r, err := conn.NextReader()
	if err != nil {
		return 0, err
	}
	buf.Reset()
	n, err := buf.ReadFrom(io.LimitReader(r, packets.MaxPacketSize+1))
	if err != nil {
		return 0, err
	}
	if n > packets.MaxPacketSize {
		buf.Reset()
		return typ, errMessageTooLarge
	}
	return typ, nil
}
