// Package packs loads resource packs — directories of
// assets/<domain>/<type>/<key> files plus an optional pack.toml — and the
// built-in default pack compiled into the binary, layers them by priority,
// hashes every file with SHA-256 in parallel, and builds an immutable View:
// what each (type, domain:key) currently is, and where to read each hash.
//
// A bad file or pack is reported as a Problem and skipped; it never stops
// the rest from loading. Nothing here writes to a pack. Reads go through
// os.Root, so no name or symlink can reach outside a pack directory.
package packs
