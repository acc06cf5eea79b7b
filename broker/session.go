package broker

import (
	"slices"
	"sync"
	"sync/atomic"

	"github.com/cimgo/cim/broker/topic"
	"github.com/cimgo/cim/storage"
)

// skey identifies a session: protocol and id, so that an MQTT client id
// "alice" and a native user "alice" are different sessions.
type skey struct {
	proto byte   // storage.ProtocolMQTT or storage.ProtocolNative
	id    string // MQTT client id, native user id
}

func mqttKey(id string) skey { return skey{storage.ProtocolMQTT, id} }

// session is a subscriber's state that outlives its connections, the same
// for every protocol: subscriptions, the in-flight window of QoS 1/2
// messages sent and not yet acknowledged (inflight.go), the queue of
// messages waiting for room or for the client to come back, and the
// session's expiry and will (will.go).
type session struct {
	key    skey
	srv    *Server
	online atomic.Bool // has a connection; read lock-free by shared-subscription picks

	mu       sync.Mutex
	ready    bool                 // REQUIRES: mu held. ep answered the login: deliveries may go out
	retrying bool                 // REQUIRES: mu held. on a loop's retry list
	stored   bool                 // REQUIRES: mu held. has a record in the store
	ended    bool                 // REQUIRES: mu held. removed from the registry
	capped   bool                 // REQUIRES: mu held. the store dropped messages of its queue (logged once)
	version  byte                 // REQUIRES: mu held. protocol version of the last connection
	window   uint16               // REQUIRES: mu held. max in flight to the client
	nextTag  uint16               // REQUIRES: mu held
	expiry   uint32               // REQUIRES: mu held. seconds kept after disconnect; foreverExpiry = forever
	sendSeq  uint32               // REQUIRES: mu held. orders inflight for resend
	ep       endpoint             // REQUIRES: mu held. nil while offline
	ident    *Identity            // REQUIRES: mu held. who logged in last, for the ACL (nil: the server)
	subs     []subEntry           // REQUIRES: mu held
	inflight map[uint16]*inflight // REQUIRES: mu held. by tag (MQTT packet id)
	rare     *sessionRare         // REQUIRES: mu held. nil until needed
}

// sessionRare is what only some sessions need, kept apart so that the
// common one does not carry it (128 B instead of 176; TestIdleConnCost).
type sessionRare struct {
	queue []*queued           // messages waiting for room or for the client, FIFO
	seq   uint64              // last queue seq assigned (stored sessions)
	disk  *spill              // the queue's disk-only part (spill.go); nil when none
	rx    map[uint16]struct{} // MQTT: inbound QoS 2 ids awaiting PUBREL (mqtt_publish.go)
	off   *offline            // deadlines while offline (will.go, deadline.go); nil when none
}

// rareLocked returns s's rare state, making it. REQUIRES: s.mu held.
func (s *session) rareLocked() *sessionRare {
	if s.rare == nil {
		s.rare = &sessionRare{}
	}
	return s.rare
}

// queueLocked is the queue, nil when empty. REQUIRES: s.mu held.
func (s *session) queueLocked() []*queued {
	if s.rare == nil {
		return nil
	}
	return s.rare.queue
}

// seqLocked is the last queue seq assigned. REQUIRES: s.mu held.
func (s *session) seqLocked() uint64 {
	if s.rare == nil {
		return 0
	}
	return s.rare.seq
}

// diskLocked is the queue's disk-only part, nil when none. REQUIRES: s.mu held.
func (s *session) diskLocked() *spill {
	if s.rare == nil {
		return nil
	}
	return s.rare.disk
}

// rxLocked is the set of inbound QoS 2 ids awaiting PUBREL (nil when
// empty: read it, delete from it; add with addRxLocked). REQUIRES: s.mu held.
func (s *session) rxLocked() map[uint16]struct{} {
	if s.rare == nil {
		return nil
	}
	return s.rare.rx
}

// addRxLocked records an inbound QoS 2 id. REQUIRES: s.mu held.
func (s *session) addRxLocked(id uint16) {
	x := s.rareLocked()
	if x.rx == nil {
		x.rx = make(map[uint16]struct{})
	}
	x.rx[id] = struct{}{}
}

// offline is what only an offline session has: its will waiting for its
// delay and its deadlines. Kept apart so that a connected session, the
// common case, does not carry it.
type offline struct {
	will    *Message // waiting for its delay
	willDue int64    // unix seconds
	endsAt  int64    // unix seconds the session expires, 0 = never
	dueAt   int64    // second of its entry in the deadline wheel, 0 = none
}

// offLocked returns s's offline state, making it. REQUIRES: s.mu held.
func (s *session) offLocked() *offline {
	x := s.rareLocked()
	if x.off == nil {
		x.off = &offline{}
	}
	return x.off
}

// offlineLocked is s's offline state, nil when none. REQUIRES: s.mu held.
func (s *session) offlineLocked() *offline {
	if s.rare == nil {
		return nil
	}
	return s.rare.off
}

type subEntry struct {
	filter string
	sub    topic.Subscription
}

