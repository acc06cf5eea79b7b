package broker

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"strings"

	"github.com/cimgo/cim/broker/mqtt"
	"github.com/cimgo/cim/broker/topic"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/panjf2000/gnet/v2"
)

// onTraffic decodes and applies every whole packet gnet read for c, in
// place; the start of an unfinished packet moves into c's partial
// (input.go), so gnet keeps nothing buffered. Replies go out in one write.
func (c *conn) onTraffic() gnet.Action {
	switch {
	case c.lingerUntil != 0:
		_, _ = c.gc.Discard(-1) // closing: input is read and dropped (close.go)
		return gnet.None
	case c.state == stateAuth || c.state == stateClosing:
		return gnet.None // leave the bytes buffered until the CONNECT is settled
	}
	buf, _ := c.gc.Peek(-1)
	used := 0
	pk := &c.loop.pk
	if c.part != nil {
		n, whole, err := c.fillPartial(buf)
		used = n
		switch {
		case err != nil:
			c.protocolError(err)
		case whole && c.state != stateClosing:
			if _, err := mqtt.Decode(c.part.buf, pk, c.version, c.srv.opts.MaxPacketSize); err != nil {
				c.protocolError(err)
			} else {
				c.handle(pk)
			}
			*pk = packets.Packet{}
			c.dropPartial()
		}
	}
	for used < len(buf) && c.state != stateAuth && c.state != stateClosing {
		n, err := mqtt.Decode(buf[used:], pk, c.version, c.srv.opts.MaxPacketSize)
		if errors.Is(err, mqtt.ErrIncomplete) {
			if c.version == 0 && buf[used]>>4 != packets.Connect {
				// Not a CONNECT coming (HTTP, TLS, noise): refuse now
				// rather than wait for a body that may never end [MQTT-3.1.0-1].
				c.protocolError(packets.ErrProtocolViolationRequireFirstConnect)
				break
			}
			if err := c.startPartial(buf[used:]); err != nil {
				c.protocolError(err)
			}
			used = len(buf)
			break
		}
		used += n
		if err != nil {
			c.protocolError(err)
			break
		}
		c.handle(pk)
	}
	*pk = packets.Packet{} // drop references into the read buffer
	if used > 0 {
		_, _ = c.gc.Discard(used) // gnet's Discard(0) drops everything buffered
	}
	c.srv.stats.BytesIn.Add(int64(used))
	c.flush()
	if c.state == stateClosing && c.lingerUntil == 0 {
		return gnet.Close // the client said DISCONNECT: nothing more to say or read
	}
	return gnet.None
}

// protocolError answers bad input with the spec's code and closes: CONNACK
// before the session exists, DISCONNECT (v5) after. Logged once, at debug.
func (c *conn) protocolError(err error) {
	code := mqtt.CodeOf(err)
	c.srv.stats.ProtocolErrors.Add(1)
	c.srv.log.Debug("protocol error", "client", c.clientID, "remote", c.gc.RemoteAddr(), "code", code.Code, "err", err)
	if c.state == stateNew && c.version == 0 && c.loop.pk.FixedHeader.Type == packets.Connect && c.loop.pk.ProtocolVersion != 0 {
		c.connack(c.loop.pk.ProtocolVersion, code, nil)
	}
	c.closeWith(code)
}

