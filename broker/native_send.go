package broker

import (
	"slices"
	"strconv"
	"strings"
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
	target wire.Target // may alias the caller's buffer: imSend copies what it keeps
	body   []byte      // likewise
	qos    byte
	delay  time.Duration
	cmid   uint64 // client message id; 0: none (no ack, no dedup)
	// scratch, if not nil, is a Message imSend may route a message in that
	// travels at QoS 0 and is stored nowhere whole (no history record, no
	// delay): its deliveries are encoded before route returns, so it needs
	// no Message nor bytes of its own (MQTT's QoS 0 in handlePublish does
	// the same). The loop's, for a send read on the loop.
	scratch *Message
	now     time.Time // when it was read (loop.wallNow); zero: imSend reads the clock
}

// own copies what r aliases, for a request kept past its frame.
func (r *sendReq) own() {
	r.target.Name = strings.Clone(r.target.Name)
	r.body = slices.Clone(r.body)
}

// sendDone hears the result of one send, with its client message id.
type sendDone interface {
	sent(cmid uint64, res sendResult)
}

// sendFunc is a sendDone of a function (the HTTP API's).
type sendFunc func(cmid uint64, res sendResult)

func (f sendFunc) sent(cmid uint64, res sendResult) { f(cmid, res) }

// handleSend applies a send frame: each message of a batch in order, each
// acknowledged by its own send-ack. Loop only.
//
// The common case allocates nothing per message here: requests live on
// the stack and alias the frame, and imSend copies the bytes it keeps
// once, into the Message (BenchmarkNativeSend).
func (c *nativeConn) handleSend(f *wire.Send) {
	srv := c.loop.srv
	bodies := f.Batch
	if len(bodies) == 0 {
		one := [1][]byte{f.Body}
		bodies = one[:]
	} else if len(f.Body) > 0 {
		bodies = append([][]byte{f.Body}, bodies...)
	}
	r := sendReq{from: c.acct, sess: c.sess, id: c.id, target: f.Target, qos: min(f.QoS, 1),
		delay: time.Duration(f.Delay) * time.Millisecond, scratch: &c.loop.msg, now: c.loop.wallNow()}
	if f.QoS > 0 && srv.needsLookup(c.acct.ID, f.ID) {
		// Maybe a resend: ask the store (off the loop) first.
		reqs := make([]*sendReq, len(bodies))
		for k, b := range bodies {
			q := r
			q.body, q.scratch, q.now = b, nil, time.Time{} // sent later
			if f.ID != 0 {
				q.cmid = f.ID + uint64(k)
			}
			q.own() // the frame aliases the read buffer
			reqs[k] = &q
		}
		offLoop(&c.transport, func() []sendResult { return srv.lookupSends(reqs) }, func(known []sendResult) {
			c.sendAll(reqs, known)
		})
		return
	}
	for k, b := range bodies {
		r.body = b
		if f.ID != 0 {
			r.cmid = f.ID + uint64(k)
		}
		srv.imSend(&r, c)
	}
}

// sendAll sends each request, or answers one the store already knows
// (known[i].msgID != 0) with its first id. Loop only.
func (c *nativeConn) sendAll(reqs []*sendReq, known []sendResult) {
	srv := c.loop.srv
	for i, r := range reqs {
		if known != nil && known[i].msgID != 0 {
			c.sent(r.cmid, known[i])
			continue
		}
		srv.imSend(r, c)
	}
}

// sent answers one message with a send-ack, if it has a client message id
// (sendDone). Any goroutine.
func (c *nativeConn) sent(cmid uint64, r sendResult) {
	if cmid == 0 {
		return
	}
	a := wire.SendAck{ID: cmid, MsgID: r.msgID, Code: r.code, Time: r.at, Text: r.text}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	ob := c.bufLocked()
	if out, err := wire.AppendSendAck(ob.b, &a); err == nil {
		ob.b = out
	}
	c.scheduleLocked() // (unlocks)
}

