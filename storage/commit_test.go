package storage

import (
	"errors"
	"fmt"
	"reflect"
	"sort"
	"sync"
	"testing"
	"time"
)

func TestQueueOrderAcrossByteBoundaries(t *testing.T) {
	db, c := openMem(t, nil)
	// Seqs on both sides of every byte boundary, where a little-endian or
	// varint key would sort wrong.
	var want []uint64
	for shift := 8; shift < 64; shift += 8 {
		for d := uint64(0); d < 40; d++ {
			want = append(want, 1<<shift-40+d, 1<<shift+d)
		}
	}
	want = append(want, 0, 1, 1<<64-1)
	sort.Slice(want, func(i, j int) bool { return want[i] < want[j] })
	// Put them newest first, over several batches: key order alone must sort them.
	for lo := len(want); lo > 0; lo -= 100 {
		mustCommit(t, db, func(b *Batch) {
			for i := lo - 1; i >= 0 && i >= lo-100; i-- {
				b.PutQueued(mk("dev"), want[i], qmsg(c, fmt.Sprint(want[i])))
			}
		})
	}
	seqs, msgs := loadQueue(t, db, mk("dev"))
	if !reflect.DeepEqual(seqs, want) {
		t.Fatalf("LoadQueue order:\n got %v\nwant %v", seqs, want)
	}
	for i, m := range msgs {
		if string(m.Payload) != fmt.Sprint(want[i]) {
			t.Fatalf("seq %d holds %q", want[i], m.Payload)
		}
	}
	if got := db.QueueLen(mk("dev")); got != len(want) {
		t.Fatalf("QueueLen = %d, want %d", got, len(want))
	}
	// The index agrees: acking from the front walks the same order.
	mustCommit(t, db, func(b *Batch) {
		for _, s := range want[:len(want)-1] {
			b.DeleteQueued(mk("dev"), s)
		}
	})
	if seqs, _ := loadQueue(t, db, mk("dev")); !reflect.DeepEqual(seqs, want[len(want)-1:]) || db.QueueLen(mk("dev")) != 1 {
		t.Fatalf("after acks: %v, QueueLen %d", seqs, db.QueueLen(mk("dev")))
	}
}

func TestDeleteQueuedAndReplace(t *testing.T) {
	db, c := openMem(t, nil)
	mustCommit(t, db, func(b *Batch) {
		for seq := uint64(1); seq <= 5; seq++ {
			b.PutQueued(mk("dev"), seq, qmsg(c, "m"))
		}
	})
	mustCommit(t, db, func(b *Batch) {
		b.DeleteQueued(mk("dev"), 1) // ack of the oldest
		b.DeleteQueued(mk("dev"), 3) // out-of-order ack
		b.DeleteQueued(mk("dev"), 9) // unknown: a no-op
		m := qmsg(c, "m")
		m.Sent, m.PacketID = true, 17
		b.PutQueued(mk("dev"), 2, m) // in-flight state recorded
	})
	seqs, msgs := loadQueue(t, db, mk("dev"))
	if !reflect.DeepEqual(seqs, []uint64{2, 4, 5}) || !msgs[0].Sent || msgs[0].PacketID != 17 {
		t.Fatalf("queue = %v, first %+v", seqs, msgs[0])
	}
	if got := db.QueueLen(mk("dev")); got != 3 {
		t.Fatalf("QueueLen = %d, want 3", got)
	}
	if got := db.QueueTail(mk("dev")); got != 5 {
		t.Fatalf("QueueTail = %d, want 5", got)
	}
	mustCommit(t, db, func(b *Batch) { b.DeleteSession(mk("dev")) })
	if got := db.QueueTail(mk("dev")); got != 0 {
		t.Fatalf("QueueTail after DeleteSession = %d, want 0", got)
	}
}

func TestDeleteSessionRemovesQueue(t *testing.T) {
	db, c := openMem(t, nil)
	mustCommit(t, db, func(b *Batch) {
		for _, id := range []string{"a", "ab", "abc"} { // ids that prefix each other
			b.PutSession(&Session{ClientID: id, Protocol: ProtocolMQTT})
			for seq := uint64(0); seq < 300; seq++ {
				b.PutQueued(mk(id), seq, qmsg(c, id))
			}
		}
	})
	mustCommit(t, db, func(b *Batch) { b.DeleteSession(mk("ab")) })
	if seqs, _ := loadQueue(t, db, mk("ab")); len(seqs) != 0 {
		t.Fatalf("queue of deleted session has %d messages", len(seqs))
	}
	if _, err := db.GetSession(mk("ab")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("GetSession(mk(ab)) err = %v", err)
	}
	for _, id := range []string{"a", "abc"} {
		if seqs, msgs := loadQueue(t, db, mk(id)); len(seqs) != 300 || string(msgs[0].Payload) != id {
			t.Fatalf("queue %q: %d messages", id, len(seqs))
		}
	}
	counts := map[string]int{}
	var last string
	var lastSeq uint64
	err := db.LoadQueues(func(id string, seq uint64, m *Message) error {
		if id == last && seq <= lastSeq || id < last || mk(string(m.Payload)) != id {
			return fmt.Errorf("LoadQueues out of order or mixed up: %s/%d after %s/%d", id, seq, last, lastSeq)
		}
		last, lastSeq = id, seq
		counts[id]++
		return nil
	})
	if err != nil || !reflect.DeepEqual(counts, map[string]int{mk("a"): 300, mk("abc"): 300}) {
		t.Fatalf("LoadQueues: %v %v", counts, err)
	}
	st := db.Stats()
	if st.Sessions != 2 || st.QueuedMessages != 600 || db.QueueLen(mk("ab")) != 0 {
		t.Fatalf("stats after delete: %+v", st)
	}
}

