package broker

import (
	"cmp"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cimgo/cim/broker/mqtt"
	"github.com/cimgo/cim/broker/topic"
	"github.com/mochi-mqtt/server/v2/packets"
)

// session is a client's state that outlives its connections: subscriptions,
// the in-flight window of QoS 1/2 messages sent and not yet acknowledged,
// the queue of messages waiting for room or for the client to come back, and
// inbound QoS 2 packet ids awaiting PUBREL.
type session struct {
	id     string
	srv    *Server
	online atomic.Bool // has a conn; read lock-free by shared-subscription picks

	mu       sync.Mutex
	conn     *conn                // REQUIRES: mu held. nil while offline
	subs     []subEntry           // REQUIRES: mu held
	inflight map[uint16]*inflight // REQUIRES: mu held. by packet id
	sendSeq  uint64               // REQUIRES: mu held. orders inflight for resend
	queue    []*queued            // REQUIRES: mu held. FIFO
	nextPID  uint16               // REQUIRES: mu held
	rx       map[uint16]struct{}  // REQUIRES: mu held. inbound QoS 2 ids awaiting PUBREL
	expiry   uint32               // REQUIRES: mu held. seconds kept after disconnect; 0xFFFFFFFF = forever
	window   uint16               // REQUIRES: mu held. max in flight to the client
	timer    *time.Timer          // REQUIRES: mu held. session expiry or will delay
	will     *Message             // REQUIRES: mu held. will waiting for its delay
	willDue  int64                // REQUIRES: mu held. unix seconds
	endsAt   int64                // REQUIRES: mu held. unix seconds the offline session expires, 0 = never
	retrying bool                 // REQUIRES: mu held. on a loop's retry list
	stored   bool                 // REQUIRES: mu held. has a record in the store
	version  byte                 // REQUIRES: mu held. protocol level of the last conn
	seq      uint64               // REQUIRES: mu held. last queue seq assigned (stored sessions)
	diskUpTo uint64               // REQUIRES: mu held. seqs up to this are queued on disk and not yet loaded (0: none)
	ended    bool                 // REQUIRES: mu held. removed from the registry
}

type subEntry struct {
	filter string
	sub    topic.Subscription
}

// inflight is one QoS 1/2 message sent to the client and not yet completed.
type inflight struct {
	queued
	seq uint64
	pid uint16
	rel bool // QoS 2: PUBREC received, PUBREL sent
}

// queued is a message waiting for delivery with the options it goes out with.
type queued struct {
	m      *Message
	subIDs []uint32
	seq    uint64 // key of the stored copy; 0 if not stored
	qos    byte
	retain bool
}

const foreverExpiry = 0xFFFFFFFF

// deliver hands m to the session at qos. A stored session's copy of a QoS
// 1/2 message is added to lb. Safe from any goroutine.
func (s *session) deliver(m *Message, qos byte, retain bool, subIDs []uint32, now int64, lb *lazyBatch) {
	if qos == 0 {
		// QoS 0 is not queued for offline sessions nor held in flight.
		s.mu.Lock()
		c := s.conn
		s.mu.Unlock()
		if c != nil {
			c.sendPublish(m, 0, retain, false, 0, subIDs, now)
		}
		return
	}
	if len(subIDs) > 0 {
		subIDs = slices.Clone(subIDs) // the router reuses its slice
	}
	q := queued{m: m, subIDs: subIDs, qos: qos, retain: retain}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended {
		return
	}
	if s.persistentLocked() {
		s.seq++
		q.seq = s.seq
		rec := storeMessage(m)
		rec.QoS, rec.Retain = qos, retain
		lb.get().PutQueued(s.id, q.seq, rec)
	}
	if c := s.conn; c != nil && len(s.queue) == 0 && s.diskUpTo == 0 && len(s.inflight) < int(s.window) {
		if !c.overBound() {
			s.sendLocked(c, q, now)
			return
		}
		s.retryLocked(c)
	}
	s.enqueueLocked(q)
}