// handle applies one decoded packet. Loop only.
func (c *conn) handle(pk *packets.Packet) {
	if c.state == stateActive {
		c.lastSeen = c.srv.now()
	}
	switch pk.FixedHeader.Type {
	case packets.Connect:
		if c.state != stateNew {
			c.protocolError(packets.ErrProtocolViolationSecondConnect) // [MQTT-3.1.0-2]
			return
		}
		c.handleConnect(pk)
	case packets.Publish:
		c.handlePublish(pk)
	case packets.Puback, packets.Pubcomp:
		c.sess.ack(pk.FixedHeader.Type, pk.PacketID, pk.ReasonCode, c.srv.now())
	case packets.Pubrec:
		if c.sess.ack(packets.Pubrec, pk.PacketID, pk.ReasonCode, c.srv.now()) {
			if pk.ReasonCode < 0x80 {
				c.appendRaw(func(b []byte) []byte { return mqtt.AppendAck(b, c.version, packets.Pubrel, pk.PacketID, 0) })
			}
		} else if c.version >= 5 {
			c.appendRaw(func(b []byte) []byte {
				return mqtt.AppendAck(b, c.version, packets.Pubrel, pk.PacketID, packets.ErrPacketIdentifierNotFound.Code)
			})
		}
	case packets.Pubrel:
		c.handlePubrel(pk)
	case packets.Subscribe:
		c.handleSubscribe(pk)
	case packets.Unsubscribe:
		c.handleUnsubscribe(pk)
	case packets.Pingreq:
		if pk.FixedHeader.Remaining != 0 {
			c.protocolError(packets.ErrMalformedPacket) // PINGREQ has no body
			return
		}
		c.appendRaw(func(b []byte) []byte { return append(b, packets.Pingresp<<4, 0) })
	case packets.Disconnect:
		c.handleDisconnect(pk)
	default:
		// AUTH without an authentication method, or a server-to-client packet.
		c.protocolError(packets.ErrProtocolViolation)
	}
}

// connack sends a CONNACK; v3 clients get the v3 return code for code.
// It reports false when it sent nothing: v3 has no code for code, or the
// CONNACK is larger than the client's Maximum Packet Size.
func (c *conn) connack(version byte, code packets.Code, props *packets.Properties) bool {
	pk := &packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connack}, ProtocolVersion: version, ReasonCode: code.Code}
	if version < 5 {
		switch {
		case code.Code == 0:
		case code == packets.ErrBadUsernameOrPassword:
			pk.ReasonCode = packets.Err3NotAuthorized.Code
			if c.srv.passwords != nil {
				pk.ReasonCode = packets.ErrMalformedUsernameOrPassword.Code // 0x04 bad user name or password
			}
		case code == packets.ErrNotAuthorized:
			pk.ReasonCode = packets.Err3NotAuthorized.Code
		case code.Code == packets.ErrClientIdentifierNotValid.Code:
			pk.ReasonCode = packets.Err3ClientIdentifierNotValid.Code
		case code.Code == packets.ErrUnsupportedProtocolVersion.Code:
			pk.ReasonCode = packets.Err3UnsupportedProtocolVersion.Code
		default:
			pk.ReasonCode = packets.Err3ServerUnavailable.Code
			if code.Code == packets.ErrMalformedPacket.Code || code.Code == packets.ErrProtocolViolation.Code {
				return false // v3 has no code for these: just close [MQTT-3.2.2-6]
			}
		}
	} else if props != nil {
		pk.Properties = *props
	}
	if code.Code != 0 && version >= 5 && code.Reason != "" {
		pk.Properties.ReasonString = code.Reason
	}
	if max := int(c.maxPacketOut); max > 0 && version >= 5 {
		b, err := mqtt.Append(nil, pk)
		if err == nil && len(b) > max && pk.Properties.ReasonString != "" {
			pk.Properties.ReasonString = "" // optional: the first to go [MQTT-3.1.2-25]
			b, err = mqtt.Append(nil, pk)
		}
		if err != nil || len(b) > max {
			return false // larger than the client accepts: not sent [MQTT-3.1.2-24]
		}
	}
	c.appendPacket(pk)
	return true
}

