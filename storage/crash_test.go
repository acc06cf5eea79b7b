package storage

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/vfs"
)

// crash simulates kill -9 / power loss on a strict MemFS: from here on no
// sync lands, the DB is closed (its lock released; nothing it writes now is
// synced), and everything not synced before is discarded.
func crash(fs *vfs.MemFS, db *DB) {
	fs.SetIgnoreSyncs(true)
	db.Close()
	fs.ResetToSyncedState()
	fs.SetIgnoreSyncs(false)
}

// seqState is what a writer knows about one seq of its queue.
type seqState struct{ putAcked, delSent, delAcked bool }

// TestCrashSyncKeepsAcknowledged: writers commit puts and acks (deletes) of
// queued messages concurrently; at an arbitrary moment the machine
// "crashes". After reopening, every put acknowledged before the crash is
// present unless a delete of it was sent, and every acknowledged delete
// has happened.
func TestCrashSyncKeepsAcknowledged(t *testing.T) {
	fs := vfs.NewStrictMem()
	c := newClock()
	db, err := Open("db", testOpts(fs, c))
	if err != nil {
		t.Fatal(err)
	}
	const writers = 8
	var (
		mu      sync.Mutex // guards crashed and state
		crashed bool
		state   [writers]map[uint64]*seqState
		acked   atomic.Int64
		wg      sync.WaitGroup
	)
	for w := range writers {
		state[w] = make(map[uint64]*seqState)
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := fmt.Sprintf("w%d", w)
			for seq := uint64(0); ; seq++ {
				b := db.NewBatch()
				b.PutQueued(mk(id), seq, qmsg(c, fmt.Sprint(seq)))
				mu.Lock()
				st := &seqState{}
				state[w][seq] = st
				var del *seqState
				if seq >= 5 && seq%3 == 0 { // ack an older message in the same batch
					b.DeleteQueued(mk(id), seq-5)
					del = state[w][seq-5]
					del.delSent = true
				}
				mu.Unlock()
				ch := make(chan error, 1)
				if err := db.Commit(b, func(err error) {
					mu.Lock()
					if err == nil && !crashed { // acknowledged while syncs still landed
						st.putAcked = true
						if del != nil {
							del.delAcked = true
						}
						acked.Add(1)
					}
					mu.Unlock()
					ch <- err
				}); err != nil {
					if !errors.Is(err, ErrClosed) {
						t.Errorf("Commit: %v", err)
					}
					return
				}
				<-ch
			}
		}()
	}
	checkFor(t, 20*time.Second, func() error {
		if n := acked.Load(); n < 1500 {
			return fmt.Errorf("only %d commits acknowledged", n)
		}
		return nil
	})
	mu.Lock()
	crashed = true
	mu.Unlock()
	crash(fs, db)
	wg.Wait()

	db, err = Open("db", testOpts(fs, c))
	if err != nil {
		t.Fatalf("reopen after crash: %v", err)
	}
	defer db.Close()
	lost, extra := 0, 0
	for w := range writers {
		present := map[uint64]bool{}
		err := db.LoadQueue(mk(fmt.Sprintf("w%d", w)), func(seq uint64, m *Message) error {
			if string(m.Payload) != fmt.Sprint(seq) {
				t.Errorf("w%d seq %d holds %q", w, seq, m.Payload)
			}
			present[seq] = true
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		for seq, st := range state[w] {
			switch {
			case st.delAcked && present[seq]:
				t.Errorf("w%d seq %d: acknowledged delete undone by the crash", w, seq)
			case st.putAcked && !st.delSent && !present[seq]:
				t.Errorf("w%d seq %d: acknowledged put lost in the crash", w, seq)
				lost++
			case !st.putAcked && present[seq]:
				extra++ // synced but not yet acknowledged: allowed
			}
		}
	}
	t.Logf("%d commits acknowledged before the crash; %d lost; %d unacknowledged survived", acked.Load(), lost, extra)
}

// TestCrashAsyncRecoversPrefix: Async may lose the unsynced tail, but what
// it recovers is a prefix of the commit order, and what an earlier Sync
// session made durable stays.
func TestCrashAsyncRecoversPrefix(t *testing.T) {
	fs := vfs.NewStrictMem()
	c := newClock()
	o := testOpts(fs, c)
	db, err := Open("db", o)
	if err != nil {
		t.Fatal(err)
	}
	const synced = 100
	for seq := uint64(0); seq < synced; seq++ {
		mustCommit(t, db, func(b *Batch) { b.PutQueued(mk("c"), seq, qmsg(c, "m")) })
	}
	db.Close()
	o.Durability = Async
	db, err = Open("db", o)
	if err != nil {
		t.Fatal(err)
	}
	const total = 2000
	for seq := uint64(synced); seq < total; seq++ {
		mustCommit(t, db, func(b *Batch) { b.PutQueued(mk("c"), seq, qmsg(c, "m")) })
	}
	crash(fs, db)
	db, err = Open("db", o)
	if err != nil {
		t.Fatalf("reopen after crash: %v", err)
	}
	defer db.Close()
	seqs, _ := loadQueue(t, db, mk("c"))
	for i, s := range seqs {
		if s != uint64(i) {
			t.Fatalf("recovered queue is not a prefix: position %d holds seq %d", i, s)
		}
	}
	if len(seqs) < synced {
		t.Fatalf("recovered %d, fewer than the %d committed in Sync mode", len(seqs), synced)
	}
	t.Logf("async: %d of %d acknowledged commits lost in the crash", total-len(seqs), total)
}

func TestLockedDir(t *testing.T) {
	dir := t.TempDir()
	o := Options{Logger: quietLogger(), SweepInterval: -1}
	db, err := Open(dir, o)
	if err != nil {
		t.Fatal(err)
	}
	_, err = Open(dir, o)
	if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), dir) {
		t.Fatalf("second Open = %v, want ErrLocked naming the dir", err)
	}
	db.Close()
	db, err = Open(dir, o)
	if err != nil {
		t.Fatalf("Open after Close: %v", err)
	}
	db.Close()
}

