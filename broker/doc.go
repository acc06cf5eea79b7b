// Package broker is cim's broker core: the gnet event handler, connections,
// sessions, routing, QoS and in-flight windows, retained messages, wills,
// keepalive and session takeover.
//
// The model is protocol-neutral. A session is a subscriber identity (an MQTT
// client id, later a native user) that outlives its connections; a conn is one
// socket served by a gnet event loop and speaking one protocol. Routing
// matches a Message against the subscription trie and hands it to each
// matching session, which sends it on its conn or queues it.
//
//	publisher conn (loop A)            subscriber session        conn (loop B)
//	OnTraffic ─ decode ─ route ─┬─▶ deliver: pid, inflight ─▶ out buffer ─┐
//	                            └─▶ ...                                   │
//	loop B: mailbox of dirty conns ◀── Execute (once per batch) ◀─────────┘
//	        flush: one write per conn per batch
//
// Threading (runtime rules of DESIGN.md):
//   - Fields of conn marked "loop" are touched only on the conn's event loop.
//   - conn.mu guards the outbound buffer and the outbound topic aliases; any
//     goroutine may append a packet to a conn.
//   - session.mu guards the session's conn pointer, in-flight window, queue
//     and packet ids; deliveries from any loop take it.
//   - Lock order: registry shard → session.mu → conn.mu → loop.mu.
//   - Routing (route, publishWill, sendRetained) takes session.mu of every
//     matching session, the publisher's own included: it must never run
//     with a shard lock or any session.mu held. Code under those locks that
//     decides to publish (a will at disconnect or expiry) returns the
//     message and routes it after unlocking.
//   - The subscription trie and retained index lock themselves.
//
// Nothing on an event loop blocks: password checks run on a goroutine and
// resume the CONNECT on the loop; no disk or network call is made there.
package broker
