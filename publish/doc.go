// Package publish copies what a game server serves — the winning entries
// of a packs.View — to a mirror: a directory that a static web server
// serves, or a prefix in an S3-compatible bucket, so that HTTP mirrors
// (nginx, MinIO, a CDN) can serve it to clients.
//
// The mirror is content-addressed, under a base (a directory, or
// s3://BUCKET/PREFIX/):
//
//	objects/<hh>/<hex>     raw bytes whose SHA-256 is <hex> (64 lowercase hex
//	                       characters; <hh> its first two): every resource of
//	                       at most packs.ChunkedMin bytes whole, and every
//	                       chunk of every larger one
//	manifests/<hh>/<hex>   the manifest file (manifest.ParseFile) of the large
//	                       resource whose SHA-256 is <hex>
//	voxsync-mirror.json    {"layout":1}, written last
//
// An object never changes once written (its name is its content), so many
// servers and pack versions share one base, identical content is stored
// once, and a cache in front may keep anything under objects/ forever. A
// manifest changes only when a publish of a newer version rewrites it in a
// newer file format (manifest.FileVersion), so it is cached for a day. A manifest is written only after all
// its chunks, and voxsync-mirror.json only after everything, so a base
// without it was never completely published.
//
// This package only ever adds to a base: it never deletes or rewrites an
// object that is there with the right size (a directory's leftover temp
// files excepted), and it never stores bytes it has not just checked
// against the name they are stored under.
package publish
