package storage

import (
	"encoding/binary"
	"fmt"

	"github.com/cockroachdb/pebble"
	"github.com/vmihailenco/msgpack/v5"
)

// Groups: g␀<name> holds the Group; membership is written both ways, in
// one batch, so both listings are one range scan:
//
//	p␀<group>␀<userID u64>   joined (unix ms): the group's members, by id
//	u␀<userID u64>␀<group>   joined (unix ms): the user's groups, by name

// GroupResult is the outcome of CreateGroup, JoinGroup or LeaveGroup,
// filled in by the committer before the batch's done runs.
type GroupResult struct {
	Group Group // the group as stored (zero if it does not exist)
	// Changed: the op changed something (a group created, a member added
	// or removed); false when it was already so.
	Changed bool
	// Err: the op could not apply and wrote nothing: ErrNotFound (a join
	// to a group that does not exist) or ErrCorrupt.
	Err error
}

// CreateGroup creates group name owned by owner, or finds it: creating an
// existing group changes nothing (Changed false, Group as it was). It does
// not make the owner a member; JoinGroup in the same batch does.
func (b *Batch) CreateGroup(name string, owner uint64) *GroupResult {
	return b.groupOp(opCreateGroup, name, owner)
}

// JoinGroup adds userID to group name. Result.Err wraps ErrNotFound when
// the group does not exist (it may be created earlier in the same batch).
func (b *Batch) JoinGroup(name string, userID uint64) *GroupResult {
	return b.groupOp(opJoinGroup, name, userID)
}

// LeaveGroup removes userID from group name (Changed false if it was not a
// member).
func (b *Batch) LeaveGroup(name string, userID uint64) *GroupResult {
	return b.groupOp(opLeaveGroup, name, userID)
}

func (b *Batch) groupOp(kind opKind, name string, user uint64) *GroupResult {
	if err := checkName("group name", name); err != nil {
		b.fail(err)
		return &GroupResult{Err: err}
	}
	r := new(GroupResult)
	off := len(b.buf)
	b.buf = appendNameKey(b.buf, spaceGroup, name)
	b.addDecided(op{kind: kind, deadline: int64(user)}, off, len(b.buf), r)
	return r
}

// memberKey is p␀<group>␀<userID>; userGroupKey u␀<userID>␀<group>.
func memberKey(dst []byte, group string, user uint64) []byte {
	return appendSeq(append(appendNameKey(dst, spaceMember, group), sep), user)
}

func userGroupKey(dst []byte, user uint64, group string) []byte {
	return append(append(appendIDKey(dst, spaceUserGroup, user), sep), group...)
}

// lookupGroup reads the group at key (g␀name) as the committer sees it.
func (db *DB) lookupGroup(key []byte, g *Group) (found bool, err error) {
	v, ok, err := db.cget(key)
	if err != nil || !ok {
		return false, err
	}
	if err := msgpack.Unmarshal(v, g); err != nil {
		return true, corrupt(key, err)
	}
	return true, nil
}

func (db *DB) decideCreateGroup(pb *pebble.Batch, key []byte, owner uint64, r *GroupResult, now int64) error {
	found, err := db.lookupGroup(key, &r.Group)
	if found || err != nil {
		if found && err != nil { // a damaged record: report, keep going
			r.Err, err = err, nil
		}
		return err
	}
	r.Group = Group{Name: string(key[prefixLen:]), Owner: owner, Created: now}
	v, err := msgpack.Marshal(&r.Group)
	if err != nil {
		return err
	}
	db.cset(pb, key, v)
	r.Changed = true
	return nil
}

func (db *DB) decideMember(pb *pebble.Batch, key []byte, user uint64, join bool, r *GroupResult, now int64) error {
	found, err := db.lookupGroup(key, &r.Group)
	if found && err != nil {
		r.Err = err
		return nil
	}
	if err != nil {
		return err
	}
	name := string(key[prefixLen:])
	if !found {
		if join {
			r.Err = fmt.Errorf("%w: group %q", ErrNotFound, name)
			return nil
		}
		// Leaving a group that is gone: still clear stale membership keys.
	}
	mk := memberKey(nil, name, user)
	_, member, err := db.cget(mk)
	if err != nil {
		return err
	}
	switch {
	case join && !member:
		at := appendInt(nil, now)
		db.cset(pb, mk, at)
		db.cset(pb, userGroupKey(nil, user, name), at)
		r.Changed = true
	case !join && member:
		db.cdel(pb, mk)
		db.cdel(pb, userGroupKey(nil, user, name))
		r.Changed = true
	}
	return nil
}

// GetGroup returns group name, or an error wrapping ErrNotFound.
func (db *DB) GetGroup(name string) (*Group, error) {
	if err := checkName("group name", name); err != nil {
		return nil, err
	}
	key := appendNameKey(nil, spaceGroup, name)
	v, err := db.get(key, fmt.Sprintf("group %q", name))
	if err != nil {
		return nil, err
	}
	g := new(Group)
	if err := msgpack.Unmarshal(v, g); err != nil {
		return nil, corrupt(key, err)
	}
	return g, nil
}

// GroupMembers calls fn for every member of group name, in user id order,
// with the time it joined (unix ms).
func (db *DB) GroupMembers(name string, fn func(userID uint64, joined int64) error) error {
	if err := checkName("group name", name); err != nil {
		return err
	}
	lo, hi := ownerBounds(spaceMember, name)
	return db.read(lo, hi, func(k, v []byte) error {
		if len(k) != len(lo)+seqLen {
			return fmt.Errorf("%w: bad member key %q", ErrCorrupt, k)
		}
		joined, err := decodeInt(v)
		if err != nil {
			return corrupt(k, err)
		}
		return fn(binary.BigEndian.Uint64(k[len(lo):]), joined)
	})
}

// UserGroups returns the groups userID is a member of, in name order.
func (db *DB) UserGroups(userID uint64) ([]string, error) {
	lo, hi := idBounds(spaceUserGroup, userID)
	var names []string
	err := db.read(lo, hi, func(k, v []byte) error {
		names = append(names, string(k[len(lo):]))
		return nil
	})
	return names, err
}

func decodeInt(v []byte) (int64, error) {
	r := mpReader{b: v}
	n := r.int()
	return n, r.end()
}

// LoadGroups calls fn for every group and then member for every
// membership (group name, user id), each in key order: what a broker keeps
// in memory to check membership without reading the disk. Startup only.
func (db *DB) LoadGroups(fn func(*Group) error, member func(group string, userID uint64) error) error {
	lo, hi := spaceBounds(spaceGroup)
	if err := db.read(lo, hi, func(k, v []byte) error {
		g := new(Group)
		if err := msgpack.Unmarshal(v, g); err != nil {
			return corrupt(k, err)
		}
		return fn(g)
	}); err != nil {
		return err
	}
	lo, hi = spaceBounds(spaceMember)
	return db.read(lo, hi, func(k, v []byte) error {
		name, user, ok := splitNameSeqKey(spaceMember, k)
		if !ok {
			return fmt.Errorf("%w: bad member key %q", ErrCorrupt, k)
		}
		return member(string(name), user)
	})
}
