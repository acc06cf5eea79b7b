package broker

import (
	"github.com/cimgo/cim/broker/mqtt"
	"github.com/mochi-mqtt/server/v2/packets"
)

// mqttConn is an MQTT 3.1, 3.1.1 or 5.0 client connection: the endpoint
// for MQTT (mqtt_connect.go, mqtt_publish.go, mqtt_subscribe.go). Fields
// are touched only on its loop unless they say otherwise.
type mqttConn struct {
	transport

	version   byte // protocol level: 3, 4 or 5 (0 before CONNECT)
	normalEnd bool // DISCONNECT received: no will

	// Set before CONNACK on the loop, read by deliveries under session.mu.
	aliasMaxOut  uint16 // client's Topic Alias Maximum
	maxPacketOut uint32 // client's Maximum Packet Size, 0 = none

	sess *session
	id   *Identity // who logged in (auth.go), read-only
	rare *mqttRare // a will, topic aliases; nil for a connection with neither
}

// mqttRare is what only some MQTT connections need, kept apart so that the
// common one does not carry it (mqttConn stays in a 160 B size class;
// TestIdleConnCost). Deliveries read c.rare (for aliasOut) only when
// aliasMaxOut > 0, and then it was made before the session was attached
// and is never replaced; otherwise only the loop touches it.
type mqttRare struct {
	will      *Message          // CONNECT's will; nil: none
	willDelay uint32            // MQTT 5 Will Delay Interval
	aliasIn   []string          // loop only. inbound topic aliases (v5), made on first use
	aliasOut  map[string]uint16 // REQUIRES: transport.mu held. outbound topic aliases (v5)
}

// rareOnLoop returns c.rare, making it. Loop only.
func (c *mqttConn) rareOnLoop() *mqttRare {
	if c.rare == nil {
		c.rare = &mqttRare{}
	}
	return c.rare
}

// clientID is the client's id once its session is attached, "" before.
func (c *mqttConn) clientID() string {
	if c.sess == nil {
		return ""
	}
	return c.sess.key.id
}

func (c *mqttConn) tr() *transport { return &c.transport }

// frameLen reads an MQTT fixed header. Anything but a CONNECT first is
// refused at its first byte, rather than waiting for a body that may never
// end (HTTP, TLS, noise) [MQTT-3.1.0-1].
func (c *mqttConn) frameLen(b []byte) (int, error) {
	if c.version == 0 && len(b) > 0 && b[0]>>4 != packets.Connect {
		return 0, packets.ErrProtocolViolationRequireFirstConnect
	}
	_, hl, rem, err := mqtt.Header(b)
	switch {
	case err == mqtt.ErrIncomplete:
		return 0, errIncomplete
	case err != nil:
		return 0, err
	case uint64(hl+rem) > uint64(c.loop.srv.opts.MaxPacketSize):
		return 0, packets.ErrPacketTooLarge
	}
	return hl + rem, nil
}

// handle decodes one packet and applies it. Loop only.
func (c *mqttConn) handle(frame []byte) {
	pk := &c.loop.pk
	if _, err := mqtt.Decode(frame, pk, c.version, c.loop.srv.opts.MaxPacketSize); err != nil {
		c.fail(err)
	} else {
		c.apply(pk)
	}
	*pk = packets.Packet{} // drop references into the read buffer
}

// apply applies one decoded packet. Loop only.
func (c *mqttConn) apply(pk *packets.Packet) {
	if c.state == stateActive {
		c.lastSeen = uint32(c.loop.srv.now())
	}
	switch pk.FixedHeader.Type {
	case packets.Connect:
		if c.state != stateNew {
			c.fail(packets.ErrProtocolViolationSecondConnect) // [MQTT-3.1.0-2]
			return
		}
		c.handleConnect(pk)
	case packets.Publish:
		c.handlePublish(pk)
	case packets.Puback:
		c.sess.ack(pk.PacketID, stepAck, c.loop.srv.now())
	case packets.Pubcomp:
		c.sess.ack(pk.PacketID, stepComplete, c.loop.srv.now())
	case packets.Pubrec:
		c.handlePubrec(pk)
	case packets.Pubrel:
		c.handlePubrel(pk)
	case packets.Subscribe:
		c.handleSubscribe(pk)
	case packets.Unsubscribe:
		c.handleUnsubscribe(pk)
	case packets.Pingreq:
		if pk.FixedHeader.Remaining != 0 {
			c.fail(packets.ErrMalformedPacket) // PINGREQ has no body
			return
		}
		c.appendRaw(func(b []byte) []byte { return append(b, packets.Pingresp<<4, 0) })
	case packets.Disconnect:
		c.handleDisconnect(pk)
	default:
		// AUTH without an authentication method, or a server-to-client packet.
		c.fail(packets.ErrProtocolViolation)
	}
}

