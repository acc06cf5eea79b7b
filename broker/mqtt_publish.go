package broker

import (
	"strings"

	"github.com/cimgo/cim/broker/mqtt"
	"github.com/cimgo/cim/broker/topic"
	"github.com/mochi-mqtt/server/v2/packets"
)

// handlePublish routes an inbound PUBLISH and acknowledges it. Loop only.
func (c *mqttConn) handlePublish(pk *packets.Packet) {
	v := c.version
	if v >= 5 {
		if code := pk.PublishValidate(c.srv.opts.TopicAliasMaximum); code != packets.CodeSuccess {
			c.fail(code)
			return
		}
	} else if pk.FixedHeader.Qos > 0 && pk.PacketID == 0 {
		c.fail(packets.ErrProtocolViolationNoPacketID)
		return
	}
	name := pk.TopicName
	if a := pk.Properties.TopicAlias; v >= 5 && a > 0 {
		if name != "" {
			if c.aliasIn == nil {
				c.aliasIn = make([]string, c.srv.opts.TopicAliasMaximum+1)
			}
			c.aliasIn[a] = strings.Clone(name)
		} else if c.aliasIn == nil || c.aliasIn[a] == "" {
			c.fail(packets.ErrProtocolViolationNoTopic) // [MQTT-3.3.2-8]
			return
		} else {
			name = c.aliasIn[a]
		}
	}
	if err := topic.ValidName(name); err != nil {
		c.fail(packets.ErrTopicNameInvalid)
		return
	}
	if !c.srv.publishAllowed(&c.transport, len(pk.Payload)) { // max_publish_rate (limits.go)
		c.close(reasonProtocolError, packets.ErrMessageRateTooHigh) // v5 DISCONNECT 0x96; v3 just closes
		return
	}
	c.srv.stats.MessagesIn.Add(1)
	qos, pid := pk.FixedHeader.Qos, pk.PacketID
	s := c.sess
	if qos == 2 {
		s.mu.Lock()
		_, dup := s.rx[pid]
		if !dup && len(s.rx) >= int(c.srv.opts.ReceiveMaximum) {
			s.mu.Unlock()
			c.fail(packets.ErrReceiveMaximum) // [MQTT-3.3.4-9]
			return
		}
		if !dup {
			if s.rx == nil {
				s.rx = make(map[uint16]struct{})
			}
			s.rx[pid] = struct{}{}
		}
		s.mu.Unlock()
		if dup {
			// Already routed: exactly once means acknowledge again only [MQTT-4.3.3-10].
			c.appendRaw(func(b []byte) []byte { return mqtt.AppendAck(b, v, packets.Pubrec, pid, 0) })
			return
		}
	}
	if !c.srv.auth.Load().Allowed(c.id, c.clientID, name, AccessWrite) {
		c.srv.log.Debug("publish denied", "client", c.clientID, "topic", name)
		c.ackPublish(qos, pid, packets.ErrNotAuthorized.Code, nil)
		return
	}
	switch {
	case qos == 0 && !pk.FixedHeader.Retain:
		// QoS 0 is encoded into each subscriber's buffer before route
		// returns and kept nowhere: it may alias the read buffer.
		m := &c.loop.msg
		fillMessage(m, pk, name, pk.Payload, c.clientID, c.srv.now())
		c.srv.route(m, s, nil)
		*m = Message{}
	case qos == 0:
		c.srv.route(newMessage(pk, name, c.clientID, c.srv.now()), s, nil)
	default:
		// Acknowledged once stored (persist.go); a v5 publisher learns when
		// nobody was subscribed.
		c.srv.route(newMessage(pk, name, c.clientID, c.srv.now()), s, func(matched int, err error) {
			reason := byte(0)
			if matched == 0 && v >= 5 {
				reason = packets.CodeNoMatchingSubscribers.Code
			}
			c.ackPublish(qos, pid, reason, err)
		})
	}
}

// ackPublish answers a QoS 1/2 PUBLISH with PUBACK/PUBREC. If storing it
// failed, a v5 client gets reason 0x80 and a v3 client is disconnected: it
// is never acknowledged. Any goroutine.
func (c *mqttConn) ackPublish(qos byte, pid uint16, reason byte, err error) {
	if qos == 0 {
		return
	}
	if err != nil {
		c.srv.notePublishFailure(err)
		if c.version < 5 {
			c.kick(reasonProtocolError)
			return
		}
		reason = packets.ErrUnspecifiedError.Code
	}
	typ := packets.Puback
	if qos == 2 {
		typ = packets.Pubrec
		if reason >= 0x80 {
			s := c.sess
			s.mu.Lock()
			delete(s.rx, pid) // [MQTT-4.3.3-4]: a failed PUBREC ends the exchange
			s.mu.Unlock()
		}
	}
	c.appendRaw(func(b []byte) []byte { return mqtt.AppendAck(b, c.version, typ, pid, reason) })
}

// handlePubrec advances an outbound QoS 2 delivery and answers PUBREL.
func (c *mqttConn) handlePubrec(pk *packets.Packet) {
	step := stepReceived
	if pk.ReasonCode >= 0x80 {
		step = stepRefused // the receiver ends the exchange [MQTT-4.3.3-4]
	}
	ok := c.sess.ack(pk.PacketID, step, c.srv.now())
	switch {
	case ok && step == stepReceived:
		c.appendRaw(func(b []byte) []byte { return mqtt.AppendAck(b, c.version, packets.Pubrel, pk.PacketID, 0) })
	case !ok && c.version >= 5:
		c.appendRaw(func(b []byte) []byte {
			return mqtt.AppendAck(b, c.version, packets.Pubrel, pk.PacketID, packets.ErrPacketIdentifierNotFound.Code)
		})
	}
}

// handlePubrel completes an inbound QoS 2 exchange.
func (c *mqttConn) handlePubrel(pk *packets.Packet) {
	s := c.sess
	s.mu.Lock()
	_, ok := s.rx[pk.PacketID]
	delete(s.rx, pk.PacketID)
	s.mu.Unlock()
	reason := byte(0)
	if !ok {
		reason = packets.ErrPacketIdentifierNotFound.Code
	}
	c.appendRaw(func(b []byte) []byte { return mqtt.AppendAck(b, c.version, packets.Pubcomp, pk.PacketID, reason) })
}
