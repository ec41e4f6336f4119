// Package mirror fetches content-addressed objects from HTTP mirrors of a
// game server's content (the layout `gameserver publish` writes): whole
// small resources and the chunks of large ones, each named by its SHA-256.
//
// A Pool holds one session's mirrors. Each mirror is a source with its own
// lease on every request (a deadline from the object's size), backoff after
// failures, and demotion for the session when it serves bytes that do not
// verify. Get picks the least-loaded, fastest usable mirror, fails over to
// the others, and reports ErrUnavailable when none can serve the object, so
// the caller fetches it from the game server instead. A mirror that lacks
// an object is normal, not an error.
//
// The Pool never decides what bytes are good: the caller's accept function
// verifies and stores them (the cache hashes everything it stores), and a
// hash mismatch it reports demotes the mirror.
package mirror

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/voxsync/voxsync/resources"
)

// ErrUnavailable: no usable mirror could serve the object (each lacks it,
// failed, is backing off, or was demoted). Fetch it from the game server.
var ErrUnavailable = errors.New("no mirror could serve the object")

// ErrCorrupt is what an accept function returns (wrapped) for bytes that
// do not hash to the object's name; the mirror that sent them is demoted.
var ErrCorrupt = errors.New("mirror sent bytes that do not verify")

// Options configure a Pool. Zero values take the defaults.
type Options struct {
	// Parallel is how many requests one mirror serves at once (and so the
	// keep-alive connections held to it). Default 8.
	Parallel int
	// LeaseBase and LeaseRate set a request's lease: LeaseBase plus the
	// object's size at LeaseRate bytes a second. A request not done by
	// then is abandoned and its mirror backs off: a trickling or hung
	// mirror holds an object for a bounded time. Defaults 3 s and 1 MiB/s.
	LeaseBase time.Duration
	LeaseRate float64
	// BackoffMin and BackoffMax bound how long a failing mirror rests
	// before it is tried again; each failure in a row doubles it.
	// Defaults 1 s and 30 s.
	BackoffMin, BackoffMax time.Duration
	Logger                 *slog.Logger
	// Transport, if set, makes the requests (tests); nil uses a transport
	// of the Pool's own with keep-alive.
	Transport http.RoundTripper
	// PublicOnly refuses to connect to loopback, private, link-local and
	// other non-public addresses, checked on the address dialled (after
	// DNS, so a name cannot be rebound to one). A client sets it when the
	// game server is itself on a public address: such a server has no
	// business pointing players' clients at their own machine or LAN.
	PublicOnly bool
}

