package storage

import (
	"math"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble"
)

// SweepResult is what one sweep removed.
type SweepResult struct {
	ExpiredMessages int      // queued messages past their TTL or Expiry
	ExpiredSessions []string // sessions past their expiry, deleted with their queues
}

// sweepJob travels through the commit queue as a Batch so that the sweep
// decides and deletes in one step between other groups: a message the
// broker re-puts concurrently can never be deleted by a stale decision.
type sweepJob struct {
	now    int64 // unix ms
	result SweepResult
}

// Sweep deletes expired queued messages and expired sessions (with their
// queues) now, waits until the deletes are durable, and calls
// Options.OnSessionExpired on this goroutine for each expired session. The
// background sweeper calls it every SweepInterval.
func (db *DB) Sweep() (SweepResult, error) {
	b := db.NewBatch()
	b.job = &sweepJob{now: db.opts.Now().UnixMilli()}
	job := b.job
	ch := make(chan error, 1)
	if err := db.Commit(b, func(err error) { ch <- err }); err != nil {
		b.reset()
		return SweepResult{}, err
	}
	if err := <-ch; err != nil {
		return SweepResult{}, err
	}
	if n := job.result.ExpiredMessages; n > 0 || len(job.result.ExpiredSessions) > 0 {
		db.log.Debug("sweep", "expired_messages", n, "expired_sessions", len(job.result.ExpiredSessions))
	}
	if hook := db.opts.OnSessionExpired; hook != nil {
		for _, id := range job.result.ExpiredSessions {
			hook(id)
		}
	}
	return job.result, nil
}

func (db *DB) runSweeper() {
	defer close(db.sweeperDone)
	t := time.NewTicker(db.opts.SweepInterval)
	defer t.Stop()
	for {
		select {
		case <-db.sweeperStop:
			return
		case <-t.C:
			if _, err := db.Sweep(); err != nil && err != ErrClosed {
				db.log.Error("sweep failed", "err", err)
			}
		}
	}
}

// sweepLocked runs on the committer: it adds the deletes of everything
// expired at job.now to pb. Only the in-memory index is read, so a sweep
// over a million queued messages costs milliseconds of committer time.
// REQUIRES: db.idx.mu held.
func (db *DB) sweepLocked(pb *pebble.Batch, job *sweepJob) {
	x := &db.idx
	now := job.now
	for id, s := range x.sessions {
		if s.expired(now) {
			job.result.ExpiredSessions = append(job.result.ExpiredSessions, id)
			db.deleteSessionLocked(pb, id)
		}
	}
	for id, q := range x.queues {
		if q.minDeadline > now {
			continue
		}
		min := int64(math.MaxInt64)
		for i := q.head; i < len(q.ents); i++ {
			e := &q.ents[i]
			switch {
			case !e.live:
			case e.deadline <= now:
				db.scratch = appendQueueKey(db.scratch[:0], id, e.seq)
				_ = pb.Delete(db.scratch, nil)
				x.msgs--
				x.bytes -= int64(q.kill(i))
				job.result.ExpiredMessages++
			case e.deadline < min:
				min = e.deadline
			}
		}
		q.minDeadline = min
		db.trimLocked(id, q)
	}
	db.st.expiredMessages.Add(uint64(job.result.ExpiredMessages))
	db.st.expiredSessions.Add(uint64(len(job.result.ExpiredSessions)))
}

// counters are the DB's statistics, updated atomically.
type counters struct {
	groups, batches, ops             atomic.Uint64
	busy, dropped, rejected          atomic.Uint64
	expiredMessages, expiredSessions atomic.Uint64
}

// Stats is a snapshot of the DB's counters and sizes.
type Stats struct {
	Groups          uint64 // Pebble batches written (one sync each in Sync mode)
	Batches         uint64 // Batches committed (including failed ones)
	Ops             uint64 // operations in them
	Busy            uint64 // Commit calls refused with ErrBusy
	Dropped         uint64 // queued messages dropped by DropOldest
	Rejected        uint64 // queued messages refused by RejectNew or too large
	ExpiredMessages uint64 // queued messages deleted by the sweeper
	ExpiredSessions uint64 // sessions deleted by the sweeper
	Sessions        int    // persistent sessions stored
	QueuedMessages  int64  // messages in all queues
	QueuedBytes     int64  // their encoded size
	PendingBatches  int    // batches waiting for the committer
	PendingBytes    int
	Failed          error // non-nil once a write failed (see ErrWrite)
}

// Stats returns a snapshot of the counters.
func (db *DB) Stats() Stats {
	s := Stats{
		Groups:          db.st.groups.Load(),
		Batches:         db.st.batches.Load(),
		Ops:             db.st.ops.Load(),
		Busy:            db.st.busy.Load(),
		Dropped:         db.st.dropped.Load(),
		Rejected:        db.st.rejected.Load(),
		ExpiredMessages: db.st.expiredMessages.Load(),
		ExpiredSessions: db.st.expiredSessions.Load(),
	}
	db.idx.mu.Lock()
	s.Sessions, s.QueuedMessages, s.QueuedBytes = len(db.idx.sessions), db.idx.msgs, db.idx.bytes
	db.idx.mu.Unlock()
	db.q.Lock()
	s.PendingBatches, s.PendingBytes = len(db.q.pending), db.q.bytes
	db.q.Unlock()
	if f := db.failed.Load(); f != nil {
		s.Failed = *f
	}
	return s
}
