package broker

import (
	"errors"
	"strconv"
	"strings"

	"github.com/cimgo/cim/broker/wire"
)

// nativeConn is a connection of cim's native protocol (broker/wire): the
// endpoint apps, cim chat and browsers use. Login (native_login.go), sends
// (native_send.go) and requests (native_request.go) are in their own files;
// deliveries and acknowledgements are here. Fields are touched only on its
// loop unless they say otherwise.
type nativeConn struct {
	transport

	sess *session
	acct *Account  // the logged-in user; nil before login
	id   *Identity // for the ACL

	// acks maps the server message id of each QoS 1 deliver in flight to
	// its in-flight tag. REQUIRES: transport.mu held.
	acks map[uint64]uint16
}

func (c *nativeConn) tr() *transport { return &c.transport }

// preLoginMax bounds a frame before the login is accepted: a login is small,
// and a stranger should not make the server hold a large partial frame.
const preLoginMax = 16 << 10

func (c *nativeConn) maxFrame() int {
	if c.state != stateActive {
		return preLoginMax
	}
	return int(c.loop.srv.opts.MaxPacketSize)
}

// frameLen reads a frame's length prefix; a frame over the limit is refused
// from its prefix.
func (c *nativeConn) frameLen(b []byte) (int, error) {
	body, pl, err := wire.ReadLength(b)
	switch {
	case errors.Is(err, wire.ErrIncomplete):
		if len(b) > 0 && len(b) < 4 && minPrefixLen(b) > c.maxFrame() {
			return 0, wire.CodeFrameTooLarge
		}
		return 0, errIncomplete
	case err != nil:
		return 0, err
	case pl+body > c.maxFrame():
		return 0, wire.CodeFrameTooLarge
	}
	return pl + body, nil
}

// minPrefixLen is the smallest frame an unfinished prefix can announce.
func minPrefixLen(b []byte) int {
	v := 0
	for i, x := range b {
		v |= int(x&0x7f) << (7 * i)
	}
	return v + 1<<(7*len(b))
}

// handle decodes one frame and applies it. Loop only.
func (c *nativeConn) handle(frame []byte) {
	f := &c.loop.wf
	if _, err := wire.Decode(frame, f, c.maxFrame()); err != nil {
		c.fail(err)
		return
	}
	if c.state == stateActive {
		c.lastSeen = uint32(c.loop.srv.now())
	}
	switch f.Type {
	case wire.TypeLogin:
		if c.state != stateNew {
			c.sendError(wire.CodeRepeatLogin, "already logged in")
			return
		}
		c.handleLogin(&f.Login)
		return
	case wire.TypePing:
		c.appendRaw(func(b []byte) []byte { return append(b, 2, byte(wire.TypePong), 0x80) })
		return
	case wire.TypePong:
		return
	}
	if c.state != stateActive {
		c.fail(wire.CodeNotLoggedIn)
		return
	}
	switch f.Type {
	case wire.TypeSend:
		c.handleSend(&f.Send)
	case wire.TypeDeliverAck:
		c.handleDeliverAck(f.DeliverAck.MsgID)
	case wire.TypeSubscribe:
		c.handleSubscribe(&f.Subscribe)
	case wire.TypeUnsubscribe:
		c.handleUnsubscribe(&f.Unsubscribe)
	case wire.TypeRequest:
		c.handleRequest(&f.Request)
	default:
		c.sendError(wire.CodeUnknownFrame, "a server-to-client frame: "+f.Type.String())
	}
}

// fail answers bad input: an error frame with its code, and the connection
// closes when the code says so (an unknown frame type is skipped). Loop only.
func (c *nativeConn) fail(err error) {
	code := wire.CodeOf(err)
	if code == wire.CodeOK {
		code = wire.CodeMalformed
	}
	if !code.ClosesConnection() {
		c.sendError(code, err.Error())
		return
	}
	c.loop.srv.stats.ProtocolErrors.Add(1)
	c.loop.srv.log.Debug("native protocol error", "user", c.userName(), "remote", c.gc.RemoteAddr(), "code", uint16(code), "err", err)
	c.close(reasonProtocolError, err)
}

func (c *nativeConn) userName() string {
	if c.acct == nil {
		return ""
	}
	return c.acct.Name
}

// sendError appends an error frame. Any goroutine.
func (c *nativeConn) sendError(code wire.Code, text string) {
	c.appendFrame(&wire.Error{Code: code, Text: text})
}

// appendFrame encodes a frame into the outbound buffer. Any goroutine.
func (c *nativeConn) appendFrame(b wire.Body) {
	var err error
	c.appendRaw(func(dst []byte) []byte {
		var out []byte
		out, err = wire.Append(dst, b)
		if err != nil {
			return dst
		}
		return out
	})
	if err != nil {
		c.loop.srv.log.Warn("native encode", "type", b.Type().String(), "err", err)
	}
}

// kickCodes are the native codes of the close reasons.
var kickCodes = [...]wire.Code{
	reasonProtocolError: wire.CodeMalformed,
	reasonTakenOver:     wire.CodeTakenOver,
	reasonShutdown:      wire.CodeShuttingDown,
	reasonKeepalive:     wire.CodeKeepaliveTimeout,
	reasonSlowConsumer:  wire.CodeSlowConsumer,
	reasonKicked:        wire.CodeKicked,
	reasonPacketTimeout: wire.CodeKeepaliveTimeout,
	reasonInputBudget:   wire.CodeRateLimited,
	reasonQuota:         wire.CodeRateLimited,
	reasonNotAuthorized: wire.CodeAccountMismatch,
	reasonLoginTimeout:  wire.CodeLoginTimeout,
}

