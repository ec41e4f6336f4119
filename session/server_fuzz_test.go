package session

import (
	"testing"
	"unique"

	"github.com/voxsync/voxsync/configs"
	"github.com/voxsync/voxsync/packets"
	"github.com/voxsync/voxsync/resources"
)

// FuzzServerSession drives a real Server's session state machine with
// arbitrary client packet sequences after a Hello, the way its reader does
// (a decoding error or a Disconnect ends acting on the client), and checks
// what keeps one client from hurting the server: the pending, queue and
// error backlogs stay within their caps, and after reconciling, the client
// has been told exactly about resources it uses and the view holds.
//
// The input is a series of u16-length-prefixed messages.
func FuzzServerSession(f *testing.F) {
	dir := f.TempDir()
	var hashes []resources.Hash
	for i := range 6 {
		data := randomBytes(100+i*700, byte(i))
		writePackFile(f, dir, "assets/f/texture/t"+itoa(i)+".png", data)
		hashes = append(hashes, resources.Sum(data))
	}
	ts := startServer(f, serverSetup{dirs: []string{dir}, world: true, cfg: func(c *configs.Server) {
		c.Preload = []string{"f:*"}
		c.MaxRequestHashes = 8
		c.MaxPendingRequests = 16
		c.ViewDistance = 1
	}})
	seq := packetSeq
	f.Add(seq(requestAll(hashes[:3]), &packets.ResourceCancel{Hashes: hashes[:1]}, &packets.Move{Seq: 1, X: 40}))
	f.Add(seq(requestAll(hashes[:1]), requestAll(hashes[:1]), requestAll(hashes[:1]), &packets.Move{Seq: 2, X: -500, Z: 900}))
	f.Add(seq(&packets.ResourceRequest{Wants: []packets.Want{{Hash: hashes[2], HasRange: true, Offset: 5, Length: 1 << 40}}}, &packets.Disconnect{}))
	f.Add(seq(&packets.Bind{}, requestAll(hashes)))
	f.Add(append(seq(requestAll(hashes[:2])), 0xff, 0x00, 0x05))
	f.Add(seq(&packets.ResourceRequest{Wants: []packets.Want{
		{Hash: hashes[3], Manifest: true}, {Hash: hashes[3], HasRange: true, Offset: 0, Length: 100},
		{Hash: hashes[3], HasRange: true, Offset: 100, Length: 2000, Priority: packets.PriorityPrefetch},
		{Hash: hashes[3], HasRange: true, Offset: 100, Length: 2000, Priority: packets.PriorityNow, Raise: true},
		{Hash: hashes[4], Manifest: true, Raise: true, Priority: 255},
	}}, &packets.ResourceCancel{Hashes: hashes[3:4]}))

	f.Fuzz(func(t *testing.T, in []byte) {
		s := ts.Server
		c := newClient(s, nil, "127.0.0.1:1")
		c.caps = s.caps
		if err := s.join(c); err != nil {
			t.Skip(err)
		}
		defer s.leave(c)
		maxReq := 0
		for p, err := range packetsOf(in) {
			if c.ending.Load() {
				break
			}
			if err != nil {
				c.Disconnect(packets.DisconnectProtocolError, err.Error())
				break
			}
			if r, ok := p.(*packets.ResourceRequest); ok {
				maxReq = max(maxReq, len(r.Wants))
			}
			c.handle(p)
			c.mu.Lock()
			if c.pendingLocked() > s.cfg.MaxPendingRequests {
				t.Fatalf("%d pending requests, limit %d", c.pendingLocked(), s.cfg.MaxPendingRequests)
			}
			queued := 0
			for _, q := range c.queues {
				queued += q.len()
			}
			if queued != c.queuedN {
				t.Fatalf("%d queued, counted %d", queued, c.queuedN)
			}
			if len(c.queuedParts) > queued {
				t.Fatalf("%d keys of queued parts for %d queued", len(c.queuedParts), queued)
			}
			if queued > 2*c.pendingLocked()+1024+maxReq {
				t.Fatalf("%d queued for %d pending", queued, c.pendingLocked())
			}
			if len(c.errs) > maxQueuedErrors {
				t.Fatalf("%d queued errors", len(c.errs))
			}
			c.reconcileLocked()
			told := 0
			c.bind.eachTold(func(k resources.Key, _ unique.Handle[resources.Hash]) {
				told++
				if _, ok := c.view.Get(k); !ok || !c.bind.inUse(k) {
					t.Fatalf("told about %v, which is not in use or not in the view", k)
				}
			})
			if told != c.bind.bound {
				t.Fatalf("told about %d keys, counted %d", told, c.bind.bound)
			}
			c.mu.Unlock()
		}
	})
}
