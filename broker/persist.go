package broker

import (
	"fmt"
	"time"

	"github.com/cimgo/cim/broker/topic"
	"github.com/cimgo/cim/storage"
)

// Durability (Options.Store set): what a client is acknowledged survives a
// crash.
//
//   - A QoS 1/2 PUBLISH is acknowledged (PUBACK/PUBREC) only after the batch
//     holding its queue records for persistent sessions (and its retained
//     record) is committed. Every QoS 1/2 ack of a connection goes through
//     the committer, even with nothing to write, so acks keep their order.
//   - Sessions with an expiry (v3 clean session 0, v5 expiry > 0) are stored
//     with their subscriptions; queued and in-flight QoS 1/2 messages are
//     stored under the session until acknowledged.
//   - Retained messages are stored.
//
// Not done yet: the QoS 2 packet id of a message in flight and the inbound
// QoS 2 ids awaiting PUBREL are kept in memory only, so a crash during a
// QoS 2 exchange may deliver that message once more.

// persistentLocked reports whether s is stored. REQUIRES: s.mu held.
func (s *session) persistentLocked() bool { return s.srv.store != nil && s.expiry != 0 }

// commitAsync writes what fill adds in a batch of its own, without waiting.
func (srv *Server) commitAsync(fill func(b *storage.Batch)) {
	b := srv.store.NewBatch()
	fill(b)
	if err := srv.store.Commit(b, srv.logCommit); err != nil {
		srv.logCommit(err)
	}
}

func (srv *Server) logCommit(err error) {
	if err != nil {
		srv.log.Error("storage write failed", "err", err)
	}
}

// recordLocked is s as stored. REQUIRES: s.mu held.
func (s *session) recordLocked(disconnectedAt int64) *storage.Session {
	rec := &storage.Session{
		ClientID:       s.id,
		Protocol:       storage.ProtocolMQTT,
		Version:        s.version,
		ExpiryInterval: s.expiry,
		DisconnectedAt: disconnectedAt * 1000,
		NextSeq:        s.seq + 1,
		Subs:           make([]storage.Sub, len(s.subs)),
	}
	for i, e := range s.subs {
		rec.Subs[i] = storage.Sub{Filter: e.filter, QoS: e.sub.QoS, NoLocal: e.sub.NoLocal,
			RetainAsPublished: e.sub.RetainAsPublished, RetainHandling: e.sub.RetainHandling, ID: e.sub.ID}
	}
	return rec
}

// saveLocked stores s (or deletes it once it no longer persists).
// REQUIRES: s.mu held.
func (s *session) saveLocked(disconnectedAt int64) {
	if s.srv.store == nil {
		return
	}
	if !s.persistentLocked() || s.ended {
		if s.stored {
			s.stored = false
			id := s.id
			s.srv.commitAsync(func(b *storage.Batch) { b.DeleteSession(id) })
		}
		return
	}
	s.stored = true
	rec := s.recordLocked(disconnectedAt)
	s.srv.commitAsync(func(b *storage.Batch) { b.PutSession(rec) })
}

// storeMessage is m as a storage record.
// For a queued message QoS and Retain are those it is delivered with.
func storeMessage(m *Message) *storage.Message {
	return &storage.Message{ID: m.ID, Topic: m.Topic, Payload: m.Payload, QoS: m.QoS, Retain: m.Retain,
		From: m.From, Created: m.Created * 1000, Expiry: m.Expiry * 1000, Props: m.Props}
}

// loadMessage is the inverse of storeMessage.
func loadMessage(r *storage.Message) *Message {
	return &Message{ID: r.ID, Topic: r.Topic, Payload: r.Payload, QoS: r.QoS, Retain: r.Retain,
		From: r.From, Created: r.Created / 1000, Expiry: r.Expiry / 1000, Props: r.Props}
}

// dropQueued deletes the stored copy of a queued entry once it is done with.
// REQUIRES: s.mu held.
func (s *session) dropQueuedLocked(seq uint64) {
	if seq == 0 || !s.persistentLocked() {
		return
	}
	id := s.id
	s.srv.commitAsync(func(b *storage.Batch) { b.DeleteQueued(id, seq) })
}

// loadQueue reads the queue s left on disk before a restart, puts it ahead
// of what was queued since, and resumes s if its client is connected.
// It runs on its own goroutine: never on a loop.
func (srv *Server) loadQueue(s *session) {
	s.mu.Lock()
	upTo, id := s.diskUpTo, s.id
	s.mu.Unlock()
	var old []*queued
	err := srv.store.LoadQueue(id, func(seq uint64, r *storage.Message) error {
		if seq <= upTo {
			old = append(old, &queued{m: loadMessage(r), qos: r.QoS, retain: r.Retain, seq: seq})
		}
		return nil
	})
	if err != nil {
		srv.log.Error("loading a stored queue", "client", id, "err", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended || s.diskUpTo != upTo {
		return
	}
	s.diskUpTo = 0
	s.queue = append(old, s.queue...)
	if s.conn != nil {
		s.resumeLocked(srv.now())
	}
}

// recover rebuilds retained messages, sessions and subscriptions from the
// store; queues are loaded when their client returns. It runs before the
// listener opens.
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
	now := time.Now().Unix()
	var sessions []*session
	if err := db.LoadSessions(func(r *storage.Session) error {
		s := &session{id: r.ClientID, srv: srv, expiry: r.ExpiryInterval, version: r.Version, seq: max(r.NextSeq, 1) - 1, stored: true}
		for _, sub := range r.Subs {
			ts := topic.Subscription{QoS: sub.QoS, NoLocal: sub.NoLocal, RetainAsPublished: sub.RetainAsPublished,
				RetainHandling: sub.RetainHandling, ID: sub.ID}
			if topic.ValidFilter(sub.Filter) != nil {
				continue
			}
			s.subs = append(s.subs, subEntry{filter: sub.Filter, sub: ts})
			if srv.subs.Subscribe(sub.Filter, s, ts) {
				srv.stats.Subscriptions.Add(1)
			}
		}
		gone := r.DisconnectedAt / 1000
		if gone == 0 {
			gone = now // it was connected when the node stopped
		}
		if s.expiry != foreverExpiry {
			s.endsAt = gone + int64(s.expiry)
		}
		sessions = append(sessions, s)
		return nil
	}); err != nil {
		return fmt.Errorf("%w: recover sessions: %w", ErrServer, err)
	}
	nq := 0
	for _, s := range sessions {
		// Queues stay on disk until their client comes back (loadQueue),
		// so a node with millions queued serves again at once.
		if tail := db.QueueTail(s.id); tail != 0 {
			s.diskUpTo = tail
			s.seq = max(s.seq, tail)
			nq += db.QueueLen(s.id)
		}
		sh := &srv.sessions.shards[srv.sessions.shard(s.id)]
		sh.m[s.id] = s
		srv.stats.Sessions.Add(1)
		s.mu.Lock()
		s.armLocked(now)
		s.mu.Unlock()
	}
	srv.log.Info("recovered", "sessions", len(sessions), "queued", nq, "retained", nRetained, "took", time.Since(start).Round(time.Millisecond))
	return nil
}
