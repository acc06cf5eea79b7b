package storage

import (
	"reflect"
	"testing"
	"time"
)

func TestCapDropOldest(t *testing.T) {
	db, c := openMem(t, func(o *Options) { o.MaxQueuedPerSession = 5 })
	mustCommit(t, db, func(b *Batch) {
		for seq := uint64(1); seq <= 8; seq++ {
			b.PutQueued(mk("dev"), seq, qmsg(c, "m"))
		}
		// Re-putting a queued seq replaces it and never drops anything.
		b.PutQueued(mk("dev"), 8, qmsg(c, "m8"))
	})
	seqs, msgs := loadQueue(t, db, mk("dev"))
	if !reflect.DeepEqual(seqs, []uint64{4, 5, 6, 7, 8}) || string(msgs[4].Payload) != "m8" {
		t.Fatalf("queue = %v", seqs)
	}
	if st := db.Stats(); st.Dropped != 3 || st.Rejected != 0 || st.QueuedMessages != 5 {
		t.Fatalf("stats %+v", st)
	}
	// Another session has its own cap.
	mustCommit(t, db, func(b *Batch) { b.PutQueued(mk("other"), 1, qmsg(c, "m")) })
	if n := db.QueueLen(mk("other")); n != 1 {
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
			b.PutQueued(mk("dev"), seq, qmsg(c, "m"))
		}
		b.PutQueued(mk("dev"), 2, qmsg(c, "m2")) // replacing is allowed when full
	})
	seqs, msgs := loadQueue(t, db, mk("dev"))
	if !reflect.DeepEqual(seqs, []uint64{1, 2, 3, 4, 5}) || string(msgs[1].Payload) != "m2" {
		t.Fatalf("queue = %v", seqs)
	}
	if st := db.Stats(); st.Rejected != 3 || st.Dropped != 0 {
		t.Fatalf("stats %+v", st)
	}
	// An ack makes room again.
	mustCommit(t, db, func(b *Batch) {
		b.DeleteQueued(mk("dev"), 1)
		b.PutQueued(mk("dev"), 9, qmsg(c, "m"))
	})
	if seqs, _ := loadQueue(t, db, mk("dev")); !reflect.DeepEqual(seqs, []uint64{2, 3, 4, 5, 9}) {
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
					b.PutQueued(mk("dev"), seq, big())
				}
				// Larger than the whole cap: refused under either policy,
				// without dropping anything for it.
				b.PutQueued(mk("dev"), 5, &Message{Topic: "t", Payload: make([]byte, 2000)})
			})
			seqs, _ := loadQueue(t, db, mk("dev"))
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
		b.PutQueued(mk("a"), 1, qmsg(c, "old"))
		b.PutQueued(mk("a"), 2, &Message{Topic: "t", Created: start, Expiry: start + 60_000}) // own expiry: 1 min
		b.PutQueued(mk("b"), 1, &Message{Topic: "t"})                                         // no Created: no TTL
	})
	c.Add(30 * time.Minute)
	mustCommit(t, db, func(b *Batch) { b.PutQueued(mk("a"), 3, qmsg(c, "new")) })

	if res, err := db.Sweep(); err != nil || res.ExpiredMessages != 1 {
		t.Fatalf("sweep at +30m = %+v, %v", res, err)
	}
	if seqs, _ := loadQueue(t, db, mk("a")); !reflect.DeepEqual(seqs, []uint64{1, 3}) {
		t.Fatalf("queue a at +30m = %v", seqs)
	}
	c.Add(31 * time.Minute) // seq 1 is 61 min old, seq 3 31 min
	if res, err := db.Sweep(); err != nil || res.ExpiredMessages != 1 {
		t.Fatalf("sweep at +61m = %+v, %v", res, err)
	}
	if seqs, _ := loadQueue(t, db, mk("a")); !reflect.DeepEqual(seqs, []uint64{3}) {
		t.Fatalf("queue a at +61m = %v", seqs)
	}
	c.Add(24 * time.Hour)
	db.Sweep()
	if n, m := db.QueueLen(mk("a")), db.QueueLen(mk("b")); n != 0 || m != 1 {
		t.Fatalf("after a day: a %d, b %d", n, m)
	}
	if st := db.Stats(); st.ExpiredMessages != 3 || st.QueuedMessages != 1 {
		t.Fatalf("stats %+v", st)
	}
}

// TestBackgroundSweeper: with SweepInterval set, the sweeper runs on its
// own and hands the broker what it expired.
func TestBackgroundSweeper(t *testing.T) {
	swept := make(chan SweepResult, 16)
	db, c := openMem(t, func(o *Options) {
		o.SweepInterval = time.Millisecond
		o.QueueTTL = time.Minute
		o.OnSweep = func(r SweepResult) {
			if r.ExpiredMessages > 0 {
				swept <- r
			}
		}
	})
	mustCommit(t, db, func(b *Batch) {
		b.PutQueued(mk("gone"), 7, qmsg(c, "m"))
		b.PutSession(&Session{ClientID: "gone", Protocol: ProtocolMQTT, ExpiryInterval: 1, DisconnectedAt: c.UnixMilli()})
	})
	c.Add(2 * time.Minute)
	select {
	case r := <-swept:
		if want := []QueueEvent{{Key: mk("gone"), Seq: 7, Reason: QueueExpired}}; !reflect.DeepEqual(r.Expired, want) {
			t.Fatalf("expired %+v, want %+v", r.Expired, want)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("background sweeper did not expire the message")
	}
	// Session expiry is the broker's: the session itself stays.
	if _, err := db.GetSession(mk("gone")); err != nil {
		t.Fatalf("session deleted by the sweeper: %v", err)
	}
}
