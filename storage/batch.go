package storage

import (
	"fmt"
)

type opKind uint8

// Plain ops: the committer copies their bytes into the Pebble batch (and
// updates the queue index).
const (
	opPutSession opKind = iota + 1
	opDeleteSession
	opPutQueued
	opDeleteQueued
	opPutRetained
	opDeleteRetained
	opSet         // history, conversation index, delayed
	opDelete      // delayed
	opDeleteRange // key = start, value = end (history retention)

	// Decided ops: the committer reads the store to decide what they write
	// (decided.go), in commit order, so that concurrent callers cannot race.
	opRegister
	opSetCredential
	opCreateGroup
	opJoinGroup
	opLeaveGroup
	opDedup
	opExpireDedup
)

func (k opKind) decided() bool { return k >= opRegister }

// op is one write of a Batch. Key and value are encoded into Batch.buf
// (value right after key) on the caller's goroutine (encode.go), so the
// committer only copies bytes into the Pebble batch and updates the index.
type op struct {
	kind   opKind
	off    uint32 // key at buf[off : off+keyLen], value right after
	keyLen uint32
	valLen uint32
	aux    uint32 // decided ops: index of the result in Batch.res
	// PutQueued: see deadline(); decided ops: a user id, server id or cutoff.
	deadline int64
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

	enq     int64        // when Commit queued it, ns since db.t0
	decided int          // decided ops in ops
	res     []any        // their results (*AccountResult, *GroupResult, *DedupResult)
	events  []QueueEvent // what the committer did to queues for this batch
	skip    bool         // a Dedup found a duplicate: nothing is written
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
	clear(b.res)
	b.res, b.events, b.decided, b.skip, b.enq = b.res[:0], b.events[:0], 0, false, 0
}

// Err returns the first error recorded by a Put or Delete, if any.
func (b *Batch) Err() error { return b.err }

// Len returns the number of operations in the batch.
func (b *Batch) Len() int { return len(b.ops) }

// QueueEvents lists what the committer did to session queues because of
// this batch's PutQueued calls: messages it dropped to make room
// (QueueDropped, DropOldest policy) and puts it refused (QueueRejected,
// RejectNew policy or a message larger than the byte cap). Call it only
// inside the batch's done callback: the batch is recycled when done
// returns, and the slice with it. Empty when no cap was hit.
func (b *Batch) QueueEvents() []QueueEvent { return b.events }

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

// addDecided appends a decided op with its result.
func (b *Batch) addDecided(o op, off, keyEnd int, res any) {
	o.aux = uint32(len(b.res))
	b.res = append(b.res, res)
	b.decided++
	b.add(o, off, keyEnd)
}

// PutSession stores s at s␀<s.Key()>. s.Protocol must be ProtocolMQTT or
// ProtocolNative and s.ClientID a valid name.
func (b *Batch) PutSession(s *Session) {
	if s == nil {
		b.fail(fmt.Errorf("%w: nil session", ErrInvalidRecord))
		return
	}
	if !knownProtocol(s.Protocol) {
		b.fail(fmt.Errorf("%w: session %q has protocol %d (want ProtocolMQTT or ProtocolNative)", ErrInvalidKey, s.ClientID, s.Protocol))
		return
	}
	if err := checkName("client id", s.ClientID); err != nil {
		b.fail(err)
		return
	}
	off := len(b.buf)
	b.buf = append(appendPrefix(b.buf, spaceSession), s.Protocol)
	b.buf = append(b.buf, s.ClientID...)
	k := len(b.buf)
	b.buf = appendSession(b.buf, s)
	b.add(op{kind: opPutSession}, off, k)
}

// DeleteSession deletes the session of key (from SessionKey) and its whole
// queue.
func (b *Batch) DeleteSession(key string) {
	if err := checkSessionKey(key); err != nil {
		b.fail(err)
		return
	}
	off := len(b.buf)
	b.buf = appendNameKey(b.buf, spaceSession, key)
	b.add(op{kind: opDeleteSession}, off, len(b.buf))
}

// PutQueued stores m at o␀<key>␀<seq>, key from SessionKey. A new seq
// counts against the session's caps (Options.MaxQueuedPerSession,
// MaxQueuedBytesPerSession), enforced by the committer per
// QueueFullPolicy and reported by QueueEvents; putting an existing seq
// again (to record Sent/PacketID) replaces it and is never refused.
func (b *Batch) PutQueued(key string, seq uint64, m *Message) {
	if m == nil {
		b.fail(fmt.Errorf("%w: nil message", ErrInvalidRecord))
		return
	}
	if err := checkSessionKey(key); err != nil {
		b.fail(err)
		return
	}
	off := len(b.buf)
	b.buf = appendQueueKey(b.buf, key, seq)
	k := len(b.buf)
	b.buf = appendMessage(b.buf, m)
	b.add(op{kind: opPutQueued, deadline: deadline(m.Created, m.Expiry, b.db.opts.QueueTTL)}, off, k)
}

// DeleteQueued deletes one queued message (delivered and acknowledged).
func (b *Batch) DeleteQueued(key string, seq uint64) {
	if err := checkSessionKey(key); err != nil {
		b.fail(err)
		return
	}
	off := len(b.buf)
	b.buf = appendQueueKey(b.buf, key, seq)
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