// handleConnect validates a CONNECT and, once the password (if any) checks
// out, attaches the session and answers CONNACK.
func (c *conn) handleConnect(pk *packets.Packet) {
	v := pk.ProtocolVersion
	if v != 3 && v != 4 && v != 5 {
		c.connack(4, packets.ErrUnsupportedProtocolVersion, nil) // [MQTT-3.1.2-2]
		c.linger()
		return
	}
	if code := pk.ConnectValidate(); code != packets.CodeSuccess {
		c.connack(v, code, nil)
		c.closeWith(code)
		return
	}
	if !pk.Connect.WillFlag && pk.Connect.WillQos != 0 || // [MQTT-3.1.2-11]
		v < 5 && pk.Connect.PasswordFlag && !pk.Connect.UsernameFlag { // [MQTT-3.1.2-22] (3.1.1)
		c.protocolError(packets.ErrProtocolViolation)
		return
	}
	if pk.Connect.WillFlag {
		if err := topic.ValidName(pk.Connect.WillTopic); err != nil {
			c.connack(v, packets.ErrTopicNameInvalid, nil)
			c.linger()
			return
		}
	}
	cp := connectParams{
		version:   v,
		clean:     pk.Connect.Clean,
		keepalive: pk.Connect.Keepalive,
		clientID:  strings.Clone(pk.Connect.ClientIdentifier),
		username:  string(pk.Connect.Username),
		props:     pk.Properties, // only scalars are kept below
	}
	cp.props.User, cp.props.AuthenticationData, cp.props.CorrelationData = nil, nil, nil
	if pk.Connect.WillFlag {
		will := &packets.Packet{
			FixedHeader:     packets.FixedHeader{Type: packets.Publish, Qos: pk.Connect.WillQos, Retain: pk.Connect.WillRetain},
			ProtocolVersion: v,
			Payload:         pk.Connect.WillPayload,
			Properties:      pk.Connect.WillProperties,
		}
		cp.will = newMessage(will, pk.Connect.WillTopic, cp.clientID, c.srv.now())
		cp.willDelay = pk.Connect.WillProperties.WillDelayInterval
	}
	if pk.Properties.AuthenticationMethod != "" {
		c.connack(v, packets.ErrBadAuthenticationMethod, nil) // enhanced auth is not offered
		c.closeWith(packets.ErrBadAuthenticationMethod)
		return
	}
	if p := c.srv.passwords; p != nil {
		user, pass := pk.Connect.Username, pk.Connect.Password
		if !p.cached(user, pass) {
			// bcrypt takes milliseconds: check off the loop, resume on it.
			user, pass = clone(user), clone(pass)
			c.state = stateAuth
			go func() {
				ok := p.check(user, pass)
				_ = c.loop.el.Execute(nilCtx, runFunc(func() {
					if c.state != stateAuth {
						return // closed meanwhile
					}
					c.state = stateNew
					c.finishConnect(&cp, ok)
					c.flush()
					_ = c.gc.Wake(nil) // read what arrived while waiting
				}))
			}()
			return
		}
	}
	c.finishConnect(&cp, true)
}

// connectParams is what a CONNECT asked for, owned (no aliasing).
type connectParams struct {
	version   byte
	clean     bool
	keepalive uint16
	clientID  string
	username  string
	props     packets.Properties
	will      *Message
	willDelay uint32
}

func clone(b []byte) []byte { return append([]byte(nil), b...) }

