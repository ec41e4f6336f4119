package assetsmgr

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/voxsync/voxsync/manifest"
	"github.com/voxsync/voxsync/resources"
)

// chachaBytes returns n bytes of seeded ChaCha8 output.
func chachaBytes(seed uint64, n int) []byte {
	var s [32]byte
	s[0], s[1], s[2] = byte(seed), byte(seed>>8), byte(seed>>16)
	b := make([]byte, n)
	rand.NewChaCha8(s).Read(b)
	return b
}

// fixedManifest cuts data into chunks of size n (the last one shorter):
// tests need no content-defined chunking.
func fixedManifest(t testing.TB, data []byte, n int) *manifest.Manifest {
	t.Helper()
	var lengths []uint32
	for off := 0; off < len(data); off += n {
		lengths = append(lengths, uint32(min(n, len(data)-off)))
	}
	return cutManifest(t, data, lengths)
}

func cutManifest(t testing.TB, data []byte, lengths []uint32) *manifest.Manifest {
	t.Helper()
	m, _, err := manifest.Cut(data, lengths)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func chunkOf(data []byte, m *manifest.Manifest, i int) []byte {
	ch := m.Chunks[i]
	return data[ch.Offset:ch.End()]
}

func openPartial(t testing.TB, c *Cache, h resources.Hash, m *manifest.Manifest) *Partial {
	t.Helper()
	p, err := c.OpenPartial(context.Background(), h, m)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func putChunks(t testing.TB, p *Partial, data []byte, m *manifest.Manifest, idx []int) {
	t.Helper()
	for _, i := range idx {
		if err := p.Put(i, chunkOf(data, m, i)); err != nil {
			t.Fatal(err)
		}
	}
}

// commitPartial commits p and waits until the blob is durable.
func commitPartial(p *Partial) error {
	errc := make(chan error, 1)
	if err := p.Commit(func(err error) { errc <- err }); err != nil {
		return err
	}
	return <-errc
}

func allIndexes(m *manifest.Manifest) []int {
	out := make([]int, len(m.Chunks))
	for i := range out {
		out[i] = i
	}
	return out
}

func countRows(t testing.TB, db *sql.DB, q string, args ...any) int {
	t.Helper()
	var n int
	if err := db.QueryRow(q, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func partialFile(dir string, h resources.Hash) string {
	return filepath.Join(dir, partialDirName, h.String())
}

const testChunk = 64 << 10

// A resource put chunk by chunk, in any order, is committed as a blob that
// Lookup serves; its chunks go to the chunk index and the partial is gone.
func TestPartialPutCommitLookup(t *testing.T) {
	dir := t.TempDir()
	c := openCache(t, Options{Dir: dir})
	data := chachaBytes(1, 8<<20+12345) // a short last chunk
	h := resources.Sum(data)
	m := fixedManifest(t, data, testChunk)
	p := openPartial(t, c, h, m)
	if got := p.Missing(); !slices.Equal(got, allIndexes(m)) {
		t.Fatalf("Missing() of a new partial: %d indexes, want all %d", len(got), len(m.Chunks))
	}
	if _, ok := lookup(t, c, h); ok {
		t.Fatal("Lookup found a partial")
	}
	order := allIndexes(m)
	rand.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
	putChunks(t, p, data, m, order)
	if held, local := p.Held(); held != int64(len(data)) || local != 0 {
		t.Fatalf("Held() = %d, %d; want %d, 0", held, local, len(data))
	}
	if len(p.Missing()) != 0 {
		t.Fatal("chunks missing after every Put")
	}
	if err := commitPartial(p); err != nil {
		t.Fatal(err)
	}
	b, ok := lookup(t, c, h)
	if !ok || b.Source != SourceBlob {
		t.Fatalf("committed partial not served as a blob: %v %v", ok, b.Source)
	}
	if got, err := b.ReadAll(); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("blob read back wrong: %v", err)
	}
	if _, err := os.Stat(partialFile(dir, h)); err == nil {
		t.Fatal("partial file left after Commit")
	}
	tests := []struct {
		name      string
		got, want int
	}{
		{"partials rows", countRows(t, c.db, "SELECT count(*) FROM partials"), 0},
		{"partial_chunks rows", countRows(t, c.db, "SELECT count(*) FROM partial_chunks"), 0},
		{"chunk_index rows", countRows(t, c.db, "SELECT count(*) FROM chunk_index WHERE blob = ?", h[:]), len(m.Chunks)},
	}
	for _, tc := range tests {
		if tc.got != tc.want {
			t.Errorf("%s: got %d, want %d", tc.name, tc.got, tc.want)
		}
	}
	if err := p.Put(0, chunkOf(data, m, 0)); !errors.Is(err, ErrClosed) {
		t.Fatalf("Put after Commit: %v, want ErrClosed", err)
	}
}

// Held chunks survive Close and a restart of the cache; only the others
// are missing, and the resource completes.
func TestPartialResumesAfterRestart(t *testing.T) {
	dir := t.TempDir()
	data := chachaBytes(2, 4<<20)
	h := resources.Sum(data)
	m := fixedManifest(t, data, testChunk)
	c := openCache(t, Options{Dir: dir})
	p := openPartial(t, c, h, m)
	var first []int
	for i := range m.Chunks {
		if i%3 != 1 {
			first = append(first, i)
		}
	}
	putChunks(t, p, data, m, first)
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	c.Close()

	c = openCache(t, Options{Dir: dir})
	p = openPartial(t, c, h, m)
	var want []int
	for i := range m.Chunks {
		if i%3 == 1 {
			want = append(want, i)
		}
	}
	if got := p.Missing(); !slices.Equal(got, want) {
		t.Fatalf("Missing() after a restart: %v, want %v", got, want)
	}
	if held, local := p.Held(); held != int64(len(first)*testChunk) || local != 0 {
		t.Fatalf("Held() after a restart = %d, %d; want %d, 0", held, local, len(first)*testChunk)
	}
	putChunks(t, p, data, m, want)
	if err := commitPartial(p); err != nil {
		t.Fatal(err)
	}
	if b, ok := lookup(t, c, h); !ok {
		t.Fatal("resumed resource not served")
	} else if got, _ := b.ReadAll(); !bytes.Equal(got, data) {
		t.Fatal("resumed resource read back wrong")
	}
}

// A manifest cut otherwise (another digest) keeps the chunks it shares at
// the same offset, length and hash, and drops the rows of the others.
func TestPartialResumesUnderAnotherManifest(t *testing.T) {
	dir := t.TempDir()
	data := chachaBytes(3, 2<<20)
	h := resources.Sum(data)
	m1 := fixedManifest(t, data, testChunk)
	c := openCache(t, Options{Dir: dir})
	p := openPartial(t, c, h, m1)
	putChunks(t, p, data, m1, allIndexes(m1))
	p.Close()

	// m2: the first MiB as m1 cuts it, the second in 128 KiB chunks.
	var lengths []uint32
	for off := 0; off < len(data); {
		n := testChunk
		if off >= 1<<20 {
			n = 128 << 10
		}
		lengths = append(lengths, uint32(n))
		off += n
	}
	m2 := cutManifest(t, data, lengths)
	p = openPartial(t, c, h, m2)
	var want []int
	for i, ch := range m2.Chunks {
		if ch.Offset >= 1<<20 {
			want = append(want, i)
		}
	}
	// The dropped rows' chunks are not in another partial or blob: the
	// second half is missing, not copied.
	if got := p.Missing(); !slices.Equal(got, want) {
		t.Fatalf("Missing() under another manifest: %v, want %v", got, want)
	}
	c.Flush(context.Background())
	if n := countRows(t, c.db, "SELECT count(*) FROM partial_chunks WHERE hash = ?", h[:]); n != 16 {
		t.Fatalf("%d chunk rows kept, want the 16 shared", n)
	}
	putChunks(t, p, data, m2, want)
	if err := commitPartial(p); err != nil {
		t.Fatal(err)
	}
}

// deltaFixture commits v1 (8 MiB) and returns v2, which differs from it in
// three chunks.
func deltaFixture(t *testing.T, c *Cache) (v1 []byte, m1 *manifest.Manifest, v2 []byte, m2 *manifest.Manifest, changed []int) {
	t.Helper()
	v1 = chachaBytes(4, 8<<20)
	m1 = fixedManifest(t, v1, testChunk)
	p := openPartial(t, c, resources.Sum(v1), m1)
	putChunks(t, p, v1, m1, allIndexes(m1))
	if err := commitPartial(p); err != nil {
		t.Fatal(err)
	}
	v2 = bytes.Clone(v1)
	changed = []int{3, 50, 127}
	for _, i := range changed {
		v2[i*testChunk+100] ^= 0xff
	}
	return v1, m1, v2, fixedManifest(t, v2, testChunk), changed
}

// A new version copies the chunks it shares with a cached blob and misses
// only the changed ones.
func TestPartialDeltaFromCachedBlob(t *testing.T) {
	c := openCache(t, Options{Dir: t.TempDir()})
	_, _, v2, m2, changed := deltaFixture(t, c)
	h2 := resources.Sum(v2)
	p := openPartial(t, c, h2, m2)
	if got := p.Missing(); !slices.Equal(got, changed) {
		t.Fatalf("Missing() = %v, want the changed chunks %v", got, changed)
	}
	wantLocal := int64(len(v2) - len(changed)*testChunk)
	if held, local := p.Held(); held != wantLocal || local != wantLocal {
		t.Fatalf("Held() = %d, %d; want %d, %d", held, local, wantLocal, wantLocal)
	}
	putChunks(t, p, v2, m2, changed)
	if err := commitPartial(p); err != nil {
		t.Fatal(err)
	}
	if b, ok := lookup(t, c, h2); !ok {
		t.Fatal("v2 not served")
	} else if got, _ := b.ReadAll(); !bytes.Equal(got, v2) {
		t.Fatal("v2 read back wrong")
	}
}

// A chunk that rotted in the cached blob file is not copied, and its index
// row goes; a blob file that is gone takes all its index rows with it.
func TestPartialDeltaVerifiesLocalChunks(t *testing.T) {
	dir := t.TempDir()
	c := openCache(t, Options{Dir: dir})
	v1, m1, v2, m2, changed := deltaFixture(t, c)
	h1 := resources.Sum(v1)
	f, err := os.OpenFile(blobPath(filepath.Join(dir, "blobs"), h1), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	const rotten = 7
	f.WriteAt([]byte{v1[rotten*testChunk+5] ^ 1}, rotten*testChunk+5)
	f.Close()

	p := openPartial(t, c, resources.Sum(v2), m2)
	want := slices.Sorted(slices.Values(append([]int{rotten}, changed...)))
	if got := p.Missing(); !slices.Equal(got, want) {
		t.Fatalf("Missing() = %v, want %v (the changed chunks and the rotten one)", got, want)
	}
	c.Flush(context.Background())
	rottenHash := m1.Chunks[rotten].Hash
	if n := countRows(t, c.db, "SELECT count(*) FROM chunk_index WHERE chunk = ?", rottenHash[:]); n != 0 {
		t.Fatal("index row of a chunk that does not verify kept")
	}
	p.Discard()

	os.Remove(blobPath(filepath.Join(dir, "blobs"), h1))
	p = openPartial(t, c, resources.Sum(v2), m2)
	defer p.Discard()
	if got := len(p.Missing()); got != len(m2.Chunks) {
		t.Fatalf("%d chunks missing with v1's file gone, want all %d", got, len(m2.Chunks))
	}
	c.Flush(context.Background())
	if n := countRows(t, c.db, "SELECT count(*) FROM chunk_index WHERE blob = ?", h1[:]); n != 0 {
		t.Fatalf("%d index rows left for a blob file that is gone", n)
	}
}

// Chunks held by another partial are copied too.
func TestPartialDeltaFromAnotherPartial(t *testing.T) {
	c := openCache(t, Options{Dir: t.TempDir()})
	v1 := chachaBytes(5, 2<<20)
	m1 := fixedManifest(t, v1, testChunk)
	p1 := openPartial(t, c, resources.Sum(v1), m1)
	putChunks(t, p1, v1, m1, []int{0, 1, 2, 3, 4, 5, 6, 7})
	if err := p1.Close(); err != nil {
		t.Fatal(err)
	}
	v2 := bytes.Clone(v1)
	v2[len(v2)-1] ^= 1
	m2 := fixedManifest(t, v2, testChunk)
	p2 := openPartial(t, c, resources.Sum(v2), m2)
	if held, local := p2.Held(); local != 8*testChunk || held != local {
		t.Fatalf("Held() = %d, %d; want the 8 chunks of the other partial", held, local)
	}
	putChunks(t, p2, v2, m2, p2.Missing())
	if err := commitPartial(p2); err != nil {
		t.Fatal(err)
	}
}

func TestPartialRefusesWrongPut(t *testing.T) {
	c := openCache(t, Options{Dir: t.TempDir()})
	data := chachaBytes(6, 1<<20)
	m := fixedManifest(t, data, testChunk)
	p := openPartial(t, c, resources.Sum(data), m)
	defer p.Discard()
	wrong := bytes.Clone(chunkOf(data, m, 2))
	wrong[0] ^= 1
	tests := []struct {
		name string
		i    int
		data []byte
		want error
	}{
		{"other bytes", 2, wrong, ErrHashMismatch},
		{"another chunk's bytes", 2, chunkOf(data, m, 3), ErrHashMismatch},
		{"short", 2, chunkOf(data, m, 2)[:100], ErrSizeMismatch},
		{"index past the end", len(m.Chunks), chunkOf(data, m, 2), nil},
		{"negative index", -1, chunkOf(data, m, 2), nil},
	}
	for _, tc := range tests {
		err := p.Put(tc.i, tc.data)
		if err == nil || (tc.want != nil && !errors.Is(err, tc.want)) {
			t.Errorf("%s: %v, want an error wrapping %v", tc.name, err, tc.want)
		}
	}
	if held, _ := p.Held(); held != 0 || len(p.Missing()) != len(m.Chunks) {
		t.Fatalf("refused Puts held %d bytes", held)
	}
}

// A manifest of other bytes than h: the chunk that would complete the
// resource is refused with ErrHashMismatch (every hash state before it is
// consistent), so nothing can be committed; the partial can be discarded
// and opened afresh.
func TestPartialManifestThatLies(t *testing.T) {
	dir := t.TempDir()
	c := openCache(t, Options{Dir: dir})
	data := chachaBytes(7, 1<<20)
	h := resources.Sum(chachaBytes(8, 1<<20)) // some other resource
	m := fixedManifest(t, data, testChunk)
	p := openPartial(t, c, h, m)
	last := len(m.Chunks) - 1
	putChunks(t, p, data, m, allIndexes(m)[:last])
	if err := p.Put(last, chunkOf(data, m, last)); !errors.Is(err, ErrHashMismatch) {
		t.Fatalf("last chunk of a lying manifest: %v, want ErrHashMismatch", err)
	}
	err := p.Commit(func(error) { t.Error("done called for a refused Commit") })
	if !errors.Is(err, ErrChunksLost) {
		t.Fatalf("Commit with a lying manifest: %v, want ErrChunksLost", err)
	}
	p.Discard()
	if _, err := os.Stat(partialFile(dir, h)); err == nil {
		t.Fatal("partial file kept after Discard")
	}
	if _, ok := lookup(t, c, h); ok {
		t.Fatal("lying manifest's bytes served")
	}
	openPartial(t, c, h, m).Discard()
}

// Bytes that change in the partial file between runs are found: chunks
// recorded by an earlier run are read back and verified, and Commit drops
// those that fail (ErrChunksLost) to be Put again.
func TestPartialFindsChunksCorruptedBetweenRuns(t *testing.T) {
	dir := t.TempDir()
	c := openCache(t, Options{Dir: dir})
	data := chachaBytes(9, 2<<20)
	h := resources.Sum(data)
	m := fixedManifest(t, data, testChunk)
	p := openPartial(t, c, h, m)
	putChunks(t, p, data, m, allIndexes(m)[1:])
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(partialFile(dir, h), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte("rot"), 5*testChunk+1000)
	f.Close()
	p = openPartial(t, c, h, m)
	if got := p.Missing(); !slices.Equal(got, []int{0}) {
		t.Fatalf("Missing() at reopening = %v, want [0]", got)
	}
	putChunks(t, p, data, m, []int{0})

	err = commitPartial(p)
	if !errors.Is(err, ErrChunksLost) {
		t.Fatalf("Commit over a damaged chunk: %v, want ErrChunksLost", err)
	}
	if got := p.Missing(); !slices.Equal(got, []int{5}) {
		t.Fatalf("Missing() after the damage = %v, want [5]", got)
	}
	c.Flush(context.Background())
	if n := countRows(t, c.db, "SELECT count(*) FROM partial_chunks WHERE hash = ? AND offset = ?", h[:], 5*testChunk); n != 0 {
		t.Fatal("row of the damaged chunk kept")
	}
	putChunks(t, p, data, m, []int{5})
	if err := commitPartial(p); err != nil {
		t.Fatal(err)
	}
	if b, ok := lookup(t, c, h); !ok {
		t.Fatal("not served after the damaged chunk was put again")
	} else if got, _ := b.ReadAll(); !bytes.Equal(got, data) {
		t.Fatal("read back wrong")
	}
}

// Several goroutines Put the same chunks in different orders (run with
// -race).
func TestPartialConcurrentPut(t *testing.T) {
	c := openCache(t, Options{Dir: t.TempDir()})
	data := chachaBytes(10, 4<<20)
	h := resources.Sum(data)
	m := fixedManifest(t, data, testChunk)
	p := openPartial(t, c, h, m)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			order := allIndexes(m)
			r := rand.New(rand.NewPCG(uint64(g), 1))
			r.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
			for _, i := range order {
				if err := p.Put(i, chunkOf(data, m, i)); err != nil {
					t.Error(err)
					return
				}
				p.Missing()
				p.Held()
			}
		})
	}
	wg.Wait()
	if held, _ := p.Held(); held != int64(len(data)) {
		t.Fatalf("Held() = %d, want %d", held, len(data))
	}
	if err := commitPartial(p); err != nil {
		t.Fatal(err)
	}
}

// One Partial per resource at a time.
func TestPartialSecondOpenIsRefused(t *testing.T) {
	c := openCache(t, Options{Dir: t.TempDir()})
	data := chachaBytes(11, 1<<20)
	h := resources.Sum(data)
	m := fixedManifest(t, data, testChunk)
	p := openPartial(t, c, h, m)
	if _, err := c.OpenPartial(context.Background(), h, m); !errors.Is(err, ErrPartialInUse) {
		t.Fatalf("second OpenPartial: %v, want ErrPartialInUse", err)
	}
	p.Close()
	openPartial(t, c, h, m).Close()
}

// Evicting a blob deletes its chunk index rows; partials count toward the
// size cap and are evicted by last use, but never while open.
func TestPartialEviction(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	clock := func() time.Time { return now }
	c := openCache(t, Options{Dir: t.TempDir(), MaxBytes: 3 << 20, Now: clock})
	blob := chachaBytes(12, 1<<20)
	hb := resources.Sum(blob)
	p := openPartial(t, c, hb, fixedManifest(t, blob, testChunk))
	putChunks(t, p, blob, p.m, allIndexes(p.m))
	if err := commitPartial(p); err != nil {
		t.Fatal(err)
	}
	if n := countRows(t, c.db, "SELECT count(*) FROM chunk_index WHERE blob = ?", hb[:]); n != 16 {
		t.Fatalf("%d chunk index rows, want 16", n)
	}

	now = now.Add(time.Hour)
	idle := chachaBytes(13, 1<<20)
	hi := resources.Sum(idle)
	pi := openPartial(t, c, hi, fixedManifest(t, idle, testChunk))
	putChunks(t, pi, idle, pi.m, []int{0, 1})
	pi.Close()
	now = now.Add(time.Hour)
	open := chachaBytes(14, 2<<20) // still open during Trim
	ho := resources.Sum(open)
	po := openPartial(t, c, ho, fixedManifest(t, open, testChunk))
	defer po.Discard()

	if size, _ := c.Size(context.Background()); size != 4<<20 {
		t.Fatalf("Size() = %d, want the blob and both partials' sizes, %d", size, 4<<20)
	}
	st, err := c.Stats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if st.Partial.Entries != 2 || st.Partial.Bytes != 3<<20 || st.PartialHeld != 2*testChunk {
		t.Fatalf("Stats partial: %+v, held %d", st.Partial, st.PartialHeld)
	}
	n, _, err := c.Trim(context.Background(), nil)
	if err != nil || n != 2 {
		t.Fatalf("Trim: %d evicted, %v; want the blob and the idle partial", n, err)
	}
	if n := countRows(t, c.db, "SELECT count(*) FROM chunk_index WHERE blob = ?", hb[:]); n != 0 {
		t.Fatalf("%d chunk index rows of an evicted blob kept", n)
	}
	if n := countRows(t, c.db, "SELECT count(*) FROM partials WHERE hash = ?", hi[:]) + countRows(t, c.db, "SELECT count(*) FROM partial_chunks WHERE hash = ?", hi[:]); n != 0 {
		t.Fatal("rows of the evicted partial kept")
	}
	if _, err := os.Stat(partialFile(c.dir, hi)); err == nil {
		t.Fatal("evicted partial's file kept")
	}
	if _, err := os.Stat(partialFile(c.dir, ho)); err != nil {
		t.Fatal("open partial evicted")
	}
}

// GC removes partials unused for a week; Verify drops a partial's chunks
// that no longer match.
func TestPartialGCAndVerify(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	clock := func() time.Time { return now }
	dir := t.TempDir()
	c := openCache(t, Options{Dir: dir, Now: clock})
	data := chachaBytes(15, 1<<20)
	h := resources.Sum(data)
	m := fixedManifest(t, data, testChunk)
	p := openPartial(t, c, h, m)
	putChunks(t, p, data, m, []int{0, 1, 2, 3})
	p.Close()
	f, _ := os.OpenFile(partialFile(dir, h), os.O_WRONLY, 0)
	f.WriteAt([]byte{0}, 2*testChunk+17)
	f.Close()

	rep, err := c.Verify(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if rep.Partial != 4 || len(rep.Bad) != 1 || rep.Bad[0].Source != SourcePartial || rep.Bad[0].Hash != h || rep.Bad[0].Size != testChunk {
		t.Fatalf("Verify: %+v", rep)
	}
	p = openPartial(t, c, h, m)
	if got := p.Missing(); got[0] != 2 || len(got) != len(m.Chunks)-3 {
		t.Fatalf("Missing() after Verify dropped chunk 2: %v", got)
	}
	p.Close()

	now = now.Add(6 * 24 * time.Hour)
	if rep, err := c.GC(context.Background()); err != nil || rep.StalePartials != 0 {
		t.Fatalf("GC after 6 days: %+v %v", rep, err)
	}
	now = now.Add(2 * 24 * time.Hour)
	if rep, err := c.GC(context.Background()); err != nil || rep.StalePartials != 1 || rep.StalePartialsBytes != int64(len(data)) {
		t.Fatalf("GC after 8 days: %+v %v", rep, err)
	}
	if _, err := os.Stat(partialFile(dir, h)); err == nil {
		t.Fatal("stale partial's file kept")
	}
}

// At Open, partial files without rows are removed (never adopted as blobs:
// they are not named by content), rows without files are dropped, and a
// partial renamed into place before its rows committed is a blob with its
// chunks indexed.
func TestPartialRepairAtOpen(t *testing.T) {
	dir := t.TempDir()
	c := openCache(t, Options{Dir: dir})
	data := chachaBytes(16, 1<<20)
	h := resources.Sum(data)
	m := fixedManifest(t, data, testChunk)
	p := openPartial(t, c, h, m)
	putChunks(t, p, data, m, allIndexes(m))
	p.Close()
	half := chachaBytes(17, 1<<20)
	hh := resources.Sum(half)
	ph := openPartial(t, c, hh, fixedManifest(t, half, testChunk))
	putChunks(t, ph, half, ph.m, []int{0, 1})
	ph.Close()
	c.Close()
	// A crash between the rename and the commit of the first; the second
	// is a stray file.
	os.MkdirAll(filepath.Dir(blobPath(filepath.Join(dir, "blobs"), h)), 0o755)
	if err := os.Rename(partialFile(dir, h), blobPath(filepath.Join(dir, "blobs"), h)); err != nil {
		t.Fatal(err)
	}
	stray := resources.Sum([]byte("stray"))
	os.WriteFile(partialFile(dir, stray), []byte("stray"), 0o644)

	c = openCache(t, Options{Dir: dir})
	if got := c.Opened(); got.Adopted != 1 || got.RemovedPartials != 2 {
		t.Fatalf("Opened() = %+v, want 1 adopted, 2 partials removed", got)
	}
	if b, ok := lookup(t, c, h); !ok || b.Source != SourceBlob {
		t.Fatal("complete partial renamed into place not adopted")
	}
	if n := countRows(t, c.db, "SELECT count(*) FROM chunk_index WHERE blob = ?", h[:]); n != len(m.Chunks) {
		t.Fatalf("%d chunk index rows for the adopted blob, want %d", n, len(m.Chunks))
	}
	if _, err := os.Stat(partialFile(dir, stray)); err == nil {
		t.Fatal("stray partial file kept")
	}
	if n := countRows(t, c.db, "SELECT count(*) FROM partials WHERE hash = ?", hh[:]); n != 1 {
		t.Fatal("a sound partial was dropped")
	}
	c.Close()

	// A damaged database: the partial's rows are gone, so its file goes;
	// it is not adopted as a blob.
	os.WriteFile(filepath.Join(dir, damagedName), nil, 0o644)
	c = openCache(t, Options{Dir: dir})
	if _, err := os.Stat(partialFile(dir, hh)); err == nil {
		t.Fatal("partial file kept after its rows were lost")
	}
	if _, ok := lookup(t, c, hh); ok {
		t.Fatal("partial served as a blob")
	}
	if p := openPartial(t, c, hh, fixedManifest(t, half, testChunk)); len(p.Missing()) != 16 {
		t.Fatal("partial resumed without rows")
	}
}

// A cache made before partials (schema 3) opens, gains the new tables, and
// keeps its blobs.
func TestSchemaUpgradeFromVersion3(t *testing.T) {
	dir := t.TempDir()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, dbName)+"?_pragma=journal_mode(WAL)")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"001_init.sql", "002_blob_names.sql", "003_file_fingerprint.sql"} {
		script, err := schemaFS.ReadFile("schema/" + name)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := db.Exec(string(script)); err != nil {
			t.Fatal(err)
		}
	}
	data := chachaBytes(18, 100_000)
	h := resources.Sum(data)
	db.Exec("PRAGMA user_version = 3")
	if _, err := db.Exec("INSERT INTO file_blobs (hash, size, last_used) VALUES (?, ?, 1)", h[:], len(data)); err != nil {
		t.Fatal(err)
	}
	db.Close()
	p := blobPath(filepath.Join(dir, "blobs"), h)
	os.MkdirAll(filepath.Dir(p), 0o755)
	os.WriteFile(p, data, 0o644)

	c := openCache(t, Options{Dir: dir})
	if b, ok := lookup(t, c, h); !ok || b.Source != SourceBlob {
		t.Fatal("blob of a version 3 cache not served after the upgrade")
	}
	var v int
	c.db.QueryRow("PRAGMA user_version").Scan(&v)
	if v != 4 {
		t.Fatalf("schema version %d after the upgrade, want 4", v)
	}
	m := fixedManifest(t, data, testChunk)
	pp := openPartial(t, c, h, m) // the tables exist
	putChunks(t, pp, data, m, allIndexes(m))
	if err := commitPartial(pp); err != nil {
		t.Fatal(err)
	}
}

