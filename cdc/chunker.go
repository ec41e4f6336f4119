package cdc

import (
	"fmt"
	"io"
)

// Chunk is one chunk found in a stream.
type Chunk struct {
	Offset int64
	Data   []byte // valid until the next call to Next
}

// Chunker cuts a stream into chunks. It reads into one buffer of its own
// and hands out chunks that alias it, so cutting allocates nothing per chunk.
// A Chunker is not safe for concurrent use.
type Chunker struct {
	r            io.Reader
	p            Params
	maskS, maskL uint64

	buf        []byte
	start, end int   // buf[start:end] is read and not yet cut
	offset     int64 // the stream offset of buf[start]
	err        error // the read error that stopped filling: io.EOF at the end
}

// New returns a Chunker that cuts r with p. The error is only ever for
// invalid Params.
func New(r io.Reader, p Params) (*Chunker, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	maskS, maskL := maskPair(p.Avg, level)
	return &Chunker{r: r, p: p, maskS: maskS, maskL: maskL, buf: make([]byte, bufferSize(p))}, nil
}

// bufferSize is four times Max, and at least 256 KiB, so that a refill
// reads in large pieces and the bytes moved to the front of the buffer before
// it (less than Max) are a small part of what was cut since the last one.
func bufferSize(p Params) int {
	return max(4*p.Max, 256<<10)
}

// Next returns the next chunk, or io.EOF after the last one; an empty stream
// has no chunks. A read error is returned, wrapped, once the chunks that do
// not depend on the unread bytes have been returned, and on every call after.
func (c *Chunker) Next() (Chunk, error) {
	if c.end-c.start < c.p.Max && c.err == nil {
		c.fill()
	}
	avail := c.buf[c.start:c.end]
	if len(avail) == 0 || (len(avail) < c.p.Max && c.err != io.EOF) {
		// Where the next cut falls depends on up to Max bytes; with fewer
		// and no end of stream, any cut would be a guess.
		return Chunk{}, c.err
	}
	n, _ := cut(avail, c.p.Min, c.p.Avg, c.p.Max, c.maskS, c.maskL, &gear, gearLS)
	ch := Chunk{Offset: c.offset, Data: avail[:n:n]}
	c.start += n
	c.offset += int64(n)
	return ch, nil
}

// maxEmptyReads is how many (0, nil) reads in a row fill takes before giving
// up, as bufio does.
const maxEmptyReads = 100

// fill moves the unread bytes to the front of the buffer and reads until it
// is full or the reader returns an error, which it keeps in c.err.
func (c *Chunker) fill() {
	c.end = copy(c.buf, c.buf[c.start:c.end])
	c.start = 0
	for empty := 0; c.end < len(c.buf); {
		n, err := c.r.Read(c.buf[c.end:])
		c.end += n
		if err == io.EOF {
			c.err = io.EOF
			return
		}
		if err == nil && n == 0 {
			if empty++; empty < maxEmptyReads {
				continue
			}
			err = io.ErrNoProgress
		}
		if err != nil {
			c.err = fmt.Errorf("reading stream at offset %d: %w", c.offset+int64(c.end), err)
			return
		}
		empty = 0
	}
}
