package broker

import (
	"errors"
	"strings"
	"time"

	"github.com/cimgo/cim/broker/mqtt"
	"github.com/cimgo/cim/broker/topic"
	"github.com/cimgo/cim/storage"
	"github.com/mochi-mqtt/server/v2/packets"
)

// handlePublish routes an inbound PUBLISH and acknowledges it. Loop only.
func (c *mqttConn) handlePublish(pk *packets.Packet) {
	v := c.version
	if v >= 5 {
		if code := pk.PublishValidate(c.loop.srv.opts.TopicAliasMaximum); code != packets.CodeSuccess {
			c.fail(code)
			return
		}
	} else if pk.FixedHeader.Qos > 0 && pk.PacketID == 0 {
		c.fail(packets.ErrProtocolViolationNoPacketID)
		return
	}
	name := pk.TopicName
	if a := pk.Properties.TopicAlias; v >= 5 && a > 0 {
		x := c.rareOnLoop()
		if name != "" {
			if x.aliasIn == nil {
				x.aliasIn = make([]string, c.loop.srv.opts.TopicAliasMaximum+1)
			}
			x.aliasIn[a] = strings.Clone(name)
		} else if x.aliasIn == nil || x.aliasIn[a] == "" {
			c.fail(packets.ErrProtocolViolationNoTopic) // [MQTT-3.3.2-8]
			return
		} else {
			name = x.aliasIn[a]
		}
	}
	if err := topic.ValidName(name); err != nil {
		c.fail(packets.ErrTopicNameInvalid)
		return
	}
	if !c.loop.srv.publishAllowed(&c.transport, len(pk.Payload)) { // max_publish_rate (limits.go)
		c.close(reasonProtocolError, packets.ErrMessageRateTooHigh) // v5 DISCONNECT 0x96; v3 just closes
		return
	}
	c.loop.srv.stats.MessagesIn.Add(1)
	qos, pid := pk.FixedHeader.Qos, pk.PacketID
	s := c.sess
	if delay, target, ok := parseDelayedTopic(name); ok && qos < 2 {
		c.publishDelayed(pk, target, delay)
		return
	}
	if qos == 2 {
		s.mu.Lock()
		_, dup := s.rxLocked()[pid]
		if !dup && len(s.rxLocked()) >= int(c.loop.srv.opts.ReceiveMaximum) {
			s.mu.Unlock()
			c.fail(packets.ErrReceiveMaximum) // [MQTT-3.3.4-9]
			return
		}
		if !dup {
			s.addRxLocked(pid)
		}
		s.mu.Unlock()
		if dup {
			// Already routed: exactly once means acknowledge again only [MQTT-4.3.3-10].
			c.appendRaw(func(b []byte) []byte { return mqtt.AppendAck(b, v, packets.Pubrec, pid, 0) })
			return
		}
	}
	if !c.loop.srv.auth.Load().Allowed(c.id, c.clientID(), name, AccessWrite) {
		c.loop.srv.log.Debug("publish denied", "client", c.clientID(), "topic", name)
		c.ackPublish(qos, pid, packets.ErrNotAuthorized.Code, nil)
		return
	}
	switch {
	case qos == 0 && !pk.FixedHeader.Retain:
		// QoS 0 is encoded into each subscriber's buffer before route
		// returns and kept nowhere: it may alias the read buffer.
		m := &c.loop.msg
		fillMessage(m, pk, name, pk.Payload, c.clientID(), c.loop.srv.now())
		c.loop.srv.route(m, s, nil)
		*m = Message{}
	case qos == 0:
		m := newMessage(pk, name, c.clientID(), c.loop.srv.now())
		m.ID = c.loop.srv.newID() // retained: kept, so named
		c.loop.srv.route(m, s, nil)
	default:
		// Acknowledged once stored (persist.go); a v5 publisher learns when
		// nobody was subscribed. A QoS 2 id is stored with the message, so
		// that a resend after a restart is known [MQTT-4.3.3-10].
		var fill func(*lazyBatch)
		if qos == 2 {
			s.mu.Lock()
			if s.persistentLocked() {
				s.stored = true
				rec := s.recordLocked(0)
				fill = func(lb *lazyBatch) { lb.get().PutSession(rec) }
			}
			s.mu.Unlock()
		}
		m := newMessage(pk, name, c.clientID(), c.loop.srv.now())
		m.ID = c.loop.srv.newID() // a native receiver acknowledges it by id
		c.loop.srv.routeWith(m, s, func(matched int, err error) {
			reason := byte(0)
			if matched == 0 && v >= 5 {
				reason = packets.CodeNoMatchingSubscribers.Code
			}
			c.ackPublish(qos, pid, reason, err)
		}, fill)
	}
}

