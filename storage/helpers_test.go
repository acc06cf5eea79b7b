package storage

import (
	"context"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/vfs"
	"github.com/cockroachdb/pebble/vfs/errorfs"
)

func TestMain(m *testing.M) {
	code := m.Run()
	if searchStore.dir != "" {
		os.RemoveAll(searchStore.dir)
	}
	os.Exit(code)
}

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

// logRecorder is a slog.Handler that keeps the messages logged at each level.
type logRecorder struct {
	mu   sync.Mutex
	msgs []string // "LEVEL msg"
}

func (r *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (r *logRecorder) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	r.msgs = append(r.msgs, rec.Level.String()+" "+rec.Message)
	r.mu.Unlock()
	return nil
}
func (r *logRecorder) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r *logRecorder) WithGroup(string) slog.Handler      { return r }

// count returns how many records were exactly line ("LEVEL msg").
func (r *logRecorder) count(line string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, m := range r.msgs {
		if m == line {
			n++
		}
	}
	return n
}

// switchFS fails every write (ENOSPC) while full is set, and, while
// sstOnly is also set, only writes of sstables.
type switchFS struct {
	full, sstOnly atomic.Bool
}

func (s *switchFS) wrap(fs vfs.FS) vfs.FS {
	return errorfs.Wrap(fs, errorfs.InjectorFunc(func(op errorfs.Op, path string) error {
		if s.full.Load() && op.OpKind() == errorfs.OpKindWrite && (!s.sstOnly.Load() || strings.HasSuffix(path, ".sst")) {
			return &os.PathError{Op: "write", Path: path, Err: syscall.ENOSPC}
		}
		return nil
	}))
}
