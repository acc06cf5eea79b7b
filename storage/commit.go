package storage

import (
	"errors"
	"fmt"
	"syscall"
	"time"

	"github.com/cockroachdb/pebble"
)

// QueueEvent is one queued message the committer removed or refused on its
// own: because of a cap (Batch.QueueEvents) or an expiry (SweepResult).
type QueueEvent struct {
	Key    string // session key (SessionKey)
	Seq    uint64
	Reason QueueEventReason
}

// QueueEventReason says why a QueueEvent happened.
type QueueEventReason uint8

const (
	// QueueDropped: an older queued message was deleted to make room for a
	// new one (DropOldest).
	QueueDropped QueueEventReason = iota + 1
	// QueueRejected: the put was refused and nothing was stored for it
	// (RejectNew at the cap, or a message larger than the byte cap).
	QueueRejected
	// QueueExpired: the sweeper deleted the message (QueueTTL or its Expiry).
	QueueExpired
)

func (r QueueEventReason) String() string {
	switch r {
	case QueueDropped:
		return "dropped"
	case QueueRejected:
		return "rejected"
	case QueueExpired:
		return "expired"
	}
	return fmt.Sprintf("QueueEventReason(%d)", uint8(r))
}

// Commit queues b for the committer and returns at once; it never blocks
// on I/O (it takes a mutex held only for an append). done is called once,
// on the committer goroutine, after the group holding b is durable (Sync)
// or applied (Async), with nil or an error wrapping ErrWrite (and
// ErrDiskFull when the disk was full). done must not block: it delays
// every later commit. Inside done, and only there, the caller may read
// b.QueueEvents() and the results its decided ops returned (Register,
// Dedup, ...); the batch is recycled when done returns.
//
// If Commit returns an error (ErrBusy, ErrClosed, ErrUnavailable while the
// store recovers from a failed write, or b.Err()), b was not queued, done
// will not be called, and b is still the caller's. Otherwise b belongs to
// the DB: do not touch it again. An empty batch is a barrier: its done
// runs once everything committed before it is durable.
func (db *DB) Commit(b *Batch, done func(error)) error {
	if b.err != nil {
		return b.err
	}
	if err := db.failed.Load(); err != nil {
		db.st.unavailable.Add(1)
		return *err
	}
	if done == nil {
		done = func(error) {}
	}
	n := len(b.buf)
	db.q.Lock()
	switch {
	case db.q.closed:
		db.q.Unlock()
		return ErrClosed
	case db.q.bytes+n > db.opts.MaxPendingBytes && len(db.q.pending) > 0 && b.job == nil:
		db.q.Unlock()
		db.st.busy.Add(1)
		return ErrBusy
	}
	b.done = done
	b.enq = db.nanos()
	db.q.pending = append(db.q.pending, b)
	db.q.ops += len(b.ops)
	db.q.bytes += n
	wake := db.q.ops >= db.q.wakeAt
	db.q.Unlock()
	if wake {
		db.signal()
	}
	return nil
}

func (db *DB) signal() {
	select {
	case db.wake <- struct{}{}:
	default:
	}
}

// runCommitter is the committer goroutine: it takes what is pending as one
// group, writes it as one Pebble batch with one sync, and calls the dones.
// While it syncs, new commits gather into the next group. After a failure
// it reopens the store (health.go) before taking the next group.
func (db *DB) runCommitter() {
	defer close(db.committerDone)
	var group []*Batch
	prevOps := 0
	linger := time.NewTimer(time.Hour)
	linger.Stop()
	for {
		if err := db.bgErr.Load(); err != nil {
			db.setFailing(*err)
		}
		if db.failed.Load() != nil && !db.recover() {
			db.failPending(ErrClosed) // closed while down: nothing can commit
			return
		}
		group = db.nextGroup(group[:0], prevOps, linger)
		if len(group) == 0 {
			if db.q.closedNow() {
				return
			}
			continue // woken by a background failure
		}
		prevOps = db.commitGroup(group)
		clear(group) // drop references to recycled batches
	}
}

