package cluster

// PublishDelegate receives publishes forwarded by other nodes.
//
// HandlePublish is called on the peer link's reader goroutine: calls for
// one peer are sequential and in the order the peer forwarded them; calls
// for different peers run concurrently. p and its slices and strings are
// the reader's (they alias its read buffer) and valid only until
// HandlePublish (or HandlePublishAsync) returns: copy what is kept
// (Publish.Clone). The broker routes most QoS 0 messages without a copy,
// as it routes a local client's from the connection's read buffer.
//
// Returning means this node has the message: for QoS 1 and 2 the
// acknowledgement to the sender is queued when HandlePublish returns, and a
// frame that is sent again after a reconnect is not handed over twice. It
// may block (e.g. while the broker stores the message), which slows only
// this peer's link: nothing more is read from that peer meanwhile.
type PublishDelegate interface {
	HandlePublish(from string, p *Publish)
}

// AsyncPublishDelegate is a PublishDelegate that acknowledges later: a
// delegate that implements it gets HandlePublishAsync instead of
// HandlePublish. It is called the same way (the link's reader goroutine,
// in order per peer) but must not block: it calls done (from any
// goroutine, once) when this node has the message, e.g. once the broker
// stored it. Acknowledgements go to the sender cumulatively, so a message
// is acknowledged only when it and every earlier one from that peer are
// done; meanwhile the link goes on reading, so the peer's stream is not
// held to one message per store round trip. done is nil for QoS 0.
type AsyncPublishDelegate interface {
	HandlePublishAsync(from string, p *Publish, done func())
}

// PublishBatcher is an optional extension of a PublishDelegate: the
// link's reader brackets the publishes it hands over from one read of the
// connection (at most publishBatchMax in a row, and never a request or
// response inside) with PublishBatchBegin and PublishBatchEnd, on the
// reader goroutine, so that the delegate can hold work for the batch (the
// broker wakes each event loop once per batch, not once per message).
type PublishBatcher interface {
	PublishBatchBegin(from string)
	PublishBatchEnd(from string)
}

// publishBatchMax bounds a PublishBatcher's batch, and so how long it
// holds its work: 64 publishes are ~100 µs of the reader's time.
const publishBatchMax = 64
