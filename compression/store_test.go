package compression

import (
	"bytes"
	"crypto/rand"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// keyN returns a distinct key per n.
func keyN(n int) Key { return Key{Hash: [32]byte{byte(n), byte(n >> 8)}, N: uint64(n)} }

// countingRaw returns raw functions for data that count their calls.
type countingRaw struct {
	calls atomic.Int64
	data  []byte
	delay time.Duration
}

func (c *countingRaw) raw() ([]byte, error) {
	c.calls.Add(1)
	time.Sleep(c.delay)
	return c.data, nil
}

// TestStoreOncePerKey: 50 goroutines ask for each of 4 keys at once; each
// content is read and compressed once, and everyone gets the same frame.
func TestStoreOncePerKey(t *testing.T) {
	s := NewStore(64 << 20)
	const keys, goroutines = 4, 50
	raws := make([]*countingRaw, keys)
	for k := range raws {
		raws[k] = &countingRaw{data: mapBlob()[k*mapChunk : (k+1)*mapChunk], delay: 20 * time.Millisecond}
	}
	results := make([][][]byte, keys)
	for k := range results {
		results[k] = make([][]byte, goroutines)
	}
	var wg sync.WaitGroup
	start := make(chan struct{})
	for k := range keys {
		for g := range goroutines {
			wg.Go(func() {
				<-start
				c, ok, err := s.Get(keyN(k), raws[k].raw)
				if err != nil || !ok {
					t.Errorf("key %d: Get = ok %v, %v", k, ok, err)
				}
				results[k][g] = c
			})
		}
	}
	close(start)
	wg.Wait()
	for k := range keys {
		if n := raws[k].calls.Load(); n != 1 {
			t.Errorf("key %d: raw called %d times, want once", k, n)
		}
		want := frameOf(raws[k].data)
		for g, got := range results[k] {
			if !bytes.Equal(got, want) {
				t.Fatalf("key %d goroutine %d: frame differs from Compress's", k, g)
			}
		}
	}
	st := s.Stats()
	if st.Misses != keys || st.Hits != keys*(goroutines-1) || st.Entries != keys {
		t.Errorf("Stats = %+v, want %d misses, %d hits, %d entries", st, keys, keys*(goroutines-1), keys)
	}
	// And later calls are hits too.
	if _, _, err := s.Get(keyN(0), raws[0].raw); err != nil || raws[0].calls.Load() != 1 {
		t.Errorf("a later Get called raw again (%d calls), %v", raws[0].calls.Load(), err)
	}
}

func TestStoreRoundTrip(t *testing.T) {
	s := NewStore(1 << 20)
	src := jsonCorpus()[5].data
	c, ok, err := s.Get(keyN(1), func() ([]byte, error) { return src, nil })
	if err != nil || !ok {
		t.Fatalf("Get = ok %v, %v", ok, err)
	}
	if cap(c) > len(c)+64 {
		t.Errorf("kept frame of %d bytes has capacity %d: the store holds on to the encoder's slack", len(c), cap(c))
	}
	got, err := Decompress(nil, c, len(src))
	if err != nil || !bytes.Equal(got, src) {
		t.Fatalf("Decompress(Get): %d bytes, %v", len(got), err)
	}
}

// TestStoreEvictsLeastRecentlyUsed fills a store that holds any three of
// four frames but not all four with three, touches the oldest, and adds the
// fourth: the second is the one dropped.
func TestStoreEvictsLeastRecentlyUsed(t *testing.T) {
	raws := make([]*countingRaw, 4)
	var all int64 // what the four cost together
	for i := range raws {
		raws[i] = &countingRaw{data: mapBlob()[i*mapChunk : (i+1)*mapChunk]}
		all += int64(len(frameOf(raws[i].data))) + entryCost
	}
	budget := all - 1
	s := NewStore(budget)
	get := func(i int) {
		t.Helper()
		if _, ok, err := s.Get(keyN(i), raws[i].raw); err != nil || !ok {
			t.Fatalf("Get(%d) = ok %v, %v", i, ok, err)
		}
	}
	get(0)
	get(1)
	get(2)
	get(0) // 0 is now the most recently used, 1 the least
	get(3) // over budget: 1 goes
	if st := s.Stats(); st.Entries != 3 || st.Evicted != 1 || st.Bytes > budget {
		t.Errorf("Stats = %+v; want 3 entries, 1 evicted, at most %d bytes", st, budget)
	}
	get(0)
	get(2)
	get(3)
	get(1) // read and compressed again
	wantCalls := []int64{1, 2, 1, 1}
	for i, want := range wantCalls {
		if got := raws[i].calls.Load(); got != want {
			t.Errorf("raw %d called %d times, want %d", i, got, want)
		}
	}
}

func TestStoreBudgetTooSmall(t *testing.T) {
	for _, budget := range []int64{0, entryCost} {
		s := NewStore(budget)
		r := &countingRaw{data: mapBlob()[:mapChunk]}
		for range 2 {
			c, ok, err := s.Get(keyN(1), r.raw)
			if err != nil || !ok || len(c) == 0 {
				t.Fatalf("budget %d: Get = %d bytes, ok %v, %v", budget, len(c), ok, err)
			}
		}
		if n := r.calls.Load(); n != 2 {
			t.Errorf("budget %d: raw called %d times; a frame over budget is not kept", budget, n)
		}
		if st := s.Stats(); st.Entries != 0 || st.Bytes != 0 {
			t.Errorf("budget %d: Stats = %+v, want nothing held", budget, st)
		}
	}
}

// TestStoreRemembersNotWorth: content not worth compressing is read once,
// and its verdict costs the store no bytes of content.
func TestStoreRemembersNotWorth(t *testing.T) {
	tests := []struct {
		name string
		data []byte
	}{
		{"random bytes", randomBytes(64<<10, 4)},
		{"PNG by its magic bytes", append([]byte("\x89PNG\r\n\x1a\n"), make([]byte, 64<<10)...)},
		{"over MaxSize", make([]byte, MaxSize+1)},
		{"tiny JSON", []byte(`{"parent":"block/cube_all"}`)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := NewStore(1 << 20)
			r := &countingRaw{data: tt.data}
			for range 3 {
				c, ok, err := s.Get(keyN(1), r.raw)
				if err != nil || ok || c != nil {
					t.Fatalf("Get = %d bytes, ok %v, %v; want not worth", len(c), ok, err)
				}
			}
			if n := r.calls.Load(); n != 1 {
				t.Errorf("raw called %d times, want once", n)
			}
			if st := s.Stats(); st.Entries != 1 || st.NotWorth != 1 || st.Bytes != entryCost || st.Hits != 2 {
				t.Errorf("Stats = %+v; want 1 entry of %d bytes, 1 not worth, 2 hits", st, entryCost)
			}
		})
	}
}

