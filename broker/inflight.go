package broker

import (
	"cmp"
	"slices"

	"github.com/cimgo/cim/storage"
)

// The in-flight window: QoS 1/2 messages sent to a client and not yet
// acknowledged, at most session.window of them, each under a tag (the MQTT
// packet id) that the client's acknowledgement names. Messages beyond the
// window wait in the session's queue; every acknowledgement pumps the queue.
// On a new connection the window is resent in the order it was first sent,
// then the queue follows. The protocol decides what an acknowledgement is;
// the window only knows these steps:
type ackStep uint8

const (
	stepAck      ackStep = iota // QoS 1 done (MQTT PUBACK, native deliver ack)
	stepReceived                // QoS 2 first phase done (MQTT PUBREC): only the release is resent from now on
	stepRefused                 // QoS 2 refused by the receiver (PUBREC ≥ 0x80): done
	stepComplete                // QoS 2 done (MQTT PUBCOMP)
)

// inflight is one QoS 1/2 message sent to the client and not yet completed.
type inflight struct {
	queued        // queued.seq is the stored copy's key
	order  uint32 // send order
	tag    uint16
	rel    bool // QoS 2: first phase done (PUBREC received, PUBREL sent)
}

// sendLocked assigns a tag and sends q. REQUIRES: s.mu held.
func (s *session) sendLocked(ep endpoint, q queued, now int64, shared *encodeOnce) {
	tag := s.tagForLocked(q)
	// A recorded tag is one it was sent under (in flight when the session
	// moved from another node, or a QoS 2 tag kept in the store): this is
	// a redelivery [MQTT-4.4.0-1].
	dup := q.tag != 0 && tag == q.tag
	d := delivery{m: q.m, subIDs: q.subIDs, now: now, tag: tag, qos: q.qos, retain: q.retain, offline: q.offline, shared: shared, dup: dup}
	if !ep.deliver(d) {
		s.dropQueuedLocked(q.seq)
		return // too large for this client: discarded
	}
	if s.inflight == nil {
		s.inflight = make(map[uint16]*inflight)
	}
	s.sendSeq++
	s.inflight[tag] = &inflight{queued: q, order: s.sendSeq, tag: tag}
}

// tagForLocked picks q's tag: the one it was sent under before, if it has
// one and it is free. A stored QoS 1 or 2 message takes the tag its queue
// seq gives, so that after a crash its resend carries the same MQTT packet
// id [MQTT-4.4.0-1] (for QoS 2 the receiver knows it by it [MQTT-4.3.3]);
// if that tag is taken, the one it gets is recorded with it. REQUIRES:
// s.mu held.
func (s *session) tagForLocked(q queued) uint16 {
	if q.tag != 0 {
		if _, used := s.inflight[q.tag]; !used {
			return q.tag // as recorded before a restart or a hand-off
		}
	}
	if q.qos == 0 || q.seq == 0 || !s.persistentLocked() {
		return s.allocTagLocked()
	}
	tag := seqTag(q.seq)
	if _, used := s.inflight[tag]; !used {
		return tag
	}
	tag = s.allocTagLocked()
	key, seq, rec := s.key.storeKey(), q.seq, queuedRecord(&q)
	rec.PacketID = tag
	s.srv.async.commit(func(b *storage.Batch) { b.PutQueued(key, seq, rec) })
	return tag
}

// seqTag is the tag a stored QoS 2 message's seq gives: 1..65535.
func seqTag(seq uint64) uint16 { return uint16(seq%65535) + 1 }

// allocTagLocked returns a tag not in flight. REQUIRES: s.mu held.
func (s *session) allocTagLocked() uint16 {
	for {
		s.nextTag++
		if s.nextTag == 0 {
			s.nextTag = 1
		}
		if _, used := s.inflight[s.nextTag]; !used {
			return s.nextTag
		}
	}
}

// pumpLocked sends queued messages while the window and the outbound
// buffer have room. REQUIRES: s.mu held.
func (s *session) pumpLocked(now int64) {
	ep := s.ep
	if !s.ready {
		return // not logged in yet
	}
	for ep != nil && len(s.queueLocked()) > 0 && len(s.inflight) < int(s.window) {
		if ep.tr().overBound() {
			s.retryLocked(ep)
			return
		}
		x := s.rare
		q := x.queue[0]
		x.queue[0] = nil
		x.queue = x.queue[1:]
		if q.m.expired(now) {
			s.srv.stats.Expired.Add(1)
			s.dropQueuedLocked(q.seq)
			continue
		}
		s.sendLocked(ep, *q, now, nil)
	}
	if x := s.rare; x != nil && len(x.queue) == 0 {
		x.queue = nil // release the backing array
	}
	s.pageInLocked()
}

// resumeLocked resends the in-flight window in order (the message again,
// marked as a resend, or only its release) on a new connection, then pumps
// the queue. REQUIRES: s.mu held.
func (s *session) resumeLocked(now int64) {
	ep := s.ep
	if len(s.inflight) > 0 {
		for _, f := range s.inflightInOrderLocked() {
			d := delivery{m: f.m, subIDs: f.subIDs, now: now, tag: f.tag, qos: f.qos, retain: f.retain,
				dup: true, released: f.rel, offline: f.offline} // [MQTT-4.4.0-1]
			ep.deliver(d)
		}
	}
	s.pumpLocked(now)
}

// ack applies an acknowledgement step to the delivery with tag. It reports
// false if tag is not in flight at a stage that step fits. Loop of the
// session's connection.
func (s *session) ack(tag uint16, step ackStep, now int64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := s.inflight[tag]
	if f == nil {
		return false
	}
	switch step {
	case stepAck:
		if f.qos != 1 {
			return false
		}
	case stepReceived:
		if f.qos != 2 || f.rel {
			return false
		}
		f.rel = true
		if f.queued.seq == 0 {
			f.m = nil // the payload is no longer needed (a stored one still names its topic)
		}
		return true
	case stepRefused:
		if f.qos != 2 || f.rel {
			return false
		}
	case stepComplete:
		if !f.rel {
			return false
		}
	}
	delete(s.inflight, tag)
	s.dropQueuedLocked(f.queued.seq)
	s.pumpLocked(now)
	return true
}

// inflightInOrderLocked lists the window in the order it was sent.
// REQUIRES: s.mu held.
func (s *session) inflightInOrderLocked() []*inflight {
	list := make([]*inflight, 0, len(s.inflight))
	for _, f := range s.inflight {
		list = append(list, f)
	}
	slices.SortFunc(list, func(a, b *inflight) int { return cmp.Compare(a.order, b.order) })
	return list
}
