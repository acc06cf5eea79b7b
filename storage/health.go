package storage

import (
	"fmt"
	"sync/atomic"
	"time"
)

// A failed write is not the end of the store. Pebble's commit pipeline
// cannot continue after a WAL error, so the committer, instead of retrying
// the write, reopens Pebble: close what is left, wait (RetryDelay, doubling
// up to MaxRetryDelay), open again (which replays the WAL and needs some
// free space), rebuild the in-memory state from the disk (the queue index
// and the user id counter may hold writes of the failed group), and resume.
// Meanwhile Commit and the readers refuse at once with ErrUnavailable, and
// Health says why. Nothing acknowledged is lost: a batch's done ran with
// nil only if its group was durable, and the reopened store holds every
// such group.
//
//	healthy ──write fails──► failing: Commit refuses, batches pending fail,
//	   ▲                        Pebble closed, reopen every RetryDelay·2ⁿ
//	   └──────────reopened and state rebuilt─────┘
//
// One log line per change of state (failing, recovered); the refused
// commits and the attempts are counted in Stats.

// healthState is the committer's view of a failure.
type healthState struct {
	since     atomic.Int64 // unix ns when the current failure began; written by the CAS winner of setFailing
	recovered time.Time    // when the last recovery ended; REQUIRES: committer
	delay     time.Duration
}

// Health returns nil while the store is writable, and otherwise an error
// wrapping ErrUnavailable and the failure's cause (ErrWrite, ErrDiskFull),
// or ErrClosed after Close. It is cheap (an atomic load): the broker's
// /readyz may call it on every probe.
func (db *DB) Health() error {
	if f := db.failed.Load(); f != nil {
		return *f
	}
	select {
	case <-db.closing:
		return ErrClosed
	default:
		return nil
	}
}

// setFailing marks the store failing because of cause (logged once).
func (db *DB) setFailing(cause error) {
	err := fmt.Errorf("%w: %w", ErrUnavailable, cause)
	if db.failed.CompareAndSwap(nil, &err) {
		db.health.since.Store(time.Now().UnixNano())
		db.st.failures.Add(1)
		db.log.Error("storage failing; refusing writes until it reopens", "err", cause)
	}
}

// backgroundError is Pebble's EventListener.BackgroundError: a flush or
// compaction failed on one of its goroutines (typically: disk full while
// writing an sstable). Pebble would retry it in a loop while the memtables
// fill up and writes stall, so the store is put into recovery instead. It
// may be called with Pebble's locks held: it only records the error.
func (db *DB) backgroundError(err error) {
	select {
	case <-db.closing:
		return // errors of a store being closed are Close's business
	default:
	}
	e := writeError("background: ", err)
	if db.bgErr.CompareAndSwap(nil, &e) {
		db.setFailing(e)
		db.signal()
	}
}

// recover reopens the store after a failure; it runs on the committer. It
// returns false if Close interrupted it (the store is then down).
func (db *DB) recover() bool {
	cause := *db.failed.Load()
	db.failPending(cause)
	db.rmu.Lock()
	if db.pdb != nil {
		if err := closeQuietly(db.pdb); err != nil {
			db.log.Debug("closing the failed store", "err", err)
		}
		db.pdb = nil
	}
	db.rmu.Unlock()

	delay := db.opts.RetryDelay
	if !db.health.recovered.IsZero() && time.Since(db.health.recovered) < time.Minute {
		delay = min(2*db.health.delay, db.opts.MaxRetryDelay) // failing again at once: back off further
	}
	refusedBefore := db.st.unavailable.Load()
	for attempt := 1; ; attempt++ {
		t := time.NewTimer(delay)
		select {
		case <-db.closing:
			t.Stop()
			return false
		case <-t.C:
		}
		db.bgErr.Store(nil)
		pdb, err := db.openPebble()
		if err == nil {
			if err = db.loadState(pdb); err != nil {
				closeQuietly(pdb)
			}
		}
		if err == nil {
			db.rmu.Lock()
			db.pdb = pdb
			db.rmu.Unlock()
			db.health.recovered, db.health.delay = time.Now(), delay
			db.failed.Store(nil)
			db.st.recoveries.Add(1)
			db.log.Info("storage recovered", "down_ms", (time.Now().UnixNano()-db.health.since.Load())/1e6,
				"attempts", attempt, "refused_commits", db.st.unavailable.Load()-refusedBefore)
			return true
		}
		db.st.retries.Add(1)
		db.log.Debug("storage reopen failed", "attempt", attempt, "err", err)
		delay = min(2*delay, db.opts.MaxRetryDelay)
	}
}

// failPending fails every batch waiting for the committer with err.
func (db *DB) failPending(err error) {
	db.q.Lock()
	pending := db.q.pending
	db.q.pending, db.q.ops, db.q.bytes = nil, 0, 0
	db.q.Unlock()
	db.st.batches.Add(uint64(len(pending)))
	for _, b := range pending {
		b.done(err)
		b.reset()
		db.batches.Put(b)
	}
}
