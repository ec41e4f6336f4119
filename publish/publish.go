package publish

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/voxsync/voxsync/manifest"
	"github.com/voxsync/voxsync/packs"
	"github.com/voxsync/voxsync/resources"
)

// DefaultWorkers is how many uploads run at once. Against a local MinIO
// on 2 cores (docs/benchmarks.md, "Publish") 2 to 32 workers were alike:
// the first publish of 500 MiB is bound by MinIO's writes, not by
// requests in flight. 8 keeps a remote endpoint's round trips covered
// (8 × 128 KiB chunks in flight) without many connections.
const DefaultWorkers = 8

// Options control Publish.
type Options struct {
	// Workers upload in parallel; DefaultWorkers when 0.
	Workers int
	// DryRun lists the base and works out what to upload, uploading
	// nothing; the Summary counts what would be.
	DryRun bool
	// Listing is what the Target's List returned, for a caller that
	// listed already (while the packs loaded: the two are independent);
	// nil lists first.
	Listing map[string]int64
}

// Summary says what a publish did. Objects and Manifests count what the
// view's content needs at the base; each of them was either Uploaded or
// Skipped (already there).
type Summary struct {
	Uploaded      int     `json:"uploaded"`
	Skipped       int     `json:"skipped"`
	BytesUploaded int64   `json:"bytes_uploaded"`
	Objects       int     `json:"objects"`
	Manifests     int     `json:"manifests"`
	Resources     int     `json:"resources"`
	Bytes         int64   `json:"bytes"` // of the distinct resources
	Seconds       float64 `json:"seconds"`
	ListSeconds   float64 `json:"list_seconds"`
	CutSeconds    float64 `json:"cut_seconds"` // cutting large resources into chunks
	To            string  `json:"to"`
	DryRun        bool    `json:"dry_run,omitempty"`
}

// Publish stores the content of every resource v serves at t: what is
// there already (by one listing of t, or opts.Listing) is skipped, the rest uploaded by
// opts.Workers at once. Every byte uploaded is read from its pack and
// checked against the name it is stored under; a pack file that changed
// since v hashed it fails the publish. The layout file is written only
// when everything else succeeded. The first error stops the publish and
// is returned with the Summary so far.
func Publish(ctx context.Context, v *packs.View, t Target, opts Options) (Summary, error) {
	start := time.Now()
	if opts.Workers <= 0 {
		opts.Workers = DefaultWorkers
	}
	sum := Summary{To: t.String(), DryRun: opts.DryRun}
	have := opts.Listing
	if have == nil {
		var err error
		if have, err = t.List(ctx); err != nil {
			return sum, err
		}
		sum.ListSeconds = time.Since(start).Seconds()
	}

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	p := &publisher{t: t, have: have, dry: opts.DryRun, cancel: cancel,
		jobs: make(chan *upload), planned: map[string]*upload{}}

	// One entry per distinct content, in hash order so that runs are
	// alike.
	entries := v.Entries()
	slices.SortFunc(entries, func(a, b *packs.Entry) int { return bytes.Compare(a.Hash[:], b.Hash[:]) })
	entries = slices.CompactFunc(entries, func(a, b *packs.Entry) bool { return a.Hash == b.Hash })
	for _, e := range entries {
		sum.Resources++
		sum.Bytes += e.Size
	}
	complete := p.completeManifests(ctx, entries, opts.Workers)

	var workers sync.WaitGroup
	for range opts.Workers {
		workers.Go(func() { p.work(ctx) })
	}
	var cut time.Duration
	for _, e := range entries {
		if ctx.Err() != nil {
			break
		}
		if e.Size <= packs.ChunkedMin {
			p.object(ctx, e.Hash, e.Size, func(buf []byte) ([]byte, error) { return readChecked(e, 0, e.Size, e.Hash, buf) })
			continue
		}
		sum.Manifests++
		if m := complete[e.Hash]; m != nil {
			p.chunks(ctx, e, m) // all there: skipped
			p.skipped.Add(1)
			continue
		}
		t0 := time.Now()
		m, err := e.Manifest(ctx)
		cut += time.Since(t0)
		if err != nil {
			p.cancel(err) // "cut PATH in pack DIR: …"
			break
		}
		p.large(ctx, e, m)
	}
	// Manifests are queued by their waiters once their chunks are up;
	// the queue closes when the last of them has been.
	p.waiters.Wait()
	close(p.jobs)
	workers.Wait()

	sum.Uploaded, sum.Skipped = int(p.uploaded.Load()), int(p.skipped.Load())
	sum.BytesUploaded = p.bytes.Load()
	sum.Objects = p.objects
	sum.CutSeconds = cut.Seconds()
	if err := context.Cause(ctx); err != nil {
		sum.Seconds = time.Since(start).Seconds()
		return sum, err
	}
	if !opts.DryRun {
		// Durable content first: the layout file says the base is whole.
		if err := t.Flush(ctx); err != nil {
			return sum, err
		}
		if err := t.Put(ctx, LayoutFile, layoutJSON); err != nil {
			return sum, err
		}
		if err := t.Flush(ctx); err != nil {
			return sum, err
		}
	}
	sum.Seconds = time.Since(start).Seconds()
	return sum, nil
}

// publisher is one Publish's state. The planner (Publish's goroutine)
// alone touches planned and objects; workers and waiters touch the rest.
type publisher struct {
	t      Target
	have   map[string]int64 // the listing; read-only
	dry    bool
	cancel context.CancelCauseFunc
	jobs   chan *upload

	planned map[string]*upload // every object name met, uploaded or not
	objects int

	waiters sync.WaitGroup // one per manifest waiting for its chunks

	uploaded, skipped, bytes atomic.Int64
}

