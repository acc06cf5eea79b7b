package broker

import (
	"slices"
	"strconv"
	"time"

	"github.com/cimgo/cim/broker/mqtt"
	"github.com/cimgo/cim/broker/topic"
	"github.com/cimgo/cim/broker/wire"
	"github.com/cimgo/cim/storage"
)

// Sending, for the native protocol and the HTTP API alike: a message from a
// user to a user, a group, an MQTT topic or everyone is one Message on the
// shared topic space, routed like any MQTT publish (so MQTT subscribers of
// cim/u/<id> see it too, MQTT 5 ones with the sender in user properties),
// recorded in the conversation's history, and acknowledged:
//
//   - Private and group messages always travel at QoS 1 towards receivers,
//     so a receiver who is offline finds them at its next login (its session
//     queue keeps them; code 7000 tells the sender so). The sender's own QoS
//     decides only whether its acknowledgement waits for the store (1) or
//     not (0).
//   - A QoS 1 message is acknowledged once stored, and is known again by
//     (sender, client message id) if it comes twice (dedup.go).
//   - A delayed message is stored until its time (delayed.go) and routed then.
//   - Messages of one sender are acknowledged, and reach each receiver, in
//     the order they were sent.

// sendReq is one message to send.
type sendReq struct {
	from   *Account
	sess   *session // the sender's session (no-local for groups and everyone); nil from the HTTP API
	id     *Identity
	target wire.Target
	body   []byte // owned by the request
	qos    byte
	delay  time.Duration
	cmid   uint64 // client message id; 0: none (no ack, no dedup)
}

// handleSend applies a send frame: each message of a batch in order, each
// acknowledged by its own send-ack. Loop only.
func (c *nativeConn) handleSend(f *wire.Send) {
	srv := c.loop.srv
	bodies := f.Batch
	if len(bodies) == 0 {
		one := [1][]byte{f.Body}
		bodies = one[:]
	} else if len(f.Body) > 0 {
		bodies = append([][]byte{f.Body}, bodies...)
	}
	reqs := make([]*sendReq, len(bodies))
	for k, b := range bodies {
		r := &sendReq{from: c.acct, sess: c.sess, id: c.id, target: cloneTarget(f.Target), body: slices.Clone(b),
			qos: min(f.QoS, 1), delay: time.Duration(f.Delay) * time.Millisecond}
		if f.ID != 0 {
			r.cmid = f.ID + uint64(k)
		}
		reqs[k] = r
	}
	if f.QoS > 0 && srv.needsLookup(c.acct.ID, f.ID) {
		// Maybe a resend: ask the store (off the loop) first.
		offLoop(&c.transport, func() []sendResult { return srv.lookupSends(reqs) }, func(known []sendResult) {
			c.sendAll(reqs, known)
		})
		return
	}
	c.sendAll(reqs, nil)
}

// sendAll sends each request, or answers one the store already knows
// (known[i].msgID != 0) with its first id. Loop only.
func (c *nativeConn) sendAll(reqs []*sendReq, known []sendResult) {
	srv := c.loop.srv
	for i, r := range reqs {
		cmid := r.cmid
		if known != nil && known[i].msgID != 0 {
			c.appendSendAck(cmid, known[i])
			continue
		}
		srv.imSend(r, func(res sendResult) {
			if cmid != 0 {
				c.appendSendAck(cmid, res)
			}
		})
	}
}

func cloneTarget(t wire.Target) wire.Target {
	t.Name = string([]byte(t.Name)) // the frame aliases the read buffer
	return t
}

// appendSendAck answers one message. Any goroutine.
func (c *nativeConn) appendSendAck(cmid uint64, r sendResult) {
	a := wire.SendAck{ID: cmid, MsgID: r.msgID, Code: r.code, Time: r.at, Text: r.text}
	c.appendRaw(func(b []byte) []byte {
		out, err := wire.AppendSendAck(b, &a)
		if err != nil {
			return b
		}
		return out
	})
}

