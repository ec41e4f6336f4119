package main

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"

	"github.com/voxsync/voxsync/assetsmgr"
	"github.com/voxsync/voxsync/internal/bytesize"
	"github.com/voxsync/voxsync/resources"
	"github.com/voxsync/voxsync/session"
)

// reporter shows progress. On a terminal it is one line, drawn by mpb,
// that fits the terminal's width and is redrawn in place: resources and
// bytes done of the total, the download rate, the time left and the
// largest resource still to come; messages and log lines (it is the log's
// writer) are printed above it, and its final state stays on screen
// before the summary. Elsewhere it prints a plain line a second. Without
// -until-synced it also prints every load, loss and replacement.
type reporter struct {
	w        io.Writer
	tty      bool
	quietEvs bool

	p   *mpb.Progress // nil when not a terminal
	bar *mpb.Bar

	mu     sync.Mutex // guards everything below: events arrive on the syncer's goroutine, mpb draws on its own
	bound  map[resources.Key]resources.Binding
	loaded map[resources.Key]bool
	// fetched holds the hashes loaded from the network and netBytes their
	// sizes: what of BytesReceived (with the bytes of large resources kept
	// or copied locally) is finished. The rest is in flight and counts as
	// done too, so a large download moves the line as it arrives.
	fetched  map[resources.Hash]bool
	netBytes int64
	stats    session.Stats
	rate     rateMeter
	last     time.Time // of the last plain progress line
	// shown is the loaded/bound of the last plain line. Once everything
	// bound is loaded and the log says otherwise, a line says so at once:
	// a follower's last word must not be "221/624" (or the "10/10" from
	// before a reload) after a hot reload it finished.
	shown [2]int
	done  bool
}

func newReporter(w *os.File, quietEvents bool) *reporter {
	fi, err := w.Stat()
	r := &reporter{
		w: w, tty: err == nil && fi.Mode()&os.ModeCharDevice != 0, quietEvs: quietEvents,
		bound: make(map[resources.Key]resources.Binding), loaded: make(map[resources.Key]bool),
		fetched: make(map[resources.Hash]bool),
	}
	if r.tty {
		r.p = mpb.New(mpb.WithOutput(w), mpb.WithRefreshRate(100*time.Millisecond))
		r.bar = r.p.New(0, mpb.BarStyle().Lbound("[").Filler("#").Tip("#").Padding(".").Rbound("]"),
			mpb.PrependDecorators(decor.Any(func(decor.Statistics) string { return r.counts() })),
			// The bar keeps minBar columns; the details get the rest.
			mpb.AppendDecorators(decor.Any(func(st decor.Statistics) string { return r.details(st.AvailableWidth - minBar - 2) })),
			mpb.BarWidth(30),
			mpb.BarFillerMiddleware(leaveLastColumn),
		)
	}
	return r
}

// leaveLastColumn narrows the bar by one column, so the line never reaches
// the terminal's last column: a character there leaves the cursor pending
// a wrap, which terminals treat differently; one column short, the redraw
// is the same everywhere.
func leaveLastColumn(base mpb.BarFiller) mpb.BarFiller {
	return mpb.BarFillerFunc(func(w io.Writer, st decor.Statistics) error {
		st.AvailableWidth = max(st.AvailableWidth-1, 0)
		return base.Fill(w, st)
	})
}

// Write prints log output above the progress line.
func (r *reporter) Write(b []byte) (int, error) {
	if r.p != nil {
		if n, err := r.p.Write(b); err == nil {
			return n, nil
		}
	}
	return r.w.Write(b)
}

func (r *reporter) line(s string) { r.Write([]byte(s + "\n")) }

func (r *reporter) event(e session.Event) {
	switch e := e.(type) {
	case session.Bound:
		k := resources.Key{Type: e.Binding.Type, ID: e.Binding.ID}
		r.mu.Lock()
		if old, ok := r.bound[k]; !ok || old.Hash != e.Binding.Hash {
			delete(r.loaded, k)
		}
		r.bound[k] = e.Binding
		r.mu.Unlock()
	case session.Progress:
		r.progress(e.Stats)
	case session.Loaded:
		r.mu.Lock()
		r.loaded[resources.Key{Type: e.Binding.Type, ID: e.Binding.ID}] = true
		if e.Source == assetsmgr.SourceNetwork && !r.fetched[e.Binding.Hash] {
			r.fetched[e.Binding.Hash] = true
			r.netBytes += int64(e.Binding.Size)
		}
		r.mu.Unlock()
		if !e.Replaces.IsZero() {
			r.line(fmt.Sprintf("replaced %s %s: %s → %s", e.Binding.Type, e.Binding.Ref, e.Replaces.Short(), e.Binding.Hash.Short()))
		} else if !r.quietEvs {
			r.line(fmt.Sprintf("loaded %s %s (%s)", e.Binding.Type, e.Binding.Ref, e.Source))
		}
	case session.Lost:
		k := resources.Key{Type: e.Binding.Type, ID: e.Binding.ID}
		r.mu.Lock()
		delete(r.bound, k)
		delete(r.loaded, k)
		r.mu.Unlock()
		if !r.quietEvs {
			r.line(fmt.Sprintf("lost %s %s", e.Binding.Type, e.Binding.Ref))
		}
	case session.BindsDone:
		if e.Complete && !r.quietEvs {
			r.line(fmt.Sprintf("server's bindings complete: %d bound", e.Bound))
		}
	case session.Failed:
		r.line(fmt.Sprintf("FAILED %s %s: %v", e.Binding.Type, e.Binding.Ref, e.Err))
	}
}

