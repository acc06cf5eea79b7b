package storage

import (
	"io"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/vfs"
)

// fakeClock is a settable Options.Now.
type fakeClock struct{ ms atomic.Int64 }

func newClock() *fakeClock {
	c := &fakeClock{}
	c.ms.Store(time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli())
	return c
}
func (c *fakeClock) Now() time.Time      { return time.UnixMilli(c.ms.Load()) }
func (c *fakeClock) Add(d time.Duration) { c.ms.Add(d.Milliseconds()) }
func (c *fakeClock) UnixMilli() int64    { return c.ms.Load() }
func quietLogger() *slog.Logger          { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
func testOpts(fs vfs.FS, c *fakeClock) Options {
	return Options{FS: fs, Now: c.Now, Logger: quietLogger(), SweepInterval: -1}
}

// openMem opens a DB on a fresh in-memory FS, closed at cleanup.
func openMem(t testing.TB, edit func(*Options)) (*DB, *fakeClock) {
	t.Helper()
	c := newClock()
	o := testOpts(vfs.NewMem(), c)
	if edit != nil {
		edit(&o)
	}
	db, err := Open("db", o)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	return db, c
}

// commitWait commits one batch built by fill and waits for its done.
func commitWait(t testing.TB, db *DB, fill func(*Batch)) error {
	t.Helper()
	b := db.NewBatch()
	fill(b)
	ch := make(chan error, 1)
	if err := db.Commit(b, func(err error) { ch <- err }); err != nil {
		return err
	}
	select {
	case err := <-ch:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("done not called within 10s")
		return nil
	}
}

func mustCommit(t testing.TB, db *DB, fill func(*Batch)) {
	t.Helper()
	if err := commitWait(t, db, fill); err != nil {
		t.Fatalf("commit: %v", err)
	}
}

// checkFor polls cond until it returns nil or the deadline passes.
func checkFor(t testing.TB, d time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(time.Millisecond)
	}
}

func loadQueue(t testing.TB, db *DB, client string) (seqs []uint64, msgs []*Message) {
	t.Helper()
	err := db.LoadQueue(client, func(seq uint64, m *Message) error {
		seqs = append(seqs, seq)
		msgs = append(msgs, m)
		return nil
	})
	if err != nil {
		t.Fatalf("LoadQueue(%q): %v", client, err)
	}
	return seqs, msgs
}

func qmsg(c *fakeClock, payload string) *Message {
	return &Message{Topic: "t/1", Payload: []byte(payload), QoS: 1, Created: c.UnixMilli()}
}

func newMemFS() vfs.FS { return vfs.NewMem() }

// mk is the session key of MQTT client id.
func mk(id string) string { return SessionKey(ProtocolMQTT, id) }
