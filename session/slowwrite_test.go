package session

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/voxsync/voxsync/configs"
	"github.com/voxsync/voxsync/packets"
	"github.com/voxsync/voxsync/packs"
)

// A client that keeps taking bytes, slowly, is not slow: the progress
// watchdog extends the deadline of a write in progress. That must hold for
// a ChunkSend written from memory (in several frames, each of which gorilla
// gives the write's deadline again) as well as for one from a buffer.
func TestSlowButProgressingClientIsNotDropped(t *testing.T) {
	for _, tc := range []struct {
		mode string
		size int
	}{
		{"from a buffer", 128 << 10},
		{"from memory", 128 << 10},
	} {
		mode := tc.mode
		t.Run(fmt.Sprintf("%s/%d", mode, tc.size), func(t *testing.T) {
			cfg := configs.DefaultServer()
			dir := t.TempDir()
			writePackFile(t, dir, "assets/t/texture/x.png", []byte("x"))
			cfg.Packs = []string{dir}
			cfg.BuiltinPack = false
			cfg.WriteTimeout = configs.Duration{Duration: time.Second}
			ids := packs.NewIDs()
			v, err := packs.Load(context.Background(), packs.Options{Dirs: []string{dir}, IDs: ids}, nil)
			if err != nil {
				t.Fatal(err)
			}
			s, err := NewServer(ServerOptions{Config: cfg, View: v, IDs: ids})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			got := make(chan *Client, 1)
			up := websocket.Upgrader{WriteBufferSize: writeBufferSize, WriteBufferPool: &sync.Pool{}}
			hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				conn, err := up.Upgrade(w, r, nil)
				if err != nil {
					return
				}
				conn.NetConn().(*net.TCPConn).SetWriteBuffer(4096)
				c := newClient(s, conn, r.RemoteAddr)
				if err := s.join(c); err != nil {
					t.Error(err)
				}
				got <- c
				<-c.ctx.Done()
			}))
			defer hs.Close()
			d := websocket.Dialer{NetDialContext: func(ctx context.Context, n, a string) (net.Conn, error) {
				nc, err := net.Dial(n, a)
				if err == nil {
					nc.(*net.TCPConn).SetReadBuffer(4096)
				}
				return nc, err
			}}
			cc, _, err := d.Dial("ws"+strings.TrimPrefix(hs.URL, "http")+"/", nil)
			if err != nil {
				t.Fatal(err)
			}
			defer cc.Close()
			c := <-got
			defer c.cancel()
			// The peer reads 2 KiB every 20 ms: ~100 KB/s, steady progress;
			// 128 KiB then takes some 3 s, three write_timeouts (1 s, which leaves the
			// watchdog, a quarter of it apart, room on a loaded machine).
			readDone := make(chan error, 1)
			go func() {
				_, r, err := cc.NextReader()
				if err != nil {
					readDone <- err
					return
				}
				buf := make([]byte, 2048)
				for {
					time.Sleep(20 * time.Millisecond)
					if _, err := r.Read(buf); err != nil {
						if err == io.EOF {
							err = nil
						}
						readDone <- err
						return
					}
				}
			}()
			payload := make([]byte, tc.size)
			hdr := packets.ChunkSend{Stream: 1, Offset: 0, Last: true}
			var werr error
			start := time.Now()
			if mode == "from a buffer" {
				b := append(packets.Append(nil, &hdr), payload...)
				werr = c.writeMessage(b)
			} else {
				werr = c.writeInMemory(&hdr, payload)
			}
			t.Logf("write took %v, err %v", time.Since(start).Round(time.Millisecond), werr)
			if werr != nil {
				t.Fatalf("a client taking bytes steadily was cut off: %v", werr)
			}
			if err := <-readDone; err != nil {
				t.Fatalf("peer read: %v", err)
			}
		})
	}
}
