// Package session runs the two ends of a resource-sync session over a
// WebSocket: the server side (Server, one Client per connection: use
// tracking, Bind/Lost, streaming) and the game client side (Syncer).
//
// Every connection has exactly one reader goroutine and one writer
// goroutine; only the writer touches the socket for writing, and both exit
// when the session closes. Nothing here grows without bound on a peer's
// say-so: queues are capped and a peer that breaks a cap is disconnected
// with a reason.
package session
