package storage

import (
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble"
)

// Key layout versions (m␀format).
//
// Version 1 (no m␀format key) keyed sessions and queues by the bare MQTT
// client id: s␀<clientID>, o␀<clientID>␀<seq>. Version 2 keys them by
// SessionKey (protocol byte first), so version-1 keys become MQTT keys:
// s␀<0x01><clientID>, o␀<0x01><clientID>␀<seq>.
//
// The move cannot be told apart from its input by looking at a key (a
// version-1 client id may itself start with 0x01), so it goes through
// temporary keyspaces, in chunks, each chunk one atomic batch:
//
//	phase 1: s␀X → S␀X, o␀X␀n → O␀X␀n         s␀, o␀ hold only version-1 keys
//	         then m␀migrating = 2
//	phase 2: S␀X → s␀<1>X, O␀X␀n → o␀<1>X␀n   s␀, o␀ hold only version-2 keys
//	done:    m␀format = 2, m␀migrating deleted (one batch)
//
// A crash anywhere resumes the phase it was in (no m␀migrating: phase 1):
// every chunk moves keys out of the keyspace being emptied, so what is
// left there is still to do.
const formatVersion = 2

// Migration knobs; tests shrink the chunk and interrupt between chunks.
var (
	migrateChunk      = 4096 // keys per migration batch
	migrateAfterChunk func() error
)

// migrate brings pdb to formatVersion. afterChunk, if set, runs after each
// committed chunk (tests use it to interrupt a migration).
func (db *DB) migrate(pdb *pebble.DB, chunk int, afterChunk func() error) error {
	format, err := getUint(pdb, metaFormat)
	if err != nil {
		return err
	}
	switch {
	case format == formatVersion:
		return nil
	case format > formatVersion:
		return fmt.Errorf("%w: %s has key layout %d, this version reads %d", ErrVersion, db.dir, format, formatVersion)
	}
	phase, err := getUint(pdb, metaMigrating)
	if err != nil {
		return err
	}
	if phase == 0 {
		empty, err := isEmpty(pdb)
		if err != nil {
			return err
		}
		if empty { // a new store
			return setUint(pdb, metaFormat, formatVersion)
		}
		db.log.Info("migrating the data dir to key layout 2 (sessions keyed by protocol)", "dir", db.dir)
		phase = 1
	}
	if phase == 1 {
		for _, sp := range [][2]byte{{spaceSession, spaceMigSession}, {spaceQueue, spaceMigQueue}} {
			_, err := moveSpace(pdb, sp[0], chunk, func(k []byte) []byte {
				return append([]byte{sp[1], sep}, k[prefixLen:]...)
			}, nil, afterChunk)
			if err != nil {
				return err
			}
		}
		if err := setUint(pdb, metaMigrating, 2); err != nil {
			return err
		}
	}
	mqtt := func(space byte) func(k []byte) []byte {
		return func(k []byte) []byte {
			return append([]byte{space, sep, ProtocolMQTT}, k[prefixLen:]...)
		}
	}
	k1, err := moveSpace(pdb, spaceMigSession, chunk, mqtt(spaceSession), upgradeSession, afterChunk)
	if err != nil {
		return err
	}
	k2, err := moveSpace(pdb, spaceMigQueue, chunk, mqtt(spaceQueue), nil, afterChunk)
	if err != nil {
		return err
	}
	b := pdb.NewBatch()
	defer b.Close()
	_ = b.Set(metaFormat, appendUint(nil, formatVersion), nil)
	_ = b.Delete(metaMigrating, nil)
	if err := b.Commit(pebble.Sync); err != nil {
		return openError(db.dir, err)
	}
	db.log.Info("data dir migrated to key layout 2", "sessions", k1, "queued", k2)
	return nil
}

// upgradeSession fills the fields a version-1 session record may lack.
func upgradeSession(k, v []byte) ([]byte, error) {
	var s Session
	if err := decodeSession(v, &s); err != nil {
		return nil, corrupt(k, err)
	}
	if s.Protocol == ProtocolMQTT && s.ClientID != "" {
		return v, nil
	}
	s.Protocol = ProtocolMQTT // version 1 stored only MQTT sessions
	if s.ClientID == "" {
		s.ClientID = string(k[prefixLen:])
	}
	return appendSession(nil, &s), nil
}

// moveSpace moves every key of keyspace from to rename(key), chunk keys per
// atomic batch, and returns how many it moved. value, if set, rewrites
// each value.
func moveSpace(pdb *pebble.DB, from byte, chunk int, rename func([]byte) []byte,
	value func(k, v []byte) ([]byte, error), afterChunk func() error) (int, error) {
	lo, hi := spaceBounds(from)
	moved := 0
	for {
		b := pdb.NewBatch()
		n := 0
		err := scanLimit(pdb, lo, hi, chunk, func(k, v []byte) error {
			if from == spaceMigQueue || from == spaceQueue {
				if _, _, ok := splitNameSeqKey(from, k); !ok {
					return fmt.Errorf("%w: bad queue key %q", ErrCorrupt, k)
				}
			}
			if value != nil {
				var err error
				if v, err = value(k, v); err != nil {
					return err
				}
			}
			_ = b.Set(rename(k), v, nil)
			_ = b.Delete(k, nil)
			n++
			return nil
		})
		if err == nil && n > 0 {
			err = b.Commit(pebble.Sync)
		}
		b.Close()
		if err != nil {
			return moved, fmt.Errorf("%w: migrating: %w", ErrOpen, err)
		}
		moved += n
		if n > 0 && afterChunk != nil {
			if err := afterChunk(); err != nil {
				return moved, err
			}
		}
		if n < chunk {
			return moved, nil
		}
	}
}

// scanLimit is scan stopping after max keys.
func scanLimit(pdb *pebble.DB, lo, hi []byte, max int, fn func(k, v []byte) error) error {
	n := 0
	errStop := errors.New("stop")
	err := scan(pdb, lo, hi, func(k, v []byte) error {
		if err := fn(k, v); err != nil {
			return err
		}
		if n++; n >= max {
			return errStop
		}
		return nil
	})
	if err == errStop {
		return nil
	}
	return err
}

func isEmpty(pdb *pebble.DB) (bool, error) {
	it, err := pdb.NewIter(nil)
	if err != nil {
		return false, readError(err)
	}
	empty := !it.First()
	if err := it.Close(); err != nil {
		return false, readError(err)
	}
	return empty, nil
}

// getUint reads a msgpack uint stored at key; a missing key reads as 0.
func getUint(pdb *pebble.DB, key []byte) (uint64, error) {
	v, closer, err := pdb.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, readError(err)
	}
	defer closer.Close()
	r := mpReader{b: v}
	n := r.uint()
	if err := r.end(); err != nil {
		return 0, corrupt(key, err)
	}
	return n, nil
}

func setUint(pdb *pebble.DB, key []byte, v uint64) error {
	if err := pdb.Set(key, appendUint(nil, v), pebble.Sync); err != nil {
		return fmt.Errorf("%w: %w", ErrOpen, err)
	}
	return nil
}
