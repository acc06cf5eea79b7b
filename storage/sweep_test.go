package storage

import (
	"reflect"
	"sort"
	"sync"
	"testing"
	"time"
)

func TestCapDropOldest(t *testing.T) {
	db, c := openMem(t, func(o *Options) { o.MaxQueuedPerSession = 5 })
	mustCommit(t, db, func(b *Batch) {
		for seq := uint64(1); seq <= 8; seq++ {
			b.PutQueued("dev", seq, qmsg(c, "m"))
		}
		// Re-putting a queued seq replaces it and never drops anything.
		b.PutQueued("dev", 8, qmsg(c, "m8"))
	})
	seqs, msgs := loadQueue(t, db, "dev")
	if !reflect.DeepEqual(seqs, []uint64{4, 5, 6, 7, 8}) || string(msgs[4].Payload) != "m8" {
		t.Fatalf("queue = %v", seqs)
	}
	if st := db.Stats(); st.Dropped != 3 || st.Rejected != 0 || st.QueuedMessages != 5 {
		t.Fatalf("stats %+v", st)
	}
	// Another session has its own cap.
	mustCommit(t, db, func(b *Batch) { b.PutQueued("other", 1, qmsg(c, "m")) })
	if n := db.QueueLen("other"); n != 1 {
		t.Fatalf("other queue = %d", n)
	}
}

func TestCapRejectNew(t *testing.T) {
	db, c := openMem(t, func(o *Options) {
		o.MaxQueuedPerSession = 5
		o.QueueFullPolicy = RejectNew
	})
	mustCommit(t, db, func(b *Batch) {
		for seq := uint64(1); seq <= 8; seq++ {
			b.PutQueued("dev", seq, qmsg(c, "m"))
		}
		b.PutQueued("dev", 2, qmsg(c, "m2")) // replacing is allowed when full
	})
	seqs, msgs := loadQueue(t, db, "dev")
	if !reflect.DeepEqual(seqs, []uint64{1, 2, 3, 4, 5}) || string(msgs[1].Payload) != "m2" {
		t.Fatalf("queue = %v", seqs)
	}
	if st := db.Stats(); st.Rejected != 3 || st.Dropped != 0 {
		t.Fatalf("stats %+v", st)
	}
	// An ack makes room again.
	mustCommit(t, db, func(b *Batch) {
		b.DeleteQueued("dev", 1)
		b.PutQueued("dev", 9, qmsg(c, "m"))
	})
	if seqs, _ := loadQueue(t, db, "dev"); !reflect.DeepEqual(seqs, []uint64{2, 3, 4, 5, 9}) {
		t.Fatalf("queue after ack = %v", seqs)
	}
}

func TestCapBytes(t *testing.T) {
	for _, policy := range []QueueFullPolicy{DropOldest, RejectNew} {
		t.Run(string(policy), func(t *testing.T) {
			db, c := openMem(t, func(o *Options) {
				o.MaxQueuedBytesPerSession = 1000
				o.QueueFullPolicy = policy
			})
			big := func() *Message { return &Message{Topic: "t", Payload: make([]byte, 300), Created: c.UnixMilli()} }
			mustCommit(t, db, func(b *Batch) {
				for seq := uint64(1); seq <= 4; seq++ {
					b.PutQueued("dev", seq, big())
				}
				// Larger than the whole cap: refused under either policy,
				// without dropping anything for it.
				b.PutQueued("dev", 5, &Message{Topic: "t", Payload: make([]byte, 2000)})
			})
			seqs, _ := loadQueue(t, db, "dev")
			want := []uint64{2, 3, 4}
			if policy == RejectNew {
				want = []uint64{1, 2, 3}
			}
			if !reflect.DeepEqual(seqs, want) {
				t.Fatalf("queue = %v, want %v", seqs, want)
			}
			st := db.Stats()
			if st.QueuedBytes > 1000 || st.Dropped+st.Rejected != 2 {
				t.Fatalf("stats %+v", st)
			}
		})
	}
}

