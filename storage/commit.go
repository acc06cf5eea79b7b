package storage

import (
	"errors"
	"fmt"
	"syscall"
	"time"

	"github.com/cockroachdb/pebble"
)

type opKind uint8

const (
	opPutSession opKind = iota + 1
	opDeleteSession
	opPutQueued
	opDeleteQueued
	opPutRetained
	opDeleteRetained
)

// op is one write of a Batch. Key and value are encoded into Batch.buf
// (value right after key) on the caller's goroutine (encode.go), so the
// committer only copies bytes into the Pebble batch and updates the index.
type op struct {
	kind     opKind
	off      uint32 // key at buf[off : off+keyLen], value right after
	keyLen   uint32
	valLen   uint32
	expiry   uint32 // PutSession: Session.ExpiryInterval
	deadline int64  // PutQueued: see deadline(); PutSession: DisconnectedAt
}

// Batch collects writes that commit together: all or none, in order, in
// one group. Build it on one goroutine, then hand it to DB.Commit. Records
// are encoded as they are added, so the caller may reuse them right after.
// A Batch is not safe for concurrent use.
type Batch struct {
	db   *DB
	ops  []op
	buf  []byte // encoded keys and values
	err  error  // first error from a Put/Delete; Commit returns it
	done func(error)
	job  *sweepJob // non-nil: a sweep request, not a caller's batch
}

// NewBatch returns an empty batch. Batches are recycled after their done
// callback returns.
func (db *DB) NewBatch() *Batch {
	if b, ok := db.batches.Get().(*Batch); ok {
		return b
	}
	return &Batch{db: db}
}

func (b *Batch) reset() {
	b.ops, b.buf, b.err, b.done, b.job = b.ops[:0], b.buf[:0], nil, nil, nil
}

// Err returns the first error recorded by a Put or Delete, if any.
func (b *Batch) Err() error { return b.err }

// Len returns the number of operations in the batch.
func (b *Batch) Len() int { return len(b.ops) }

func (b *Batch) fail(err error) {
	if b.err == nil {
		b.err = err
	}
}

// add appends o, whose key is buf[off:keyEnd] and value buf[keyEnd:].
func (b *Batch) add(o op, off, keyEnd int) {
	o.off, o.keyLen, o.valLen = uint32(off), uint32(keyEnd-off), uint32(len(b.buf)-keyEnd)
	b.ops = append(b.ops, o)
}

// PutSession stores s at s␀<ClientID>.
func (b *Batch) PutSession(s *Session) {
	if s == nil {
		b.fail(fmt.Errorf("%w: nil session", ErrInvalidRecord))
		return
	}
	if err := checkName("client id", s.ClientID); err != nil {
		b.fail(err)
		return
	}
	off := len(b.buf)
	b.buf = appendNameKey(b.buf, spaceSession, s.ClientID)
	k := len(b.buf)
	b.buf = appendSession(b.buf, s)
	b.add(op{kind: opPutSession, expiry: s.ExpiryInterval, deadline: s.DisconnectedAt}, off, k)
}

// DeleteSession deletes the session and its whole queue.
func (b *Batch) DeleteSession(clientID string) {
	if err := checkName("client id", clientID); err != nil {
		b.fail(err)
		return
	}
	off := len(b.buf)
	b.buf = appendNameKey(b.buf, spaceSession, clientID)
	b.add(op{kind: opDeleteSession}, off, len(b.buf))
}

// PutQueued stores m at o␀<clientID>␀<seq>. A new seq counts against the
// session's caps (Options.MaxQueuedPerSession, MaxQueuedBytesPerSession),
// enforced by the committer per QueueFullPolicy; putting an existing seq
// again (to record Sent/PacketID) replaces it and is never refused.
func (b *Batch) PutQueued(clientID string, seq uint64, m *Message) {
	if m == nil {
		b.fail(fmt.Errorf("%w: nil message", ErrInvalidRecord))
		return
	}
	if err := checkName("client id", clientID); err != nil {
		b.fail(err)
		return
	}
	off := len(b.buf)
	b.buf = appendQueueKey(b.buf, clientID, seq)
	k := len(b.buf)
	b.buf = appendMessage(b.buf, m)
	b.add(op{kind: opPutQueued, deadline: deadline(m.Created, m.Expiry, b.db.opts.QueueTTL)}, off, k)
}