// TestLockedByOtherProcess holds the lock in a child process (this test
// binary, re-run as a helper), as a second cim server would.
func TestLockedByOtherProcess(t *testing.T) {
	if dir := os.Getenv("CIM_STORAGE_HOLD_LOCK"); dir != "" {
		db, err := Open(dir, Options{Logger: quietLogger(), SweepInterval: -1})
		if err != nil {
			fmt.Println("error:", err)
			os.Exit(1)
		}
		fmt.Println("locked")
		bufio.NewReader(os.Stdin).ReadString('\n') // until the parent closes stdin
		db.Close()
		os.Exit(0)
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestLockedByOtherProcess$")
	cmd.Env = append(os.Environ(), "CIM_STORAGE_HOLD_LOCK="+dir)
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	defer stdin.Close()
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if line != "locked\n" {
		t.Fatalf("helper: %q %v", line, err)
	}
	_, err = Open(dir, Options{Logger: quietLogger(), SweepInterval: -1})
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("Open while another process holds the dir = %v, want ErrLocked", err)
	}
	t.Logf("%v", err)
	stdin.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("helper: %v", err)
	}
	db, err := Open(dir, Options{Logger: quietLogger(), SweepInterval: -1})
	if err != nil {
		t.Fatalf("Open after the other process exited: %v", err)
	}
	db.Close()
}

func TestUnwritableDir(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Open(filepath.Join(file, "data"), Options{Logger: quietLogger()})
	if !errors.Is(err, ErrUnwritable) {
		t.Fatalf("Open under a regular file = %v, want ErrUnwritable", err)
	}
	if os.Geteuid() == 0 {
		return // root ignores permissions
	}
	ro := filepath.Join(t.TempDir(), "ro")
	os.Mkdir(ro, 0o500)
	if _, err := Open(filepath.Join(ro, "data"), Options{Logger: quietLogger()}); !errors.Is(err, ErrUnwritable) {
		t.Fatalf("Open in a read-only dir = %v, want ErrUnwritable", err)
	}
}

func TestCorruptManifest(t *testing.T) {
	fs := vfs.NewMem()
	c := newClock()
	db, err := Open("db", testOpts(fs, c))
	if err != nil {
		t.Fatal(err)
	}
	mustCommit(t, db, func(b *Batch) { b.PutSession(&Session{ClientID: "x", Protocol: ProtocolMQTT}) })
	db.Close()
	names, _ := fs.List("db")
	n := 0
	for _, name := range names {
		if strings.HasPrefix(name, "MANIFEST-") {
			f, _ := fs.Create("db/" + name)
			f.Write([]byte(strings.Repeat("garbage!", 64)))
			f.Close()
			n++
		}
	}
	if n == 0 {
		t.Fatalf("no MANIFEST in %v", names)
	}
	if _, err := Open("db", testOpts(fs, c)); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Open with a garbage MANIFEST = %v, want ErrCorrupt", err)
	}
}

func TestCorruptRecord(t *testing.T) {
	fs := vfs.NewMem()
	c := newClock()
	db, err := Open("db", testOpts(fs, c))
	if err != nil {
		t.Fatal(err)
	}
	// A value no encoder of ours wrote: a msgpack string where a map belongs.
	if err := db.pdb.Set(appendQueueKey(nil, "c", 1), []byte{0xa1, 'x'}, nil); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if _, err := Open("db", testOpts(fs, c)); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), `o\x00c`) {
		t.Fatalf("Open with a bad queue record = %v, want ErrCorrupt naming the key", err)
	}
}

