package broker

import (
	"errors"
	"slices"
	"sync"
	"time"

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
//   - Writes nobody waits for (session records, deleting what was
//     acknowledged) go through asyncWriter: if the store refuses one (busy,
//     or failing), it and every later one are retried in order until the
//     store takes them, so a refused write is never just logged and lost.
//
//   - The store's caps per session (messages, bytes) are the only thing that
//     discards a queued message once acknowledged; what it drops or refuses
//     is reported per batch (queueEvents), counted and logged once per
//     session. Below the caps, memory holds a window of the queue and the
//     rest waits on disk (spill.go).
//   - QoS 2 survives a crash at any step: inbound ids awaiting PUBREL are
//     stored with the message and forgotten only once PUBCOMP may go out;
//     an outbound message keeps its packet id (derived from its queue seq)
//     and its PUBREL stage is stored before PUBREL is sent.

// persistentLocked reports whether s is stored. REQUIRES: s.mu held.
func (s *session) persistentLocked() bool { return s.srv.store != nil && s.expiry != 0 }

// storeKey is the session's key in the store.
func (k skey) storeKey() string { return storage.SessionKey(k.proto, k.id) }

// asyncWriter commits writes nobody waits for, in order, retrying those
// the store refused.
type asyncWriter struct {
	srv *Server

	mu      sync.Mutex
	retry   []func(*storage.Batch) // REQUIRES: mu held. refused writes, oldest first
	running bool                   // REQUIRES: mu held. the retry goroutine is on
}

// commit writes what fill adds in a batch of its own, without waiting.
// Any goroutine.
func (w *asyncWriter) commit(fill func(*storage.Batch)) {
	w.mu.Lock()
	if len(w.retry) > 0 { // keep the order: behind the refused ones
		w.retry = append(w.retry, fill)
		w.mu.Unlock()
		return
	}
	w.mu.Unlock()
	db := w.srv.store
	b := db.NewBatch()
	fill(b)
	if err := db.Commit(b, func(err error) {
		if err != nil {
			w.refused(fill, err)
		}
	}); err != nil {
		w.refused(fill, err)
	}
}

// refused queues fill for a retry and starts the retry goroutine.
func (w *asyncWriter) refused(fill func(*storage.Batch), err error) {
	w.srv.noteStoreFailure(err)
	w.mu.Lock()
	w.retry = append(w.retry, fill)
	start := !w.running
	w.running = true
	w.mu.Unlock()
	if start {
		go w.retryLoop()
	}
}

// retryLoop commits the refused writes in order, backing off while the
// store keeps refusing, until none is left.
func (w *asyncWriter) retryLoop() {
	backoff := 50 * time.Millisecond
	for {
		w.mu.Lock()
		if len(w.retry) == 0 {
			w.running = false
			w.mu.Unlock()
			return
		}
		fill := w.retry[0]
		w.mu.Unlock()
		db := w.srv.store
		b := db.NewBatch()
		fill(b)
		res := make(chan error, 1)
		if err := db.Commit(b, func(err error) { res <- err }); err != nil {
			res <- err
		}
		if err := <-res; err != nil {
			w.srv.noteStoreFailure(err)
			select {
			case <-time.After(backoff):
			case <-w.srv.sysStop:
				return // shutting down: what is left is lost with the process, as it would be
			}
			backoff = min(2*backoff, 5*time.Second)
			continue
		}
		backoff = 50 * time.Millisecond
		w.srv.noteStoreOK()
		w.mu.Lock()
		w.retry[0] = nil
		w.retry = w.retry[1:]
		w.mu.Unlock()
	}
}

// noteStoreFailure counts a refused write and logs the first of a run.
func (srv *Server) noteStoreFailure(err error) {
	srv.stats.StoreErrors.Add(1)
	if !srv.storeFailing.Swap(true) {
		srv.log.Error("storage write failed; retrying (further failures are counted, not logged)", "err", err)
	}
}

// noteStoreOK logs the end of a run of failures.
func (srv *Server) noteStoreOK() {
	if srv.storeFailing.Load() && srv.storeFailing.Swap(false) {
		srv.log.Info("storage writable again")
	}
}

// notePublishFailure is noteStoreFailure for a publish refused to its client.
func (srv *Server) notePublishFailure(err error) { srv.noteStoreFailure(err) }

func (srv *Server) logCommit(err error) {
	if errors.Is(err, errQueueFull) {
		return // counted and logged once per session (queueEvents)
	}
	if err != nil {
		srv.noteStoreFailure(err)
	} else {
		srv.noteStoreOK()
	}
}

// recordLocked is s as stored. REQUIRES: s.mu held.
func (s *session) recordLocked(disconnectedAt int64) *storage.Session {
	rec := &storage.Session{
		ClientID:       s.key.id,
		Protocol:       s.key.proto,
		Version:        s.version,
		ExpiryInterval: s.expiry,
		DisconnectedAt: disconnectedAt * 1000,
		NextSeq:        s.seqLocked() + 1,
		Node:           s.srv.opts.NodeName,
		Subs:           make([]storage.Sub, len(s.subs)),
	}
	for i, e := range s.subs {
		rec.Subs[i] = storage.Sub{Filter: e.filter, QoS: e.sub.QoS, NoLocal: e.sub.NoLocal,
			RetainAsPublished: e.sub.RetainAsPublished, RetainHandling: e.sub.RetainHandling, ID: e.sub.ID}
	}
	for id := range s.rxLocked() {
		rec.Rx = append(rec.Rx, id)
	}
	slices.Sort(rec.Rx)
	return rec
}

// saveNow stores s's record and calls then once it is durable (or at once
// for a session that is not stored): an acknowledgement that must not go
// out before the state it reports (MQTT QoS 2's PUBREL and PUBCOMP).
// REQUIRES: s.mu held; then runs without it, possibly on another goroutine.
func (s *session) saveNowLocked(then func()) {
	if !s.persistentLocked() || s.ended {
		then()
		return
	}
	s.stored = true
	rec := s.recordLocked(0)
	b := s.srv.store.NewBatch()
	b.PutSession(rec)
	retry := func(err error) { // in order, until the store takes it (asyncWriter)
		s.srv.async.refused(func(b *storage.Batch) { b.PutSession(rec) }, err)
	}
	if err := s.srv.store.Commit(b, func(err error) {
		if err != nil {
			retry(err)
		}
		then()
	}); err != nil {
		retry(err)
		then()
	}
}

// releasedLocked records that the in-flight QoS 2 delivery f reached its
// second phase, and calls then once that is durable, so that after a crash
// the broker resends the release, not the message [MQTT-4.4.0-1].
// REQUIRES: s.mu held; then runs without it.
func (s *session) releasedLocked(f *inflight, then func()) {
	if f.queued.seq == 0 || !s.persistentLocked() {
		then()
		return
	}
	key, seq := s.key.storeKey(), f.queued.seq
	rec := &storage.Message{Topic: f.queued.m.Topic, QoS: 2, PacketID: f.tag, Sent: true}
	f.m = nil // the payload is no longer needed
	fill := func(b *storage.Batch) { b.PutQueued(key, seq, rec) }
	b := s.srv.store.NewBatch()
	fill(b)
	if err := s.srv.store.Commit(b, func(err error) {
		if err != nil {
			s.srv.async.refused(fill, err)
		}
		then()
	}); err != nil {
		s.srv.async.refused(fill, err)
		then()
	}
}

// save stores s once after a change of its subscriptions. Any goroutine.
func (s *session) save() {
	s.mu.Lock()
	s.saveLocked(0)
	s.mu.Unlock()
}

// saveLocked stores s (or deletes it once it no longer persists).
// REQUIRES: s.mu held.
func (s *session) saveLocked(disconnectedAt int64) {
	if s.srv.store == nil {
		return
	}
	key := s.key.storeKey()
	if !s.persistentLocked() || s.ended {
		if s.stored {
			s.stored = false
			s.srv.async.commit(func(b *storage.Batch) { b.DeleteSession(key) })
		}
		return
	}
	s.stored = true
	rec := s.recordLocked(disconnectedAt)
	s.srv.async.commit(func(b *storage.Batch) { b.PutSession(rec) })
}

// storeMessage is m as a storage record.
// For a queued message QoS and Retain are those it is delivered with.
func storeMessage(m *Message) *storage.Message { // (SubIDs: set by the caller for a queued copy)
	return &storage.Message{ID: m.ID, Topic: m.Topic, Payload: m.Payload, QoS: m.QoS, Retain: m.Retain,
		From: m.From, Created: m.Created * 1000, Expiry: m.Expiry * 1000, Props: m.Props,
		SenderID: m.Sender, SenderName: m.SenderName}
}

// loadMessage is the inverse of storeMessage.
func loadMessage(r *storage.Message) *Message { // (SubIDs: read by the caller into its queued entry)
	return &Message{ID: r.ID, Topic: r.Topic, Payload: r.Payload, QoS: r.QoS, Retain: r.Retain,
		From: r.From, Created: r.Created / 1000, Expiry: r.Expiry / 1000, Props: r.Props,
		Sender: r.SenderID, SenderName: r.SenderName}
}

// dropQueuedLocked deletes the stored copy of a queued entry once it is
// done with. REQUIRES: s.mu held.
func (s *session) dropQueuedLocked(seq uint64) {
	if seq == 0 || !s.persistentLocked() {
		return
	}
	key := s.key.storeKey()
	s.srv.async.commit(func(b *storage.Batch) { b.DeleteQueued(key, seq) })
}

// queueEvents hears what the store's caps did to a committed batch: each
// dropped (drop-oldest) or refused message is counted, and dropped from the
// session's memory queue too, so "oldest dropped" holds for the queue as a
// whole; the first drop for a session is logged, once per session. Any
// goroutine.
func (srv *Server) queueEvents(events []storage.QueueEvent) {
	if len(events) == 0 {
		return
	}
	bySession := map[string]map[uint64]bool{}
	for _, e := range events {
		switch e.Reason {
		case storage.QueueDropped, storage.QueueExpired:
			srv.stats.QueueDropped.Add(1)
		case storage.QueueRejected:
			srv.stats.QueueRejected.Add(1)
		}
		if bySession[e.Key] == nil {
			bySession[e.Key] = map[uint64]bool{}
		}
		bySession[e.Key][e.Seq] = e.Reason != storage.QueueExpired
	}
	for key, seqs := range bySession {
		p, id, ok := storage.SplitSessionKey(key)
		if !ok {
			continue
		}
		s := srv.sessions.lookup(skey{p, id})
		if s == nil {
			continue
		}
		s.mu.Lock()
		if x := s.rare; x != nil {
			x.queue = slices.DeleteFunc(x.queue, func(q *queued) bool { _, gone := seqs[q.seq]; return gone })
		}
		warn := false
		for _, capped := range seqs {
			warn = warn || capped
		}
		first := warn && !s.capped
		s.capped = s.capped || warn
		s.mu.Unlock()
		if first {
			srv.log.Warn("session queue at the store's cap: the oldest messages are dropped (counted in $SYS/broker/messages/dropped)",
				"client", id, "protocol", protoName(p))
		}
	}
}