func (o *Options) defaults() {
	if o.Parallel <= 0 {
		o.Parallel = 8
	}
	if o.LeaseBase <= 0 {
		o.LeaseBase = 3 * time.Second
	}
	if o.LeaseRate <= 0 {
		o.LeaseRate = 1 << 20
	}
	if o.BackoffMin <= 0 {
		o.BackoffMin = time.Second
	}
	if o.BackoffMax < o.BackoffMin {
		o.BackoffMax = max(30*time.Second, o.BackoffMin)
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

// SourceStats are one mirror's counts for the session.
type SourceStats struct {
	URL      string `json:"url"`
	Objects  int    `json:"objects"`   // served and accepted
	Bytes    int64  `json:"bytes"`     // of the accepted objects
	Received int64  `json:"received"`  // body bytes read, also of objects cut off or refused
	NotFound int    `json:"not_found"` // answered 404 (or 403, 410): it lacks them
	Failures int    `json:"failures"`  // errors, bad answers, leases run out
	Demoted  bool   `json:"demoted"`   // sent corrupt bytes: not used again
}

// Pool is a session's mirrors.
type Pool struct {
	opts    Options
	log     *slog.Logger
	client  *http.Client
	sources []*source
	own     *http.Transport // closed by Close; nil with Options.Transport
}

type source struct {
	base  string
	slots chan struct{} // one per request in progress

	mu        sync.Mutex // guards the fields below
	inflight  int
	rate      float64 // bytes a second, moving average; 0 until measured
	fails     int     // failures in a row
	restUntil time.Time
	// checkMu is held while the mirror's LayoutFile is read, before its
	// first object: checked once it said layout 1.
	checkMu   sync.Mutex
	checked   bool
	stats     SourceStats
	warned403 bool
}

// NewPool returns a Pool of the mirrors at bases, skipping (with a log
// line) any base URL it cannot use.
func NewPool(bases []string, opts Options) *Pool {
	opts.defaults()
	p := &Pool{opts: opts, log: opts.Logger}
	rt := opts.Transport
	if rt == nil {
		dialer := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
		if opts.PublicOnly {
			dialer.Control = refuseNonPublic
		}
		// No proxy from the environment: the game's own connection
		// uses none, and PublicOnly checks the address dialled.
		p.own = &http.Transport{
			DialContext:           dialer.DialContext,
			MaxIdleConnsPerHost:   opts.Parallel,
			MaxConnsPerHost:       opts.Parallel,
			IdleConnTimeout:       90 * time.Second,
			TLSHandshakeTimeout:   5 * time.Second,
			ResponseHeaderTimeout: opts.LeaseBase,
			// The bytes are hashed as published: a CDN's gzip would
			// only be undone again.
			DisableCompression:     true,
			MaxResponseHeaderBytes: 16 << 10,
			ForceAttemptHTTP2:      true,
		}
		rt = p.own
	}
	p.client = &http.Client{
		Transport: rt,
		// A mirror answers with the object; a redirect to another host
		// (a CDN edge) is fine, an endless chain is not.
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			switch {
			case len(via) >= 5:
				return errors.New("stopped after 5 redirects")
			case via[0].URL.Scheme == "https" && req.URL.Scheme != "https":
				return fmt.Errorf("refused redirect from https to %s", req.URL.Redacted())
			}
			return nil
		},
	}
	seen := make(map[string]bool)
	for _, b := range bases {
		u, err := ParseBase(b)
		if err != nil {
			p.log.Warn("mirror ignored", "url", b, "err", err)
			continue
		}
		if seen[u] {
			continue
		}
		seen[u] = true
		p.sources = append(p.sources, &source{base: u, slots: make(chan struct{}, opts.Parallel), stats: SourceStats{URL: u}})
	}
	return p
}

// Len is the number of mirrors in the pool, demoted ones included.
func (p *Pool) Len() int { return len(p.sources) }

// Slots is how many Gets the pool serves at once: callers run that many.
func (p *Pool) Slots() int { return len(p.sources) * p.opts.Parallel }

// Close releases the pool's idle connections.
func (p *Pool) Close() {
	if p.own != nil {
		p.own.CloseIdleConnections()
	}
}

// Stats returns each mirror's counts.
func (p *Pool) Stats() []SourceStats {
	out := make([]SourceStats, len(p.sources))
	for i, s := range p.sources {
		s.mu.Lock()
		out[i] = s.stats
		s.mu.Unlock()
	}
	return out
}

// Usable reports whether any mirror may be asked now (not demoted, not
// resting after failures).
func (p *Pool) Usable() bool {
	at, ok := p.UsableAt()
	return ok && !time.Now().Before(at)
}

// UsableAt returns when a mirror may next be asked: a time not after now
// if one may be now, else when the first resting one is done; false when
// every mirror was demoted (none will be asked again).
func (p *Pool) UsableAt() (time.Time, bool) {
	var at time.Time
	ok := false
	for _, s := range p.sources {
		s.mu.Lock()
		demoted, rest := s.stats.Demoted, s.restUntil
		s.mu.Unlock()
		if demoted {
			continue
		}
		if !ok || rest.Before(at) {
			at, ok = rest, true
		}
	}
	return at, ok
}

// Get fetches the object named h of size bytes and hands it to accept,
// which verifies and keeps it (it must not keep buf's memory past its
// return unless buf was nil). It returns nil once accept took the bytes,
// accept's error if that is not about the bytes (e.g. a full disk), or an
// error wrapping ErrUnavailable when no mirror could serve them. buf, if
// not nil, is used for the body when large enough.
func (p *Pool) Get(ctx context.Context, h resources.Hash, size int64, buf []byte, accept func([]byte) error) error {
	buf = buf[:0]
	tried := make([]bool, len(p.sources))
	wholeAgain := false // a continued body failed: once more from the start
	var why []string
	for {
		i, s := p.pick(tried)
		if s == nil {
			break
		}
		tried[i] = true
		select {
		case s.slots <- struct{}{}:
		case <-ctx.Done():
			s.done()
			return ctx.Err()
		}
		if err := p.checked(ctx, s); err != nil {
			s.done()
			<-s.slots
			if ctx.Err() != nil {
				return ctx.Err()
			}
			why = append(why, err.Error())
			continue
		}
		// Bytes left by an interrupted attempt at another mirror are
		// continued with a Range request, not fetched twice; then a
		// mismatch cannot be blamed on this mirror alone.
		mixed := len(buf) > 0
		var err error
		buf, err = p.fetch(ctx, s, h, size, buf)
		if err == nil {
			if err = accept(buf); err == nil {
				s.succeeded(size)
				<-s.slots
				return nil
			}
			if !errors.Is(err, ErrCorrupt) {
				<-s.slots
				return err // the caller's problem (a full disk), not the mirror's
			}
			buf = buf[:0]
			switch {
			case !mixed:
				p.demote(s, h, err)
			case !wholeAgain:
				// One of the two mirrors lied: this one gets to send
				// it all before it is blamed.
				wholeAgain, tried[i] = true, false
			}
		}
		<-s.slots
		if ctx.Err() != nil {
			return ctx.Err()
		}
		why = append(why, err.Error())
	}
	if len(why) == 0 {
		return fmt.Errorf("get %s: %w", h.Short(), ErrUnavailable)
	}
	return fmt.Errorf("get %s: %w: %s", h.Short(), ErrUnavailable, strings.Join(why, "; "))
}

// pick returns the usable, untried mirror expected to finish soonest: the
// fewest requests in progress per byte a second it has shown. Unmeasured
// mirrors go first, so each is measured, unless they failed without ever
// delivering: those go last.
func (p *Pool) pick(tried []bool) (int, *source) {
	now := time.Now()
	bi, best := -1, (*source)(nil)
	bestScore := 0.0
	for i, s := range p.sources {
		if tried[i] {
			continue
		}
		s.mu.Lock()
		ok := !s.stats.Demoted && !now.Before(s.restUntil)
		score := float64(s.inflight+1) / max(s.rate, 1)
		switch {
		case s.rate == 0 && s.fails == 0:
			score = float64(s.inflight+1) * 1e-12 // measure it
		case s.rate == 0:
			score = float64(s.inflight+1) * 1e12 // failed and never delivered: last
		}
		s.mu.Unlock()
		if ok && (best == nil || score < bestScore) {
			bi, best, bestScore = i, s, score
		}
	}
	if best != nil {
		best.mu.Lock()
		best.inflight++
		best.mu.Unlock()
	}
	return bi, best
}

// checked makes sure s is a published mirror before anything is fetched
// from it: one GET of its LayoutFile a session. A base that is not (a
// typo'd URL, a bucket not public, a site that is no mirror at all) is
// not asked for objects again in the session, so a server naming some
// unrelated site costs that site one request per client, not one per
// resource.
func (p *Pool) checked(ctx context.Context, s *source) error {
	s.checkMu.Lock()
	defer s.checkMu.Unlock()
	if s.checked {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, p.opts.LeaseBase)
	defer cancel()
	notMirror, err := readLayout(ctx, p.client, s.base)
	switch {
	case err == nil:
		s.checked = true
		return nil
	case notMirror || errors.Is(err, ErrNotPublic):
		p.demote(s, resources.Hash{}, err)
	default:
		p.failed(s, resources.Hash{}, err)
	}
	return fmt.Errorf("mirror %s: %w", s.base, err)
}

// done ends a request counted by pick.
func (s *source) done() {
	s.mu.Lock()
	s.inflight--
	s.mu.Unlock()
}

// fetch makes one request of s for the object's bytes after those in buf
// (a Range request when there are some) and returns buf with what arrived.
// On an error buf holds the bytes that arrived in order, which the next
// attempt continues from.
func (p *Pool) fetch(ctx context.Context, s *source, h resources.Hash, size int64, buf []byte) ([]byte, error) {
	defer s.done()
	// A body cut off mid-way (a keep-alive connection closed under us, a
	// proxy's hiccup) is continued once from the same mirror at once.
	for try := 0; ; try++ {
		have := len(buf)
		start := time.Now()
		var err error
		var lacks bool
		buf, lacks, err = p.request(ctx, s, h, size, buf)
		switch {
		case err == nil:
			s.mu.Lock()
			if d := time.Since(start).Seconds(); d > 0 && len(buf)-have > 0 {
				r := float64(len(buf)-have) / d
				if s.rate == 0 {
					s.rate = r
				} else {
					s.rate = 0.8*s.rate + 0.2*r
				}
			}
			s.mu.Unlock()
			return buf, nil
		case lacks:
			s.mu.Lock()
			s.stats.NotFound++
			s.mu.Unlock()
			p.log.Debug("mirror lacks object", "mirror", s.base, "object", h.Short())
			return buf, err
		case ctx.Err() != nil:
			return buf, err
		case try == 0 && len(buf) > have && len(buf) < int(size) && !errors.Is(err, errLease):
			continue
		}
		p.failed(s, h, err)
		return buf, err
	}
}

var errLease = errors.New("lease ran out")

// ErrNotPublic: a mirror of a game server on a public address resolved to
// a loopback, private or otherwise non-public address.
var ErrNotPublic = errors.New("mirror is on a non-public address, named by a game server on a public one")

// refuseNonPublic is a dialer's Control for PublicOnly.
func refuseNonPublic(network, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("%w: %s", ErrNotPublic, address)
	}
	if !IsPublic(ap.Addr()) {
		return fmt.Errorf("%w: %s", ErrNotPublic, ap.Addr())
	}
	return nil
}