// finishConnect attaches the session and sends CONNACK. Loop only.
func (c *conn) finishConnect(cp *connectParams, authOK bool) {
	v := cp.version
	if !authOK {
		c.connack(v, packets.ErrBadUsernameOrPassword, nil) // [MQTT-3.1.4-2]
		c.linger()
		return
	}
	var ack packets.Properties
	if cp.clientID == "" {
		if v == 3 || v < 5 && !cp.clean { // 3.1 ids have 1 to 23 characters
			c.connack(v, packets.ErrClientIdentifierNotValid, nil) // [MQTT-3.1.3-8]
			c.linger()
			return
		}
		cp.clientID = newClientID()
		ack.AssignedClientID = cp.clientID // [MQTT-3.2.2-16]
	}
	ka := cp.keepalive
	if max := c.srv.opts.MaxKeepalive; ka == 0 || ka > max {
		ka = max
		ack.ServerKeepAlive, ack.ServerKeepAliveFlag = ka, true // [MQTT-3.2.2-21]
	}
	expiry := uint32(0)
	if v >= 5 {
		expiry = cp.props.SessionExpiryInterval
		if expiry > c.srv.opts.MaxSessionExpiry {
			expiry = c.srv.opts.MaxSessionExpiry
			ack.SessionExpiryInterval, ack.SessionExpiryIntervalFlag = expiry, true
		}
	} else if !cp.clean {
		expiry = foreverExpiry // v3 persistent sessions last until a clean connect
	}
	window := c.srv.opts.MaxInflight
	if rm := cp.props.ReceiveMaximum; v >= 5 && rm > 0 && rm < window {
		window = rm
	}
	c.version = v
	c.clientID = cp.clientID
	c.username = cp.username
	c.will = cp.will
	c.willDelay = cp.willDelay
	c.maxPacketOut = cp.props.MaximumPacketSize
	c.aliasMaxOut = cp.props.TopicAliasMaximum
	c.kaSpan = int32(ka) + int32(ka+1)/2 // 1.5× [MQTT-3.1.2-22]
	now := c.srv.now()
	c.lastSeen = now

	ack.ReceiveMaximum = c.srv.opts.ReceiveMaximum
	ack.TopicAliasMaximum = c.srv.opts.TopicAliasMaximum
	ack.MaximumPacketSize = c.srv.opts.MaxPacketSize
	// CONNACK must precede anything the resumed session sends, so it is
	// queued before attach; session present is patched in just below.
	c.mu.Lock()
	ob := c.bufLocked()
	at := len(ob.b)
	c.mu.Unlock()
	if !c.connack(v, packets.CodeSuccess, &ack) {
		c.srv.log.Debug("CONNACK larger than the client's maximum packet size", "client", cp.clientID, "max", c.maxPacketOut)
		c.linger()
		return
	}
	c.state = stateActive
	c.srv.stats.ClientsConnected.Add(1)
	s, present := c.srv.sessions.attach(cp.clientID, cp.clean, expiry, window, c, now)
	c.sess = s
	if present && v >= 4 { // the byte is reserved in 3.1
		c.mu.Lock()
		if c.out != nil && len(c.out.b) > at+2 {
			c.out.b[at+2] = 1 // CONNACK flags: session present [MQTT-3.2.2-2]
		}
		c.mu.Unlock()
	}
	c.loop.wheel.add(c, now+int64(c.kaSpan))
}

// newClientID makes an id for a client that sent none.
func newClientID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return "cim-" + hex.EncodeToString(b[:])
}