// OpenPartial reserves the resource's size: a full disk fails at once with
// ErrDiskFull and leaves nothing; a read-only one with ErrNotWritable.
func TestPartialDiskErrors(t *testing.T) {
	t.Run("full", func(t *testing.T) {
		dir := mountTmpfs(t, "1m")
		c := openCache(t, Options{Dir: dir})
		data := chachaBytes(19, 2<<20)
		h := resources.Sum(data)
		_, err := c.OpenPartial(context.Background(), h, fixedManifest(t, data, testChunk))
		if !errors.Is(err, ErrDiskFull) {
			t.Fatalf("OpenPartial of 2 MiB on a 1 MiB disk: %v, want ErrDiskFull", err)
		}
		if _, err := os.Stat(partialFile(dir, h)); err == nil {
			t.Fatal("partial file left")
		}
		if n := countRows(t, c.db, "SELECT count(*) FROM partials"); n != 0 {
			t.Fatal("partial row left")
		}
	})
	t.Run("read-only", func(t *testing.T) {
		// The partial directory alone is read-only (the open database
		// keeps the cache's filesystem from being remounted so).
		dir := mountTmpfs(t, "8m")
		c := openCache(t, Options{Dir: dir})
		data := chachaBytes(19, 1<<20)
		pdir := filepath.Join(dir, partialDirName)
		os.Mkdir(pdir, 0o755)
		if out, err := exec.Command("mount", "--bind", pdir, pdir).CombinedOutput(); err != nil {
			t.Skipf("cannot bind-mount: %v %s", err, out)
		}
		defer exec.Command("umount", pdir).Run()
		remount(t, pdir, "ro,bind")
		_, err := c.OpenPartial(context.Background(), resources.Sum(data), fixedManifest(t, data, testChunk))
		if !errors.Is(err, ErrNotWritable) {
			t.Fatalf("OpenPartial on a read-only disk: %v, want ErrNotWritable", err)
		}
	})
}