func TestSweepTTLAndExpiry(t *testing.T) {
	db, c := openMem(t, func(o *Options) { o.QueueTTL = time.Hour })
	start := c.UnixMilli()
	mustCommit(t, db, func(b *Batch) {
		b.PutQueued("a", 1, qmsg(c, "old"))
		b.PutQueued("a", 2, &Message{Topic: "t", Created: start, Expiry: start + 60_000}) // own expiry: 1 min
		b.PutQueued("b", 1, &Message{Topic: "t"})                                         // no Created: no TTL
	})
	c.Add(30 * time.Minute)
	mustCommit(t, db, func(b *Batch) { b.PutQueued("a", 3, qmsg(c, "new")) })

	if res, err := db.Sweep(); err != nil || res.ExpiredMessages != 1 {
		t.Fatalf("sweep at +30m = %+v, %v", res, err)
	}
	if seqs, _ := loadQueue(t, db, "a"); !reflect.DeepEqual(seqs, []uint64{1, 3}) {
		t.Fatalf("queue a at +30m = %v", seqs)
	}
	c.Add(31 * time.Minute) // seq 1 is 61 min old, seq 3 31 min
	if res, err := db.Sweep(); err != nil || res.ExpiredMessages != 1 {
		t.Fatalf("sweep at +61m = %+v, %v", res, err)
	}
	if seqs, _ := loadQueue(t, db, "a"); !reflect.DeepEqual(seqs, []uint64{3}) {
		t.Fatalf("queue a at +61m = %v", seqs)
	}
	c.Add(24 * time.Hour)
	db.Sweep()
	if n, m := db.QueueLen("a"), db.QueueLen("b"); n != 0 || m != 1 {
		t.Fatalf("after a day: a %d, b %d", n, m)
	}
	if st := db.Stats(); st.ExpiredMessages != 3 || st.QueuedMessages != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestSweepSessionExpiry(t *testing.T) {
	var mu sync.Mutex
	var hooked []string
	db, c := openMem(t, func(o *Options) {
		o.OnSessionExpired = func(id string) { mu.Lock(); hooked = append(hooked, id); mu.Unlock() }
	})
	now := c.UnixMilli()
	mustCommit(t, db, func(b *Batch) {
		b.PutSession(&Session{ClientID: "short", ExpiryInterval: 10, DisconnectedAt: now})
		b.PutSession(&Session{ClientID: "long", ExpiryInterval: 3600, DisconnectedAt: now})
		b.PutSession(&Session{ClientID: "never", ExpiryInterval: NeverExpire, DisconnectedAt: now})
		b.PutSession(&Session{ClientID: "online", ExpiryInterval: 10}) // connected
		b.PutSession(&Session{ClientID: "resumed", ExpiryInterval: 10, DisconnectedAt: now})
		for _, id := range []string{"short", "long", "resumed"} {
			for seq := uint64(0); seq < 3; seq++ {
				b.PutQueued(id, seq, qmsg(c, id))
			}
		}
	})
	// The client of "resumed" reconnects before the sweep.
	mustCommit(t, db, func(b *Batch) { b.PutSession(&Session{ClientID: "resumed", ExpiryInterval: 10}) })
	c.Add(10 * time.Second)
	if res, _ := db.Sweep(); len(res.ExpiredSessions) != 0 { // expiry is strictly after the interval
		t.Fatalf("expired at exactly the interval: %v", res.ExpiredSessions)
	}
	c.Add(time.Millisecond)
	res, err := db.Sweep()
	if err != nil || !reflect.DeepEqual(res.ExpiredSessions, []string{"short"}) {
		t.Fatalf("sweep = %+v, %v", res, err)
	}
	if seqs, _ := loadQueue(t, db, "short"); len(seqs) != 0 {
		t.Fatalf("expired session's queue left %v", seqs)
	}
	c.Add(time.Hour)
	db.Sweep()
	var ids []string
	db.LoadSessions(func(s *Session) error { ids = append(ids, s.ClientID); return nil })
	if !reflect.DeepEqual(ids, []string{"never", "online", "resumed"}) {
		t.Fatalf("sessions left: %v", ids)
	}
	mu.Lock()
	sort.Strings(hooked)
	if !reflect.DeepEqual(hooked, []string{"long", "short"}) {
		t.Fatalf("OnSessionExpired got %v", hooked)
	}
	mu.Unlock()
	if n := db.QueueLen("resumed"); n != 3 {
		t.Fatalf("resumed queue = %d", n)
	}
}

// TestBackgroundSweeper: with SweepInterval set, the sweeper runs on its own.
func TestBackgroundSweeper(t *testing.T) {
	expired := make(chan string, 1)
	db, c := openMem(t, func(o *Options) {
		o.SweepInterval = time.Millisecond
		o.OnSessionExpired = func(id string) { expired <- id }
	})
	mustCommit(t, db, func(b *Batch) {
		b.PutSession(&Session{ClientID: "gone", ExpiryInterval: 1, DisconnectedAt: c.UnixMilli()})
	})
	c.Add(2 * time.Second)
	select {
	case id := <-expired:
		if id != "gone" {
			t.Fatalf("expired %q", id)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("background sweeper did not expire the session")
	}
}
