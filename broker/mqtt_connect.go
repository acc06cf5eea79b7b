package broker

import (
	"crypto/rand"
	"encoding/hex"
	"strings"
	"time"

	"github.com/cimgo/cim/broker/mqtt"
	"github.com/cimgo/cim/broker/topic"
	"github.com/mochi-mqtt/server/v2/packets"
)

// connectParams is what a CONNECT asked for, owned (no aliasing): only
// the properties used after the password check, so that the one
// allocation a CONNECT makes for it stays small (TestIdleConnCost counts
// the allocations per connect).
type connectParams struct {
	version    byte
	clean      bool
	keepalive  uint16
	aliasMax   uint16 // Topic Alias Maximum (v5)
	receiveMax uint16 // Receive Maximum (v5), 0 = none
	expiry     uint32 // Session Expiry Interval (v5)
	willDelay  uint32
	clientID   string
	username   string
	will       *Message
}

func clone(b []byte) []byte { return append([]byte(nil), b...) }

// handleConnect validates a CONNECT and, once the password (if any) checks
// out, attaches the session and answers CONNACK. Loop only.
func (c *mqttConn) handleConnect(pk *packets.Packet) {
	v := pk.ProtocolVersion
	if v != 3 && v != 4 && v != 5 {
		c.connack(4, packets.ErrUnsupportedProtocolVersion, nil, false) // [MQTT-3.1.2-2]
		c.linger()
		return
	}
	c.maxPacketOut = pk.Properties.MaximumPacketSize // also bounds a refusal's CONNACK
	if code := mqtt.ValidateConnect(pk); code != packets.CodeSuccess {
		c.connack(v, code, nil, false)
		c.close(reasonProtocolError, code)
		return
	}
	if !pk.Connect.WillFlag && pk.Connect.WillQos != 0 || // [MQTT-3.1.2-11]
		v < 5 && pk.Connect.PasswordFlag && !pk.Connect.UsernameFlag { // [MQTT-3.1.2-22] (3.1.1)
		c.fail(packets.ErrProtocolViolation)
		return
	}
	if pk.Connect.WillFlag {
		if err := topic.ValidName(pk.Connect.WillTopic); err != nil {
			c.connack(v, packets.ErrTopicNameInvalid, nil, false)
			c.linger()
			return
		}
	}
	cp := &connectParams{
		version:    v,
		clean:      pk.Connect.Clean,
		keepalive:  pk.Connect.Keepalive,
		clientID:   strings.Clone(pk.Connect.ClientIdentifier),
		username:   string(pk.Connect.Username),
		aliasMax:   pk.Properties.TopicAliasMaximum,
		receiveMax: pk.Properties.ReceiveMaximum,
		expiry:     pk.Properties.SessionExpiryInterval,
	}
	if pk.Connect.WillFlag {
		will := &packets.Packet{
			FixedHeader:     packets.FixedHeader{Type: packets.Publish, Qos: pk.Connect.WillQos, Retain: pk.Connect.WillRetain},
			ProtocolVersion: v,
			Payload:         pk.Connect.WillPayload,
			Properties:      pk.Connect.WillProperties,
		}
		cp.will = newMessage(will, pk.Connect.WillTopic, cp.clientID, c.loop.srv.now())
		cp.willDelay = pk.Connect.WillProperties.WillDelayInterval
	}
	if pk.Properties.AuthenticationMethod != "" {
		c.connack(v, packets.ErrBadAuthenticationMethod, nil, false) // enhanced auth is not offered
		c.close(reasonProtocolError, packets.ErrBadAuthenticationMethod)
		return
	}
	if code, ok := c.loop.srv.admitConnect(&c.transport); !ok { // max_connections (limits.go)
		c.connack(v, code, nil, false)
		c.linger()
		return
	}
	if id, ok := c.certIdentity(); ok { // a verified certificate is the credential (bridge.go)
		cp.username = id.User
		c.finishConnect(cp, id, nil)
		return
	}
	a := c.loop.srv.auth.Load()
	if id, ok := a.Cached(pk.Connect.Username, pk.Connect.Password, c.loop.srv.opts.Now()); ok {
		c.finishConnect(cp, identityOf(id), nil)
		return
	}
	// bcrypt, PBKDF2 and token checks take time: off the loop, resumed on it.
	user, pass := clone(pk.Connect.Username), clone(pk.Connect.Password)
	offLoop(&c.transport, func() authResult {
		id, err := a.Check(user, pass, time.Now())
		return authResult{identityOf(id), err}
	}, func(r authResult) { c.finishConnect(cp, r.id, r.err) })
}

type authResult struct {
	id  *Identity
	err error
}

// anonymous is the identity of every client without a user name when no
// login is required: shared, so an anonymous connection costs no identity.
var anonymous = &Identity{}

// identityOf keeps id for a connection.
func identityOf(id Identity) *Identity {
	if id == (Identity{}) {
		return anonymous
	}
	p := new(Identity) // not &id: that would move id to the heap on every call
	*p = id
	return p
}