// imSend sends one message; done hears the result, at once for QoS 0 or a
// refusal, after the store for QoS 1 (possibly on another goroutine). r is
// the caller's again when imSend returns. Any goroutine; never blocks.
func (srv *Server) imSend(r *sendReq, done sendDone) {
	now := r.now
	if now.IsZero() {
		now = srv.opts.Now()
	}
	fail := func(code wire.Code, text string) {
		done.sent(r.cmid, sendResult{code: code, at: now.UnixMilli(), text: text})
	}
	if len(r.body) == 0 {
		fail(wire.CodeEmptyBody, "empty message body")
		return
	}
	if srv.store == nil {
		fail(wire.CodeFailure, ErrNoStore.Error())
		return
	}
	var name, conv string // name may alias r.target
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
		client := ""
		if r.sess != nil {
			client = r.sess.key.id
		} else {
			client = nativeKey(r.from.ID).id
		}
		if !srv.auth.Load().Allowed(r.id, client, r.target.Name, AccessWrite) {
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
	id := srv.ids.next(now)
	res := sendResult{msgID: id, code: wire.CodeOK, at: now.UnixMilli()}
	if receiverOffline && r.delay == 0 {
		res.code = wire.CodeOffline // stored; delivered at the receiver's next login
	}
	var m *Message
	if r.scratch != nil && routeQoS == 0 && r.delay == 0 && conv == "" {
		m = r.scratch
		*m = Message{Topic: name, Payload: r.body}
		defer clearMessage(m)
	} else {
		m = newMessageOf(name, r.body) // owns its bytes: queued, stored or delayed
	}
	m.ID, m.Sender, m.SenderName, m.Created, m.QoS = id, r.from.ID, r.from.Name, now.Unix(), routeQoS
	switch {
	case r.cmid != 0 || conv != "" || r.delay > 0:
		srv.imStore(r, m, now, conv, indexFor, res, done)
	case r.qos == 0:
		// Nothing to store with it: no batch, no dedup key.
		srv.route(m, r.sess, nil)
		done.sent(0, res)
	default:
		p := &imPending{done: done, res: res}
		srv.routeWith(m, r.sess, p.routed, nil)
	}
}

func clearMessage(m *Message) { *m = Message{} }

// imStore sends m, which has records to store with it: its history, the
// dedup key of its client message id, or itself until its time.
func (srv *Server) imStore(r *sendReq, m *Message, now time.Time, conv string, indexFor []uint64, res sendResult, done sendDone) {
	var p *imPending // a QoS 1 send's result, waiting for the store
	if r.qos > 0 {
		p = &imPending{done: done, cmid: r.cmid, res: res}
	}
	var sender, cmid string // the dedup key, when there is a client message id
	if r.cmid != 0 {
		sender, cmid = strconv.FormatUint(r.from.ID, 10), strconv.FormatUint(r.cmid, 10)
	}
	dedup := func(b *storage.Batch) {
		if cmid != "" {
			dup := b.Dedup(sender, cmid, m.ID)
			if p != nil {
				p.dup = dup
			}
		}
	}
	if r.delay > 0 {
		// A QoS 0 send is answered now; what the store says later is
		// only logged (a second answer would be a second send-ack).
		after := srv.logCommit
		if p != nil {
			after = p.finish
		}
		srv.im.delayed.schedule(storeMessage(m), now.Add(r.delay).UnixMilli(), dedup, after)
		if p == nil {
			done.sent(r.cmid, res)
		}
		return
	}
	fill := func(lb *lazyBatch) { // a QoS 0 send with no history and no id stores nothing: no batch
		if conv != "" {
			lb.get().PutHistory(conv, storeMessage(m), indexFor...)
		}
		if cmid != "" {
			dedup(lb.get())
		}
	}
	if p == nil {
		srv.routeWith(m, r.sess, nil, fill)
		done.sent(r.cmid, res)
		return
	}
	srv.routeWith(m, r.sess, p.routed, fill)
}

// newMessageOf is a Message on topic with body, owning both in one
// allocation.
func newMessageOf(topic string, body []byte) *Message {
	buf := make([]byte, len(topic)+len(body))
	copy(buf, topic)
	copy(buf[len(topic):], body)
	return &Message{Topic: unsafeString(buf[:len(topic)]), Payload: buf[len(topic):]}
}

// imPending is a QoS 1 send waiting for the store.
type imPending struct {
	done sendDone
	cmid uint64
	res  sendResult
	dup  *storage.DedupResult // the store's word on (sender, cmid), read once committed
}

func (p *imPending) routed(_ int, err error) { p.finish(err) }

func (p *imPending) finish(err error) {
	switch {
	case err != nil:
		p.res.code, p.res.text = wire.CodeOfflineStore, err.Error()
	case p.dup != nil && p.dup.Duplicate:
		// A resend the memory did not know (the node restarted since
		// the first copy): the store kept the first id and wrote nothing.
		p.res.msgID = p.dup.ServerID
	}
	p.done.sent(p.cmid, p.res)
}

// appendSenderProps appends the MQTT 5 user properties a native message
// carries to MQTT subscribers: who sent it and its server id. They are
// made per MQTT 5 encoding (once per fan-out group, encode.go), not per
// send: most messages never meet an MQTT 5 subscriber (BenchmarkNativeSend).
// A message that carries its property block already (stored or forwarded
// by an older version, which made them at send time) gets none again.
func appendSenderProps(dst []byte, m *Message) []byte {
	if m.Sender == 0 || m.Props != nil {
		return dst
	}
	var num [20]byte
	dst = mqtt.AppendUserProperty(dst, "cim-sender-id", strconv.AppendUint(num[:0], m.Sender, 10))
	dst = mqtt.AppendUserProperty(dst, "cim-sender", m.SenderName)
	return mqtt.AppendUserProperty(dst, "cim-msg-id", strconv.AppendUint(num[:0], m.ID, 10))
}

// mqttProps is m's MQTT 5 property block as a peer of an older version
// expects it in a forwarded message: with the sender's properties.
func mqttProps(m *Message) []byte {
	if m.Sender == 0 || m.Props != nil {
		return m.Props
	}
	return appendSenderProps(make([]byte, 0, 3*5+len("cim-sender-id")+len("cim-sender")+len("cim-msg-id")+len(m.SenderName)+40), m)
}
