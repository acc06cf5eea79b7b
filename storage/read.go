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

// LoadSessions calls fn for every stored session, in client id order.
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

// GetSession returns the session of clientID, or an error wrapping ErrNotFound.
func (db *DB) GetSession(clientID string) (*Session, error) {
	if err := checkName("client id", clientID); err != nil {
		return nil, err
	}
	if err := db.rlock(); err != nil {
		return nil, err
	}
	defer db.rmu.RUnlock()
	key := appendNameKey(nil, spaceSession, clientID)
	v, closer, err := db.pdb.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, fmt.Errorf("%w: session %q", ErrNotFound, clientID)
	}
	if err != nil {
		return nil, readError(err)
	}
	defer closer.Close()
	s := new(Session)
	if err := decodeSession(v, s); err != nil {
		return nil, corrupt(key, err)
	}
	return s, nil
}

// LoadQueue calls fn for every message queued for clientID, in seq order.
func (db *DB) LoadQueue(clientID string, fn func(seq uint64, m *Message) error) error {
	if err := checkName("client id", clientID); err != nil {
		return err
	}
	lo, hi := queueBounds(clientID)
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

// LoadQueues calls fn for every queued message of every client, in client
// id then seq order: one scan, cheaper at startup than a LoadQueue per
// session. clientID is fresh for each client (shared by its messages).
func (db *DB) LoadQueues(fn func(clientID string, seq uint64, m *Message) error) error {
	lo, hi := spaceBounds(spaceQueue)
	var id string
	return db.read(lo, hi, func(k, v []byte) error {
		client, seq, ok := splitQueueKey(k)
		if !ok {
			return fmt.Errorf("%w: bad queue key %q", ErrCorrupt, k)
		}
		if string(client) != id {
			id = string(client)
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

// QueueLen returns the number of messages queued for clientID. It reads the
// in-memory index, so it is cheap, and counts writes whose group is being
// committed.
func (db *DB) QueueLen(clientID string) int {
	db.idx.mu.Lock()
	defer db.idx.mu.Unlock()
	if q := db.idx.queues[clientID]; q != nil {
		return q.count
	}
	return 0
}

func (db *DB) rlock() error {
	db.rmu.RLock()
	if db.rclosed {
		db.rmu.RUnlock()
		return ErrClosed
	}
	return nil
}

func (db *DB) read(lo, hi []byte, fn func(k, v []byte) error) error {
	if err := db.rlock(); err != nil {
		return err
	}
	defer db.rmu.RUnlock()
	return db.scan(lo, hi, fn)
}

// QueueTail returns the highest seq queued for clientID (0 if none), from the
// in-memory index: a resuming writer continues after it.
func (db *DB) QueueTail(clientID string) uint64 {
	db.idx.mu.Lock()
	defer db.idx.mu.Unlock()
	if q := db.idx.queues[clientID]; q != nil && len(q.ents) > q.head {
		return q.ents[len(q.ents)-1].seq
	}
	return 0
}
