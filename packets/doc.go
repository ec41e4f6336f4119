// Package packets is the binary wire format between game server and client:
// one packet per WebSocket binary message, a type byte followed by fields.
//
// It encodes and decodes, and nothing else: no I/O, no state. Decoding checks
// every length and count against a cap before allocating and returns a
// *Error (matching the sentinels below with errors.Is) for truncated input,
// trailing bytes, unknown types and out-of-range values; it never panics.
// It imports only resources, the shared vocabulary of hashes, types and
// references, so both ends validate names by one set of rules.
//
// # Encoding
//
// Fixed-width integers are little-endian. Counts and string lengths are
// uvarints (encoding/binary) in their shortest form; a longer encoding of
// the same number is rejected so every packet has exactly one encoding. A
// str is a uvarint length then that many UTF-8 bytes. A hash is 32 raw bytes.
//
// # Protocol flow
//
//	client                                   server
//	Hello{version, uuid, caps, token}  ───▶
//	                                   ◀───  Welcome{version, session, caps, limits}
//	                                         (or Disconnect{VersionMismatch, …})
//	                                   ◀───  Bind{(type,id,domain,key,hash,size)…}
//	                                   ◀───  BindsDone{0}      (the join's set is complete)
//	Move{seq 1, position}              ───▶
//	                                   ◀───  Lost{…}, Bind{…}, BindsDone{1}
//	ResourceRequest{hash…}             ───▶  (hashes not in any local cache)
//	                                   ◀───  InitResSend{stream, hash, size, range, …}
//	                                   ◀───  ChunkSend{stream, offset, data}…
//	                                   ◀───  ResourceError{hash, code, msg}
//	ResourceCancel{hash…}              ───▶
//	Disconnect{code, reason}           ◀──▶
//
// The first three bytes of Hello and Welcome (type, u16 version) and the
// whole Disconnect layout are the same in every version, so peers of
// different versions can always refuse each other with a reason.
//
// # Version history
//
//	1: first version.
//	2: BindsDone marks the end of the Binds for the join and for each Move
//	   (Move gains a seq); Welcome carries capabilities, the pending-request
//	   limit and the ping interval; InitResSend echoes the stream's range;
//	   unknown ResourceError and Disconnect codes decode.
package packets