// handlePublish routes an inbound PUBLISH and acknowledges it.
func (c *conn) handlePublish(pk *packets.Packet) {
	v := c.version
	if v >= 5 {
		if code := pk.PublishValidate(c.srv.opts.TopicAliasMaximum); code != packets.CodeSuccess {
			c.protocolError(code)
			return
		}
	} else if pk.FixedHeader.Qos > 0 && pk.PacketID == 0 {
		c.protocolError(packets.ErrProtocolViolationNoPacketID)
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
			c.protocolError(packets.ErrProtocolViolationNoTopic) // [MQTT-3.3.2-8]
			return
		} else {
			name = c.aliasIn[a]
		}
	}
	if err := topic.ValidName(name); err != nil {
		c.protocolError(packets.ErrTopicNameInvalid)
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
			c.protocolError(packets.ErrReceiveMaximum) // [MQTT-3.3.4-9]
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
	if !c.srv.allowed(c.username, c.clientID, name, accessWrite) {
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
// is never acknowledged. Safe from any goroutine.
func (c *conn) ackPublish(qos byte, pid uint16, reason byte, err error) {
	if qos == 0 {
		return
	}
	if err != nil {
		c.srv.log.Warn("publish not stored", "client", c.clientID, "err", err)
		if c.version < 5 {
			_ = c.gc.Close()
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

// handlePubrel completes an inbound QoS 2 exchange.
func (c *conn) handlePubrel(pk *packets.Packet) {
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

// handleSubscribe subscribes each filter, answers SUBACK, then sends the
// retained messages the new subscriptions ask for.
func (c *conn) handleSubscribe(pk *packets.Packet) {
	if code := pk.SubscribeValidate(); code != packets.CodeSuccess {
		c.protocolError(code)
		return
	}
	v, s := c.version, c.sess
	codes := make([]byte, len(pk.Filters))
	type retained struct {
		filter string
		sub    topic.Subscription
	}
	var wantRetained []retained
	changed := false
	for i, f := range pk.Filters {
		filter := strings.Clone(f.Filter)
		_, inner, shared := topic.ParseShare(filter) // deny list and ACL judge the topics, not the $share prefix
		switch {
		case f.RetainHandling > 2:
			c.protocolError(packets.ErrProtocolViolation) // retain handling 3 (MQTT 5.0 §3.8.3.1)
			return
		case topic.ValidFilter(filter) != nil:
			codes[i] = failCode(v, packets.ErrTopicFilterInvalid)
			continue
		case shared && f.NoLocal:
			c.protocolError(packets.ErrProtocolViolationInvalidSharedNoLocal) // [MQTT-3.8.3-4]
			return
		case c.srv.denied(inner) || !c.srv.allowed(c.username, c.clientID, inner, accessRead):
			codes[i] = failCode(v, packets.ErrNotAuthorized)
			continue
		}
		sub := topic.Subscription{QoS: f.Qos, ID: uint32(f.Identifier)}
		if v >= 5 {
			sub.NoLocal, sub.RetainAsPublished, sub.RetainHandling = f.NoLocal, f.RetainAsPublished, f.RetainHandling
		}
		isNew := c.srv.subs.Subscribe(filter, s, sub)
		if isNew {
			c.srv.stats.Subscriptions.Add(1)
		}
		s.mu.Lock()
		s.addSubLocked(filter, sub)
		s.mu.Unlock()
		changed = true
		codes[i] = f.Qos
		if !shared && (sub.RetainHandling == 0 || sub.RetainHandling == 1 && isNew) { // [MQTT-3.3.1-9] [MQTT-3.3.1-10]
			wantRetained = append(wantRetained, retained{filter, sub})
		}
	}
	if changed {
		s.mu.Lock()
		s.saveLocked(0) // one session record for the whole SUBSCRIBE
		s.mu.Unlock()
	}
	c.appendPacket(&packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Suback}, ProtocolVersion: v, PacketID: pk.PacketID, ReasonCodes: codes})
	for _, r := range wantRetained {
		c.srv.sendRetained(s, r.filter, r.sub)
	}
}

// failCode is code for v5, and 0x80 (failure) for v3 [MQTT-3.9.3-2].
func failCode(v byte, code packets.Code) byte {
	if v >= 5 {
		return code.Code
	}
	return 0x80
}

// handleUnsubscribe removes each filter and answers UNSUBACK.
func (c *conn) handleUnsubscribe(pk *packets.Packet) {
	if code := pk.UnsubscribeValidate(); code != packets.CodeSuccess {
		c.protocolError(code)
		return
	}
	s := c.sess
	codes := make([]byte, len(pk.Filters))
	changed := false
	for i, f := range pk.Filters {
		if c.srv.subs.Unsubscribe(f.Filter, s) {
			c.srv.stats.Subscriptions.Add(-1)
			s.mu.Lock()
			s.removeSubLocked(f.Filter)
			s.mu.Unlock()
			changed = true
		} else {
			codes[i] = packets.CodeNoSubscriptionExisted.Code
		}
	}
	if changed {
		s.mu.Lock()
		s.saveLocked(0)
		s.mu.Unlock()
	}
	c.appendPacket(&packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Unsuback}, ProtocolVersion: c.version, PacketID: pk.PacketID, ReasonCodes: codes})
}

// handleDisconnect ends the connection normally: no will, unless a v5
// client asks for it with reason 0x04.
func (c *conn) handleDisconnect(pk *packets.Packet) {
	if c.version >= 5 {
		if pk.Properties.SessionExpiryIntervalFlag {
			s := c.sess
			s.mu.Lock()
			was := s.expiry
			if was == 0 && pk.Properties.SessionExpiryInterval != 0 {
				s.mu.Unlock()
				c.protocolError(packets.ErrProtocolViolationZeroNonZeroExpiry) // [MQTT-3.14.2-2]
				return
			}
			s.expiry = min(pk.Properties.SessionExpiryInterval, c.srv.opts.MaxSessionExpiry)
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
