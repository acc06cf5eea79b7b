package broker

// Forwarder carries a message published on this node to the other nodes
// that want it (a cluster's peer links). The broker calls Forward from the
// goroutine that routed the message, often an event loop, for every
// message that originated here (Message.Origin empty) — never for one that
// came from a peer, so nothing is forwarded twice or back.
//
// Forward must only enqueue: never block or wait for I/O on the caller's
// goroutine (one non-blocking write to an idle peer socket is the most it
// may do: cluster/direct.go), never call back into the Server. m is immutable and shared;
// the forwarder may keep it as long as it needs, except a QoS 0 message
// that is not retained: that one may be an event loop's scratch aliasing
// a read buffer (MQTT's handlePublish, the native imSend), valid only
// during the call, so what is kept of it is copied. done, when not nil (QoS
// 1/2 from a client waiting for its acknowledgement), must be called
// exactly once, from any goroutine, when every node it was sent to has
// stored the message (nodes: how many) or with the first error; the
// client's acknowledgement waits for it.
type Forwarder interface {
	Forward(m *Message, done func(nodes int, err error))
}