// nextGroup waits for pending batches and takes a prefix of at most
// MaxBatchOps ops (at least one batch). It returns an empty group once the
// DB is closed and nothing is pending.
func (db *DB) nextGroup(group []*Batch, prevOps int, linger *time.Timer) []*Batch {
	db.q.Lock()
	for len(db.q.pending) == 0 {
		if db.q.closed || db.bgErr.Load() != nil {
			db.q.Unlock()
			return group
		}
		db.q.Unlock()
		<-db.wake
		db.q.Lock()
	}
	// Linger while fewer ops wait than the last group held: the writers of
	// that group were just acknowledged and are likely about to commit
	// again. Bounded by MaxBatchDelay; never on an idle store (prevOps is
	// then small).
	if d := db.opts.MaxBatchDelay; d > 0 && db.q.ops < prevOps && db.q.ops < db.opts.MaxBatchOps {
		db.q.wakeAt = min(prevOps, db.opts.MaxBatchOps) // spare the committer a wakeup per commit
		linger.Reset(d)
	wait:
		for db.q.ops < db.q.wakeAt && !db.q.closed {
			db.q.Unlock()
			select {
			case <-db.wake:
				db.q.Lock()
			case <-linger.C:
				db.q.Lock()
				break wait
			}
		}
		db.q.wakeAt = 0
		linger.Stop()
	}
	ops, i := 0, 0
	for ; i < len(db.q.pending); i++ {
		b := db.q.pending[i]
		if i > 0 && ops+len(b.ops) > db.opts.MaxBatchOps {
			break
		}
		ops += len(b.ops)
		db.q.bytes -= len(b.buf)
		group = append(group, b)
	}
	db.q.ops -= ops
	n := copy(db.q.pending, db.q.pending[i:])
	clear(db.q.pending[n:])
	db.q.pending = db.q.pending[:n]
	db.q.Unlock()
	return group
}

// commitGroup applies group to the index and Pebble and calls every done.
// It returns the number of ops in the group.
func (db *DB) commitGroup(group []*Batch) int {
	var err error
	if f := db.failed.Load(); f != nil {
		err = *f
	}
	ops := 0
	for _, b := range group {
		ops += len(b.ops)
	}
	if err == nil {
		pb := db.pdb.NewBatch()
		if err = db.decide(pb, group); err == nil {
			db.idx.mu.Lock()
			for _, b := range group {
				if b.skip {
					continue
				}
				for i := range b.ops {
					if !b.ops[i].kind.decided() {
						db.applyOp(pb, b, &b.ops[i])
					}
				}
				if b.job != nil {
					db.sweepLocked(pb, b.job)
				}
			}
			db.idx.mu.Unlock()
			if !pb.Empty() {
				t := db.nanos()
				err = db.write(pb)
				db.st.observeGroup(ops, pb.Len(), db.nanos()-t)
			}
		} else {
			err = db.writeFailed(err)
		}
		pb.Close()
		clear(db.ov)
		if err != nil {
			clear(db.marks) // read again from what the store holds
		}
	}
	// Count before the dones run, so a writer that saw its done sees it
	// counted in Stats.
	db.st.batches.Add(uint64(len(group)))
	db.st.ops.Add(uint64(ops))
	now := db.nanos()
	for _, b := range group {
		if b.enq != 0 {
			db.st.commitLatency.observe(now - b.enq)
		}
	}
	for _, b := range group {
		b.done(err)
		b.reset()
		if len(b.buf) < 64<<10 && b.db == db {
			db.batches.Put(b)
		}
	}
	return ops
}

// write applies pb. A failure (or a panic from Pebble: its Fatalf, or a
// WAL invariant, contained here) puts the store into recovery.
func (db *DB) write(pb *pebble.Batch) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = panicError(r)
		}
		if err != nil {
			err = db.writeFailed(err)
		}
	}()
	return db.pdb.Apply(pb, db.wo)
}

// writeFailed classifies a failed group commit, counts it and starts the
// recovery (the committer runs it before the next group).
func (db *DB) writeFailed(err error) error {
	err = writeError("", err)
	db.st.writeErrors.Add(1)
	db.setFailing(err)
	return err
}

// writeError wraps a failed write in ErrWrite, and in ErrDiskFull for ENOSPC.
func writeError(what string, err error) error {
	if errors.Is(err, syscall.ENOSPC) {
		return fmt.Errorf("%w: %s%w: %w", ErrWrite, what, ErrDiskFull, err)
	}
	return fmt.Errorf("%w: %s%w", ErrWrite, what, err)
}

func (db *DB) nanos() int64 { return int64(time.Since(db.t0)) }