// imSend sends one message; done gets the result, at once for QoS 0 or a
// refusal, after the store for QoS 1 (possibly on another goroutine). Any
// goroutine; never blocks.
func (srv *Server) imSend(r *sendReq, done func(sendResult)) {
	now := srv.opts.Now()
	fail := func(code wire.Code, text string) { done(sendResult{code: code, at: now.UnixMilli(), text: text}) }
	if len(r.body) == 0 {
		fail(wire.CodeEmptyBody, "empty message body")
		return
	}
	if srv.store == nil {
		fail(wire.CodeFailure, ErrNoStore.Error())
		return
	}
	var name, conv string
	var indexFor []uint64
	routeQoS, receiverOffline := r.qos, false
	switch r.target.Kind {
	case wire.KindUser:
		to, ok := srv.im.dir.account(r.target.User)
		if !ok {
			fail(wire.CodeUnknownReceiver, "no user "+strconv.FormatUint(r.target.User, 10))
			return
		}
		name, conv, indexFor = inboxTopic(to.ID), privateConversation(r.from.ID, to.ID), []uint64{r.from.ID, to.ID}
		routeQoS, receiverOffline = 1, !srv.userOnline(to.ID) // cluster-wide (cluster_sync.go)
		if receiverOffline {
			srv.imSession(to.ID) // (an account from before sessions were made at registration)
		}
	case wire.KindGroup:
		member, exists := srv.im.dir.isMember(r.target.Name, r.from.ID)
		switch {
		case !exists:
			fail(wire.CodeUnknownGroup, "no group "+r.target.Name)
			return
		case !member:
			fail(wire.CodeNotMember, "not a member of "+r.target.Name)
			return
		}
		name, conv, routeQoS = groupTopic(r.target.Name), groupConversation(r.target.Name), 1
	case wire.KindAll:
		name, conv = allTopic, allConversation
	case wire.KindTopic:
		if err := topic.ValidName(r.target.Name); err != nil {
			fail(wire.CodeBadTopic, err.Error())
			return
		}
		if !srv.auth.Load().Allowed(r.id, nativeKey(r.from.ID).id, r.target.Name, AccessWrite) {
			fail(wire.CodeDenied, "not allowed to publish to "+r.target.Name)
			return
		}
		name = r.target.Name
	default:
		fail(wire.CodeBadArgument, "send: target kind "+strconv.Itoa(int(r.target.Kind)))
		return
	}
	if r.cmid != 0 && r.qos > 0 {
		srv.im.marks.raise(r.from.ID, r.cmid)
	}
	m := &Message{ID: srv.newID(), Topic: name, Payload: r.body, Sender: r.from.ID, SenderName: r.from.Name,
		Created: now.Unix(), QoS: routeQoS}
	m.Props = senderProps(m)
	res := sendResult{msgID: m.ID, code: wire.CodeOK, at: now.UnixMilli()}
	if receiverOffline && r.delay == 0 {
		res.code = wire.CodeOffline // stored; delivered at the receiver's next login
	}
	var sender, cmid string // the dedup key, when there is a client message id
	if r.cmid != 0 {
		sender, cmid = strconv.FormatUint(r.from.ID, 10), strconv.FormatUint(r.cmid, 10)
	}
	var dup *storage.DedupResult // the store's word on (sender, cmid), read once committed
	finish := func(err error) {
		switch {
		case err != nil:
			res.code, res.text = wire.CodeOfflineStore, err.Error()
		case dup != nil && dup.Duplicate:
			// A resend the memory did not know (the node restarted since
			// the first copy): the store kept the first id and wrote nothing.
			res.msgID = dup.ServerID
		}
		done(res)
	}
	if r.delay > 0 {
		due := now.Add(r.delay).UnixMilli()
		srv.im.delayed.schedule(storeMessage(m), due, func(b *storage.Batch) {
			if r.cmid != 0 {
				dup = b.Dedup(sender, cmid, m.ID)
			}
		}, finish)
		if r.qos == 0 {
			done(res)
		}
		return
	}
	fill := func(lb *lazyBatch) { // a QoS 0 send with no history and no id stores nothing: no batch
		if conv != "" {
			lb.get().PutHistory(conv, storeMessage(m), indexFor...)
		}
		if r.cmid != 0 {
			dup = lb.get().Dedup(sender, cmid, m.ID)
		}
	}
	if r.qos == 0 {
		srv.routeWith(m, r.sess, nil, fill)
		done(res)
		return
	}
	srv.routeWith(m, r.sess, func(_ int, err error) { finish(err) }, fill)
}

// senderProps are the MQTT 5 user properties a native message carries to
// MQTT subscribers: who sent it and its server id.
func senderProps(m *Message) []byte {
	var num [20]byte
	b := make([]byte, 0, 3*5+len("cim-sender-id")+len("cim-sender")+len("cim-msg-id")+len(m.SenderName)+2*len(num))
	b = mqtt.AppendUserProperty(b, "cim-sender-id", strconv.AppendUint(num[:0], m.Sender, 10))
	b = mqtt.AppendUserProperty(b, "cim-sender", m.SenderName)
	return mqtt.AppendUserProperty(b, "cim-msg-id", strconv.AppendUint(num[:0], m.ID, 10))
}