// appendPacket encodes pk into the outbound buffer. Any goroutine.
func (c *mqttConn) appendPacket(pk *packets.Packet) {
	var err error
	c.appendRaw(func(b []byte) []byte {
		b, err = mqtt.Append(b, pk)
		return b
	})
	if err != nil {
		c.loop.srv.log.Debug("encode", "client", c.clientID(), "type", packets.PacketNames[pk.FixedHeader.Type], "err", err)
	}
}

// fail answers bad input with the spec's code and closes: CONNACK before
// the session exists, DISCONNECT (v5) after. Logged once, at debug.
// Loop only.
func (c *mqttConn) fail(err error) {
	code := mqtt.CodeOf(err)
	c.loop.srv.stats.ProtocolErrors.Add(1)
	c.loop.srv.log.Debug("protocol error", "client", c.clientID(), "remote", c.gc.RemoteAddr(), "code", code.Code, "err", err)
	if pk := &c.loop.pk; c.state == stateNew && c.version == 0 && pk.FixedHeader.Type == packets.Connect && pk.ProtocolVersion != 0 {
		c.connack(pk.ProtocolVersion, code, nil, false)
	}
	c.close(reasonProtocolError, code)
}

// reasonCodes are the MQTT 5 DISCONNECT codes of the close reasons.
var reasonCodes = [...]packets.Code{
	reasonTakenOver:     packets.ErrSessionTakenOver,            // 0x8E [MQTT-3.1.4-3]
	reasonShutdown:      packets.ErrServerShuttingDown,          // 0x8B [MQTT-3.14.2-1]
	reasonKeepalive:     packets.ErrKeepAliveTimeout,            // 0x8D [MQTT-3.1.2-22]
	reasonSlowConsumer:  packets.ErrPendingClientWritesExceeded, // 0x97
	reasonKicked:        packets.ErrAdministrativeAction,        // 0x98
	reasonPacketTimeout: {Code: packets.ErrKeepAliveTimeout.Code, Reason: "packet not finished in time"},
	reasonInputBudget:   {Code: packets.ErrQuotaExceeded.Code, Reason: "too much unfinished input buffered"},
	reasonQuota:         packets.ErrQuotaExceeded,    // 0x97
	reasonNotAuthorized: packets.ErrNotAuthorized,    // 0x87
	reasonProtocolError: packets.ErrUnspecifiedError, // replaced by the error's own code
}

// goodbye sends a v5 client past CONNECT a DISCONNECT saying why; v3 has
// no way to say it. Loop only.
func (c *mqttConn) goodbye(r closeReason, err error) {
	if c.state != stateActive || c.version < 5 {
		return
	}
	code := reasonCodes[r]
	if r == reasonProtocolError && err != nil {
		code = mqtt.CodeOf(err)
	}
	c.appendPacket(&packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Disconnect}, ProtocolVersion: 5, ReasonCode: code.Code})
}

// release detaches c from its session, once: at DISCONNECT, so that a
// reconnect racing the socket's close finds the session as the DISCONNECT
// left it (ended for expiry 0), or else when the broker closes c or the
// socket closes. Loop only.
func (c *mqttConn) release() {
	if c.sess == nil || c.has(fReleased) {
		return
	}
	c.set(fReleased, true)
	c.loop.srv.stats.ClientsConnected.Add(-1)
	c.logDisconnected() // limits.go
	var will *Message
	var delay uint32
	if x := c.rare; x != nil && x.will != nil && !c.normalEnd { // [MQTT-3.1.2-10]
		will, delay = x.will, x.willDelay
	}
	c.loop.srv.sessions.detach(c.sess, c, will, delay, c.loop.srv.now())
}

