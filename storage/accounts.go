package storage

import (
	"encoding/binary"
	"fmt"

	"github.com/cockroachdb/pebble"
	"github.com/vmihailenco/msgpack/v5"
)

// Accounts: a␀<userID u64> holds the Account, n␀<name> its id. Ids come
// from a counter (m␀next-user) the committer advances in the same batch as
// the account, so they never repeat, not even after a crash or a failed
// write (the counter is read back from the disk when the store reopens).
// Names are compared as bytes: normalising them (case, Unicode form) is
// the broker's choice, made before they get here.

// AccountResult is the outcome of Register or SetCredential, filled in by
// the committer before the batch's done runs.
type AccountResult struct {
	Account Account
	// New: Register created the account (false: the name was taken and
	// Account is the existing one, its Hash unchanged).
	New bool
	// Err is set when the op could not apply (nothing was written for it):
	// ErrNotFound (SetCredential of an unknown id) or ErrCorrupt.
	Err error
}

// Register registers name, or finds it if it is registered: the same name
// always gets the same id, also when several registrations of a new name
// race (the committer decides them in order). hash is the credential hash
// to store with a new account (nil: none); an existing account keeps its
// own, so registering again cannot reset a password. The result is valid
// once done has run with nil.
func (b *Batch) Register(name string, hash []byte) *AccountResult {
	if err := checkName("user name", name); err != nil {
		b.fail(err)
		return &AccountResult{Err: err}
	}
	r := new(AccountResult)
	off := len(b.buf)
	b.buf = appendNameKey(b.buf, spaceName, name)
	k := len(b.buf)
	b.buf = append(b.buf, hash...)
	b.addDecided(op{kind: opRegister}, off, k, r)
	return r
}

// SetCredential replaces the credential hash of account userID (nil
// removes it). Result.Err is ErrNotFound for an unknown id.
func (b *Batch) SetCredential(userID uint64, hash []byte) *AccountResult {
	r := new(AccountResult)
	off := len(b.buf)
	b.buf = appendIDKey(b.buf, spaceAccount, userID)
	k := len(b.buf)
	b.buf = append(b.buf, hash...)
	b.addDecided(op{kind: opSetCredential}, off, k, r)
	return r
}

func (db *DB) decideRegister(pb *pebble.Batch, nameKey, hash []byte, r *AccountResult, now int64) error {
	v, ok, err := db.cget(nameKey)
	if err != nil {
		return err
	}
	if ok {
		id, err := decodeUint(v)
		if err != nil {
			r.Err = corrupt(nameKey, err)
			return nil
		}
		av, ok, err := db.cget(appendIDKey(nil, spaceAccount, id))
		if err != nil {
			return err
		}
		if !ok {
			r.Err = fmt.Errorf("%w: name %q points to missing account %d", ErrCorrupt, nameKey[prefixLen:], id)
			return nil
		}
		if err := msgpack.Unmarshal(av, &r.Account); err != nil {
			r.Err = corrupt(nameKey, err)
		}
		return nil
	}
	id := db.nextUser
	db.nextUser++
	r.Account = Account{ID: id, Name: string(nameKey[prefixLen:]), Created: now}
	if len(hash) > 0 {
		r.Account.Hash = append([]byte(nil), hash...)
	}
	r.New = true
	av, err := msgpack.Marshal(&r.Account)
	if err != nil {
		return err
	}
	db.cset(pb, appendIDKey(nil, spaceAccount, id), av)
	db.cset(pb, nameKey, appendUint(nil, id))
	db.cset(pb, metaNextUser, appendUint(nil, db.nextUser))
	db.st.registered.Add(1)
	return nil
}

func (db *DB) decideSetCredential(pb *pebble.Batch, key, hash []byte, r *AccountResult) error {
	v, ok, err := db.cget(key)
	if err != nil {
		return err
	}
	if !ok {
		r.Err = fmt.Errorf("%w: account %d", ErrNotFound, binary.BigEndian.Uint64(key[prefixLen:]))
		return nil
	}
	if err := msgpack.Unmarshal(v, &r.Account); err != nil {
		r.Err = corrupt(key, err)
		return nil
	}
	r.Account.Hash = nil
	if len(hash) > 0 {
		r.Account.Hash = append([]byte(nil), hash...)
	}
	av, err := msgpack.Marshal(&r.Account)
	if err != nil {
		return err
	}
	db.cset(pb, key, av)
	return nil
}

// GetAccount returns account userID, or an error wrapping ErrNotFound.
func (db *DB) GetAccount(userID uint64) (*Account, error) {
	key := appendIDKey(nil, spaceAccount, userID)
	v, err := db.get(key, fmt.Sprintf("account %d", userID))
	if err != nil {
		return nil, err
	}
	a := new(Account)
	if err := msgpack.Unmarshal(v, a); err != nil {
		return nil, corrupt(key, err)
	}
	return a, nil
}

// GetAccountByName returns the account registered as name, or an error
// wrapping ErrNotFound.
func (db *DB) GetAccountByName(name string) (*Account, error) {
	if err := checkName("user name", name); err != nil {
		return nil, err
	}
	key := appendNameKey(nil, spaceName, name)
	v, err := db.get(key, fmt.Sprintf("user %q", name))
	if err != nil {
		return nil, err
	}
	id, err := decodeUint(v)
	if err != nil {
		return nil, corrupt(key, err)
	}
	return db.GetAccount(id)
}

// LoadAccounts calls fn for every account, in id order.
func (db *DB) LoadAccounts(fn func(*Account) error) error {
	lo, hi := spaceBounds(spaceAccount)
	return db.read(lo, hi, func(k, v []byte) error {
		a := new(Account)
		if err := msgpack.Unmarshal(v, a); err != nil {
			return corrupt(k, err)
		}
		return fn(a)
	})
}

// decodeUint reads a value that is one msgpack integer.
func decodeUint(v []byte) (uint64, error) {
	r := mpReader{b: v}
	n := r.uint()
	return n, r.end()
}
