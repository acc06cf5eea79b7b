package storage

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/vfs"
)

// copyV1 copies testdata/v1, a data dir written by the storage package of
// the version before session keys (see testdata/v1/mkv1.go.txt), into dir
// on fs, synced.
func copyV1(t *testing.T, fs vfs.FS, dir string) {
	t.Helper()
	if err := fs.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	names, err := os.ReadDir("testdata/v1")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range names {
		if strings.HasSuffix(e.Name(), ".txt") {
			continue
		}
		data, err := os.ReadFile(filepath.Join("testdata/v1", e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		f, err := fs.Create(fs.PathJoin(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.Write(data); err != nil {
			t.Fatal(err)
		}
		if err := f.Sync(); err != nil {
			t.Fatal(err)
		}
		f.Close()
	}
	for _, p := range []string{dir, fs.PathDir(dir)} {
		d, err := fs.OpenDir(p)
		if err != nil {
			t.Fatal(err)
		}
		if err := d.Sync(); err != nil {
			t.Fatal(err)
		}
		d.Close()
	}
}

// checkV1Migrated checks that db holds testdata/v1 in key layout 2.
func checkV1Migrated(t *testing.T, db *DB) {
	t.Helper()
	var ids []string
	err := db.LoadSessions(func(s *Session) error {
		if s.Protocol != ProtocolMQTT {
			return fmt.Errorf("session %q has protocol %d", s.ClientID, s.Protocol)
		}
		ids = append(ids, s.ClientID)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"\x01odd", "alice", "dev-7", "old", "zz"}; !reflect.DeepEqual(ids, want) {
		t.Fatalf("sessions %q, want %q", ids, want)
	}
	s, err := db.GetSession(mk("alice"))
	if err != nil || s.Version != 5 || s.ExpiryInterval != 3600 || s.Node != "n1" || s.NextSeq != 11 ||
		len(s.Subs) != 1 || s.Subs[0].Filter != "t/0" || s.Subs[0].ID != 1 {
		t.Fatalf("alice = %+v, %v", s, err)
	}
	// The version-1 client id "\x01odd" is MQTT client "\x01odd", not "odd".
	if _, err := db.GetSession(mk("odd")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("GetSession(odd) = %v, want ErrNotFound", err)
	}
	for i, id := range []string{"alice", "dev-7", "\x01odd", "zz"} {
		seqs, msgs := loadQueue(t, db, mk(id))
		if len(seqs) != 10+i || seqs[0] != 1 || string(msgs[len(msgs)-1].Payload) != fmt.Sprintf("%s-%d", id, 10+i) {
			t.Fatalf("queue of %q: %v", id, seqs)
		}
		if info := db.QueueInfo(mk(id)); info.Count != 10+i || info.Head != 1 || info.Tail != uint64(10+i) {
			t.Fatalf("QueueInfo(%q) = %+v", id, info)
		}
	}
	if seqs, msgs := loadQueue(t, db, mk("old")); !reflect.DeepEqual(seqs, []uint64{256}) || string(msgs[0].Payload) != "old-256" {
		t.Fatalf("queue of old: %v", seqs)
	}
	var topics []string
	db.LoadRetained(func(m *Message) error { topics = append(topics, m.Topic+"="+string(m.Payload)); return nil })
	if !reflect.DeepEqual(topics, []string{"r/1=retained"}) {
		t.Fatalf("retained %v", topics)
	}
	for _, sp := range []byte{spaceMigSession, spaceMigQueue} {
		lo, hi := spaceBounds(sp)
		n := 0
		db.read(lo, hi, func(k, v []byte) error { n++; return nil })
		if n != 0 {
			t.Fatalf("%d keys left in migration keyspace %c", n, sp)
		}
	}
	if st := db.Stats(); st.Sessions != 5 || st.QueuedMessages != 10+11+12+13+1 {
		t.Fatalf("stats %+v", st)
	}
}

// TestMigrateV1: a data dir written by the previous version opens, its
// sessions and queues become MQTT ones, and opening again changes nothing.
func TestMigrateV1(t *testing.T) {
	fs := vfs.NewMem()
	copyV1(t, fs, "db")
	c := newClock()
	for range 2 {
		db, err := Open("db", testOpts(fs, c))
		if err != nil {
			t.Fatal(err)
		}
		checkV1Migrated(t, db)
		db.Close()
	}
}

// TestMigrateInterrupted: a crash after any chunk of the migration leaves
// a store the next Open finishes migrating, with nothing lost or doubled.
func TestMigrateInterrupted(t *testing.T) {
	defer func(n int) { migrateChunk, migrateAfterChunk = n, nil }(migrateChunk)
	migrateChunk = 4
	errCrash := errors.New("crash")
	c := newClock()
	for k := 1; ; k++ {
		fs := vfs.NewStrictMem()
		copyV1(t, fs, "db")
		chunks := 0
		migrateAfterChunk = func() error {
			if chunks++; chunks == k {
				fs.SetIgnoreSyncs(true) // nothing written from here on survives
				return errCrash
			}
			return nil
		}
		db, err := Open("db", testOpts(fs, c))
		migrateAfterChunk = nil
		if err == nil { // k is past the last chunk: the migration ran whole
			checkV1Migrated(t, db)
			db.Close()
			if k < 10 {
				t.Fatalf("migration done in %d chunks; the test wants more", k-1)
			}
			t.Logf("interrupted after each of %d chunks", k-1)
			return
		}
		if !errors.Is(err, errCrash) {
			t.Fatalf("chunk %d: Open = %v", k, err)
		}
		fs.ResetToSyncedState()
		fs.SetIgnoreSyncs(false)
		db, err = Open("db", testOpts(fs, c))
		if err != nil {
			t.Fatalf("reopen after a crash at chunk %d: %v", k, err)
		}
		checkV1Migrated(t, db)
		db.Close()
	}
}

func TestNewerFormatRefused(t *testing.T) {
	fs := vfs.NewMem()
	c := newClock()
	db, err := Open("db", testOpts(fs, c))
	if err != nil {
		t.Fatal(err)
	}
	if err := db.pdb.Set(metaFormat, appendUint(nil, formatVersion+1), nil); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if _, err := Open("db", testOpts(fs, c)); !errors.Is(err, ErrVersion) {
		t.Fatalf("Open of a newer layout = %v, want ErrVersion", err)
	}
}
