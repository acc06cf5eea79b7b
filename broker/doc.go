// Package broker is cim's broker core: the gnet event handler, transports
// and protocol endpoints, sessions, routing, QoS and in-flight windows,
// retained messages, wills, deadlines and takeover. docs/architecture.md
// draws the whole; this is the map of the package.
//
// A connection is a transport (transport.go: socket, loop, outbound
// buffer, keepalive, partial input, closing) embedded in an endpoint of one
// protocol (endpoint.go; mqtt_conn.go for MQTT). A session (session.go) is a
// subscriber identity keyed by (protocol, id) that outlives its
// connections: subscriptions, the in-flight window (inflight.go) and a
// queue. Routing (route.go) matches a Message against the subscription trie
// and hands it to each matching session, which sends it through its
// endpoint or queues it, then to the Forwarder for other nodes.
//
//	publisher (loop A)                  subscriber session           endpoint (loop B)
//	OnTraffic ─ frame ─ route ─┬─▶ deliver: tag, in flight ─▶ outbound buffer ─┐
//	                           └─▶ ...    (one encoding per group)             │
//	loop B: mailbox of dirty transports ◀── Execute (once per batch) ◀─────────┘
//	        flush: one write per connection per batch
//
// Threading:
//   - Transport and endpoint fields not under a lock are touched only on the
//     connection's event loop.
//   - transport.mu guards the outbound buffer (and MQTT's outbound topic
//     aliases); any goroutine may append to it.
//   - session.mu guards the session's endpoint, window, queue and deadlines;
//     deliveries from any goroutine take it.
//   - Lock order: registry shard → session.mu → transport.mu → loop.mu. The
//     trie, the retained index, filterCounts and deadlines lock themselves.
//   - Routing (route, publishWill, sendRetained) takes session.mu of every
//     matching session, the publisher's own included: it must never run
//     with a shard lock or any session.mu held. Code under those locks that
//     decides to publish (a will at disconnect or expiry) returns the
//     message and routes it after unlocking.
//
// Nothing on an event loop blocks: credential checks and session hand-offs
// run off the loop and resume on it (offloop.go); no disk or network call
// is made there.
package broker
