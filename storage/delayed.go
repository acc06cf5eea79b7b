package storage

import (
	"fmt"

	"github.com/cockroachdb/pebble"
)

// Delayed messages: d␀<dueUnixMs u64>␀<msgID u64> holds the Message, so
// key order is due order. The broker's scheduler reads what is due a page
// at a time (ReadDue), delivers it, and deletes it (DeleteDelayed) in the
// batch that stores the delivery; NextDue tells it when to look again.
// Nothing here expires them: a delayed message waits for its time however
// long the process was down.

// Due names one delayed message: its due time (unix ms) and id.
type Due struct {
	At int64
	ID uint64
}

// PutDelayed stores m (m.ID != 0) to be delivered at due (unix ms, >= 0).
func (b *Batch) PutDelayed(due int64, m *Message) {
	if m == nil || m.ID == 0 {
		b.fail(fmt.Errorf("%w: delayed message nil or without ID", ErrInvalidRecord))
		return
	}
	if due < 0 {
		b.fail(fmt.Errorf("%w: delayed message due at %d (before 1970)", ErrInvalidRecord, due))
		return
	}
	off := len(b.buf)
	b.buf = delayedKey(b.buf, due, m.ID)
	k := len(b.buf)
	b.buf = appendMessage(b.buf, m)
	b.add(op{kind: opSet}, off, k)
}

// DeleteDelayed deletes the delayed message d.
func (b *Batch) DeleteDelayed(d Due) {
	if d.At < 0 {
		b.fail(fmt.Errorf("%w: delayed message due at %d", ErrInvalidKey, d.At))
		return
	}
	off := len(b.buf)
	b.buf = delayedKey(b.buf, d.At, d.ID)
	b.add(op{kind: opDelete}, off, len(b.buf))
}

// ReadDue calls fn for at most max delayed messages due at or before upTo
// (unix ms) and after the position after (the zero Due: from the start),
// in due order, and returns how many it read. A scheduler that has not
// yet deleted what it read passes the last Due it got as after.
func (db *DB) ReadDue(upTo int64, after Due, max int, fn func(d Due, m *Message) error) (int, error) {
	if max <= 0 {
		return 0, fmt.Errorf("%w: ReadDue max %d (want > 0)", ErrInvalidArgument, max)
	}
	if upTo < 0 {
		return 0, nil
	}
	lo, _ := spaceBounds(spaceDelayed)
	if after != (Due{}) {
		lo = append(delayedKey(nil, after.At, after.ID), 0) // just after it
	}
	hi := delayedKey(nil, upTo, 0)
	hi = append(hi[:len(hi)-seqLen-1], sep+1) // every id due at upTo
	n := 0
	err := db.read(lo, hi, func(k, v []byte) error {
		at, id, ok := splitDelayedKey(k)
		if !ok {
			return fmt.Errorf("%w: bad delayed key %q", ErrCorrupt, k)
		}
		m := new(Message)
		if err := decodeMessage(v, m); err != nil {
			return corrupt(k, err)
		}
		if err := fn(Due{At: at, ID: id}, m); err != nil {
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

// NextDue returns the earliest delayed message's position; ok is false
// when none is stored.
func (db *DB) NextDue() (d Due, ok bool, err error) {
	pdb, err := db.rlock()
	if err != nil {
		return d, false, err
	}
	defer db.rmu.RUnlock()
	lo, hi := spaceBounds(spaceDelayed)
	it, err := pdb.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return d, false, readError(err)
	}
	if it.First() {
		at, id, good := splitDelayedKey(it.Key())
		if !good {
			err = fmt.Errorf("%w: bad delayed key %q", ErrCorrupt, it.Key())
		}
		d, ok = Due{At: at, ID: id}, good
	}
	if cerr := it.Close(); err == nil && cerr != nil {
		err = readError(cerr)
	}
	return d, ok && err == nil, err
}
