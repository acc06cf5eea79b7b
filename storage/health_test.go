package storage

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/vfs"
)

func failingOpts(sw *switchFS, mem vfs.FS, c *fakeClock, rec *logRecorder) Options {
	o := testOpts(sw.wrap(mem), c)
	o.Logger = slog.New(rec)
	o.RetryDelay, o.MaxRetryDelay = 2*time.Millisecond, 10*time.Millisecond
	return o
}

// TestWriteFailureRecovers: a disk that fills up fails the group with
// ErrWrite and ErrDiskFull; while it stays full Commit and the readers
// refuse at once (counted, logged once) and Health says why; once space is
// back the store reopens by itself, and nothing acknowledged before, during
// or after is lost, neither in the running store nor after a restart.
func TestWriteFailureRecovers(t *testing.T) {
	var sw switchFS
	mem := vfs.NewMem()
	c := newClock()
	rec := &logRecorder{}
	db, err := Open("db", failingOpts(&sw, mem, c, rec))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { db.Close() }()
	key := mk("c")
	var alice *AccountResult
	mustCommit(t, db, func(b *Batch) {
		for seq := uint64(1); seq <= 50; seq++ {
			b.PutQueued(key, seq, qmsg(c, fmt.Sprint(seq)))
		}
		alice = b.Register("alice", nil)
	})
	if db.Health() != nil {
		t.Fatalf("Health before the failure = %v", db.Health())
	}

	sw.full.Store(true)
	err = commitWait(t, db, func(b *Batch) { b.PutQueued(key, 51, qmsg(c, "51")) })
	if !errors.Is(err, ErrWrite) || !errors.Is(err, ErrDiskFull) {
		t.Fatalf("commit on a full disk = %v, want ErrWrite and ErrDiskFull", err)
	}
	if h := db.Health(); !errors.Is(h, ErrUnavailable) || !errors.Is(h, ErrDiskFull) {
		t.Fatalf("Health on a full disk = %v", h)
	}
	for range 100 {
		b := db.NewBatch()
		b.PutQueued(key, 52, qmsg(c, "refused"))
		if err := db.Commit(b, func(error) { t.Error("done of a refused batch called") }); !errors.Is(err, ErrUnavailable) || !errors.Is(err, ErrDiskFull) {
			t.Fatalf("Commit while failing = %v, want ErrUnavailable and ErrDiskFull", err)
		}
	}
	// Reopening needs to write too: attempts fail until there is room.
	checkFor(t, 10*time.Second, func() error {
		if n := db.Stats().Retries; n < 3 {
			return fmt.Errorf("%d reopen attempts so far", n)
		}
		return nil
	})
	if err := db.LoadQueue(key, func(uint64, *Message) error { return nil }); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("LoadQueue while the store is down = %v, want ErrUnavailable", err)
	}

	sw.full.Store(false)
	checkFor(t, 10*time.Second, db.Health)
	for seq := uint64(52); seq <= 60; seq++ {
		mustCommit(t, db, func(b *Batch) { b.PutQueued(key, seq, qmsg(c, fmt.Sprint(seq))) })
	}
	var again, bob *AccountResult
	mustCommit(t, db, func(b *Batch) { again, bob = b.Register("alice", nil), b.Register("bob", nil) })
	if again.Account.ID != alice.Account.ID || again.New || bob.Account.ID != alice.Account.ID+1 {
		t.Fatalf("registrations after recovery: alice %+v (first %+v), bob %+v", again, alice, bob)
	}
	check := func(db *DB) {
		t.Helper()
		seqs, msgs := loadQueue(t, db, key)
		got := map[uint64]bool{}
		for i, s := range seqs {
			got[s] = true
			if string(msgs[i].Payload) != fmt.Sprint(s) {
				t.Fatalf("seq %d holds %q", s, msgs[i].Payload)
			}
		}
		for seq := uint64(1); seq <= 60; seq++ {
			if !got[seq] && seq != 51 { // 51 was never acknowledged: either way is right
				t.Fatalf("acknowledged seq %d lost (queue %v)", seq, seqs)
			}
		}
		if info := db.QueueInfo(key); info.Count != len(seqs) || info.Head != seqs[0] || info.Tail != 60 {
			t.Fatalf("QueueInfo %+v disagrees with the disk (%d messages)", info, len(seqs))
		}
	}
	check(db)
	st := db.Stats()
	if st.Unavailable < 100 || st.WriteErrors < 1 || st.Failures != 1 || st.Recoveries != 1 || st.Failed != nil {
		t.Fatalf("stats after recovery: %+v", st)
	}
	if n, m := rec.count("ERROR storage failing; refusing writes until it reopens"), rec.count("INFO storage recovered"); n != 1 || m != 1 {
		t.Fatalf("logged failing %d and recovered %d times, want once each", n, m)
	}
	db.Close()
	db, err = Open("db", testOpts(mem, c))
	if err != nil {
		t.Fatal(err)
	}
	check(db)
}

