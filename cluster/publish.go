package cluster

import "unsafe"

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

// Clone is p with its bytes in memory of its own (one allocation), for a
// PublishDelegate that keeps a publish past the call.
func (p *Publish) Clone() Publish {
	c := *p
	buf := make([]byte, 0, len(p.Topic)+len(p.Payload)+len(p.Props)+len(p.Sender)+len(p.Origin))
	take := func(b []byte) []byte {
		if len(b) == 0 {
			return nil // as the decoder reads an empty bin
		}
		start := len(buf)
		buf = append(buf, b...)
		return buf[start:len(buf):len(buf)]
	}
	str := func(s string) string {
		if s == "" {
			return ""
		}
		start := len(buf)
		buf = append(buf, s...)
		return unsafe.String(unsafe.SliceData(buf[start:]), len(s))
	}
	c.Topic, c.Payload, c.Props, c.Sender, c.Origin = str(p.Topic), take(p.Payload), take(p.Props), str(p.Sender), str(p.Origin)
	return c
}
