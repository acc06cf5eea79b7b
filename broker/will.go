package broker

// Wills: a client's will message is published when its connection ends
// without a DISCONNECT (or with MQTT 5's "disconnect with will"), at once
// or, with a will delay, when the delay passes or the session ends,
// whichever comes first [MQTT-3.1.3-9]; reconnecting before then cancels it.
// registry.detach decides, the deadline wheel (deadline.go) times the delay,
// and the will is routed only after every session and registry lock is
// released: routing takes the lock of each matching session, the will's own
// session included.

// publishWill routes a will message as if its client had published it.
// Any goroutine; never with a session or shard lock held.
func (srv *Server) publishWill(m *Message, now int64) {
	m.ID = srv.newID()
	if m.Expiry != 0 {
		m.Expiry = now + (m.Expiry - m.Created) // the interval runs from publication
	}
	m.Created = now
	srv.route(m, nil, nil)
}
