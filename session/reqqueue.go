package session

// reqQueue is one priority class's requests waiting for a stream, in
// order, in a ring that grows by doubling and shrinks as it drains. A
// slice popped from the front and appended to at the back reallocates as
// it goes and keeps up to its length again as slack; with a thousand
// clients each queueing a thousand requests that slack was tens of
// megabytes of the server's memory.
type reqQueue struct {
	buf     []queued // len is 0 or a power of two
	head, n int
}

const minQueueRing = 16

func (q *reqQueue) len() int { return q.n }

func (q *reqQueue) push(x queued) {
	if q.n == len(q.buf) {
		q.resize(max(minQueueRing, 2*len(q.buf)))
	}
	q.buf[(q.head+q.n)&(len(q.buf)-1)] = x
	q.n++
}

// pop removes and returns the oldest request; the queue must not be empty.
func (q *reqQueue) pop() queued {
	x := q.buf[q.head]
	q.buf[q.head] = queued{} // drop the entry pointer
	q.head = (q.head + 1) & (len(q.buf) - 1)
	q.n--
	q.shrink()
	return x
}

// filter keeps, in order, the requests keep reports true for.
func (q *reqQueue) filter(keep func(queued) bool) {
	kept := 0
	for i := range q.n {
		x := q.buf[(q.head+i)&(len(q.buf)-1)]
		if keep(x) {
			q.buf[(q.head+kept)&(len(q.buf)-1)] = x
			kept++
		}
	}
	for i := kept; i < q.n; i++ {
		q.buf[(q.head+i)&(len(q.buf)-1)] = queued{}
	}
	q.n = kept
	q.shrink()
}

// reset empties the queue and lets its ring go.
func (q *reqQueue) reset() { *q = reqQueue{} }

func (q *reqQueue) shrink() {
	switch {
	case q.n == 0:
		q.reset()
	case len(q.buf) > minQueueRing && q.n <= len(q.buf)/4:
		q.resize(len(q.buf) / 2)
	}
}

func (q *reqQueue) resize(size int) {
	buf := make([]queued, size)
	for i := range q.n {
		buf[i] = q.buf[(q.head+i)&(len(q.buf)-1)]
	}
	q.buf, q.head = buf, 0
}