func TestRetained(t *testing.T) {
	db, _ := openMem(t, nil)
	mustCommit(t, db, func(b *Batch) {
		b.PutRetained(&Message{Topic: "a/1", Payload: []byte("old")})
		b.PutRetained(&Message{Topic: "a/2", Payload: []byte("x")})
		b.PutRetained(&Message{Topic: "a/1", Payload: []byte("new")}) // later op wins
	})
	mustCommit(t, db, func(b *Batch) { b.DeleteRetained("a/2") })
	var got []string
	db.LoadRetained(func(m *Message) error { got = append(got, m.Topic+"="+string(m.Payload)); return nil })
	if !reflect.DeepEqual(got, []string{"a/1=new"}) {
		t.Fatalf("retained = %v", got)
	}
}

// TestReopenRebuildsIndex checks that queue counts, caps and the session
// count survive a restart: they live in memory but come back from disk.
func TestReopenRebuildsIndex(t *testing.T) {
	c := newClock()
	o := testOpts(newMemFS(), c)
	o.MaxQueuedPerSession = 10
	db, err := Open("db", o)
	if err != nil {
		t.Fatal(err)
	}
	mustCommit(t, db, func(b *Batch) {
		b.PutSession(&Session{ClientID: "s", Protocol: ProtocolMQTT, ExpiryInterval: 60, DisconnectedAt: c.UnixMilli()})
		for seq := uint64(1); seq <= 10; seq++ {
			b.PutQueued(mk("s"), seq, qmsg(c, "m"))
		}
	})
	db.Close()
	db, err = Open("db", o)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if got := db.QueueLen(mk("s")); got != 10 {
		t.Fatalf("QueueLen after reopen = %d", got)
	}
	mustCommit(t, db, func(b *Batch) { b.PutQueued(mk("s"), 11, qmsg(c, "m")) })
	if seqs, _ := loadQueue(t, db, mk("s")); len(seqs) != 10 || seqs[0] != 2 {
		t.Fatalf("cap after reopen: queue %v", seqs)
	}
	if st := db.Stats(); st.Sessions != 1 || st.QueuedMessages != 10 {
		t.Fatalf("stats after reopen: %+v", st)
	}
}

func TestCommitAfterClose(t *testing.T) {
	db, _ := openMem(t, nil)
	db.Close()
	b := db.NewBatch()
	b.PutRetained(&Message{Topic: "x"})
	if err := db.Commit(b, nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("Commit after Close = %v", err)
	}
	if err := db.LoadRetained(func(*Message) error { return nil }); !errors.Is(err, ErrClosed) {
		t.Fatalf("LoadRetained after Close = %v", err)
	}
	if err := db.Close(); err != nil {
		t.Fatalf("second Close = %v", err)
	}
}