// upload is one object or manifest to store.
type upload struct {
	name string
	size int64
	// read returns the bytes to store, checked, in buf if they fit.
	read func(buf []byte) ([]byte, error)
	done chan struct{} // closed when stored, or when it never will be
	err  error         // why not; written before done is closed
}

func (u *upload) finish(err error) {
	u.err = err
	close(u.done)
}

// stored stands for an object that needs no upload.
var stored = func() *upload { u := &upload{done: make(chan struct{})}; u.finish(nil); return u }()

// object plans the object whose SHA-256 is h, size bytes that read
// returns, and returns its upload: stored if it is at the base already.
func (p *publisher) object(ctx context.Context, h resources.Hash, size int64, read func([]byte) ([]byte, error)) *upload {
	name := ObjectPath(h)
	if u, ok := p.planned[name]; ok {
		return u // the same bytes, as a chunk of another resource or whole
	}
	p.objects++
	if n, ok := p.have[name]; ok && n == size {
		p.skipped.Add(1)
		p.planned[name] = stored
		return stored
	}
	u := &upload{name: name, size: size, read: read, done: make(chan struct{})}
	p.planned[name] = u
	p.enqueue(ctx, u)
	return u
}

// chunks plans the chunks m cuts e into, and returns the uploads of those
// not at the base already.
func (p *publisher) chunks(ctx context.Context, e *packs.Entry, m *manifest.Manifest) []*upload {
	var deps []*upload
	for _, c := range m.Chunks {
		u := p.object(ctx, c.Hash, int64(c.Length), func(buf []byte) ([]byte, error) {
			return readChecked(e, int64(c.Offset), int64(c.Length), c.Hash, buf)
		})
		if u != stored {
			deps = append(deps, u)
		}
	}
	return deps
}

// large plans e's chunks, and its manifest once they are all stored.
func (p *publisher) large(ctx context.Context, e *packs.Entry, m *manifest.Manifest) {
	deps := p.chunks(ctx, e, m)
	file := m.MarshalFile(e.Hash)
	mu := &upload{name: ManifestPath(e.Hash), size: int64(len(file)), done: make(chan struct{}),
		read: func([]byte) ([]byte, error) { return file, nil }}
	p.waiters.Go(func() {
		for _, d := range deps {
			<-d.done
			if d.err != nil {
				mu.finish(d.err)
				return
			}
		}
		p.enqueue(ctx, mu)
	})
}

func (p *publisher) enqueue(ctx context.Context, u *upload) {
	select {
	case p.jobs <- u:
	case <-ctx.Done():
		u.finish(context.Cause(ctx))
	}
}

// work stores uploads until the queue closes. Each worker reuses one
// buffer of the largest chunk.
func (p *publisher) work(ctx context.Context) {
	buf := make([]byte, manifest.MaxChunkLen)
	for u := range p.jobs {
		if ctx.Err() != nil {
			u.finish(context.Cause(ctx))
			continue
		}
		if p.dry {
			p.uploaded.Add(1)
			p.bytes.Add(u.size)
			u.finish(nil)
			continue
		}
		data, err := u.read(buf)
		if err == nil {
			err = p.t.Put(ctx, u.name, data)
		}
		if err != nil {
			p.cancel(err)
			u.finish(err)
			continue
		}
		p.uploaded.Add(1)
		p.bytes.Add(int64(len(data)))
		u.finish(nil)
	}
}

// completeManifests fetches, workers at a time, the manifests already at
// the base for the large entries, and returns those that are valid for
// their entry and whose chunks are all there. Such a resource needs
// neither cutting nor uploading: a publish of an unchanged pack reads no
// large file twice. A manifest that cannot be fetched or is wrong is left
// out, and the resource is cut and uploaded again.
func (p *publisher) completeManifests(ctx context.Context, entries []*packs.Entry, workers int) map[resources.Hash]*manifest.Manifest {
	var (
		mu  sync.Mutex // guards out
		out = map[resources.Hash]*manifest.Manifest{}
		wg  sync.WaitGroup
		sem = make(chan struct{}, workers)
	)
	for _, e := range entries {
		name := ManifestPath(e.Hash)
		if _, ok := p.have[name]; !ok || e.Size <= packs.ChunkedMin {
			continue
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			data, err := p.t.Get(ctx, name, manifest.MaxFileLen)
			if err != nil {
				return
			}
			whole, m, err := manifest.ParseFile(data)
			if err != nil || whole != e.Hash || m.Size != uint64(e.Size) {
				return
			}
			for _, c := range m.Chunks {
				if p.have[ObjectPath(c.Hash)] != int64(c.Length) {
					return
				}
			}
			mu.Lock()
			out[e.Hash] = m
			mu.Unlock()
		})
	}
	wg.Wait()
	return out
}

// errChanged says what to do about a pack file changed under a publish.
var errChanged = errors.New("publish again once the packs have stopped changing")

// readChecked reads n bytes of e at off into buf and checks that they
// hash to want: only bytes that match their name are ever stored.
func readChecked(e *packs.Entry, off, n int64, want resources.Hash, buf []byte) ([]byte, error) {
	c, err := e.Open()
	if err != nil {
		return nil, fmt.Errorf("read %s in pack %s: %w", e.Path, e.Pack, err)
	}
	defer c.Close()
	if int64(cap(buf)) < n {
		buf = make([]byte, n)
	}
	b := buf[:n]
	if k, err := c.ReadAt(b, off); int64(k) < n {
		return nil, fmt.Errorf("read %s in pack %s at %d: %w", e.Path, e.Pack, off, err)
	}
	if resources.Sum(b) != want {
		return nil, fmt.Errorf("read %s in pack %s at %d: %w: %w", e.Path, e.Pack, off, packs.ErrChanged, errChanged)
	}
	return b, nil
}
