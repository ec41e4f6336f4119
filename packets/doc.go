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
//	                                   ◀───  Welcome{version, session, limits}
//	                                         (or Disconnect{VersionMismatch})
//	                                   ◀───  Bind{(type,id,domain,key,hash,size)…}
//	ResourceRequest{hash…}             ───▶  (hashes not in any local cache)
//	                                   ◀───  InitResSend{stream, hash, size, …}
//	                                   ◀───  ChunkSend{stream, offset, data}…
//	                                   ◀───  ResourceError{hash, code, msg}
//	Move{position}                     ───▶  (the world's view changes)
//	                                   ◀───  Lost{(type,id)…}
//	ResourceCancel{hash…}              ───▶
//	Disconnect{code, reason}           ◀──▶
//
// # Version history
//
//	1: first version.
package packets
