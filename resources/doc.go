// Package resources is the domain model shared by the server and the client:
// asset types, per-type resource ids, SHA-256 content hashes, domain:key
// references, bindings, and the per-client use counter that decides when a
// Bind or Lost is sent.
//
// It does no I/O and must never import another package of this module.
package resources