func (r *reporter) progress(st session.Stats) {
	r.mu.Lock()
	r.stats = st
	r.rate.add(time.Now(), st.BytesReceived)
	now := [2]int{st.Loaded, st.Bound}
	caughtUp := st.Bound > 0 && st.Loaded == st.Bound
	plain := !r.tty && (time.Since(r.last) >= time.Second || caughtUp && r.shown != now)
	if plain {
		r.last, r.shown = time.Now(), now
	}
	r.mu.Unlock()
	if r.bar != nil {
		r.bar.SetTotal(int64(st.Bound), false)
		r.bar.SetCurrent(int64(st.Loaded))
		return
	}
	if plain {
		r.line("progress: " + r.counts() + " · " + r.details(1<<20))
	}
}

// counts is "loaded/bound".
func (r *reporter) counts() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return fmt.Sprintf("%d/%d", r.stats.Loaded, r.stats.Bound)
}

// minBar is the narrowest the drawn bar gets on a terminal.
const minBar = 10

// details is the rest of the progress line in at most width columns: the
// parts that fit, most important first, so a narrow terminal loses the
// least useful.
func (r *reporter) details(width int) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var total, done int64
	var largest resources.Binding
	all := r.stats.Bound > 0 && r.stats.Loaded == r.stats.Bound // events may lag the stats
	for k, b := range r.bound {
		total += int64(b.Size)
		if all || r.loaded[k] {
			done += int64(b.Size)
		} else if b.Size > largest.Size {
			largest = b
		}
	}
	// Bytes of large resources kept from an earlier run or copied from
	// local chunks are as done as those received: without them a resumed
	// download would read 38 MiB of 200 with 150 already there, and once
	// loaded would hide other downloads' progress.
	if inFlight := r.stats.BytesReceived + r.stats.ChunksResumed + r.stats.FromLocalChunks - r.netBytes; inFlight > 0 {
		done = min(done+inFlight, total)
	}
	parts := []string{bytesize.Format(done) + "/" + bytesize.Format(total)}
	bps := r.rate.perSecond()
	if bps > 0 {
		parts = append(parts, bytesize.Format(int64(bps))+"/s")
	}
	switch {
	case done >= total:
	case bps > 0:
		parts = append(parts, "ETA "+(time.Duration(float64(total-done)/bps*float64(time.Second))).Round(time.Second).String())
	default:
		parts = append(parts, "ETA ?")
	}
	if largest.Size > 0 {
		parts = append(parts, fmt.Sprintf("largest: %s %s", largest.Ref, bytesize.Format(int64(largest.Size))))
	}
	out := ""
	for i, p := range parts {
		next := p
		if i > 0 {
			next = out + " · " + p
		}
		if utf8.RuneCountInString(next) > width {
			break
		}
		out = next
	}
	return out
}

// finish draws the final state of the progress line, with the syncer's
// final stats, and leaves it there.
func (r *reporter) finish(st session.Stats) {
	r.mu.Lock()
	if r.done {
		r.mu.Unlock()
		return
	}
	r.done = true
	r.stats = st
	// The log's last progress line says where it ended, unless the last
	// one printed already does.
	printed := !r.last.IsZero() && r.shown != [2]int{st.Loaded, st.Bound}
	r.mu.Unlock()
	if r.p == nil {
		if printed {
			r.line("progress: " + r.counts() + " · " + r.details(1<<20))
		}
		return
	}
	r.bar.SetTotal(int64(st.Bound), false)
	r.bar.SetCurrent(int64(st.Loaded))
	if st.Bound > 0 && st.Loaded == st.Bound {
		r.bar.SetTotal(-1, true)
	} else {
		r.bar.Abort(false) // stays drawn as it is
	}
	r.p.Wait()
}

// rateMeter is bytes per second over the last few seconds.
type rateMeter struct {
	samples [16]rateSample
	n, next int
}

type rateSample struct {
	at    time.Time
	bytes int64
}

const rateWindow = 3 * time.Second

func (m *rateMeter) add(at time.Time, bytes int64) {
	if m.n > 0 {
		prev := m.samples[(m.next+len(m.samples)-1)%len(m.samples)]
		switch gap := at.Sub(prev.at); {
		case gap < rateWindow/time.Duration(len(m.samples)):
			return // keep the samples spread over the window
		case gap > rateWindow:
			// Idle since (a follower between hot reloads): the rate of
			// this burst is measured from its start, not averaged with
			// the quiet time, which showed a tenth of the real rate and
			// an ETA ten times too long.
			m.n, m.next = 0, 0
		}
	}
	m.samples[m.next] = rateSample{at, bytes}
	m.next = (m.next + 1) % len(m.samples)
	m.n = min(m.n+1, len(m.samples))
}

func (m *rateMeter) perSecond() float64 {
	if m.n < 2 {
		return 0
	}
	newest := m.samples[(m.next+len(m.samples)-1)%len(m.samples)]
	oldest := m.samples[(m.next+len(m.samples)-m.n)%len(m.samples)]
	if d := newest.at.Sub(oldest.at).Seconds(); d > 0 {
		return float64(newest.bytes-oldest.bytes) / d
	}
	return 0
}