// Closing the cache closes its open partials, keeping what they hold.
func TestCacheCloseKeepsOpenPartials(t *testing.T) {
	dir := t.TempDir()
	data := chachaBytes(21, 1<<20)
	h := resources.Sum(data)
	m := fixedManifest(t, data, testChunk)
	c := openCache(t, Options{Dir: dir})
	p := openPartial(t, c, h, m)
	putChunks(t, p, data, m, []int{1, 2, 3}) // less than a flush's worth, just now
	c.Close()
	if err := p.Put(4, chunkOf(data, m, 4)); !errors.Is(err, ErrClosed) {
		t.Fatalf("Put after the cache closed: %v, want ErrClosed", err)
	}
	p.Close() // does nothing

	c = openCache(t, Options{Dir: dir})
	p = openPartial(t, c, h, m)
	defer p.Close()
	if held, _ := p.Held(); held != 3*testChunk {
		t.Fatalf("held %d after the cache was closed with the partial open, want %d", held, 3*testChunk)
	}
}

// A resource larger than the cache's size cap is refused before any space
// is reserved for it.
func TestPartialLargerThanTheCacheIsRefused(t *testing.T) {
	c, err := Open(context.Background(), Options{Dir: t.TempDir(), MaxBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	data := chachaBytes(40, 2<<20)
	m := fixedManifest(t, data, testChunk)
	if _, err := c.OpenPartial(context.Background(), resources.Sum(data), m); !errors.Is(err, ErrLargerThanCache) {
		t.Fatalf("OpenPartial of 2 MiB under a 1 MiB cap: %v", err)
	}
	if parts, _ := filepath.Glob(filepath.Join(c.Dir(), "partial", "*")); len(parts) != 0 {
		t.Fatalf("space reserved anyway: %v", parts)
	}
}

// OpenPartial takes manifests made without manifest.New: one whose hash
// states New would refuse is refused, and nothing is opened.
func TestPartialRefusesMalformedManifest(t *testing.T) {
	c := openCache(t, Options{Dir: t.TempDir()})
	data := chachaBytes(21, 200_000)
	good := cutManifest(t, data, []uint32{100, 199_900})
	bad := &manifest.Manifest{Size: good.Size, Chunks: slices.Clone(good.Chunks)}
	bad.Chunks[1].Carry = nil // 100 mod 64 = 36 bytes are due
	if _, err := c.OpenPartial(context.Background(), resources.Sum(data), bad); !errors.Is(err, manifest.ErrInvalid) {
		t.Fatalf("OpenPartial with a carry of the wrong length: %v, want manifest.ErrInvalid", err)
	}
	openPartial(t, c, resources.Sum(data), good).Discard()
}

// The records of chunks synced to a partial are committed without an
// fsync (synchronous=NORMAL: a lost record costs a refetch), and nothing
// else is: a blob's commit after them is durable again (FULL).
func TestPartialRecordsSkipTheFsyncAndBlobsDoNot(t *testing.T) {
	c := openCache(t, Options{Dir: t.TempDir()})
	mode := func() chan int {
		ch := make(chan int, 1)
		c.store.enqueue(op{kind: opBarrier, done: func(error) {
			// On the store's goroutine, which owns the connection.
			var n int
			if err := c.store.wc.conn.QueryRowContext(context.Background(), "PRAGMA synchronous").Scan(&n); err != nil {
				t.Error(err)
			}
			ch <- n
		}})
		return ch
	}
	data := chachaBytes(22, 4*testChunk)
	m := fixedManifest(t, data, testChunk)
	p := openPartial(t, c, resources.Sum(data), m)
	defer p.Discard()
	putChunks(t, p, data, m, []int{0, 1})
	p.flushMu.Lock()
	p.flushLocked() // records chunks 0 and 1, alone in their batch
	p.flushMu.Unlock()
	if n := <-mode(); n != 1 {
		t.Fatalf("synchronous = %d after recording chunks, want 1 (NORMAL)", n)
	}
	blob := []byte("a small blob, stored durably")
	stored := make(chan error, 1)
	if err := c.Put(resources.Sum(blob), blob, func(err error) { stored <- err }); err != nil {
		t.Fatal(err)
	}
	if err := <-stored; err != nil {
		t.Fatal(err)
	}
	if n := <-mode(); n != 2 {
		t.Fatalf("synchronous = %d after storing a blob, want 2 (FULL)", n)
	}

	// The store's connection dropped (an error) while in NORMAL mode: the
	// next blob commit is FULL all the same, on whatever connection.
	putChunks(t, p, data, m, []int{2})
	p.flushMu.Lock()
	p.flushLocked()
	p.flushMu.Unlock()
	dropped := make(chan struct{})
	c.store.enqueue(op{kind: opBarrier, done: func(error) { c.store.closeConn(); close(dropped) }})
	<-dropped
	blob2 := []byte("another small blob, stored durably")
	if err := c.Put(resources.Sum(blob2), blob2, func(err error) { stored <- err }); err != nil {
		t.Fatal(err)
	}
	if err := <-stored; err != nil {
		t.Fatal(err)
	}
	if n := <-mode(); n != 2 {
		t.Fatalf("synchronous = %d for a blob after the connection was dropped, want 2 (FULL)", n)
	}
}

func TestOnlyHintsNeedsEveryOpToBeAChunkRecord(t *testing.T) {
	rec, blob := op{kind: opPartialChunks}, op{kind: opInline}
	for _, tc := range []struct {
		name  string
		batch []op
		errs  []error
		want  bool
	}{
		{"records", []op{rec, rec}, nil, true},
		{"records and a barrier", []op{rec, {kind: opBarrier}}, nil, true},
		{"a record and a blob", []op{rec, blob}, nil, false},
		{"a blob and a record", []op{blob, rec}, nil, false},
		{"a record and a blob that failed", []op{rec, blob}, []error{nil, errors.New("placing failed")}, true},
	} {
		errs := tc.errs
		if errs == nil {
			errs = make([]error, len(tc.batch))
		}
		if got := onlyHints(tc.batch, errs); got != tc.want {
			t.Errorf("%s: onlyHints = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// A resource stored whole (a chunked download killed, then fetched whole)
// takes its leftover partial with it: rows and file, at once. An open
// partial is left alone.
func TestStoringWholeRemovesALeftoverPartial(t *testing.T) {
	dir := t.TempDir()
	c := openCache(t, Options{Dir: dir})
	data := chachaBytes(23, 2<<20)
	h := resources.Sum(data)
	m := fixedManifest(t, data, testChunk)
	storeWhole := func() { putFile(t, c, data) }

	open := openPartial(t, c, h, m)
	putChunks(t, open, data, m, []int{0, 1, 2})
	open.flushMu.Lock()
	open.flushLocked()
	open.flushMu.Unlock()
	storeWhole() // while the partial is open
	if n := countRows(t, c.db, "SELECT count(*) FROM partial_chunks WHERE hash = ?", h[:]); n != 3 {
		t.Fatalf("%d chunk rows of an open partial left, want its 3", n)
	}
	if err := open.Close(); err != nil {
		t.Fatal(err)
	}
	storeWhole() // again, with the partial closed
	if n := countRows(t, c.db, "SELECT count(*) FROM partials WHERE hash = ?", h[:]) + countRows(t, c.db, "SELECT count(*) FROM partial_chunks WHERE hash = ?", h[:]); n != 0 {
		t.Fatalf("%d partial rows left after the resource was stored whole", n)
	}
	if _, err := os.Stat(partialFile(dir, h)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("partial file left after the resource was stored whole: %v", err)
	}
	if b, ok := lookup(t, c, h); !ok {
		t.Fatal("not served")
	} else if got, _ := b.ReadAll(); !bytes.Equal(got, data) {
		t.Fatal("read back wrong")
	}
	// The store gave the hash back: its partial can be opened again.
	openPartial(t, c, h, m).Discard()
}

// MakeRoom evicts what keep does not keep, oldest first, as much as asked,
// whatever the size cap.
func TestMakeRoomKeepsWhatIsBound(t *testing.T) {
	c := openCache(t, Options{Dir: t.TempDir(), MaxBytes: 1 << 30})
	var hs []resources.Hash
	for i := range 3 {
		hs = append(hs, putFile(t, c, chachaBytes(uint64(30+i), 100_000)))
	}
	keep := func(h resources.Hash) bool { return h == hs[0] }
	n, freed, err := c.MakeRoom(context.Background(), 150_000, keep)
	if err != nil || n != 2 || freed != 200_000 {
		t.Fatalf("MakeRoom = %d, %d, %v; want the 2 blobs not kept, 200,000 bytes", n, freed, err)
	}
	if _, ok := lookup(t, c, hs[0]); !ok {
		t.Fatal("a kept blob was evicted")
	}
	for _, h := range hs[1:] {
		if _, ok := lookup(t, c, h); ok {
			t.Fatal("a blob not kept survived")
		}
	}
}

// A blob file assembled from chunks and found corrupt is salvaged as a
// partial: the refetch resumes from its chunks, each verified again, and
// fetches only the damaged one. A corrupt blob fetched whole (no chunk
// records) leaves nothing behind.
func TestCorruptChunkedBlobIsSalvaged(t *testing.T) {
	dir := t.TempDir()
	c := openCache(t, Options{Dir: dir})
	data := chachaBytes(24, 2<<20)
	h := resources.Sum(data)
	m := fixedManifest(t, data, testChunk)
	p := openPartial(t, c, h, m)
	putChunks(t, p, data, m, allIndexes(m))
	if err := commitPartial(p); err != nil {
		t.Fatal(err)
	}
	const damaged = 7
	f, err := os.OpenFile(blobPath(filepath.Join(dir, "blobs"), h), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte{data[damaged*testChunk+9] ^ 1}, damaged*testChunk+9)
	f.Close()
	if _, ok := lookup(t, c, h); ok {
		t.Fatal("a corrupt blob was served")
	}
	p = openPartial(t, c, h, m)
	if miss := p.Missing(); len(miss) != 0 {
		t.Fatalf("Missing() = %v after salvage, want none until verified", miss)
	}
	if err := commitPartial(p); !errors.Is(err, ErrChunksLost) {
		t.Fatalf("Commit of the salvaged blob: %v, want ErrChunksLost", err)
	}
	if miss := p.Missing(); !slices.Equal(miss, []int{damaged}) {
		t.Fatalf("Missing() = %v, want only the damaged chunk %d", miss, damaged)
	}
	putChunks(t, p, data, m, []int{damaged})
	if err := commitPartial(p); err != nil {
		t.Fatal(err)
	}
	if b, ok := lookup(t, c, h); !ok {
		t.Fatal("not served after the damaged chunk was fetched")
	} else if got, _ := b.ReadAll(); !bytes.Equal(got, data) {
		t.Fatal("read back wrong")
	}

	hw := putFile(t, c, chachaBytes(25, 200_000))
	f, _ = os.OpenFile(blobPath(filepath.Join(dir, "blobs"), hw), os.O_WRONLY, 0)
	f.WriteAt([]byte("rot"), 1000)
	f.Close()
	if _, ok := lookup(t, c, hw); ok {
		t.Fatal("a corrupt blob was served")
	}
	c.Flush(context.Background())
	if _, err := os.Stat(partialFile(dir, hw)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a corrupt blob fetched whole left a partial file: %v", err)
	}
	if n := countRows(t, c.db, "SELECT count(*) FROM partials WHERE hash = ?", hw[:]); n != 0 {
		t.Fatal("a corrupt blob fetched whole left a partial row")
	}
}