// TestBackgroundFailureRecovers: sstables cannot be written (a flush fails
// on Pebble's own goroutine) while the WAL still can. The store reports it,
// recovers once the disk has room, and keeps everything acknowledged.
func TestBackgroundFailureRecovers(t *testing.T) {
	var sw switchFS
	mem := vfs.NewMem()
	c := newClock()
	rec := &logRecorder{}
	o := failingOpts(&sw, mem, c, rec)
	o.MemTableSize = 1 << 20
	db, err := Open("db", o)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { db.Close() }()
	sw.sstOnly.Store(true)
	sw.full.Store(true)
	key := mk("big")
	payload := make([]byte, 1000)
	acked := uint64(0)
	// Write until a flush has failed: 1 MiB memtables fill within a few MiB.
	checkFor(t, 20*time.Second, func() error {
		if db.Health() != nil {
			return nil
		}
		err := commitWait(t, db, func(b *Batch) {
			for i := range uint64(100) {
				b.PutQueued(key, acked+1+i, &Message{Topic: "t", Payload: payload})
			}
		})
		if err != nil {
			return nil // the failure reached a commit first: also fine
		}
		acked += 100
		return errors.New("no background failure yet")
	})
	if h := db.Health(); !errors.Is(h, ErrUnavailable) || !errors.Is(h, ErrDiskFull) || !strings.Contains(h.Error(), "background") {
		t.Fatalf("Health after a failed flush = %v", h)
	}
	sw.full.Store(false)
	checkFor(t, 10*time.Second, db.Health)
	seqs, _ := loadQueue(t, db, key)
	if uint64(len(seqs)) < acked {
		t.Fatalf("%d messages after recovery, %d acknowledged", len(seqs), acked)
	}
	for i, s := range seqs[:acked] {
		if s != uint64(i+1) {
			t.Fatalf("position %d holds seq %d", i, s)
		}
	}
	if st := db.Stats(); st.Recoveries < 1 {
		t.Fatalf("stats: %+v", st)
	}
	t.Logf("%d messages acknowledged before the failed flush", acked)
}

// TestCloseWhileFailing: Close returns while the store is down, and a
// later Open on a healthy disk finds what was acknowledged.
func TestCloseWhileFailing(t *testing.T) {
	var sw switchFS
	mem := vfs.NewMem()
	c := newClock()
	db, err := Open("db", failingOpts(&sw, mem, c, &logRecorder{}))
	if err != nil {
		t.Fatal(err)
	}
	mustCommit(t, db, func(b *Batch) { b.PutRetained(&Message{Topic: "a", Payload: []byte("kept")}) })
	sw.full.Store(true)
	if err := commitWait(t, db, func(b *Batch) { b.PutRetained(&Message{Topic: "b"}) }); !errors.Is(err, ErrWrite) {
		t.Fatalf("commit on a full disk = %v", err)
	}
	closed := make(chan error, 1)
	go func() { closed <- db.Close() }()
	select {
	case err := <-closed:
		t.Logf("Close while failing: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("Close hangs while the store is failing")
	}
	if err := db.Health(); !errors.Is(err, ErrUnavailable) && !errors.Is(err, ErrClosed) {
		t.Fatalf("Health after Close = %v", err)
	}
	db, err = Open("db", testOpts(mem, c))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var got []string
	db.LoadRetained(func(m *Message) error { got = append(got, m.Topic); return nil })
	if len(got) == 0 || got[0] != "a" {
		t.Fatalf("retained after reopen: %v", got)
	}
}
