package storage

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strconv"

	"github.com/cockroachdb/pebble"
)

// Dedup records: i␀<sender>␀<clientMsgID> -> {server id, created}. A QoS 1
// native send carries the sender's own id for the message; the broker
// puts a Dedup op in the batch that stores the message. The committer
// checks it first: if the pair was seen within DedupTTL, the batch is
// skipped whole (nothing of it is written) and the result carries the
// first copy's server id, so a resend after a reconnect or a restart is
// acknowledged with the same id instead of stored twice. Use one batch per
// client message: a batch with several Dedup ops is skipped if any of
// them is a duplicate.
//
// Expired records are removed by the retention sweep (one pass over i␀);
// until then a lookup ignores them.
//
// Marks: j␀<sender> -> a client message id (as a decimal number) at or
// above every one of the sender's records, written with the record that
// passes it, leased markLease ahead so that it is rewritten rarely. Clients
// number their messages upwards, so a send above the mark is new without a
// lookup: the committer keeps the marks in memory (the highest id recorded,
// and what the key holds), and a point lookup per send was most of a
// native QoS 1 send's cost (bench/native.sh profile). A mark only ever
// rises, so it bounds every live record; a sender without one (a store
// from before marks) gets it from one scan of its records.

// DedupResult is the outcome of Dedup, filled in by the committer before
// the batch's done runs.
type DedupResult struct {
	// ServerID is the id the message is known by: the one given to Dedup,
	// or, for a duplicate, the first copy's.
	ServerID uint64
	// Duplicate: the pair was seen within DedupTTL; nothing in the batch
	// was written.
	Duplicate bool
}

// Dedup makes the batch conditional on (sender, clientMsgID) being new:
// see the comment above. sender is an opaque name the broker builds (e.g.
// a SessionKey or a user id); serverID is the id assigned to this copy.
func (b *Batch) Dedup(sender, clientMsgID string, serverID uint64) *DedupResult {
	r := &DedupResult{ServerID: serverID}
	if err := checkName("dedup sender", sender); err != nil {
		b.fail(err)
		return r
	}
	if err := checkName("client message id", clientMsgID); err != nil {
		b.fail(err)
		return r
	}
	off := len(b.buf)
	b.buf = dedupKey(b.buf, sender, clientMsgID)
	b.addDecided(op{kind: opDedup}, off, len(b.buf), r)
	return r
}

func dedupKey(dst []byte, sender, clientMsgID string) []byte {
	return append(append(appendNameKey(dst, spaceDedup, sender), sep), clientMsgID...)
}

// checkDedup reports whether the Dedup op o finds a live record, and fills
// in its result.
func (db *DB) checkDedup(b *Batch, o *op, now int64) (bool, error) {
	key := b.buf[o.off : o.off+o.keyLen]
	if sender, n, ok := splitDedupKey(key); ok {
		mark, err := db.dedupMark(sender)
		if err != nil {
			return false, err
		}
		if n > mark {
			return false, nil // above everything recorded: new
		}
	}
	v, ok, err := db.cget(key)
	if err != nil || !ok {
		return false, err
	}
	id, created, err := decodeDedup(v)
	if err != nil || !db.dedupLive(created, now) {
		return false, nil // damaged or expired: the new copy replaces it
	}
	r := b.res[o.aux].(*DedupResult)
	r.ServerID, r.Duplicate = id, true
	return true, nil
}

// splitDedupKey returns the sender of a dedup key and its client message
// id, when that is a decimal number.
func splitDedupKey(key []byte) (sender string, n uint64, ok bool) {
	rest := key[prefixLen:]
	i := bytes.LastIndexByte(rest, sep)
	if i < 0 {
		return "", 0, false
	}
	n, err := strconv.ParseUint(string(rest[i+1:]), 10, 64)
	return string(rest[:i]), n, err == nil
}

// markLease is how far ahead of the highest id recorded a mark key is
// written: once per markLease ids of a sender.
const markLease = 1 << 16

// dedupMark is a sender's mark in memory: the highest id recorded, and the
// value of its key.
type dedupMark struct{ high, stored uint64 }

