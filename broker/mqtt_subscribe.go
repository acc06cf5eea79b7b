package broker

import (
	"strings"

	"github.com/cimgo/cim/broker/topic"
	"github.com/mochi-mqtt/server/v2/packets"
)

// handleSubscribe subscribes each filter, answers SUBACK, then sends the
// retained messages the new subscriptions ask for. Loop only.
func (c *mqttConn) handleSubscribe(pk *packets.Packet) {
	if code := pk.SubscribeValidate(); code != packets.CodeSuccess {
		c.fail(code)
		return
	}
	v, s := c.version, c.sess
	a := c.loop.srv.auth.Load()
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
			c.fail(packets.ErrProtocolViolation) // retain handling 3 (MQTT 5.0 §3.8.3.1)
			return
		case topic.ValidFilter(filter) != nil:
			codes[i] = failCode(v, packets.ErrTopicFilterInvalid)
			continue
		case shared && f.NoLocal:
			c.fail(packets.ErrProtocolViolationInvalidSharedNoLocal) // [MQTT-3.8.3-4]
			return
		case a.Denied(filter) || !a.Allowed(c.id, c.clientID(), inner, AccessRead):
			codes[i] = failCode(v, packets.ErrNotAuthorized)
			continue
		case !c.loop.srv.subscriptionAllowed(s, filter): // max_subscriptions_per_client (limits.go)
			codes[i] = failCode(v, packets.ErrQuotaExceeded)
			continue
		}
		sub := topic.Subscription{QoS: f.Qos, ID: uint32(f.Identifier)}
		if v >= 5 {
			sub.NoLocal, sub.RetainAsPublished, sub.RetainHandling = f.NoLocal, f.RetainAsPublished, f.RetainHandling
		}
		isNew := c.loop.srv.subscribe(s, filter, sub)
		changed = true
		codes[i] = f.Qos
		if !shared && (sub.RetainHandling == 0 || sub.RetainHandling == 1 && isNew) { // [MQTT-3.3.1-9] [MQTT-3.3.1-10]
			wantRetained = append(wantRetained, retained{filter, sub})
		}
	}
	if changed {
		s.save() // one session record for the whole SUBSCRIBE
	}
	c.appendPacket(&packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Suback}, ProtocolVersion: v, PacketID: pk.PacketID, ReasonCodes: codes})
	for _, r := range wantRetained {
		c.loop.srv.sendRetained(s, r.filter, r.sub)
	}
}

// failCode is code for v5, and 0x80 (failure) for v3 [MQTT-3.9.3-2].
func failCode(v byte, code packets.Code) byte {
	if v >= 5 {
		return code.Code
	}
	return 0x80
}

// handleUnsubscribe removes each filter and answers UNSUBACK. Loop only.
func (c *mqttConn) handleUnsubscribe(pk *packets.Packet) {
	if code := pk.UnsubscribeValidate(); code != packets.CodeSuccess {
		c.fail(code)
		return
	}
	s := c.sess
	codes := make([]byte, len(pk.Filters))
	changed := false
	for i, f := range pk.Filters {
		if c.loop.srv.unsubscribe(s, f.Filter) {
			changed = true
		} else {
			codes[i] = packets.CodeNoSubscriptionExisted.Code
		}
	}
	if changed {
		s.save()
	}
	c.appendPacket(&packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Unsuback}, ProtocolVersion: c.version, PacketID: pk.PacketID, ReasonCodes: codes})
}