// deliver encodes a PUBLISH (or, for a released QoS 2 delivery, a PUBREL).
// Any goroutine; under the session's lock for QoS > 0.
func (c *mqttConn) deliver(d delivery) bool {
	if d.released {
		c.appendRaw(func(b []byte) []byte { return mqtt.AppendAck(b, c.version, packets.Pubrel, d.tag, 0) })
		return true
	}
	if d.qos == 0 && c.dropBacklogged() {
		return true
	}
	m := d.m
	// The shared encoding is made before taking c.mu: it is the router's
	// (this goroutine's), and what it depends on of c is fixed once c is
	// connected. A fan-in's subscriber is delivered to by every loop, and
	// encoding under its lock kept the others spinning on it.
	var b []byte
	pidAt := -1
	sh := d.shared
	if sh != nil && !d.dup && (c.version < 5 || c.aliasMaxOut == 0 && len(d.subIDs) == 0) {
		b, pidAt = sh.get(c.version, d.qos, d.retain)
	} else {
		sh = nil
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return true // QoS > 0 stays in flight and is resent on reconnect
	}
	if d.qos == 0 && c.pendingLocked() > c.loop.srv.opts.MaxOutboundBytes {
		c.dropLocked()
		return true
	}
	if sh != nil {
		if c.maxPacketOut > 0 && len(b) > int(c.maxPacketOut) {
			c.mu.Unlock()
			c.loop.srv.stats.Dropped.Add(1) // [MQTT-3.1.2-25]
			return false
		}
		ob := c.bufLocked()
		at := len(ob.b)
		ob.b = append(ob.b, b...)
		if pidAt >= 0 {
			mqtt.PutPacketID(ob.b, at+pidAt, d.tag)
		}
		c.outMsgs++
		c.scheduleLocked()
		return true
	}
	name := m.Topic
	var extra [160]byte
	props := extra[:0]
	var alias uint16
	if c.version >= 5 {
		if c.aliasMaxOut > 0 {
			name, alias = c.outAliasLocked(m.Topic)
		}
		props = appendDeliveryProps(appendSenderProps(props, m), m, d.now, alias, d.subIDs)
	}
	if c.maxPacketOut > 0 && mqtt.PublishSize(c.version, name, m.Payload, len(props)+len(m.Props), d.qos) > int(c.maxPacketOut) {
		if name != "" && alias != 0 {
			delete(c.rare.aliasOut, m.Topic) // just assigned: the client never learns it
		}
		c.mu.Unlock()
		c.loop.srv.stats.Dropped.Add(1) // [MQTT-3.1.2-25]
		return false
	}
	ob := c.bufLocked()
	ob.b, _ = mqtt.AppendPublish(ob.b, c.version, name, m.Payload, m.Props, props, d.qos, d.retain, d.dup, d.tag)
	c.outMsgs++
	c.scheduleLocked()
	return true
}

// outAliasLocked returns the topic to send and the alias to carry: a known
// alias goes with an empty topic; a new one is assigned while there is room.
// REQUIRES: c.mu held.
func (c *mqttConn) outAliasLocked(name string) (string, uint16) {
	x := c.rare // made at CONNECT, as aliasMaxOut > 0
	if a, ok := x.aliasOut[name]; ok {
		return "", a
	}
	if len(x.aliasOut) >= int(c.aliasMaxOut) {
		return name, 0
	}
	if x.aliasOut == nil {
		x.aliasOut = make(map[string]uint16)
	}
	a := uint16(len(x.aliasOut) + 1)
	x.aliasOut[name] = a
	return name, a
}

// handleDisconnect ends the connection normally: no will, unless a v5
// client asks for it with reason 0x04.
func (c *mqttConn) handleDisconnect(pk *packets.Packet) {
	if c.version >= 5 {
		if pk.Properties.SessionExpiryIntervalFlag {
			s := c.sess
			s.mu.Lock()
			was := s.expiry
			if was == 0 && pk.Properties.SessionExpiryInterval != 0 {
				s.mu.Unlock()
				c.fail(packets.ErrProtocolViolationZeroNonZeroExpiry) // [MQTT-3.14.2-2]
				return
			}
			s.expiry = min(pk.Properties.SessionExpiryInterval, c.loop.srv.opts.MaxSessionExpiry)
			s.mu.Unlock()
		}
		if pk.ReasonCode == packets.CodeDisconnectWillMessage.Code {
			c.state = stateClosing
			c.release()
			return
		}
	}
	c.normalEnd = true // [MQTT-3.14.4-3]
	c.state = stateClosing
	c.release()
}
