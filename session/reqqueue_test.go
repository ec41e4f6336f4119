package session

import (
	"math/rand/v2"
	"testing"
)

// TestReqQueue checks the ring against a slice through random pushes,
// pops and filters: order kept, nothing lost, and the ring shrinking as it
// drains.
func TestReqQueue(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var q reqQueue
	var want []uint32
	next := uint32(1)
	for step := range 200_000 {
		switch r := rng.IntN(100); {
		case r < 55:
			q.push(queued{gen: next})
			want = append(want, next)
			next++
		case r < 98:
			if len(want) == 0 {
				continue
			}
			if got := q.pop(); got.gen != want[0] {
				t.Fatalf("step %d: popped %d, want %d", step, got.gen, want[0])
			}
			want = want[1:]
		default:
			q.filter(func(x queued) bool { return x.gen%3 != 0 })
			kept := want[:0]
			for _, g := range want {
				if g%3 != 0 {
					kept = append(kept, g)
				}
			}
			want = kept
		}
		if q.len() != len(want) {
			t.Fatalf("step %d: len %d, want %d", step, q.len(), len(want))
		}
		if len(q.buf) > minQueueRing && q.n < len(q.buf)/4 {
			t.Fatalf("step %d: %d queued in a ring of %d", step, q.n, len(q.buf))
		}
	}
	for len(want) > 0 {
		if got := q.pop(); got.gen != want[0] {
			t.Fatalf("drain: popped %d, want %d", got.gen, want[0])
		}
		want = want[1:]
	}
	if q.buf != nil {
		t.Fatalf("a drained queue holds a ring of %d", len(q.buf))
	}
}
