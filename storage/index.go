package storage

import (
	"fmt"
	"math"
	"sort"
	"sync"
	"time"

	"github.com/cockroachdb/pebble"
)

// index is the in-memory mirror of the session and queue keyspaces: the
// set of session keys, and per queue the seq, size and deadline of each
// message. It lets the committer enforce caps and the sweeper find expired
// messages without reading the disk. The committer is its only writer; it
// is rebuilt by a scan at Open (and after a recovery). Memory: about 24
// bytes per queued message.
type index struct {
	mu       sync.Mutex
	sessions map[string]struct{} // REQUIRES: mu held
	queues   map[string]*queue   // REQUIRES: mu held; no empty queues
	msgs     int64               // queued messages in all queues; REQUIRES: mu held
	bytes    int64               // their encoded size; REQUIRES: mu held
}

func (x *index) init() {
	x.sessions = make(map[string]struct{})
	x.queues = make(map[string]*queue)
}

// qent is one queued message. Removed entries stay as tombstones (live
// false) until trimmed, so a delete in the middle costs no copying.
type qent struct {
	seq      uint64
	deadline int64 // unix ms after which the sweeper deletes it
	size     uint32
	live     bool
}

// queue is the index of one session's queue: ents[head:] sorted by seq.
// The broker appends increasing seqs and acks mostly from the front, so both
// are O(1) in the common case; a delete elsewhere is a binary search, and
// only a put below the newest seq moves memory (O(n)).
type queue struct {
	ents        []qent
	head        int   // ents[:head] are gone; ents[head] is live unless the queue is empty
	dead        int   // tombstones in ents[head:]
	count       int   // live entries
	bytes       int64 // their sizes
	minDeadline int64 // <= every live deadline, so the sweeper can skip the queue
}

// find returns the position of seq in ents, or where it would be inserted.
func (q *queue) find(seq uint64) (int, bool) {
	n := len(q.ents)
	if n > q.head && q.ents[n-1].seq < seq { // append: the usual case
		return n, false
	}
	if n > q.head && q.ents[q.head].seq == seq { // ack of the oldest: the other usual case
		return q.head, true
	}
	i := q.head + sort.Search(n-q.head, func(i int) bool { return q.ents[q.head+i].seq >= seq })
	return i, i < n && q.ents[i].seq == seq
}

// put adds or replaces seq. It returns the size of the entry it replaced
// and whether there was one.
func (q *queue) put(seq uint64, size uint32, deadline int64) (old uint32, replaced bool) {
	i, found := q.find(seq)
	if found {
		e := &q.ents[i]
		if e.live {
			old, replaced = e.size, true
			q.bytes -= int64(e.size)
		} else {
			q.dead--
			q.count++
		}
		e.size, e.deadline, e.live = size, deadline, true
	} else {
		e := qent{seq: seq, deadline: deadline, size: size, live: true}
		if i == len(q.ents) {
			q.ents = append(q.ents, e)
		} else {
			q.ents = append(q.ents, qent{})
			copy(q.ents[i+1:], q.ents[i:])
			q.ents[i] = e
		}
		q.count++
	}
	q.bytes += int64(size)
	if len(q.ents)-q.head == 1 || deadline < q.minDeadline {
		q.minDeadline = deadline
	}
	return old, replaced
}

// kill tombstones the live entry at i and returns its size.
func (q *queue) kill(i int) uint32 {
	e := &q.ents[i]
	e.live = false
	q.dead++
	q.count--
	q.bytes -= int64(e.size)
	return e.size
}

// trim drops tombstones from the front and compacts when they dominate, so
// a queue's memory follows its live size.
func (q *queue) trim() {
	for q.head < len(q.ents) && !q.ents[q.head].live {
		q.head++
		q.dead--
	}
	switch live := len(q.ents) - q.head - q.dead; {
	case live == 0:
		q.ents, q.head, q.dead = q.ents[:0], 0, 0
		if cap(q.ents) > 1024 {
			q.ents = nil
		}
	case q.dead > 32 && q.dead > live:
		j := 0
		for _, e := range q.ents[q.head:] {
			if e.live {
				q.ents[j] = e
				j++
			}
		}
		q.ents, q.head, q.dead = q.ents[:j], 0, 0
	case q.head > 32 && q.head > len(q.ents)/2:
		n := copy(q.ents, q.ents[q.head:])
		q.ents, q.head = q.ents[:n], 0
	}
}

