package broker

import "sync/atomic"

// Stats are the broker's counters, all atomic; read with Snapshot.
type Stats struct {
	ClientsConnected atomic.Int64
	ClientsTotal     atomic.Int64 // connections accepted
	MessagesIn       atomic.Int64 // PUBLISH received
	MessagesOut      atomic.Int64 // PUBLISH sent
	BytesIn          atomic.Int64
	BytesOut         atomic.Int64
	Dropped          atomic.Int64 // QoS 0 dropped at a full outbound buffer, or too large for the client
	QueueDropped     atomic.Int64 // QoS 1/2 dropped from a full session queue (memory-only sessions, or the store's cap)
	QueueRejected    atomic.Int64 // QoS 1/2 the store refused for a full session queue (reject-new)
	Expired          atomic.Int64 // messages whose expiry passed before delivery
	Retained         atomic.Int64 // retained messages held
	Sessions         atomic.Int64 // sessions held, online or not
	Subscriptions    atomic.Int64
	ProtocolErrors   atomic.Int64 // connections closed for bad input
	InputTimeouts    atomic.Int64 // connections closed for not finishing a packet within PacketTimeout
	InputShed        atomic.Int64 // connections closed because unfinished input passed MaxPartialBytes
	StoreErrors      atomic.Int64 // writes the store refused or failed (retried or refused to the client)

	// Guard rails and connection events (limits.go, bridge.go).
	RefusedConnections      atomic.Int64 // CONNECTs refused by max_connections
	RefusedConnectionsPerIP atomic.Int64 // CONNECTs refused by max_connections_per_ip
	RefusedSubscriptions    atomic.Int64 // filters refused by max_subscriptions_per_client
	RateLimited             atomic.Int64 // connections closed for publishing over max_publish_rate / max_publish_bytes_rate
	AuthFailures            atomic.Int64 // logins refused (bad credentials)
	TLSHandshakeErrors      atomic.Int64 // TLS connections that failed their handshake
	LogsSuppressed          atomic.Int64 // info lines dropped by log_rate
}

// StatsSnapshot is a copy of Stats at one moment.
type StatsSnapshot struct {
	ClientsConnected, ClientsTotal, MessagesIn, MessagesOut, BytesIn, BytesOut       int64
	Dropped, QueueDropped, QueueRejected, Expired, Retained, Sessions, Subscriptions int64
	ProtocolErrors, InputTimeouts, InputShed, StoreErrors                            int64

	RefusedConnections, RefusedConnectionsPerIP, RefusedSubscriptions, RateLimited int64
	AuthFailures, TLSHandshakeErrors, LogsSuppressed                               int64
}

// Snapshot copies the counters.
func (s *Stats) Snapshot() StatsSnapshot {
	return StatsSnapshot{
		ClientsConnected: s.ClientsConnected.Load(), ClientsTotal: s.ClientsTotal.Load(),
		MessagesIn: s.MessagesIn.Load(), MessagesOut: s.MessagesOut.Load(),
		BytesIn: s.BytesIn.Load(), BytesOut: s.BytesOut.Load(),
		Dropped: s.Dropped.Load(), QueueDropped: s.QueueDropped.Load(), QueueRejected: s.QueueRejected.Load(), Expired: s.Expired.Load(),
		Retained: s.Retained.Load(), Sessions: s.Sessions.Load(), Subscriptions: s.Subscriptions.Load(),
		ProtocolErrors: s.ProtocolErrors.Load(), InputTimeouts: s.InputTimeouts.Load(), InputShed: s.InputShed.Load(),
		StoreErrors: s.StoreErrors.Load(),

		RefusedConnections: s.RefusedConnections.Load(), RefusedConnectionsPerIP: s.RefusedConnectionsPerIP.Load(),
		RefusedSubscriptions: s.RefusedSubscriptions.Load(), RateLimited: s.RateLimited.Load(),
		AuthFailures: s.AuthFailures.Load(), TLSHandshakeErrors: s.TLSHandshakeErrors.Load(), LogsSuppressed: s.LogsSuppressed.Load(),
	}
}
