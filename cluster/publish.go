package cluster

// Publish is a message forwarded to another node over a peer link. The
// cluster carries every field verbatim and interprets only QoS (1 and 2 are
// acknowledged and resent after a reconnect; 0 is sent at most once).
type Publish struct {
	Topic   string
	Payload []byte
	// QoS 0, 1 or 2.
	QoS    byte
	Retain bool
	// Props is the broker's encoded property block (opaque here).
	Props []byte
	// Sender is the publisher's client or user id.
	Sender string
	// ID is the broker's message id; NotifyForwarded reports it back.
	ID uint64
	// Created and Expiry are the broker's timestamps (cim: Unix seconds,
	// Expiry 0 = never); carried verbatim.
	Created, Expiry int64
	// Origin is the node where the publish entered the cluster (Forward
	// sets it to this node when empty). A node never forwards a publish
	// whose Origin is another node: the broker's rule, marked here.
	Origin string
}

// size is what p counts against a link's queue bound.
func (p *Publish) size() int {
	return len(p.Topic) + len(p.Payload) + len(p.Props) + len(p.Sender) + len(p.Origin) + 48
}