// ackPublish answers a QoS 1/2 PUBLISH with PUBACK/PUBREC. If storing it
// failed, a v5 client gets reason 0x80 and a v3 client is disconnected: it
// is never acknowledged. Any goroutine.
func (c *mqttConn) ackPublish(qos byte, pid uint16, reason byte, err error) {
	if qos == 0 {
		return
	}
	switch {
	case errors.Is(err, errQueueFull):
		if c.version < 5 {
			c.kick(reasonQuota) // v3 has no way to say it but to disconnect
			return
		}
		reason = packets.ErrQuotaExceeded.Code
	case err != nil:
		c.loop.srv.notePublishFailure(err)
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
			delete(s.rxLocked(), pid) // [MQTT-4.3.3-4]: a failed PUBREC ends the exchange
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
	s := c.sess
	ok := s.ack(pk.PacketID, step, c.loop.srv.now())
	switch {
	case ok && step == stepReceived:
		pid, v := pk.PacketID, c.version
		pubrel := func() { c.appendRaw(func(b []byte) []byte { return mqtt.AppendAck(b, v, packets.Pubrel, pid, 0) }) }
		s.mu.Lock()
		if f := s.inflight[pid]; f != nil {
			s.releasedLocked(f, pubrel) // the PUBREL goes out once its stage is durable
		} else {
			pubrel()
		}
		s.mu.Unlock()
	case !ok && c.version >= 5:
		c.appendRaw(func(b []byte) []byte {
			return mqtt.AppendAck(b, c.version, packets.Pubrel, pk.PacketID, packets.ErrPacketIdentifierNotFound.Code)
		})
	}
}

// handlePubrel completes an inbound QoS 2 exchange.
func (c *mqttConn) handlePubrel(pk *packets.Packet) {
	s := c.sess
	pid, v := pk.PacketID, c.version
	s.mu.Lock()
	_, ok := s.rxLocked()[pid]
	delete(s.rxLocked(), pid)
	reason := byte(0)
	if !ok {
		reason = packets.ErrPacketIdentifierNotFound.Code
	}
	pubcomp := func() {
		c.appendRaw(func(b []byte) []byte { return mqtt.AppendAck(b, v, packets.Pubcomp, pid, reason) })
	}
	if ok {
		// Once PUBCOMP is out the client may reuse the id for a new message:
		// a restart must not remember it by then.
		s.saveNowLocked(pubcomp)
	} else {
		pubcomp()
	}
	s.mu.Unlock()
}

// publishDelayed schedules a publish to "$delayed/<seconds>/<topic>" for
// later (delayed.go) and acknowledges it once stored. Without a store, or
// to a topic the client may not publish to, it is refused. Loop only.
func (c *mqttConn) publishDelayed(pk *packets.Packet, target string, delay time.Duration) {
	srv := c.loop.srv
	qos, pid := pk.FixedHeader.Qos, pk.PacketID
	if err := topic.ValidName(target); err != nil || srv.store == nil {
		c.ackPublish(qos, pid, packets.ErrTopicNameInvalid.Code, nil)
		return
	}
	if !srv.auth.Load().Allowed(c.id, c.clientID(), target, AccessWrite) {
		c.ackPublish(qos, pid, packets.ErrNotAuthorized.Code, nil)
		return
	}
	m := newMessage(pk, target, c.clientID(), srv.now())
	m.ID = srv.newID()
	due := srv.opts.Now().Add(delay).UnixMilli()
	srv.im.delayed.schedule(storeMessage(m), due, func(*storage.Batch) {}, func(err error) { c.ackPublish(qos, pid, 0, err) })
}
