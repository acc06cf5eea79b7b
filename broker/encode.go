package broker

import "github.com/cimgo/cim/broker/mqtt"

// encodeOnce is a fan-out's shared encodings (docs/architecture.md, rule 3): one
// routing pass encodes a PUBLISH once per (protocol version, QoS, retain)
// group and every subscriber in the group copies those bytes, patching only
// its packet id. A delivery whose bytes are its own (an MQTT 5 topic alias,
// subscription identifiers) is encoded for itself. It lives in the router
// of one pass, so it is only ever touched by the routing goroutine.
type encodeOnce struct {
	m       *Message
	now     int64
	entries []sharedPublish
	buf     []byte // backing store of every entry's bytes
}

type sharedPublish struct {
	version, qos byte
	retain       bool
	self         bool // native: for the owner of the inbox it was sent to
	off, end     int  // the packet is buf[off:end]
	pidAt        int  // offset of the packet id in it, -1 for QoS 0
}

// reset starts a pass for m at now, keeping the buffers.
func (e *encodeOnce) reset(m *Message, now int64) {
	e.m, e.now = m, now
	e.entries = e.entries[:0]
	e.buf = e.buf[:0]
}

// get returns the shared encoding of e.m for a group (without DUP, packet
// id 0) and where its packet id sits.
func (e *encodeOnce) get(version, qos byte, retain bool) ([]byte, int) {
	for i := range e.entries {
		x := &e.entries[i]
		if x.version == version && x.qos == qos && x.retain == retain {
			return e.buf[x.off:x.end], x.pidAt
		}
	}
	m := e.m
	var extra [160]byte
	props := extra[:0]
	if version >= 5 {
		props = appendDeliveryProps(appendSenderProps(props, m), m, e.now, 0, nil)
	}
	off := len(e.buf)
	var pidAt int
	e.buf, pidAt = mqtt.AppendPublish(e.buf, version, m.Topic, m.Payload, m.Props, props, qos, retain, false, 0)
	if pidAt >= 0 {
		pidAt -= off
	}
	e.entries = append(e.entries, sharedPublish{version: version, qos: qos, retain: retain, off: off, end: len(e.buf), pidAt: pidAt})
	return e.buf[off:], pidAt
}

// nativeGet returns the shared encoding of e.m as a native deliver frame
// for user receiver, which is the same for every native receiver of a
// group (QoS, offline, and whether the receiver owns the inbox it was sent
// to: that one's frame leaves out the receiver).
func (e *encodeOnce) nativeGet(qos byte, offline bool, receiver uint64) ([]byte, error) {
	self := receiver != 0 && inboxUser(e.m.Topic) == receiver
	for i := range e.entries {
		x := &e.entries[i]
		if x.version == nativeVersion && x.qos == qos && x.retain == offline && x.self == self {
			return e.buf[x.off:x.end], nil
		}
	}
	off := len(e.buf)
	out, err := appendNativeDeliver(e.buf, e.m, qos, offline, receiver)
	if err != nil {
		return nil, err
	}
	e.buf = out
	e.entries = append(e.entries, sharedPublish{version: nativeVersion, qos: qos, retain: offline, self: self,
		off: off, end: len(e.buf), pidAt: -1})
	return e.buf[off:], nil
}

// nativeVersion marks native entries among the MQTT versions (3, 4, 5).
const nativeVersion = 0
