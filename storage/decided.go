package storage

import (
	"errors"

	"github.com/cockroachdb/pebble"
)

// Decided ops (Register, SetCredential, CreateGroup, JoinGroup, LeaveGroup,
// Dedup) read the store to decide what they write. They are decided on the
// committer, one after the other in commit order, so two concurrent
// registrations of one new name get one id, and a resend racing its
// original gets the original's server id. Each returns a result the
// committer fills in before the batch's done runs; read it in done (or
// after done signalled you), and only when done got nil.
//
// Reads a decided op makes see every earlier group (applied to Pebble
// before the next is built) and, through the overlay ov, the writes of
// decided ops earlier in the same group. Plain ops never write the
// keyspaces decided ops read (accounts, names, groups, members, dedup), so
// the overlay sees everything that matters.

// ovEntry is one write of a decided op in the current group.
type ovEntry struct {
	val []byte
	del bool
}

// decide runs the decided ops of group in order, adding their writes to
// pb. An error is a failed read: the store is then recovered as after a
// failed write, which also discards what decide changed in memory.
func (db *DB) decide(pb *pebble.Batch, group []*Batch) error {
	var now int64
	for _, b := range group {
		if b.decided == 0 {
			continue
		}
		if now == 0 {
			now = db.opts.Now().UnixMilli()
		}
		// A duplicate Dedup skips the whole batch: check them all first.
		for i := range b.ops {
			if o := &b.ops[i]; o.kind == opDedup {
				dup, err := db.checkDedup(b, o, now)
				if err != nil {
					return err
				}
				b.skip = b.skip || dup
			}
		}
		if b.skip {
			db.st.duplicates.Add(1)
			continue
		}
		for i := range b.ops {
			if o := &b.ops[i]; o.kind.decided() {
				if err := db.decideOp(pb, b, o, now); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

func (db *DB) decideOp(pb *pebble.Batch, b *Batch, o *op, now int64) error {
	key := b.buf[o.off : o.off+o.keyLen]
	val := b.buf[o.off+o.keyLen : o.off+o.keyLen+o.valLen]
	switch o.kind {
	case opRegister:
		return db.decideRegister(pb, key, val, b.res[o.aux].(*AccountResult), now)
	case opSetCredential:
		return db.decideSetCredential(pb, key, val, b.res[o.aux].(*AccountResult))
	case opCreateGroup:
		return db.decideCreateGroup(pb, key, uint64(o.deadline), b.res[o.aux].(*GroupResult), now)
	case opJoinGroup:
		return db.decideMember(pb, key, uint64(o.deadline), true, b.res[o.aux].(*GroupResult), now)
	case opLeaveGroup:
		return db.decideMember(pb, key, uint64(o.deadline), false, b.res[o.aux].(*GroupResult), now)
	case opDedup:
		r := b.res[o.aux].(*DedupResult)
		db.cset(pb, key, appendDedup(nil, r.ServerID, now))
		db.raiseDedupMark(pb, key)
	case opExpireDedup:
		v, ok, err := db.cget(key)
		if err != nil || !ok {
			return err
		}
		if _, created, err := decodeDedup(v); err != nil || created < o.deadline {
			// A damaged dedup record is of no use either: drop it.
			db.cdel(pb, key)
			b.res[o.aux].(*sweepCount).n++
		}
	}
	return nil
}

// cget reads key as the committer sees it: the overlay, then Pebble. The
// value is the caller's.
func (db *DB) cget(key []byte) ([]byte, bool, error) {
	if e, ok := db.ov[string(key)]; ok {
		return e.val, !e.del, nil
	}
	v, closer, err := db.pdb.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, readError(err)
	}
	v = append([]byte(nil), v...)
	closer.Close()
	return v, true, nil
}

func (db *DB) cset(pb *pebble.Batch, key, val []byte) {
	_ = pb.Set(key, val, nil)
	db.ov[string(key)] = ovEntry{val: append([]byte(nil), val...)}
}

func (db *DB) cdel(pb *pebble.Batch, key []byte) {
	_ = pb.Delete(key, nil)
	db.ov[string(key)] = ovEntry{del: true}
}
