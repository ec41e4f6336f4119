package packets

import (
	"encoding/binary"
	"math"
	"strconv"
	"unicode/utf8"

	"github.com/voxsync/voxsync/resources"
)

// decoder reads fields from one packet. The first failure is kept in err and
// every later read returns zero values, so a decode function reads straight
// through and checks once at the end.
type decoder struct {
	b     []byte
	off   int
	typ   Type
	err   *Error
	field string // the field being read, for error messages
	entry int    // the entry index field belongs to, or -1
}

// at names the field being read inside entry i of a repeated section.
func (d *decoder) at(i int, field string) {
	d.entry, d.field = i, field
}

func (d *decoder) fail(sentinel error, format string, args ...any) {
	if d.err == nil {
		field := d.field
		if d.entry >= 0 {
			field = "entry " + strconv.Itoa(d.entry) + " " + field
		}
		d.err = errorf(d.typ, field, sentinel, format, args...)
	}
}

func (d *decoder) take(n int) []byte {
	if d.err != nil {
		return nil
	}
	if n < 0 || len(d.b)-d.off < n {
		d.fail(ErrTruncated, "need %d bytes, have %d", n, len(d.b)-d.off)
		return nil
	}
	s := d.b[d.off : d.off+n : d.off+n]
	d.off += n
	return s
}

func (d *decoder) remaining() int { return len(d.b) - d.off }

func (d *decoder) u8() uint8 {
	if s := d.take(1); s != nil {
		return s[0]
	}
	return 0
}

func (d *decoder) u16() uint16 {
	if s := d.take(2); s != nil {
		return binary.LittleEndian.Uint16(s)
	}
	return 0
}

func (d *decoder) u32() uint32 {
	if s := d.take(4); s != nil {
		return binary.LittleEndian.Uint32(s)
	}
	return 0
}

func (d *decoder) u64() uint64 {
	if s := d.take(8); s != nil {
		return binary.LittleEndian.Uint64(s)
	}
	return 0
}

func (d *decoder) f32() float32 {
	v := math.Float32frombits(d.u32())
	if d.err == nil && (math.IsNaN(float64(v)) || math.IsInf(float64(v), 0)) {
		d.fail(ErrInvalidValue, "not a finite number")
	}
	return v
}

func (d *decoder) f64() float64 {
	v := math.Float64frombits(d.u64())
	if d.err == nil && (math.IsNaN(v) || math.IsInf(v, 0)) {
		d.fail(ErrInvalidValue, "not a finite number")
	}
	return v
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b[d.off:])
	switch {
	case n == 0:
		d.fail(ErrTruncated, "uvarint cut short")
		return 0
	case n < 0:
		d.fail(ErrInvalidValue, "uvarint overflows 64 bits")
		return 0
	case n > 1 && d.b[d.off+n-1] == 0:
		d.fail(ErrInvalidValue, "uvarint not in shortest form")
		return 0
	}
	d.off += n
	return v
}

// count reads an element count, checking it against max and against the
// bytes left (each element needs at least minSize bytes) before anything is
// allocated from it.
func (d *decoder) count(max int, minSize int) int {
	n := d.uvarint()
	if d.err != nil {
		return 0
	}
	if n > uint64(max) {
		d.fail(ErrTooLarge, "count %d over limit %d", n, max)
		return 0
	}
	if n*uint64(minSize) > uint64(d.remaining()) {
		d.fail(ErrTruncated, "count %d needs at least %d bytes, have %d", n, n*uint64(minSize), d.remaining())
		return 0
	}
	return int(n)
}

func (d *decoder) str(max int) string {
	n := d.uvarint()
	if d.err != nil {
		return ""
	}
	if n > uint64(max) {
		d.fail(ErrTooLarge, "string length %d over limit %d", n, max)
		return ""
	}
	s := d.take(int(n))
	if s == nil {
		return ""
	}
	if !utf8.Valid(s) {
		d.fail(ErrInvalidValue, "not valid UTF-8")
		return ""
	}
	return string(s)
}

func (d *decoder) hash() resources.Hash {
	var h resources.Hash
	copy(h[:], d.take(resources.HashSize))
	return h
}

func (d *decoder) assetType() resources.Type {
	t := resources.Type(d.u8())
	if d.err == nil && !t.Valid() {
		d.fail(ErrInvalidValue, "asset type %d not in 0..%d", uint8(t), resources.NumTypes-1)
	}
	return t
}

func (d *decoder) ref() resources.Ref {
	field := d.field
	d.field = field + " domain"
	dom := d.str(resources.MaxDomainLen)
	d.field = field + " key"
	key := d.str(resources.MaxKeyLen)
	d.field = field
	r := resources.Ref{Domain: dom, Key: key}
	if d.err == nil {
		if err := r.Validate(); err != nil {
			d.fail(ErrInvalidValue, "%v", err)
		}
	}
	return r
}

// finish reports trailing bytes or the first error.
func (d *decoder) finish() error {
	if d.err == nil && d.remaining() != 0 {
		d.field, d.entry = "", -1
		d.fail(ErrTrailingBytes, "%d bytes", d.remaining())
	}
	if d.err != nil {
		return d.err
	}
	return nil
}

// Encoding helpers. Encoders do not validate: what they are given comes from
// our own validated state, and the decoder on the other side checks anyway.

func appendU16(b []byte, v uint16) []byte { return binary.LittleEndian.AppendUint16(b, v) }
func appendU32(b []byte, v uint32) []byte { return binary.LittleEndian.AppendUint32(b, v) }
func appendU64(b []byte, v uint64) []byte { return binary.LittleEndian.AppendUint64(b, v) }
func appendUvarint(b []byte, v uint64) []byte {
	return binary.AppendUvarint(b, v)
}
func appendStr(b []byte, s string) []byte {
	return append(appendUvarint(b, uint64(len(s))), s...)
}
func appendRef(b []byte, r resources.Ref) []byte {
	return appendStr(appendStr(b, r.Domain), r.Key)
}
func appendF32(b []byte, v float32) []byte { return appendU32(b, math.Float32bits(v)) }
func appendF64(b []byte, v float64) []byte { return appendU64(b, math.Float64bits(v)) }