// finishConnect settles what the CONNECT asked for and attaches the
// session: at once, or after the session's owner handed it over (Owner).
// Loop only.
func (c *mqttConn) finishConnect(cp *connectParams, id *Identity, authErr error) {
	v := cp.version
	if authErr != nil {
		// Counted, and logged at a bounded rate (limits.go).
		c.logAuthFailed(cp.clientID, cp.username, authErr)
		c.connack(v, packets.ErrBadUsernameOrPassword, nil, false) // [MQTT-3.1.4-2]
		c.linger()
		return
	}
	c.id = id
	var ack packets.Properties
	if cp.clientID == "" {
		if v == 3 || v < 5 && !cp.clean { // 3.1 ids have 1 to 23 characters
			c.connack(v, packets.ErrClientIdentifierNotValid, nil, false) // [MQTT-3.1.3-8]
			c.linger()
			return
		}
		cp.clientID = newClientID()
		ack.AssignedClientID = cp.clientID // [MQTT-3.2.2-16]
	}
	ka := int(cp.keepalive)
	if max := c.loop.srv.opts.MaxKeepalive; max > 0 && (ka == 0 || ka > max) {
		if v < 5 {
			// A v3 client cannot be told another keepalive: refuse it
			// rather than drop it later at a deadline it does not know
			// (as Mosquitto does).
			c.connack(v, packets.ErrClientIdentifierNotValid, nil, false)
			c.linger()
			return
		}
		ka = max
		ack.ServerKeepAlive, ack.ServerKeepAliveFlag = uint16(ka), true // [MQTT-3.2.2-21]
	}
	expiry := uint32(0)
	if v >= 5 {
		expiry = cp.expiry
		if expiry > c.loop.srv.opts.MaxSessionExpiry {
			expiry = c.loop.srv.opts.MaxSessionExpiry
			ack.SessionExpiryInterval, ack.SessionExpiryIntervalFlag = expiry, true
		}
	} else if !cp.clean {
		expiry = foreverExpiry // v3 persistent sessions last until a clean connect
	}
	c.version = v
	if cp.will != nil {
		x := c.rareOnLoop()
		x.will, x.willDelay = cp.will, cp.willDelay
	}
	c.aliasMaxOut = cp.aliasMax
	if c.aliasMaxOut > 0 {
		c.rareOnLoop() // before the session is attached: deliveries read it
	}
	c.kaSpan = -1 // no keepalive and no maximum: no idle deadline
	if ka > 0 {
		c.kaSpan = int32(ka) + int32(ka+1)/2 // 1.5× [MQTT-3.1.2-22]
	}
	ack.ReceiveMaximum = c.loop.srv.opts.ReceiveMaximum
	ack.TopicAliasMaximum = c.loop.srv.opts.TopicAliasMaximum
	ack.MaximumPacketSize = c.loop.srv.opts.MaxPacketSize
	window := c.loop.srv.opts.MaxInflight
	if rm := cp.receiveMax; v >= 5 && rm > 0 && rm < window {
		window = rm
	}
	a := attachment{key: mqttKey(cp.clientID), ident: id, clean: cp.clean, expiry: expiry, window: window, version: v}
	if o := c.loop.srv.opts.Owner; o != nil {
		// Copies for the closures, so that a and ack (a large struct) stay
		// on the stack of the common path (TestIdleConnCost: allocations
		// per connect).
		oa, oack := a, ack
		offLoop(&c.transport, func() ownerResult { return acquire(o, oa.key) }, func(r ownerResult) {
			if r.err != nil {
				c.loop.srv.log.Warn("session owner unreachable", "client", oa.key.id, "err", r.err)
				c.connack(v, packets.ErrServerUnavailable, nil, false)
				c.linger()
				return
			}
			oa.moved = r.snap
			c.attach(oa, &oack)
		})
		return
	}
	c.attach(a, &ack)
}

// attach binds the session, answers CONNACK (built now, with session
// present known) and then lets the session send what it kept. Loop only.
func (c *mqttConn) attach(a attachment, ack *packets.Properties) {
	now := c.loop.srv.now()
	s, present := c.loop.srv.sessions.attach(a, c, now)
	c.sess = s
	c.lastSeen = uint32(now)
	c.state = stateActive
	c.loop.srv.stats.ClientsConnected.Add(1)
	if !c.connack(a.version, packets.CodeSuccess, ack, present && a.version >= 4) { // the byte is reserved in 3.1
		c.loop.srv.log.Debug("CONNACK larger than the client's maximum packet size", "client", c.clientID(), "max", c.maxPacketOut)
		c.linger() // releases the session again
		return
	}
	c.loop.wheel.add(&c.transport, now+int64(max(c.kaSpan, 1)))
	c.logConnected(a.clean) // limits.go
	s.start(c, now)
}

// connack sends a CONNACK; v3 clients get the v3 return code for code. It
// reports false when it sent nothing: v3 has no code for code, or the
// CONNACK is larger than the client's Maximum Packet Size.
func (c *mqttConn) connack(version byte, code packets.Code, props *packets.Properties, present bool) bool {
	pk := &packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connack}, ProtocolVersion: version, ReasonCode: code.Code}
	pk.SessionPresent = present // [MQTT-3.2.2-2]
	if version < 5 {
		switch {
		case code.Code == 0:
		case code == packets.ErrBadUsernameOrPassword:
			pk.ReasonCode = packets.Err3NotAuthorized.Code
			if c.loop.srv.auth.Load().Required() {
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

// newClientID makes an id for a client that sent none.
func newClientID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return "cim-" + hex.EncodeToString(b[:])
}