// TestCrashIMKeyspaces: writers commit registrations, group joins,
// history, delayed messages and dedup records concurrently; the machine
// "crashes". Everything acknowledged is there after reopening, ids are
// unique, and a registration after the restart gets a new id.
func TestCrashIMKeyspaces(t *testing.T) {
	fs := vfs.NewStrictMem()
	c := newClock()
	db, err := Open("db", testOpts(fs, c))
	if err != nil {
		t.Fatal(err)
	}
	mustCommit(t, db, func(b *Batch) {
		for w := range 4 {
			b.CreateGroup(fmt.Sprintf("g%d", w), 0)
		}
	})
	type ack struct {
		w, i int
		id   uint64
	}
	var (
		mu      sync.Mutex
		crashed bool
		acks    []ack
		wg      sync.WaitGroup
	)
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 1; ; i++ {
				b := db.NewBatch()
				reg := b.Register(fmt.Sprintf("w%d-%d", w, i), []byte("h"))
				b.JoinGroup(fmt.Sprintf("g%d", w), uint64(w*1e6+i))
				b.PutHistory(fmt.Sprintf("c%d", w), hmsg(c, uint64(i), fmt.Sprint(i)), uint64(w))
				b.PutDelayed(int64(i), &Message{ID: uint64(w*1e6 + i), Payload: []byte("d")})
				b.Dedup(fmt.Sprintf("s%d", w), fmt.Sprint(i), uint64(i))
				ch := make(chan error, 1)
				if err := db.Commit(b, func(err error) {
					mu.Lock()
					if err == nil && !crashed {
						acks = append(acks, ack{w, i, reg.Account.ID})
					}
					mu.Unlock()
					ch <- err
				}); err != nil {
					return // closed by the crash
				}
				<-ch
			}
		}()
	}
	checkFor(t, 20*time.Second, func() error {
		mu.Lock()
		defer mu.Unlock()
		if len(acks) < 400 {
			return fmt.Errorf("%d acknowledged", len(acks))
		}
		return nil
	})
	mu.Lock()
	crashed = true
	mu.Unlock()
	crash(fs, db)
	wg.Wait()

	db, err = Open("db", testOpts(fs, c))
	if err != nil {
		t.Fatalf("reopen after crash: %v", err)
	}
	defer db.Close()
	owners := map[uint64]string{}
	if err := db.LoadAccounts(func(a *Account) error {
		if o, dup := owners[a.ID]; dup {
			return fmt.Errorf("id %d held by %s and %s", a.ID, o, a.Name)
		}
		owners[a.ID] = a.Name
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	members := map[uint64]bool{}
	for w := range 4 {
		db.GroupMembers(fmt.Sprintf("g%d", w), func(id uint64, _ int64) error { members[id] = true; return nil })
	}
	for _, a := range acks {
		name := fmt.Sprintf("w%d-%d", a.w, a.i)
		if acc, err := db.GetAccountByName(name); err != nil || acc.ID != a.id {
			t.Fatalf("acknowledged account %s (id %d): %+v, %v", name, a.id, acc, err)
		}
		if !members[uint64(a.w*1e6+a.i)] {
			t.Fatalf("acknowledged join of %d lost", a.w*1e6+a.i)
		}
		n, err := db.LoadHistory(fmt.Sprintf("c%d", a.w), uint64(a.i+1), 1, func(m *Message) error {
			if m.ID != uint64(a.i) {
				return fmt.Errorf("history c%d: %d in place of %d", a.w, m.ID, a.i)
			}
			return nil
		})
		if err != nil || n != 1 {
			t.Fatalf("acknowledged history c%d/%d: %d, %v", a.w, a.i, n, err)
		}
		found := false
		db.ReadDue(int64(a.i), Due{At: int64(a.i) - 1, ID: 1 << 62}, 10, func(d Due, m *Message) error {
			found = found || d.ID == uint64(a.w*1e6+a.i)
			return nil
		})
		if !found {
			t.Fatalf("acknowledged delayed %d lost", a.w*1e6+a.i)
		}
		if id, err := db.GetDedup(fmt.Sprintf("s%d", a.w), fmt.Sprint(a.i)); err != nil || id != uint64(a.i) {
			t.Fatalf("acknowledged dedup s%d/%d: %d, %v", a.w, a.i, id, err)
		}
	}
	var fresh *AccountResult
	mustCommit(t, db, func(b *Batch) { fresh = b.Register("after-the-crash", nil) })
	if _, taken := owners[fresh.Account.ID]; taken || !fresh.New {
		t.Fatalf("new registration after the crash got id %d, already %q's", fresh.Account.ID, owners[fresh.Account.ID])
	}
	t.Logf("%d batches acknowledged before the crash, %d accounts after it", len(acks), len(owners))
}
