package packets

import (
	"errors"
	"fmt"
)

// Sentinels for the ways a packet can be malformed; a decoding error matches
// exactly one of them with errors.Is.
var (
	ErrTruncated     = errors.New("truncated packet")
	ErrTrailingBytes = errors.New("trailing bytes after packet")
	ErrUnknownType   = errors.New("unknown packet type")
	ErrTooLarge      = errors.New("length or count over limit")
	ErrInvalidValue  = errors.New("invalid field value")
)

// Error describes where decoding failed. The session layer turns it into a
// Disconnect whose reason is Error().
type Error struct {
	Packet Type   // the packet being decoded; 0 when the type byte itself is bad
	Field  string // which field, e.g. "entry 3 key"
	Err    error  // one of the sentinels above
	Detail string // optional: why the value is invalid
}

func (e *Error) Error() string {
	s := "decode " + e.Packet.String()
	if e.Field != "" {
		s += " " + e.Field
	}
	s += ": " + e.Err.Error()
	if e.Detail != "" {
		s += ": " + e.Detail
	}
	return s
}

func (e *Error) Unwrap() error { return e.Err }

func errorf(p Type, field string, sentinel error, format string, args ...any) *Error {
	e := &Error{Packet: p, Field: field, Err: sentinel}
	if format != "" {
		e.Detail = fmt.Sprintf(format, args...)
	}
	return e
}