// TestStoreDoesNotCacheRawErrors: an error reading the content goes to the
// callers of that read, and the next Get reads again.
func TestStoreDoesNotCacheRawErrors(t *testing.T) {
	s := NewStore(1 << 20)
	errDisk := errors.New("disk on fire")
	var calls atomic.Int64
	release := make(chan struct{})
	failing := func() ([]byte, error) {
		calls.Add(1)
		<-release
		return nil, errDisk
	}
	var wg sync.WaitGroup
	errs := make([]error, 10)
	for i := range errs {
		wg.Go(func() { _, _, errs[i] = s.Get(keyN(1), failing) })
	}
	for s.Stats().Hits+s.Stats().Misses < int64(len(errs)) {
		time.Sleep(time.Millisecond)
	}
	close(release)
	wg.Wait()
	for i, err := range errs {
		if !errors.Is(err, errDisk) {
			t.Errorf("caller %d: %v, want the raw error", i, err)
		}
	}
	if n := calls.Load(); n != 1 {
		t.Errorf("failing raw called %d times by concurrent callers, want once", n)
	}
	r := &countingRaw{data: mapBlob()[:mapChunk]}
	if _, ok, err := s.Get(keyN(1), r.raw); err != nil || !ok || r.calls.Load() != 1 {
		t.Fatalf("Get after an error: ok %v, %v, raw called %d times", ok, err, r.calls.Load())
	}
	if st := s.Stats(); st.Entries != 1 {
		t.Errorf("Stats = %+v, want only the good entry", st)
	}
}

// TestStoreSurvivesPanickingRaw: a raw that panics panics in its caller's
// Get, wakes the callers waiting for it, and leaves no entry behind.
func TestStoreSurvivesPanickingRaw(t *testing.T) {
	s := NewStore(1 << 20)
	started, release := make(chan struct{}), make(chan struct{})
	go func() {
		defer func() { recover() }()
		s.Get(keyN(1), func() ([]byte, error) {
			close(started)
			<-release
			panic("bad reader")
		})
	}()
	<-started
	waiter := make(chan error)
	go func() {
		_, _, err := s.Get(keyN(1), func() ([]byte, error) { return nil, errors.New("waiter's raw must not run") })
		waiter <- err
	}()
	for s.Stats().Hits == 0 {
		time.Sleep(time.Millisecond)
	}
	close(release)
	select {
	case err := <-waiter:
		if err == nil {
			t.Errorf("waiter got no error from a panicking read")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("waiter still blocked 5 s after raw panicked")
	}
	r := &countingRaw{data: mapBlob()[:mapChunk]}
	if _, ok, err := s.Get(keyN(1), r.raw); err != nil || !ok || r.calls.Load() != 1 {
		t.Fatalf("Get after a panic: ok %v, %v, raw called %d times", ok, err, r.calls.Load())
	}
}

// BenchmarkStoreHit is what serving an already compressed content to one
// more client costs.
func BenchmarkStoreHit(b *testing.B) {
	s := NewStore(1 << 20)
	data := jsonCorpus()[0].data
	raw := func() ([]byte, error) { return data, nil }
	s.Get(keyN(1), raw)
	b.ReportAllocs()
	for b.Loop() {
		s.Get(keyN(1), raw)
	}
}

// A large content whose first ranges do not compress is not read again for
// its other ranges; one that compresses keeps being tried.
func TestStoreGivesUpOnIncompressibleContent(t *testing.T) {
	s := NewStore(1 << 20)
	random := make([]byte, 64<<10)
	rand.Read(random)
	reads := 0
	for i := range 10 {
		s.Get(Key{Hash: [32]byte{1}, Off: uint64(i) << 16, N: 64 << 10}, func() ([]byte, error) { reads++; return random, nil })
	}
	if reads != giveUpAfter || s.Stats().NotTried != 10-giveUpAfter {
		t.Fatalf("read %d of 10 incompressible ranges (stats %+v), want %d", reads, s.Stats(), giveUpAfter)
	}
	text := bytes.Repeat([]byte("compressible "), 6000)
	reads = 0
	for i := range 10 {
		s.Get(Key{Hash: [32]byte{2}, Off: uint64(i) << 17, N: uint64(len(text))}, func() ([]byte, error) { reads++; return text, nil })
	}
	if reads != 10 {
		t.Fatalf("read %d of 10 compressible ranges", reads)
	}
}
