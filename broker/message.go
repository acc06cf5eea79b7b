package broker

import (
	"unsafe"

	"github.com/cimgo/cim/broker/mqtt"
	"github.com/mochi-mqtt/server/v2/packets"
)

// Message is one published message as routed: immutable once routed and
// shared by every session it is delivered to. It owns its bytes (never
// aliases a connection's read buffer).
type Message struct {
	ID      uint64 // server-assigned, unique per node run
	Topic   string
	Payload []byte
	// Props is the v5 property block (content type, response topic,
	// correlation data, payload format, user properties) encoded once, or
	// nil. Expiry, topic alias and subscription ids are added per delivery.
	Props []byte
	From  string // publisher's client id ("" for the server itself)
	// Origin is the node the message was published on, "" for this one; a
	// message from a peer is never forwarded again.
	Origin string
	// Sender and SenderName name a native user who sent it (0, "": an MQTT
	// client, named by From).
	Sender     uint64
	SenderName string
	Created    int64 // unix seconds
	Expiry     int64 // unix seconds, 0 = never
	QoS        byte
	Retain     bool
}

// expired reports whether m's expiry has passed at now (unix seconds).
func (m *Message) expired(now int64) bool { return m.Expiry != 0 && now >= m.Expiry }

// newMessage copies a decoded PUBLISH (whose strings alias the read buffer)
// into a Message that owns its bytes, in one allocation for topic+payload.
func newMessage(pk *packets.Packet, topic, from string, now int64) *Message {
	buf := make([]byte, len(topic)+len(pk.Payload))
	copy(buf, topic)
	copy(buf[len(topic):], pk.Payload)
	m := new(Message)
	fillMessage(m, pk, unsafeString(buf[:len(topic)]), buf[len(topic):], from, now)
	return m
}

// fillMessage sets m from a decoded PUBLISH with the given topic and payload
// (owned or not: the caller decides).
func fillMessage(m *Message, pk *packets.Packet, topic string, payload []byte, from string, now int64) {
	*m = Message{
		Topic:   topic,
		Payload: payload,
		From:    from,
		Created: now,
		QoS:     pk.FixedHeader.Qos,
		Retain:  pk.FixedHeader.Retain,
	}
	if pk.ProtocolVersion >= 5 {
		p := &pk.Properties
		if p.MessageExpiryInterval > 0 {
			m.Expiry = now + int64(p.MessageExpiryInterval)
		}
		if p.PayloadFormatFlag || p.ContentType != "" || p.ResponseTopic != "" || len(p.CorrelationData) > 0 || len(p.User) > 0 {
			fwd := packets.Properties{
				PayloadFormat:     p.PayloadFormat,
				PayloadFormatFlag: p.PayloadFormatFlag,
				ContentType:       p.ContentType,
				ResponseTopic:     p.ResponseTopic,
				CorrelationData:   p.CorrelationData,
				User:              p.User,
			}
			m.Props = mqtt.AppendProperties(nil, &fwd, packets.Publish)
		}
	}
}

// unsafeString aliases b, which must never change afterwards.
func unsafeString(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }

// appendDeliveryProps appends the per-delivery v5 properties: remaining
// message expiry, topic alias and subscription identifiers.
func appendDeliveryProps(dst []byte, m *Message, now int64, alias uint16, subIDs []uint32) []byte {
	if m.Expiry != 0 {
		left := m.Expiry - now
		if left < 1 {
			left = 1
		}
		dst = append(dst, packets.PropMessageExpiryInterval, byte(left>>24), byte(left>>16), byte(left>>8), byte(left)) // [MQTT-3.3.2-6]
	}
	if alias != 0 {
		dst = append(dst, packets.PropTopicAlias, byte(alias>>8), byte(alias))
	}
	for _, id := range subIDs {
		dst = append(dst, packets.PropSubscriptionIdentifier)
		dst = mqtt.AppendVBI(dst, int(id))
	}
	return dst
}