// queued is a message waiting for delivery with the options it goes out with.
type queued struct {
	m       *Message
	subIDs  []uint32
	seq     uint64 // key of the stored copy; 0 if not stored
	tag     uint16 // the tag it was sent under before a restart (QoS 2) or a hand-off, 0 if none
	qos     byte
	retain  bool
	offline bool // arrived while the client was away
}

const foreverExpiry = 0xFFFFFFFF

// deliver hands m to the session at qos, unless the ACL lets the session's
// user not read m's topic (checked per delivery, so a subscription to a
// broad filter never carries a topic its holder may not read). A stored
// session's copy of a QoS 1/2 message is added to lb. Any goroutine; takes
// s.mu, so never call it with a session lock held.
func (s *session) deliver(m *Message, qos byte, retain bool, subIDs []uint32, now int64, lb *lazyBatch) {
	s.deliverShared(m, qos, retain, subIDs, now, lb, nil)
}

// deliverShared is deliver within a routing pass that shares encodings
// (encode.go; nil: none).
func (s *session) deliverShared(m *Message, qos byte, retain bool, subIDs []uint32, now int64, lb *lazyBatch, shared *encodeOnce) {
	if qos == 0 {
		// QoS 0 is not queued for offline sessions nor held in flight.
		s.mu.Lock()
		ep, ready, id := s.ep, s.ready, s.ident
		s.mu.Unlock()
		if ep != nil && ready && s.srv.mayRead(id, s.key, m.Topic) {
			ep.deliver(delivery{m: m, subIDs: subIDs, now: now, retain: retain, shared: shared})
		}
		return
	}
	if len(subIDs) > 0 {
		subIDs = slices.Clone(subIDs) // the router reuses its slice
	}
	q := queued{m: m, subIDs: subIDs, qos: qos, retain: retain}
	s.mu.Lock()
	if s.ended {
		// Taken out by this routing pass's end: handed to another node a
		// moment ago, it may still get m there (cluster_owner.go).
		s.mu.Unlock()
		s.srv.deliveredLate(s.key, m)
		return
	}
	defer s.mu.Unlock()
	if !s.srv.mayRead(s.ident, s.key, m.Topic) {
		return
	}
	q.offline = s.ep == nil
	if s.persistentLocked() {
		x := s.rareLocked()
		x.seq++
		q.seq = x.seq
		rec := storeMessage(m)
		rec.QoS, rec.Retain, rec.SubIDs = qos, retain, subIDs
		lb.get().PutQueued(s.key.storeKey(), q.seq, rec)
		if s.diskLocked() != nil {
			s.spillLocked(q, lb) // behind messages on disk only: it waits there too (spill.go)
			return
		}
	}
	if ep := s.ep; ep != nil && s.ready && len(s.queueLocked()) == 0 && len(s.inflight) < int(s.window) {
		if !ep.tr().overBound() {
			s.sendLocked(ep, q, now, shared)
			return
		}
		s.retryLocked(ep)
	}
	s.enqueueLocked(q, lb)
}

// enqueueLocked appends q. Past MaxQueued a stored message waits on disk
// only (spill.go); a session without a store drops its oldest (counted).
// REQUIRES: s.mu held.
func (s *session) enqueueLocked(q queued, lb *lazyBatch) {
	x := s.rareLocked()
	if len(x.queue) >= s.srv.opts.MaxQueued {
		if q.seq != 0 {
			s.spillLocked(q, lb)
			return
		}
		s.dropQueuedLocked(x.queue[0].seq)
		x.queue[0] = nil
		x.queue = x.queue[1:]
		s.srv.stats.QueueDropped.Add(1)
	}
	x.queue = append(x.queue, &q)
}

// retryLocked asks ep's loop to pump s at its next tick. REQUIRES: s.mu held.
func (s *session) retryLocked(ep endpoint) {
	if !s.retrying {
		s.retrying = true
		ep.tr().loop.retryLater(s)
	}
}

// start lets deliveries go out on ep, which has answered the login, and
// resends what the session kept: the in-flight window, then the queue
// (read from disk first if it is still there). Loop of ep.
func (s *session) start(ep endpoint, now int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ep != ep {
		return // taken over meanwhile
	}
	s.ready = true
	s.resumeLocked(now) // pages the disk part in as the queue drains (spill.go)
}

// addSubLocked records a subscription (replacing one on the same filter).
// REQUIRES: s.mu held.
func (s *session) addSubLocked(filter string, sub topic.Subscription) {
	for i := range s.subs {
		if s.subs[i].filter == filter {
			s.subs[i].sub = sub
			return
		}
	}
	s.subs = append(s.subs, subEntry{filter: filter, sub: sub})
}

// removeSubLocked forgets a subscription. REQUIRES: s.mu held.
func (s *session) removeSubLocked(filter string) {
	for i := range s.subs {
		if s.subs[i].filter == filter {
			s.subs = slices.Delete(s.subs, i, i+1)
			return
		}
	}
}

// mayRead applies the ACL's read access to one delivery of topic to the
// session of key, logged in as id. Free when nothing restricts id.
func (srv *Server) mayRead(id *Identity, key skey, topic string) bool {
	a := srv.auth.Load()
	return !a.Restricts(id) || a.Allowed(id, key.id, topic, AccessRead)
}