// DeleteQueued deletes one queued message (delivered and acknowledged).
func (b *Batch) DeleteQueued(clientID string, seq uint64) {
	if err := checkName("client id", clientID); err != nil {
		b.fail(err)
		return
	}
	off := len(b.buf)
	b.buf = appendQueueKey(b.buf, clientID, seq)
	b.add(op{kind: opDeleteQueued}, off, len(b.buf))
}

// PutRetained stores m as the retained message of m.Topic.
func (b *Batch) PutRetained(m *Message) {
	if m == nil {
		b.fail(fmt.Errorf("%w: nil message", ErrInvalidRecord))
		return
	}
	if err := checkName("topic", m.Topic); err != nil {
		b.fail(err)
		return
	}
	off := len(b.buf)
	b.buf = appendNameKey(b.buf, spaceRetained, m.Topic)
	k := len(b.buf)
	b.buf = appendMessage(b.buf, m)
	b.add(op{kind: opPutRetained}, off, k)
}

// DeleteRetained deletes the retained message of topic.
func (b *Batch) DeleteRetained(topic string) {
	if err := checkName("topic", topic); err != nil {
		b.fail(err)
		return
	}
	off := len(b.buf)
	b.buf = appendNameKey(b.buf, spaceRetained, topic)
	b.add(op{kind: opDeleteRetained}, off, len(b.buf))
}

