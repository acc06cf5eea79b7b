package broker

import (
	"fmt"
	"time"

	"github.com/cimgo/cim/broker/topic"
	"github.com/cimgo/cim/storage"
)

// Snapshot is a session as it moves between places: out of the store when
// the node starts (recovery), or from another node to this one when its
// client reconnects here (a cluster's hand-off, through Owner). It owns its
// contents and is in the store's own record types, so a hand-off can carry
// it in the same encoding.
type Snapshot struct {
	// Session has the identity (Protocol, ClientID), the subscriptions, the
	// expiry and when the session went offline.
	Session storage.Session
	// Queue holds the queued and in-flight messages in delivery order, with
	// their queue seq; an in-flight one has Sent set (for QoS 2: PUBREC came).
	Queue []QueuedMessage
	// DiskFrom, if not 0: the queue's entries from this seq on are in this
	// node's store and not in Queue (recovery: read when the client returns;
	// DiskTail is the last of them).
	DiskFrom, DiskTail uint64
}

// QueuedMessage is one entry of a Snapshot's queue.
type QueuedMessage struct {
	Seq     uint64
	Message storage.Message
}

// restore builds a session from snap, subscribed and filed for its
// deadlines, and counts it; the caller puts it in the registry. Any
// goroutine.
func (srv *Server) restore(snap *Snapshot) *session {
	r := &snap.Session
	s := &session{key: skey{r.Protocol, r.ClientID}, srv: srv, expiry: r.ExpiryInterval, version: r.Version}
	if seq := max(r.NextSeq, 1) - 1; seq != 0 || snap.DiskFrom != 0 {
		s.rare = &sessionRare{seq: seq}
		if snap.DiskFrom != 0 {
			s.rare.disk = &spill{from: snap.DiskFrom}
		}
	}
	if s.key.proto == 0 {
		s.key.proto = storage.ProtocolMQTT // written before sessions had a protocol
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, id := range r.Rx {
		s.addRxLocked(id)
	}
	for _, sub := range r.Subs {
		if topic.ValidFilter(sub.Filter) != nil {
			continue
		}
		srv.subscribeLocked(s, sub.Filter, topic.Subscription{QoS: sub.QoS, NoLocal: sub.NoLocal,
			RetainAsPublished: sub.RetainAsPublished, RetainHandling: sub.RetainHandling, ID: sub.ID})
	}
	var released []*queued
	for i := range snap.Queue {
		e := &snap.Queue[i]
		if e.Seq > s.seqLocked() {
			s.rareLocked().seq = e.Seq
		}
		q := &queued{m: loadMessage(&e.Message), subIDs: e.Message.SubIDs, qos: e.Message.QoS, retain: e.Message.Retain,
			seq: e.Seq, tag: e.Message.PacketID, offline: true}
		if e.Message.QoS == 2 && e.Message.Sent {
			released = append(released, q) // (hand-off) its PUBREC came: only the release is due, under its id
			continue
		}
		x := s.rareLocked() // s is not shared yet
		x.queue = append(x.queue, q)
	}
	s.restoreReleasedLocked(released)
	if snap.DiskTail > s.seqLocked() {
		s.rareLocked().seq = snap.DiskTail
	}
	s.stored = srv.store != nil && s.expiry != 0
	now := srv.now()
	if gone := (r.DisconnectedAt + 999) / 1000; s.expiry != foreverExpiry {
		if gone == 0 {
			gone = now // it was connected when its node stopped
		}
		s.offLocked().endsAt = gone + int64(s.expiry)
	}
	srv.deadlines.armLocked(s)
	srv.stats.Sessions.Add(1)
	return s
}

// recover rebuilds retained messages, sessions and subscriptions from the
// store; queues stay on disk until their client returns (spill.go), so a
// node with millions queued serves again at once. It runs before the
// listeners open.
func (srv *Server) recover() error {
	start := time.Now()
	db := srv.store
	nRetained := 0
	if err := db.LoadRetained(func(r *storage.Message) error {
		m := loadMessage(r)
		srv.retained.Set(m.Topic, m)
		srv.stats.Retained.Add(1)
		nRetained++
		return nil
	}); err != nil {
		return fmt.Errorf("%w: recover retained: %w", ErrServer, err)
	}
	var snaps []*Snapshot
	if err := db.LoadSessions(func(r *storage.Session) error {
		snaps = append(snaps, &Snapshot{Session: *r})
		return nil
	}); err != nil {
		return fmt.Errorf("%w: recover sessions: %w", ErrServer, err)
	}
	nq := 0
	for _, snap := range snaps {
		if qi := db.QueueInfo(snap.Session.Key()); qi.Count > 0 {
			snap.DiskFrom, snap.DiskTail = qi.Head, qi.Tail
			nq += qi.Count
		}
		srv.sessions.insert(srv.restore(snap))
	}
	srv.log.Info("recovered", "sessions", len(snaps), "queued", nq, "retained", nRetained, "took", time.Since(start).Round(time.Millisecond))
	return nil
}

// handOff takes the offline session of key out of this node, as a
// snapshot, for another node its client reconnected to; the session ends
// here, its stored copy too. It reports false if there is no such session
// or a client is connected to it. A queue still on disk is read after the
// locks are let go, so it may do I/O: never on an event loop.
func (srv *Server) handOff(key skey) (*Snapshot, bool) {
	r := srv.sessions
	sh := &r.shards[r.shard(key)]
	sh.mu.Lock()
	s := sh.m.get(key)
	if s == nil {
		sh.mu.Unlock()
		return nil, false
	}
	s.mu.Lock()
	if s.ep != nil {
		s.mu.Unlock()
		sh.mu.Unlock()
		return nil, false
	}
	snap := &Snapshot{Session: *s.recordLocked(srv.now())}
	for _, f := range s.inflightInOrderLocked() {
		if f.rel || f.m == nil {
			// QoS 2 past PUBREC: the receiver has it; its release is due,
			// under its packet id [MQTT-4.4.0-1].
			snap.Queue = append(snap.Queue, QueuedMessage{Seq: f.queued.seq, Message: storage.Message{QoS: 2, PacketID: f.tag, Sent: true}})
			continue
		}
		rec := queuedRecord(&f.queued)
		rec.PacketID = f.tag // sent under it: a QoS 2 resend keeps it, so the receiver knows it
		snap.Queue = append(snap.Queue, QueuedMessage{Seq: f.queued.seq, Message: *rec})
	}
	for _, q := range s.queueLocked() {
		snap.Queue = append(snap.Queue, QueuedMessage{Seq: q.seq, Message: *queuedRecord(q)})
	}
	var diskFrom uint64
	if d := s.diskLocked(); d != nil {
		diskFrom = d.from
	}
	stored := s.stored
	srv.unsubscribeAllLocked(s)
	s.inflight = nil
	if x := s.rare; x != nil {
		x.queue, x.rx = nil, nil
	}
	s.ended, s.stored = true, false
	s.online.Store(false)
	srv.stats.Sessions.Add(-1)
	sh.m.del(key)
	s.mu.Unlock()
	sh.mu.Unlock()
	if !stored {
		return snap, true
	}
	if diskFrom != 0 {
		// The disk part comes after everything in memory. Messages routed to
		// the session just before it ended may still be on their way to the
		// store: wait (briefly) until their batches committed.
		for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
			s.mu.Lock()
			pending := s.diskLocked() != nil && len(s.diskLocked().unsaved) > 0
			s.mu.Unlock()
			if !pending {
				break
			}
		}
		_ = srv.store.LoadQueue(key.storeKey(), func(seq uint64, m *storage.Message) error {
			if seq >= diskFrom {
				snap.Queue = append(snap.Queue, QueuedMessage{Seq: seq, Message: *m})
			}
			return nil
		})
	}
	sk := key.storeKey()
	srv.async.commit(func(b *storage.Batch) { b.DeleteSession(sk) })
	return snap, true
}

// queuedRecord is a queued entry as a storage record.
func queuedRecord(q *queued) *storage.Message {
	rec := storeMessage(q.m)
	rec.QoS, rec.Retain, rec.SubIDs = q.qos, q.retain, q.subIDs
	return rec
}
