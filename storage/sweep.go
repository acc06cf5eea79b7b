package storage

import (
	"errors"
	"math"
	"time"

	"github.com/cockroachdb/pebble"
)

// SweepResult is what one sweep removed.
type SweepResult struct {
	ExpiredMessages int          // queued messages past QueueTTL or their Expiry
	Expired         []QueueEvent // those messages (Reason QueueExpired)
	// Retention: this sweep also scanned the disk for expired history and
	// dedup records (every RetentionSweepInterval, and on every DB.Sweep).
	Retention      bool
	ExpiredHistory int // history messages past HistoryTTL
	ExpiredDedup   int // dedup records past DedupTTL
	Took           time.Duration
}

// sweepJob travels through the commit queue as a Batch so that the queue
// sweep decides and deletes in one step between other groups: a message
// the broker re-puts concurrently can never be deleted by a stale decision.
type sweepJob struct {
	now    int64 // unix ms
	result SweepResult
}

// sweepCount is the result of the opExpireDedup ops of one batch.
type sweepCount struct{ n int }

// Sweep deletes what expired now: queued messages past QueueTTL or their
// Expiry, history past HistoryTTL and dedup records past DedupTTL. It
// waits until the deletes are durable. The background sweeper calls it
// (without the disk scans between RetentionSweepInterval) and hands the
// result to Options.OnSweep; a direct call does not.
func (db *DB) Sweep() (SweepResult, error) { return db.sweep(true) }

func (db *DB) sweep(retention bool) (SweepResult, error) {
	start := time.Now()
	b := db.NewBatch()
	b.job = &sweepJob{now: db.opts.Now().UnixMilli()}
	job := b.job
	if err := db.commitAndWait(b); err != nil {
		return SweepResult{}, err
	}
	res := job.result
	if retention {
		res.Retention = true
		var err error
		if db.opts.HistoryTTL > 0 {
			if res.ExpiredHistory, err = db.sweepHistory(job.now - db.opts.HistoryTTL.Milliseconds()); err != nil {
				return res, err
			}
		}
		if res.ExpiredDedup, err = db.sweepDedup(job.now - db.opts.DedupTTL.Milliseconds()); err != nil {
			return res, err
		}
	}
	res.Took = time.Since(start)
	db.st.sweeps.Add(1)
	db.st.sweepNanos.Add(uint64(res.Took))
	if res.ExpiredMessages > 0 || res.ExpiredHistory > 0 || res.ExpiredDedup > 0 {
		db.log.Debug("sweep", "expired_messages", res.ExpiredMessages, "expired_history", res.ExpiredHistory,
			"expired_dedup", res.ExpiredDedup, "took_ms", res.Took.Milliseconds())
	}
	return res, nil
}

func (db *DB) runSweeper() {
	defer close(db.sweeperDone)
	every := db.opts.SweepInterval
	if every <= 0 || db.opts.RetentionSweepInterval > 0 && db.opts.RetentionSweepInterval < every {
		every = db.opts.RetentionSweepInterval
	}
	t := time.NewTicker(every)
	defer t.Stop()
	var lastQueue, lastRetention time.Time
	for {
		select {
		case <-db.sweeperStop:
			return
		case now := <-t.C:
			if db.Health() != nil {
				continue // recovering: the next tick after it tries again
			}
			retention := db.opts.RetentionSweepInterval > 0 && now.Sub(lastRetention) >= db.opts.RetentionSweepInterval-every/2
			queues := db.opts.SweepInterval > 0 && now.Sub(lastQueue) >= db.opts.SweepInterval-every/2
			if !retention && !queues {
				continue
			}
			res, err := db.sweep(retention)
			if err != nil {
				if !errors.Is(err, ErrClosed) && !errors.Is(err, ErrUnavailable) {
					db.log.Error("sweep failed", "err", err)
				}
				continue
			}
			lastQueue = now
			if retention {
				lastRetention = now
			}
			if db.opts.OnSweep != nil {
				db.opts.OnSweep(res)
			}
		}
	}
}

// sweepDedup deletes dedup records created before cutoff (unix ms): it
// finds them with one scan, then lets the committer delete those still
// expired when it gets to them.
func (db *DB) sweepDedup(cutoff int64) (int, error) {
	lo, hi := spaceBounds(spaceDedup)
	var keys [][]byte
	err := db.read(lo, hi, func(k, v []byte) error {
		if _, created, err := decodeDedup(v); err != nil || created < cutoff {
			keys = append(keys, append([]byte(nil), k...))
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	n := 0
	for len(keys) > 0 {
		chunk := keys[:min(len(keys), 4096)]
		keys = keys[len(chunk):]
		b := db.NewBatch()
		r := new(sweepCount)
		for _, k := range chunk {
			off := len(b.buf)
			b.buf = append(b.buf, k...)
			b.addDecided(op{kind: opExpireDedup, deadline: cutoff}, off, len(b.buf), r)
		}
		if err := db.commitAndWait(b); err != nil {
			return n, err
		}
		n += r.n
	}
	db.st.expiredDedup.Add(uint64(n))
	return n, nil
}

// sweepLocked runs on the committer: it adds the deletes of every queued
// message expired at job.now to pb. Only the in-memory index is read, so a
// sweep over a million queued messages costs milliseconds of committer
// time.
// REQUIRES: db.idx.mu held.
func (db *DB) sweepLocked(pb *pebble.Batch, job *sweepJob) {
	x := &db.idx
	now := job.now
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
				job.result.Expired = append(job.result.Expired, QueueEvent{Key: id, Seq: e.seq, Reason: QueueExpired})
			case e.deadline < min:
				min = e.deadline
			}
		}
		q.minDeadline = min
		db.trimLocked(id, q)
	}
	job.result.ExpiredMessages = len(job.result.Expired)
	db.st.expiredMessages.Add(uint64(job.result.ExpiredMessages))
}
