package storage

import (
	"bytes"
	"fmt"

	"github.com/cockroachdb/pebble"
)

// History: h␀<conversation>␀<msgID u64> holds the Message (sender id and
// name, Created, Payload, ...). The conversation is an opaque name the
// broker builds (a user pair, a group); msgID is the broker's
// time-ordered server id, so key order is time order within a
// conversation, and newest-first paging is a reverse scan.
//
// c␀<userID u64>␀<conversation> lists the conversations a user takes part
// in, for searching "my history": PutHistory writes it for the user ids it
// is given (the two users of a private chat; a group's conversation is
// found through the user's groups instead, so a group message costs no
// write per member).
//
// Retention: the retention sweep deletes, per conversation, the messages
// whose Created is older than HistoryTTL, with one range delete each,
// reading only the expired messages and one more per conversation.

// PutHistory stores m (m.ID != 0) in conversation, and indexes the
// conversation for each user in indexFor.
func (b *Batch) PutHistory(conversation string, m *Message, indexFor ...uint64) {
	if m == nil || m.ID == 0 {
		b.fail(fmt.Errorf("%w: history message nil or without ID", ErrInvalidRecord))
		return
	}
	if err := checkName("conversation", conversation); err != nil {
		b.fail(err)
		return
	}
	off := len(b.buf)
	b.buf = appendNameSeqKey(b.buf, spaceHistory, conversation, m.ID)
	k := len(b.buf)
	b.buf = appendMessage(b.buf, m)
	b.add(op{kind: opSet}, off, k)
	for _, u := range indexFor {
		off := len(b.buf)
		b.buf = conversationKey(b.buf, u, conversation)
		k := len(b.buf)
		b.buf = append(b.buf, 0xc0) // msgpack nil: the key is the record
		b.add(op{kind: opSet}, off, k)
	}
}

// DeleteHistory deletes one history message.
func (b *Batch) DeleteHistory(conversation string, msgID uint64) {
	if err := checkName("conversation", conversation); err != nil {
		b.fail(err)
		return
	}
	off := len(b.buf)
	b.buf = appendNameSeqKey(b.buf, spaceHistory, conversation, msgID)
	b.add(op{kind: opDelete}, off, len(b.buf))
}

// deleteRange deletes [lo, hi) (the sweeper's retention deletes).
func (b *Batch) deleteRange(lo, hi []byte) {
	off := len(b.buf)
	b.buf = append(b.buf, lo...)
	k := len(b.buf)
	b.buf = append(b.buf, hi...)
	b.add(op{kind: opDeleteRange}, off, k)
}

func conversationKey(dst []byte, user uint64, conversation string) []byte {
	return append(append(appendIDKey(dst, spaceConversation, user), sep), conversation...)
}

// LoadHistory calls fn for at most max messages of conversation with an
// id below before (0: from the newest), newest first, and returns how many
// it read. To page on, pass the last id read as before.
func (db *DB) LoadHistory(conversation string, before uint64, max int, fn func(*Message) error) (int, error) {
	if err := checkName("conversation", conversation); err != nil {
		return 0, err
	}
	if max <= 0 {
		return 0, fmt.Errorf("%w: LoadHistory max %d (want > 0)", ErrInvalidArgument, max)
	}
	lo, hi := historyBounds(conversation, before)
	pdb, err := db.rlock()
	if err != nil {
		return 0, err
	}
	defer db.rmu.RUnlock()
	it, err := pdb.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return 0, readError(err)
	}
	n := 0
	for ok := it.Last(); ok && n < max; ok = it.Prev() {
		v, err := it.ValueAndErr()
		if err != nil {
			it.Close()
			return n, readError(err)
		}
		m := new(Message)
		if err := decodeMessage(v, m); err != nil {
			it.Close()
			return n, corrupt(it.Key(), err)
		}
		if err := fn(m); err != nil {
			it.Close()
			return n, err
		}
		n++
	}
	if err := it.Close(); err != nil {
		return n, readError(err)
	}
	return n, nil
}

// historyBounds is the key range of conversation's messages with an id
// below before (0: all).
func historyBounds(conversation string, before uint64) (lo, hi []byte) {
	lo, hi = ownerBounds(spaceHistory, conversation)
	if before != 0 {
		hi = appendSeq(append([]byte(nil), lo...), before)
	}
	return lo, hi
}

// UserConversations returns the conversations PutHistory indexed for
// userID, in name order. A conversation stays listed after retention
// emptied it.
func (db *DB) UserConversations(userID uint64) ([]string, error) {
	lo, hi := idBounds(spaceConversation, userID)
	var names []string
	err := db.read(lo, hi, func(k, v []byte) error {
		names = append(names, string(k[len(lo):]))
		return nil
	})
	return names, err
}

// sweepHistory deletes history older than cutoff (unix ms) through the
// committer and returns how many messages it deleted. It runs on the
// sweeper goroutine.
func (db *DB) sweepHistory(cutoff int64) (int, error) {
	pdb, err := db.rlock()
	if err != nil {
		return 0, err
	}
	type span struct{ lo, hi []byte }
	var spans []span
	expired := 0
	lo, hi := spaceBounds(spaceHistory)
	it, err := pdb.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		db.rmu.RUnlock()
		return 0, readError(err)
	}
	for ok := it.First(); ok; {
		conv, _, good := splitNameSeqKey(spaceHistory, it.Key())
		if !good {
			ok = it.Next() // not ours to judge here; LoadHistory reports it
			continue
		}
		clo, chi := ownerBounds(spaceHistory, string(conv))
		n, inConv := 0, true
		for {
			v, err := it.ValueAndErr()
			if err != nil {
				it.Close()
				db.rmu.RUnlock()
				return expired, readError(err)
			}
			if created, _, err := decodeMsgTimes(v); err != nil || created == 0 || created >= cutoff {
				break // ids are time-ordered: the rest of the conversation is younger
			}
			n++
			if ok = it.Next(); !ok || !bytes.HasPrefix(it.Key(), clo) {
				inConv = false
				break
			}
		}
		if n > 0 {
			end := chi
			if inConv {
				end = append([]byte(nil), it.Key()...)
			}
			spans = append(spans, span{clo, end})
			expired += n
		}
		if inConv {
			ok = it.SeekGE(chi) // skip the young rest of this conversation
		}
	}
	err = it.Close()
	db.rmu.RUnlock()
	if err != nil {
		return 0, readError(err)
	}
	for len(spans) > 0 {
		n := min(len(spans), 1024)
		b := db.NewBatch()
		for _, s := range spans[:n] {
			b.deleteRange(s.lo, s.hi)
		}
		if err := db.commitAndWait(b); err != nil {
			return 0, err
		}
		spans = spans[n:]
	}
	db.st.expiredHistory.Add(uint64(expired))
	return expired, nil
}

// commitAndWait commits b and waits for its done.
func (db *DB) commitAndWait(b *Batch) error {
	ch := make(chan error, 1)
	if err := db.Commit(b, func(err error) { ch <- err }); err != nil {
		b.reset()
		return err
	}
	return <-ch
}