// applyOp adds one plain op to pb and updates the index.
// REQUIRES: db.idx.mu held.
func (db *DB) applyOp(pb *pebble.Batch, b *Batch, o *op) {
	key := b.buf[o.off : o.off+o.keyLen]
	val := b.buf[o.off+o.keyLen : o.off+o.keyLen+o.valLen]
	x := &db.idx
	switch o.kind {
	case opPutSession:
		_ = pb.Set(key, val, nil)
		if _, ok := x.sessions[string(key[prefixLen:])]; !ok {
			x.sessions[string(key[prefixLen:])] = struct{}{}
		}
	case opDeleteSession:
		db.deleteSessionLocked(pb, string(key[prefixLen:]))
	case opPutQueued:
		db.putQueuedLocked(pb, b, key, val, o.deadline)
	case opDeleteQueued:
		_ = pb.Delete(key, nil)
		session, seq, _ := splitQueueKey(key)
		if q := x.queues[string(session)]; q != nil {
			if i, ok := q.find(seq); ok && q.ents[i].live {
				x.msgs--
				x.bytes -= int64(q.kill(i))
				db.trimLocked(string(session), q)
			}
		}
	case opPutRetained, opSet:
		_ = pb.Set(key, val, nil)
	case opDeleteRetained, opDelete:
		_ = pb.Delete(key, nil)
	case opDeleteRange:
		_ = pb.DeleteRange(key, val, nil)
	}
}

// deleteSessionLocked deletes a session record and its queue range.
// REQUIRES: db.idx.mu held.
func (db *DB) deleteSessionLocked(pb *pebble.Batch, key string) {
	x := &db.idx
	_ = pb.Delete(appendNameKey(db.scratch[:0], spaceSession, key), nil)
	lo, hi := queueBounds(key)
	_ = pb.DeleteRange(lo, hi, nil)
	delete(x.sessions, key)
	if q := x.queues[key]; q != nil {
		x.msgs -= int64(q.count)
		x.bytes -= q.bytes
		delete(x.queues, key)
	}
}

// putQueuedLocked writes a queued message, enforcing the session caps and
// reporting what they did in b.events.
// REQUIRES: db.idx.mu held.
func (db *DB) putQueuedLocked(pb *pebble.Batch, b *Batch, key, val []byte, dl int64) {
	x := &db.idx
	session, seq, _ := splitQueueKey(key)
	q := x.queues[string(session)]
	if q == nil {
		q = &queue{}
		x.queues[string(session)] = q
	}
	size := int64(len(val))
	maxN, maxB := limitInt(db.opts.MaxQueuedPerSession), limitInt64(db.opts.MaxQueuedBytesPerSession)
	if i, exists := q.find(seq); !exists || !q.ents[i].live {
		// A new message: make room or refuse it.
		if size > maxB || (db.opts.QueueFullPolicy == RejectNew && (q.count+1 > maxN || q.bytes+size > maxB)) {
			db.st.rejected.Add(1)
			b.events = append(b.events, QueueEvent{Key: string(session), Seq: seq, Reason: QueueRejected})
			db.trimLocked(string(session), q)
			return
		}
		var name string
		for q.count > 0 && (q.count+1 > maxN || q.bytes+size > maxB) {
			e := q.ents[q.head]
			db.scratch = appendQueueKey(db.scratch[:0], string(session), e.seq)
			_ = pb.Delete(db.scratch, nil)
			x.msgs--
			x.bytes -= int64(q.kill(q.head))
			q.trim()
			db.st.dropped.Add(1)
			if name == "" {
				name = string(session)
			}
			b.events = append(b.events, QueueEvent{Key: name, Seq: e.seq, Reason: QueueDropped})
		}
	}
	_ = pb.Set(key, val, nil)
	old, replaced := q.put(seq, uint32(size), dl)
	if replaced {
		x.bytes -= int64(old)
	} else {
		x.msgs++
	}
	x.bytes += size
}

// trimLocked trims q and forgets it once empty.
// REQUIRES: db.idx.mu held.
func (db *DB) trimLocked(session string, q *queue) {
	q.trim()
	if q.count == 0 {
		delete(db.idx.queues, session)
	}
}

// closedNow reports whether Close has begun.
func (q *commitQueue) closedNow() bool {
	q.Lock()
	defer q.Unlock()
	return q.closed
}
