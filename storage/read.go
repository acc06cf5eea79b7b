package storage

import (
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble"
)

// Readers serve startup recovery and a session resuming. They read what is
// committed (a batch whose done has run is always visible), may do disk
// I/O, and so must not run on an event loop. Each record handed to fn is
// freshly allocated and belongs to fn. An error from fn stops the scan and
// is returned as is.

// LoadSessions calls fn for every stored session, in session key order
// (MQTT sessions first, each protocol by client id).
func (db *DB) LoadSessions(fn func(*Session) error) error {
	lo, hi := spaceBounds(spaceSession)
	return db.read(lo, hi, func(k, v []byte) error {
		s := new(Session)
		if err := decodeSession(v, s); err != nil {
			return corrupt(k, err)
		}
		return fn(s)
	})
}

// GetSession returns the session of key (from SessionKey), or an error
// wrapping ErrNotFound.
func (db *DB) GetSession(key string) (*Session, error) {
	if err := checkSessionKey(key); err != nil {
		return nil, err
	}
	k := appendNameKey(nil, spaceSession, key)
	v, err := db.get(k, fmt.Sprintf("session %q", key))
	if err != nil {
		return nil, err
	}
	s := new(Session)
	if err := decodeSession(v, s); err != nil {
		return nil, corrupt(k, err)
	}
	return s, nil
}

// LoadQueue calls fn for every message queued for key, in seq order.
func (db *DB) LoadQueue(key string, fn func(seq uint64, m *Message) error) error {
	if err := checkSessionKey(key); err != nil {
		return err
	}
	lo, hi := queueBounds(key)
	return db.read(lo, hi, func(k, v []byte) error {
		_, seq, ok := splitQueueKey(k)
		if !ok {
			return fmt.Errorf("%w: bad queue key %q", ErrCorrupt, k)
		}
		m := new(Message)
		if err := decodeMessage(v, m); err != nil {
			return corrupt(k, err)
		}
		return fn(seq, m)
	})
}

// LoadQueues calls fn for every queued message of every session, in
// session key then seq order: one scan, cheaper at startup than a
// LoadQueue per session. key is fresh for each session (shared by its
// messages).
func (db *DB) LoadQueues(fn func(key string, seq uint64, m *Message) error) error {
	lo, hi := spaceBounds(spaceQueue)
	var id string
	return db.read(lo, hi, func(k, v []byte) error {
		session, seq, ok := splitQueueKey(k)
		if !ok {
			return fmt.Errorf("%w: bad queue key %q", ErrCorrupt, k)
		}
		if string(session) != id {
			id = string(session)
		}
		m := new(Message)
		if err := decodeMessage(v, m); err != nil {
			return corrupt(k, err)
		}
		return fn(id, seq, m)
	})
}

// LoadRetained calls fn for every retained message, in topic order.
func (db *DB) LoadRetained(fn func(*Message) error) error {
	lo, hi := spaceBounds(spaceRetained)
	return db.read(lo, hi, func(k, v []byte) error {
		m := new(Message)
		if err := decodeMessage(v, m); err != nil {
			return corrupt(k, err)
		}
		return fn(m)
	})
}

// rlock takes rmu shared and returns the open Pebble, or ErrClosed, or the
// failure while the store is down (health.go).
func (db *DB) rlock() (*pebble.DB, error) {
	db.rmu.RLock()
	switch {
	case db.rclosed:
		db.rmu.RUnlock()
		return nil, ErrClosed
	case db.pdb == nil:
		db.rmu.RUnlock()
		if err := db.failed.Load(); err != nil {
			return nil, *err
		}
		return nil, ErrUnavailable
	}
	return db.pdb, nil
}

func (db *DB) read(lo, hi []byte, fn func(k, v []byte) error) error {
	pdb, err := db.rlock()
	if err != nil {
		return err
	}
	defer db.rmu.RUnlock()
	return scan(pdb, lo, hi, fn)
}

// get returns a copy of the value at key, or ErrNotFound (wrapped with
// what, when not found).
func (db *DB) get(key []byte, what string) ([]byte, error) {
	pdb, err := db.rlock()
	if err != nil {
		return nil, err
	}
	defer db.rmu.RUnlock()
	v, closer, err := pdb.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, what)
	}
	if err != nil {
		return nil, readError(err)
	}
	v = append([]byte(nil), v...)
	closer.Close()
	return v, nil
}

// ReadQueue calls fn for at most max messages queued for key with a seq
// of at least from, in seq order, and returns how many it read: one page
// of a queue the broker keeps only partly in memory. It seeks straight to
// from, so the deletes of messages already acknowledged below it cost
// nothing; a call costs one Pebble iterator and the messages read.
func (db *DB) ReadQueue(key string, from uint64, max int, fn func(seq uint64, m *Message) error) (int, error) {
	if err := checkSessionKey(key); err != nil {
		return 0, err
	}
	if max <= 0 {
		return 0, fmt.Errorf("%w: ReadQueue max %d (want > 0)", ErrInvalidArgument, max)
	}
	_, hi := queueBounds(key)
	lo := appendQueueKey(nil, key, from)
	n := 0
	err := db.read(lo, hi, func(k, v []byte) error {
		_, seq, ok := splitQueueKey(k)
		if !ok {
			return fmt.Errorf("%w: bad queue key %q", ErrCorrupt, k)
		}
		m := new(Message)
		if err := decodeMessage(v, m); err != nil {
			return corrupt(k, err)
		}
		if err := fn(seq, m); err != nil {
			return err
		}
		if n++; n >= max {
			return errStop
		}
		return nil
	})
	if err == errStop {
		err = nil
	}
	return n, err
}

// errStop ends a scan early; the scan's caller turns it into nil.
var errStop = errors.New("storage: stop")

// QueueInfo describes one session's queue, from the in-memory index.
type QueueInfo struct {
	Count int    // messages queued
	Bytes int64  // their encoded size
	Head  uint64 // lowest seq queued (0 if none)
	Tail  uint64 // highest seq queued (0 if none)
}

// QueueInfo returns the state of key's queue. It reads the in-memory index,
// so it is cheap (a mutex the committer holds while it applies a group),
// and counts writes whose group is being committed.
func (db *DB) QueueInfo(key string) QueueInfo {
	db.idx.mu.Lock()
	defer db.idx.mu.Unlock()
	q := db.idx.queues[key]
	if q == nil || q.count == 0 {
		return QueueInfo{}
	}
	tail := len(q.ents) - 1
	for !q.ents[tail].live { // a tombstone of the newest stays until trimmed
		tail--
	}
	return QueueInfo{Count: q.count, Bytes: q.bytes, Head: q.ents[q.head].seq, Tail: q.ents[tail].seq}
}

// QueueLen returns QueueInfo(key).Count.
func (db *DB) QueueLen(key string) int { return db.QueueInfo(key).Count }

// QueueTail returns the highest seq queued for key (0 if none), from the
// in-memory index: a resuming writer continues after it.
func (db *DB) QueueTail(key string) uint64 { return db.QueueInfo(key).Tail }