// goodbye tells the client why it is being closed: a kick frame for the
// reasons a kick is for (5003-5006: taken over, kicked, shutting down, slow
// consumer) once logged in, an error frame for everything else (a
// protocol error, a timeout), as docs/native-protocol.md says. Loop only.
func (c *nativeConn) goodbye(r closeReason, err error) {
	code := kickCodes[r]
	if r == reasonProtocolError && err != nil {
		if k := wire.CodeOf(err); k != wire.CodeOK {
			code = k
		}
	}
	text := r.String()
	if err != nil {
		text = err.Error()
	}
	switch code {
	case wire.CodeTakenOver, wire.CodeKicked, wire.CodeShuttingDown, wire.CodeSlowConsumer:
		if c.state == stateActive {
			c.appendFrame(&wire.Kick{Code: code, Text: text})
			return
		}
	}
	c.sendError(code, text)
}

// release detaches c from its session and marks its user offline, once.
// Loop only.
func (c *nativeConn) release() {
	if c.sess == nil || c.has(fReleased) {
		return
	}
	c.set(fReleased, true)
	srv := c.loop.srv
	srv.stats.ClientsConnected.Add(-1)
	srv.im.dir.setOnline(c.acct.ID, -1)
	srv.sessions.detach(c.sess, c, nil, 0, srv.now())
}

// deliver encodes a deliver frame. Any goroutine; under the session's lock
// for QoS 1.
func (c *nativeConn) deliver(d delivery) bool {
	m := d.m
	if m == nil {
		return true // a released QoS 2 step: nothing to say to a native client
	}
	if d.qos == 0 && c.dropBacklogged() {
		return true
	}
	qos := min(d.qos, 1)
	var shared []byte
	var err error
	if d.shared != nil {
		// Encoded before taking c.mu, as mqttConn.deliver does.
		shared, err = d.shared.nativeGet(qos, d.offline, c.acct.ID)
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return true
	}
	if d.qos == 0 && c.pendingLocked() > c.loop.srv.opts.MaxOutboundBytes {
		c.dropLocked()
		return true
	}
	ob := c.bufLocked()
	if d.shared != nil {
		if err == nil {
			ob.b = append(ob.b, shared...)
		}
	} else {
		var out []byte
		if out, err = appendNativeDeliver(ob.b, m, qos, d.offline, c.acct.ID); err == nil {
			ob.b = out
		}
	}
	if err != nil { // larger than a frame can be: never deliverable
		c.mu.Unlock()
		c.loop.srv.stats.Dropped.Add(1)
		return false
	}
	if d.qos > 0 && m.ID != 0 {
		if c.acks == nil {
			c.acks = make(map[uint64]uint16)
		}
		c.acks[m.ID] = d.tag
	}
	c.outMsgs++
	c.scheduleLocked()
	return true
}

// handleDeliverAck completes a QoS 1 deliver. Loop only.
func (c *nativeConn) handleDeliverAck(msgID uint64) {
	c.mu.Lock()
	tag, ok := c.acks[msgID]
	delete(c.acks, msgID)
	c.mu.Unlock()
	if ok {
		c.sess.ack(tag, stepAck, c.loop.srv.now())
	}
}

// targetOf says where a message on topic was sent, in the native
// protocol's terms.
func targetOf(topic string) wire.Target {
	switch {
	case topic == allTopic:
		return wire.ToAll()
	case strings.HasPrefix(topic, inboxPrefix):
		if id, err := strconv.ParseUint(topic[len(inboxPrefix):], 10, 64); err == nil {
			return wire.ToUser(id)
		}
	case strings.HasPrefix(topic, groupPrefix) && !strings.Contains(topic[len(groupPrefix):], "/"):
		return wire.ToGroup(topic[len(groupPrefix):])
	}
	return wire.ToTopic(topic)
}

// inboxUser is the user whose inbox topic is cim/u/<id> (as targetOf reads
// it), 0 for any other topic.
func inboxUser(topic string) uint64 {
	if rest, ok := strings.CutPrefix(topic, inboxPrefix); ok {
		if id, err := strconv.ParseUint(rest, 10, 64); err == nil {
			return id
		}
	}
	return 0
}

// appendNativeDeliver encodes m as a deliver frame for user receiver. Its
// time is its id's, which the frame then leaves out; a private message for
// the receiver itself leaves out the receiver (wire's "Keys derived when
// absent").
func appendNativeDeliver(dst []byte, m *Message, qos byte, offline bool, receiver uint64) ([]byte, error) {
	at := m.Created * 1000
	if m.ID != 0 {
		at = wire.MsgIDTime(m.ID)
	}
	t := targetOf(m.Topic)
	if t.Kind == wire.KindUser && t.User == receiver {
		t.User = 0
	}
	f := wire.Deliver{MsgID: m.ID, From: m.Sender, FromName: m.SenderName, Target: t, Body: m.Payload,
		Time: at, QoS: qos, Offline: offline}
	if f.FromName == "" {
		f.FromName = m.From // an MQTT client, by its client id
	}
	return wire.AppendDeliver(dst, &f)
}
