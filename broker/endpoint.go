package broker

// endpoint is one client connection of one protocol (MQTT: mqttConn;
// native: nativeConn). It embeds a transport by value, so a connection is
// one allocation. Sessions deliver through it; the transport asks it to
// frame input and to say goodbye.
type endpoint interface {
	// tr returns the endpoint's transport. Any goroutine; never nil.
	tr() *transport

	// frameLen returns the size of the frame starting at b, errIncomplete
	// while its header is not all there, or the protocol's error for a
	// header it refuses (too large, not a login first). It must not wait
	// for the body: a frame too large is refused from its header. Loop only.
	frameLen(b []byte) (int, error)
	// handle applies one whole frame. frame aliases the read buffer (or the
	// transport's partial): copy what outlives the call. Loop only.
	handle(frame []byte)
	// fail answers bad input (a frameLen error) with the protocol's code
	// and closes. Loop only.
	fail(err error)

	// deliver encodes one delivery into the outbound buffer. It reports
	// false when the client can never take the message (larger than it
	// accepts): the session then drops it. A QoS 0 delivery past the
	// outbound bound is dropped and counted, and reports true. Any
	// goroutine; sessions call it with session.mu held for QoS > 0. d.m is
	// shared and immutable: the endpoint copies what it encodes.
	deliver(d delivery) bool
	// goodbye appends the protocol's last words for r (err: the protocol's
	// code for a protocol error, else nil). The transport closes after it.
	// Loop only.
	goodbye(r closeReason, err error)
	// release tells the endpoint its connection is over (the broker is
	// closing it, or its socket closed): detach from the session. Called at
	// least once, acted on once. Loop only.
	release()
}

// delivery is one message as it goes out to one client.
type delivery struct {
	m      *Message
	subIDs []uint32 // subscription identifiers that matched (MQTT 5)
	now    int64    // unix seconds, for the remaining expiry
	tag    uint16   // in-flight tag (MQTT packet id); 0 for QoS 0
	qos    byte
	retain bool
	dup    bool // a resend after a reconnect
	// released: only the second phase is resent (MQTT 5 PUBREL of a QoS 2
	// message whose PUBREC came); m may be nil.
	released bool
	offline  bool // queued while the client was away (native: shown as such)
	// shared, when not nil, holds this routing pass's shared encodings
	// (encode.go); only the routing goroutine delivers with it.
	shared *encodeOnce
}