// dedupMark returns the sender's mark: from memory, else its key, else (a
// store from before marks) the highest numeric id among its records.
// Committer only.
func (db *DB) dedupMark(sender string) (uint64, error) {
	if m, ok := db.marks[sender]; ok {
		return m.high, nil
	}
	v, ok, err := db.cget(appendNameKey(nil, spaceDedupMark, sender))
	if err != nil {
		return 0, err
	}
	var mark uint64
	if ok && len(v) == 8 {
		mark = binary.BigEndian.Uint64(v)
	} else if mark, err = scanDedupMark(db.pdb, sender); err != nil {
		return 0, err
	}
	db.marks[sender] = dedupMark{high: mark, stored: mark}
	return mark, nil
}

// scanDedupMark reads the highest numeric client message id among the
// sender's records in pdb.
func scanDedupMark(pdb *pebble.DB, sender string) (uint64, error) {
	lo := append(appendNameKey(nil, spaceDedup, sender), sep)
	hi := append(appendNameKey(nil, spaceDedup, sender), sep+1)
	var mark uint64
	err := scan(pdb, lo, hi, func(k, _ []byte) error {
		if n, err := strconv.ParseUint(string(k[len(lo):]), 10, 64); err == nil {
			mark = max(mark, n)
		}
		return nil
	})
	return mark, err
}

// raiseDedupMark records that key's id was recorded: the mark rises to it
// in memory, and its key (in pb, with the record) to markLease beyond it
// when the id passes what the key holds. Committer only, after dedupMark.
func (db *DB) raiseDedupMark(pb *pebble.Batch, key []byte) {
	sender, n, ok := splitDedupKey(key)
	m := db.marks[sender]
	if !ok || n <= m.high {
		return
	}
	m.high = n
	if n > m.stored {
		m.stored = n + markLease
		if m.stored < n {
			m.stored = math.MaxUint64
		}
		_ = pb.Set(appendNameKey(nil, spaceDedupMark, sender), binary.BigEndian.AppendUint64(nil, m.stored), nil)
	}
	db.marks[sender] = m
}

func (db *DB) dedupLive(created, now int64) bool {
	return created > now-db.opts.DedupTTL.Milliseconds()
}

// GetDedup returns the server id recorded for (sender, clientMsgID) within
// DedupTTL, or an error wrapping ErrNotFound. The broker may use it to
// answer a resend without a commit; the decision that counts is the
// committer's (Dedup).
func (db *DB) GetDedup(sender, clientMsgID string) (uint64, error) {
	if err := checkName("dedup sender", sender); err != nil {
		return 0, err
	}
	if err := checkName("client message id", clientMsgID); err != nil {
		return 0, err
	}
	key := dedupKey(nil, sender, clientMsgID)
	v, err := db.get(key, "dedup record")
	if err != nil {
		return 0, err
	}
	id, created, err := decodeDedup(v)
	if err != nil {
		return 0, corrupt(key, err)
	}
	if !db.dedupLive(created, db.opts.Now().UnixMilli()) {
		return 0, fmt.Errorf("%w: dedup %q/%q (expired)", ErrNotFound, sender, clientMsgID)
	}
	return id, nil
}

// DedupMark returns the sender's stored mark: every dedup record of the
// sender committed so far has a numeric client message id at most this
// (records with other ids are not counted); it may be up to 65,536 above
// the highest. The broker keeps it to tell a new send
// from a possible resend without a lookup per message.
func (db *DB) DedupMark(sender string) (uint64, error) {
	if err := checkName("dedup sender", sender); err != nil {
		return 0, err
	}
	pdb, err := db.rlock()
	if err != nil {
		return 0, err
	}
	defer db.rmu.RUnlock()
	v, closer, err := pdb.Get(appendNameKey(nil, spaceDedupMark, sender))
	switch {
	case err == nil:
		defer closer.Close()
		if len(v) == 8 {
			return binary.BigEndian.Uint64(v), nil
		}
	case !errors.Is(err, pebble.ErrNotFound):
		return 0, readError(err)
	}
	return scanDedupMark(pdb, sender) // a store from before marks
}

// appendDedup encodes a dedup record: the msgpack map {i: id, c: created}.
func appendDedup(b []byte, id uint64, created int64) []byte {
	b = append(b, 0x82)
	b = appendUint(appendStr(b, "i"), id)
	return appendInt(appendStr(b, "c"), created)
}

func decodeDedup(v []byte) (id uint64, created int64, err error) {
	r := mpReader{b: v}
	created = math.MinInt64
	for n := r.mapLen(); n > 0 && r.err == nil; n-- {
		switch string(r.raw()) {
		case "i":
			id = r.uint()
		case "c":
			created = r.int()
		default:
			r.skip()
		}
	}
	return id, created, r.end()
}