// loadState brings pdb to the current key layout (migrate.go) and rebuilds
// the committer's state from it: the queue index and the user id counter.
// It runs at Open and after a recovery reopened the store.
func (db *DB) loadState(pdb *pebble.DB) error {
	if err := db.migrate(pdb, migrateChunk, migrateAfterChunk); err != nil {
		return err
	}
	var x index
	x.init()
	if err := db.buildIndex(pdb, &x); err != nil {
		return err
	}
	next, err := getUint(pdb, metaNextUser)
	if err != nil {
		return err
	}
	db.nextUser = max(next, 1)
	db.idx.mu.Lock()
	db.idx.sessions, db.idx.queues, db.idx.msgs, db.idx.bytes = x.sessions, x.queues, x.msgs, x.bytes
	db.idx.mu.Unlock()
	return nil
}

// buildIndex fills x from the session and queue keyspaces of pdb.
func (db *DB) buildIndex(pdb *pebble.DB, x *index) error {
	lo, hi := spaceBounds(spaceSession)
	err := scan(pdb, lo, hi, func(k, v []byte) error {
		x.sessions[string(k[prefixLen:])] = struct{}{}
		return nil
	})
	if err != nil {
		return err
	}
	lo, hi = spaceBounds(spaceQueue)
	// Entries of one session gather in scratch (keys come in session, seq
	// order) and are copied once into an exact-size slice: one allocation
	// per queue instead of a growing append.
	var scratch []qent
	var curID []byte
	var bytes int64
	flush := func() {
		if len(scratch) == 0 {
			return
		}
		q := &queue{ents: append([]qent(nil), scratch...), count: len(scratch), bytes: bytes, minDeadline: math.MaxInt64}
		for _, e := range scratch {
			q.minDeadline = min(q.minDeadline, e.deadline)
		}
		x.queues[string(curID)] = q
		x.msgs += int64(len(scratch))
		x.bytes += bytes
		scratch, bytes = scratch[:0], 0
	}
	ttl := db.opts.QueueTTL
	err = scan(pdb, lo, hi, func(k, v []byte) error {
		session, seq, ok := splitQueueKey(k)
		if !ok {
			return fmt.Errorf("%w: bad queue key %q", ErrCorrupt, k)
		}
		created, expiry, err := decodeMsgTimes(v)
		if err != nil {
			return corrupt(k, err)
		}
		if string(session) != string(curID) {
			flush()
			curID = append(curID[:0], session...)
		}
		scratch = append(scratch, qent{seq: seq, deadline: deadline(created, expiry, ttl), size: uint32(len(v)), live: true})
		bytes += int64(len(v))
		return nil
	})
	flush()
	return err
}

// deadline is when a queued message expires: its TTL or its own expiry,
// whichever comes first. A message without Created has no TTL (there is
// nothing to count from).
func deadline(created, expiry int64, ttl time.Duration) int64 {
	d := int64(math.MaxInt64)
	if ms := ttl.Milliseconds(); ms > 0 && created > 0 {
		d = created + ms
	}
	if expiry > 0 && expiry < d {
		d = expiry
	}
	return d
}

// scan calls fn for every key in [lo, hi) of pdb. k and v are valid only
// during fn.
func scan(pdb *pebble.DB, lo, hi []byte, fn func(k, v []byte) error) error {
	it, err := pdb.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return readError(err)
	}
	for it.First(); it.Valid(); it.Next() {
		v, err := it.ValueAndErr()
		if err != nil {
			it.Close()
			return readError(err)
		}
		if err := fn(it.Key(), v); err != nil {
			it.Close()
			return err
		}
	}
	if err := it.Error(); err != nil {
		it.Close()
		return readError(err)
	}
	return it.Close()
}

func readError(err error) error {
	if pebble.IsCorruptionError(err) {
		return fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	return fmt.Errorf("storage: read: %w", err)
}