// cgnat is the shared address space of carrier-grade NAT (RFC 6598).
var cgnat = netip.MustParsePrefix("100.64.0.0/10")

// IsPublic reports whether a is an address on the public internet: not
// loopback, private (RFC 1918, ULA), link-local, shared (CGNAT),
// multicast or unspecified.
func IsPublic(a netip.Addr) bool {
	a = a.Unmap()
	return a.IsValid() && a.IsGlobalUnicast() && !a.IsPrivate() && !cgnat.Contains(a)
}

// request is one GET. lacks reports an answer that the mirror does not
// have the object.
func (p *Pool) request(ctx context.Context, s *source, h resources.Hash, size int64, buf []byte) (_ []byte, lacks bool, _ error) {
	have := int64(len(buf))
	lease := p.opts.LeaseBase + time.Duration(float64(size-have)/p.opts.LeaseRate*float64(time.Second))
	ctx, cancel := context.WithTimeoutCause(ctx, lease, errLease)
	defer cancel()
	url := s.base + ObjectPath(h)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return buf, false, fmt.Errorf("get %s: %w", url, err)
	}
	if have > 0 {
		req.Header.Set("Range", "bytes="+strconv.FormatInt(have, 10)+"-")
	}
	resp, err := p.client.Do(req)
	if err != nil {
		if c := context.Cause(ctx); errors.Is(c, errLease) {
			err = fmt.Errorf("%w after %s: %v", errLease, lease.Round(time.Millisecond), err)
		}
		return buf, false, fmt.Errorf("get %s: %w", url, err)
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusGone:
		return buf, true, fmt.Errorf("get %s: %s", url, resp.Status)
	case resp.StatusCode == http.StatusForbidden:
		// S3 answers 403 for a missing object when listing is not
		// public; it may also mean the bucket is not public-read.
		s.mu.Lock()
		warn := !s.warned403
		s.warned403 = true
		s.mu.Unlock()
		if warn {
			// The operator's to fix (the server's start-up check tells
			// them); the player loses nothing.
			p.log.Info("mirror refuses access (403); falling back to the game server for what it refuses", "mirror", s.base)
		}
		return buf, true, fmt.Errorf("get %s: %s", url, resp.Status)
	case resp.StatusCode == http.StatusOK:
		buf = buf[:0] // a mirror that ignores Range sends it all
	case resp.StatusCode == http.StatusPartialContent && have > 0:
		var first, last, total int64
		cr := resp.Header.Get("Content-Range")
		if n, _ := fmt.Sscanf(cr, "bytes %d-%d/%d", &first, &last, &total); n != 3 || first != have || last != size-1 || total != size {
			return buf[:0], false, fmt.Errorf("get %s: Content-Range %q for bytes %d- of %d", url, cr, have, size)
		}
	default:
		return buf, false, fmt.Errorf("get %s: %s", url, resp.Status)
	}
	want := size - int64(len(buf))
	if resp.ContentLength >= 0 && resp.ContentLength != want {
		return buf, false, fmt.Errorf("get %s: %w: %d bytes, want %d", url, ErrCorrupt, resp.ContentLength, want)
	}
	if cap(buf) < int(size) {
		// Only now: a mirror that never answers holds no buffer.
		buf = append(make([]byte, 0, size), buf...)
	}
	// Read exactly what is due, then check nothing follows: a body is
	// never trusted to say its own length.
	n, err := readFull(resp.Body, buf[len(buf):size])
	buf = buf[:len(buf)+n]
	s.mu.Lock()
	s.stats.Received += int64(n)
	s.mu.Unlock()
	if err == io.EOF {
		// The answer ended cleanly, short: another object than named.
		return buf[:0], false, fmt.Errorf("get %s: %w: %d bytes, want %d", url, ErrCorrupt, n, want)
	}
	if err != nil {
		if c := context.Cause(ctx); errors.Is(c, errLease) {
			err = fmt.Errorf("%w after %s (%d of %d bytes): %v", errLease, lease.Round(time.Millisecond), len(buf), size, err)
		}
		return buf, false, fmt.Errorf("get %s: %w", url, err)
	}
	var one [1]byte
	if m, _ := resp.Body.Read(one[:]); m > 0 {
		return buf[:0], false, fmt.Errorf("get %s: %w: more than %d bytes", url, ErrCorrupt, size)
	}
	return buf, false, nil
}