// TestCloseDrains: everything accepted before Close is committed and
// acknowledged, and is there after reopening.
func TestCloseDrains(t *testing.T) {
	c := newClock()
	fs := newMemFS()
	db, err := Open("db", testOpts(fs, c))
	if err != nil {
		t.Fatal(err)
	}
	var acked sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	for i := 0; i < 1000; i++ {
		b := db.NewBatch()
		b.PutQueued(mk("c"), uint64(i), qmsg(c, "m"))
		acked.Add(1)
		if err := db.Commit(b, func(err error) {
			if err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
			acked.Done()
		}); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	acked.Wait() // returns at once: Close ran every done
	if len(errs) > 0 {
		t.Fatal(errs[0])
	}
	db, err = Open("db", testOpts(fs, c))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if n := db.QueueLen(mk("c")); n != 1000 {
		t.Fatalf("after reopen %d queued, want 1000", n)
	}
}

// TestBusy: past MaxPendingBytes Commit refuses without blocking and
// without calling done; the batch stays usable.
func TestBusy(t *testing.T) {
	db, c := openMem(t, func(o *Options) { o.MaxPendingBytes = 1 })
	// Hold the committer inside a done callback so the queue cannot drain.
	release := make(chan struct{})
	entered := make(chan struct{})
	b := db.NewBatch()
	if err := db.Commit(b, func(error) { close(entered); <-release }); err != nil {
		t.Fatal(err)
	}
	<-entered
	b1 := db.NewBatch()
	b1.PutQueued(mk("c"), 1, qmsg(c, "m"))
	if err := db.Commit(b1, nil); err != nil { // an empty queue takes any batch
		t.Fatal(err)
	}
	b2 := db.NewBatch()
	b2.PutQueued(mk("c"), 2, qmsg(c, "m"))
	if err := db.Commit(b2, func(error) { t.Error("done of a refused batch called") }); !errors.Is(err, ErrBusy) {
		t.Fatalf("Commit over the bound = %v, want ErrBusy", err)
	}
	close(release)
	// The refused batch is still the caller's: retry it once there is room.
	checkFor(t, 10*time.Second, func() error { return db.Commit(b2, nil) })
	checkFor(t, 10*time.Second, func() error { return commitWait(t, db, func(*Batch) {}) }) // barrier
	if seqs, _ := loadQueue(t, db, mk("c")); !reflect.DeepEqual(seqs, []uint64{1, 2}) {
		t.Fatalf("queue = %v", seqs)
	}
	if db.Stats().Busy < 1 {
		t.Fatalf("Busy = %d", db.Stats().Busy)
	}
}

// TestConcurrentCommits: many goroutines commit at once (run with -race);
// every done is called exactly once, in per-goroutine commit order, and
// every write is there afterwards.
func TestConcurrentCommits(t *testing.T) {
	db, c := openMem(t, func(o *Options) { o.MaxBatchOps = 64 })
	const writers, per = 32, 200
	var wg sync.WaitGroup
	var mu sync.Mutex
	fail := func(format string, args ...any) { mu.Lock(); t.Errorf(format, args...); mu.Unlock() }
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := fmt.Sprintf("w%02d", w)
			next := uint64(0) // seq whose done is expected next
			var acks sync.WaitGroup
			for seq := uint64(0); seq < per; seq++ {
				b := db.NewBatch()
				b.PutQueued(mk(id), seq, qmsg(c, id))
				if seq%50 == 0 {
					b.PutSession(&Session{ClientID: id, Protocol: ProtocolMQTT, NextSeq: seq + 1})
				}
				acks.Add(1)
				err := db.Commit(b, func(err error) {
					defer acks.Done()
					if err != nil {
						fail("%s/%d: %v", id, seq, err)
					}
					if seq != next { // only the committer touches next
						fail("%s: done for %d, expected %d", id, seq, next)
					}
					next++
				})
				if err != nil {
					fail("Commit: %v", err)
					acks.Done()
				}
			}
			acks.Wait()
		}()
	}
	// Readers run alongside the writers.
	for r := 0; r < 4; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 20; i++ {
				db.LoadSessions(func(*Session) error { return nil })
				db.QueueLen(mk("w00"))
				db.Stats()
			}
		}()
	}
	wg.Wait()
	for w := 0; w < writers; w++ {
		id := fmt.Sprintf("w%02d", w)
		if seqs, _ := loadQueue(t, db, mk(id)); len(seqs) != per {
			t.Fatalf("%s: %d queued, want %d", id, len(seqs), per)
		}
	}
	st := db.Stats()
	if st.QueuedMessages != writers*per || st.Sessions != writers || st.Groups == 0 || st.Groups > st.Batches {
		t.Fatalf("stats: %+v", st)
	}
	t.Logf("%d batches in %d groups", st.Batches, st.Groups)
}

// TestStatsHistograms: every committed batch is one commit latency, every
// written group one group size and one apply latency, in Prometheus' shape.
func TestStatsHistograms(t *testing.T) {
	db, c := openMem(t, nil)
	for i := range 10 {
		mustCommit(t, db, func(b *Batch) {
			for j := range i + 1 {
				b.PutQueued(mk("h"), uint64(i*100+j), qmsg(c, "m"))
			}
		})
	}
	st := db.Stats()
	for name, h := range map[string]Histogram{"commit": st.CommitLatency, "apply": st.ApplyLatency, "group": st.GroupOps} {
		if len(h.Counts) != len(h.Bounds) || h.Sum <= 0 {
			t.Fatalf("%s: %+v", name, h)
		}
		for i := 1; i < len(h.Counts); i++ {
			if h.Counts[i] < h.Counts[i-1] {
				t.Fatalf("%s: counts not cumulative: %v", name, h.Counts)
			}
		}
		if h.Counts[len(h.Counts)-1] > h.Count {
			t.Fatalf("%s: %v above Count %d", name, h.Counts, h.Count)
		}
	}
	if st.CommitLatency.Count != st.Batches || st.GroupOps.Count != st.Groups || st.ApplyLatency.Count != st.Groups {
		t.Fatalf("counts: commit %d of %d batches, groups %d/%d of %d", st.CommitLatency.Count, st.Batches,
			st.GroupOps.Count, st.ApplyLatency.Count, st.Groups)
	}
	// 55 ops in 10 groups of 1 to 10: all within the bucket <= 16.
	if st.GroupOps.Sum != 55 || st.GroupOps.Counts[4] != st.Groups || st.GroupOps.Counts[0] != 1 {
		t.Fatalf("group sizes: %+v", st.GroupOps)
	}
	if st.WrittenBytes == 0 {
		t.Fatal("WrittenBytes = 0")
	}
}