// enqueueLocked appends q, dropping the oldest past MaxQueued.
// REQUIRES: s.mu held.
func (s *session) enqueueLocked(q queued) {
	if len(s.queue) >= s.srv.opts.MaxQueued {
		s.dropQueuedLocked(s.queue[0].seq)
		s.queue[0] = nil
		s.queue = s.queue[1:]
		s.srv.stats.QueueDropped.Add(1)
	}
	s.queue = append(s.queue, &q)
}

// retryLocked asks c's loop to pump s at its next tick. REQUIRES: s.mu held.
func (s *session) retryLocked(c *conn) {
	if !s.retrying {
		s.retrying = true
		c.loop.retryLater(s)
	}
}

// sendLocked assigns a packet id and sends q. REQUIRES: s.mu held.
func (s *session) sendLocked(c *conn, q queued, now int64) {
	pid := s.allocPIDLocked()
	if !c.sendPublish(q.m, q.qos, q.retain, false, pid, q.subIDs, now) {
		s.dropQueuedLocked(q.seq)
		return // too large for this client: discarded
	}
	if s.inflight == nil {
		s.inflight = make(map[uint16]*inflight)
	}
	s.sendSeq++
	s.inflight[pid] = &inflight{queued: q, seq: s.sendSeq, pid: pid}
}

// allocPIDLocked returns a packet id not in flight. REQUIRES: s.mu held.
func (s *session) allocPIDLocked() uint16 {
	for {
		s.nextPID++
		if s.nextPID == 0 {
			s.nextPID = 1
		}
		if _, used := s.inflight[s.nextPID]; !used {
			return s.nextPID
		}
	}
}

// pump sends queued messages while the window and the outbound buffer have
// room. REQUIRES: s.mu held.
func (s *session) pump(now int64) {
	c := s.conn
	if s.diskUpTo != 0 {
		return // older messages are still on disk (see loadQueue)
	}
	for c != nil && len(s.queue) > 0 && len(s.inflight) < int(s.window) {
		if c.overBound() {
			s.retryLocked(c)
			return
		}
		q := s.queue[0]
		s.queue[0] = nil
		s.queue = s.queue[1:]
		if q.m.expired(now) {
			s.srv.stats.Expired.Add(1)
			s.dropQueuedLocked(q.seq)
			continue
		}
		s.sendLocked(c, *q, now)
	}
	if len(s.queue) == 0 {
		s.queue = nil // release the backing array
	}
}

// resumeLocked resends the in-flight window in order (PUBLISH with DUP, or
// PUBREL) on a new connection, then pumps the queue. REQUIRES: s.mu held.
func (s *session) resumeLocked(now int64) {
	c := s.conn
	if len(s.inflight) > 0 {
		list := make([]*inflight, 0, len(s.inflight))
		for _, f := range s.inflight {
			list = append(list, f)
		}
		slices.SortFunc(list, func(a, b *inflight) int { return cmp.Compare(a.seq, b.seq) })
		for _, f := range list {
			if f.rel {
				c.appendRaw(func(b []byte) []byte { return mqtt.AppendAck(b, c.version, packets.Pubrel, f.pid, 0) })
				continue
			}
			c.sendPublish(f.m, f.qos, f.retain, true, f.pid, f.subIDs, now) // [MQTT-4.4.0-1]
		}
	}
	s.pump(now)
}

// ack handles PUBACK, PUBREC and PUBCOMP for packet id pid. It returns false
// if pid is not in flight at the right stage. Loop of the session's conn.
func (s *session) ack(typ byte, pid uint16, reason byte, now int64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := s.inflight[pid]
	if f == nil {
		return false
	}
	switch typ {
	case packets.Puback:
		if f.qos != 1 {
			return false
		}
	case packets.Pubrec:
		if f.qos != 2 || f.rel {
			return false
		}
		if reason < 0x80 {
			f.rel = true
			f.m = nil // the payload is no longer needed
			return true
		}
	case packets.Pubcomp:
		if !f.rel {
			return false
		}
	}
	delete(s.inflight, pid)
	s.dropQueuedLocked(f.seq)
	s.pump(now)
	return true
}

// addSub records a subscription (replacing one on the same filter).
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