// readFull is io.ReadFull that tells a clean end of the body (io.EOF) from
// one cut off (io.ErrUnexpectedEOF, a reset, a timeout).
func readFull(r io.Reader, b []byte) (int, error) {
	n := 0
	for n < len(b) {
		m, err := r.Read(b[n:])
		n += m
		if err != nil {
			if n == len(b) && err == io.EOF {
				return n, nil
			}
			return n, err
		}
	}
	return n, nil
}

// succeeded records an object served by s.
func (s *source) succeeded(size int64) {
	s.mu.Lock()
	s.stats.Objects++
	s.stats.Bytes += size
	s.fails = 0
	s.mu.Unlock()
}

// failed records a failure of s: it rests, longer with each failure in a
// row, while its work goes to the other sources.
func (p *Pool) failed(s *source, h resources.Hash, err error) {
	if errors.Is(err, ErrCorrupt) || errors.Is(err, ErrNotPublic) {
		p.demote(s, h, err)
		return
	}
	s.mu.Lock()
	s.stats.Failures++
	now := time.Now()
	if now.Before(s.restUntil) {
		// Another request of the same outage (they fail together when
		// a mirror dies): it is resting already.
		s.mu.Unlock()
		return
	}
	s.fails++
	rest := min(p.opts.BackoffMin<<min(s.fails-1, 16), p.opts.BackoffMax)
	s.restUntil = now.Add(rest)
	first := s.fails == 1
	s.mu.Unlock()
	if first {
		p.log.Warn("mirror failed; fetching from the other sources meanwhile", "mirror", s.base, "object", h.Short(), "err", err, "retry_in", rest)
	} else {
		p.log.Debug("mirror failed again", "mirror", s.base, "object", h.Short(), "err", err, "retry_in", rest)
	}
}

// demote stops using s for the session: it sent bytes that do not verify.
func (p *Pool) demote(s *source, h resources.Hash, err error) {
	s.mu.Lock()
	was := s.stats.Demoted
	s.stats.Demoted = true
	s.stats.Failures++
	s.mu.Unlock()
	switch {
	case was:
	case errors.Is(err, ErrNotMirror):
		// The operator's to fix (the server's start-up check tells
		// them); the player loses nothing.
		p.log.Info("mirror is not a published voxsync mirror; not using it this session", "mirror", s.base, "err", err)
	case errors.Is(err, ErrNotPublic):
		p.log.Error("mirror refused: the game server is on a public address and this mirror is not; not using it this session", "mirror", s.base, "err", err)
	default:
		p.log.Error("mirror sent corrupt data; not using it again this session", "mirror", s.base, "object", h.Short(), "err", err)
	}
}
