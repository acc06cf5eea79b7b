// Package cluster makes several cim nodes one broker with no external
// component: gossip membership (hashicorp/memberlist), a cluster-wide
// table of session owners, each node's live subscription filters, and one
// persistent peer-link TCP connection per node pair for forwarded publishes
// and broker RPCs. It imports nothing of this project: the broker plugs in
// through the delegates (member_delegate.go, ownership_delegate.go,
// interest_delegate.go, publish_delegate.go, forward_delegate.go,
// request_delegate.go) and calls the Cluster's methods.
//
//	         gossip (UDP packets + TCP push/pull, AES-GCM, cluster label)
//	node A <──────────────────────────────────────────────────────> node B
//	  │  membership · metadata · ownership claims · interest deltas  │
//	  │  full states (own entries only) every PushPullInterval       │
//	  │                                                              │
//	  └─────────────── peer link (TCP, A < B dials) ─────────────────┘
//	     hello/auth (HMAC of the secret) · publish · ack · request · response
//
// What travels where:
//   - memberlist carries membership, node metadata (Meta: MQTT, native,
//     HTTP and peer-link addresses), ownership claims/releases and interest
//     deltas as retransmit-limited broadcasts (broadcast.go), and each
//     node's full state in push/pull (state.go). Never message payloads.
//   - peer links carry this package's frames (frame.go): forwarded
//     publishes, cumulative acks for QoS 1/2 (sent once the PublishDelegate
//     returned, or, for an AsyncPublishDelegate, once it called done: the
//     receiver stored the message), requests and responses with opaque
//     broker bodies, pings.
//
// Ownership (ownership.go): key -> (node, epoch). Epochs are hybrid
// logical clock values (epoch.go), so the newer claim wins everywhere and a
// restarted node's claims are newer than its old ones. A node is
// authoritative only for its own entries: its full state replaces what
// others hold for it.
//
// Interest (interest.go): per node, a last-writer-wins set of filters
// with versions from the same clock; deltas and full states may arrive in
// any order and still converge.
//
// Threading: every method of Cluster is safe for concurrent use and, except
// Call, SetMeta and Close, never blocks (the broker calls it from its event
// loops). Delegates are called on the cluster's single event goroutine
// (membership, ownership, interest: in order) or on a peer link's reader
// goroutine (publishes, acks, requests, responses); see each delegate's
// file. Lock order: memberlist's node lock → memberTable.mu / owners.mu /
// interest.mu → notifier.mu; links.mu → link.mu. No lock of this package is
// held while a delegate runs.
package cluster