// Commit queues b for the committer and returns at once; it never blocks
// on I/O (it takes a mutex held only for an append). done is called once,
// on the committer goroutine, after the group holding b is durable (Sync)
// or applied (Async), with nil or an error wrapping ErrWrite. done must not
// block: it delays every later commit.
//
// If Commit returns an error (ErrBusy, ErrClosed, ErrWrite after an earlier
// failure, or b.Err()), b was not queued, done will not be called, and b is
// still the caller's. Otherwise b belongs to the DB: do not touch it again.
// An empty batch is a barrier: its done runs once everything committed
// before it is durable.
func (db *DB) Commit(b *Batch, done func(error)) error {
	if b.err != nil {
		return b.err
	}
	if err := db.failed.Load(); err != nil {
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
// While it syncs, new commits gather into the next group.
func (db *DB) runCommitter() {
	defer close(db.committerDone)
	var group []*Batch
	prevOps := 0
	linger := time.NewTimer(time.Hour)
	linger.Stop()
	for {
		group = db.nextGroup(group[:0], prevOps, linger)
		if len(group) == 0 {
			return
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
		if db.q.closed {
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
	if err == nil {
		pb := db.pdb.NewBatch()
		db.idx.mu.Lock()
		for _, b := range group {
			ops += len(b.ops)
			for i := range b.ops {
				db.applyOp(pb, b, &b.ops[i])
			}
			if b.job != nil {
				db.sweepLocked(pb, b.job)
			}
		}
		db.idx.mu.Unlock()
		if !pb.Empty() {
			err = db.write(pb)
			db.st.groups.Add(1)
		}
		pb.Close()
	}
	for _, b := range group {
		b.done(err)
		b.reset()
		if len(b.buf) < 64<<10 && b.db == db {
			db.batches.Put(b)
		}
	}
	db.st.batches.Add(uint64(len(group)))
	db.st.ops.Add(uint64(ops))
	return ops
}

// write applies pb. Any failure is sticky (see ErrWrite); a panic from
// Pebble (its Fatalf, or a WAL invariant) is contained here.
func (db *DB) write(pb *pebble.Batch) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = panicError(r)
		}
		if err != nil {
			if errors.Is(err, syscall.ENOSPC) {
				err = fmt.Errorf("%w: %w: %w", ErrWrite, ErrDiskFull, err)
			} else {
				err = fmt.Errorf("%w: %w", ErrWrite, err)
			}
			if db.failed.CompareAndSwap(nil, &err) {
				db.log.Error("storage write failed; refusing further writes", "err", err)
			}
		}
	}()
	return db.pdb.Apply(pb, db.wo)
}

// applyOp adds one op to pb and updates the index.
// REQUIRES: db.idx.mu held.
func (db *DB) applyOp(pb *pebble.Batch, b *Batch, o *op) {
	key := b.buf[o.off : o.off+o.keyLen]
	val := b.buf[o.off+o.keyLen : o.off+o.keyLen+o.valLen]
	x := &db.idx
	switch o.kind {
	case opPutSession:
		_ = pb.Set(key, val, nil)
		x.sessions[string(key[prefixLen:])] = sessionMeta{o.expiry, o.deadline}
	case opDeleteSession:
		db.deleteSessionLocked(pb, string(key[prefixLen:]))
	case opPutQueued:
		db.putQueuedLocked(pb, key, val, o.deadline)
	case opDeleteQueued:
		_ = pb.Delete(key, nil)
		client, seq, _ := splitQueueKey(key)
		if q := x.queues[string(client)]; q != nil {
			if i, ok := q.find(seq); ok && q.ents[i].live {
				x.msgs--
				x.bytes -= int64(q.kill(i))
				db.trimLocked(string(client), q)
			}
		}
	case opPutRetained:
		_ = pb.Set(key, val, nil)
	case opDeleteRetained:
		_ = pb.Delete(key, nil)
	}
}

// deleteSessionLocked deletes a session record and its queue range.
// REQUIRES: db.idx.mu held.
func (db *DB) deleteSessionLocked(pb *pebble.Batch, clientID string) {
	x := &db.idx
	_ = pb.Delete(appendNameKey(nil, spaceSession, clientID), nil)
	lo, hi := queueBounds(clientID)
	_ = pb.DeleteRange(lo, hi, nil)
	delete(x.sessions, clientID)
	if q := x.queues[clientID]; q != nil {
		x.msgs -= int64(q.count)
		x.bytes -= q.bytes
		delete(x.queues, clientID)
	}
}

// putQueuedLocked writes a queued message, enforcing the session caps.
// REQUIRES: db.idx.mu held.
func (db *DB) putQueuedLocked(pb *pebble.Batch, key, val []byte, dl int64) {
	x := &db.idx
	client, seq, _ := splitQueueKey(key)
	q := x.queues[string(client)]
	if q == nil {
		q = &queue{}
		x.queues[string(client)] = q
	}
	size := int64(len(val))
	maxN, maxB := limit(db.opts.MaxQueuedPerSession), limit(db.opts.MaxQueuedBytesPerSession)
	if i, exists := q.find(seq); !exists || !q.ents[i].live {
		// A new message: make room or refuse it.
		if size > maxB || (db.opts.QueueFullPolicy == RejectNew && (q.count+1 > maxN || q.bytes+size > maxB)) {
			db.st.rejected.Add(1)
			db.trimLocked(string(client), q)
			return
		}
		for q.count > 0 && (q.count+1 > maxN || q.bytes+size > maxB) {
			e := q.ents[q.head]
			db.scratch = appendQueueKey(db.scratch[:0], string(client), e.seq)
			_ = pb.Delete(db.scratch, nil)
			x.msgs--
			x.bytes -= int64(q.kill(q.head))
			q.trim()
			db.st.dropped.Add(1)
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
func (db *DB) trimLocked(client string, q *queue) {
	q.trim()
	if q.count == 0 {
		delete(db.idx.queues, client)
	}
}
