package storage

import (
	"errors"
	"reflect"
	"testing"
)

// commitEvents commits what fill adds and returns the batch's QueueEvents,
// read inside done as the API requires.
func commitEvents(t *testing.T, db *DB, fill func(*Batch)) []QueueEvent {
	t.Helper()
	b := db.NewBatch()
	fill(b)
	var ev []QueueEvent
	ch := make(chan error, 1)
	if err := db.Commit(b, func(err error) {
		ev = append(ev, b.QueueEvents()...)
		ch <- err
	}); err != nil {
		t.Fatal(err)
	}
	if err := <-ch; err != nil {
		t.Fatal(err)
	}
	return ev
}

func TestQueueEventsDropOldest(t *testing.T) {
	db, c := openMem(t, func(o *Options) { o.MaxQueuedPerSession = 3 })
	a, other := mk("a"), mk("other")
	ev := commitEvents(t, db, func(b *Batch) {
		for seq := uint64(1); seq <= 3; seq++ {
			b.PutQueued(a, seq, qmsg(c, "m"))
		}
		b.PutQueued(other, 1, qmsg(c, "m"))
	})
	if len(ev) != 0 {
		t.Fatalf("events below the cap: %+v", ev)
	}
	ev = commitEvents(t, db, func(b *Batch) {
		b.PutQueued(a, 4, qmsg(c, "m"))
		b.PutQueued(a, 5, qmsg(c, "m"))
		b.PutQueued(a, 5, qmsg(c, "m5")) // a replace: never drops
	})
	want := []QueueEvent{{Key: a, Seq: 1, Reason: QueueDropped}, {Key: a, Seq: 2, Reason: QueueDropped}}
	if !reflect.DeepEqual(ev, want) {
		t.Fatalf("events %+v, want %+v", ev, want)
	}
	if seqs, _ := loadQueue(t, db, a); !reflect.DeepEqual(seqs, []uint64{3, 4, 5}) {
		t.Fatalf("queue %v", seqs)
	}
	// A recycled batch starts without the last one's events.
	if ev := commitEvents(t, db, func(b *Batch) { b.DeleteQueued(a, 3) }); len(ev) != 0 {
		t.Fatalf("events of an ack: %+v", ev)
	}
	if st := db.Stats(); st.Dropped != 2 || st.Rejected != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestQueueEventsRejectNew(t *testing.T) {
	db, c := openMem(t, func(o *Options) {
		o.MaxQueuedPerSession = 3
		o.MaxQueuedBytesPerSession = 1000
		o.QueueFullPolicy = RejectNew
	})
	a, b2 := mk("a"), SessionKey(ProtocolNative, "a") // same id, other protocol: its own queue
	ev := commitEvents(t, db, func(b *Batch) {
		for seq := uint64(1); seq <= 5; seq++ {
			b.PutQueued(a, seq, qmsg(c, "m"))
		}
		b.PutQueued(b2, 1, qmsg(c, "native"))
		b.PutQueued(b2, 2, &Message{Topic: "t", Payload: make([]byte, 2000)}) // over the byte cap alone
	})
	want := []QueueEvent{{Key: a, Seq: 4, Reason: QueueRejected}, {Key: a, Seq: 5, Reason: QueueRejected},
		{Key: b2, Seq: 2, Reason: QueueRejected}}
	if !reflect.DeepEqual(ev, want) {
		t.Fatalf("events %+v, want %+v", ev, want)
	}
	if seqs, _ := loadQueue(t, db, a); !reflect.DeepEqual(seqs, []uint64{1, 2, 3}) {
		t.Fatalf("queue a %v", seqs)
	}
	if seqs, msgs := loadQueue(t, db, b2); !reflect.DeepEqual(seqs, []uint64{1}) || string(msgs[0].Payload) != "native" {
		t.Fatalf("native queue %v", seqs)
	}
	if st := db.Stats(); st.Rejected != 3 || st.Dropped != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// TestSessionKeysByProtocol: MQTT client "alice" and native user "alice"
// are two sessions with two queues; deleting one leaves the other.
func TestSessionKeysByProtocol(t *testing.T) {
	db, c := openMem(t, nil)
	m, n := SessionKey(ProtocolMQTT, "alice"), SessionKey(ProtocolNative, "alice")
	if m == n {
		t.Fatal("same key for both protocols")
	}
	mustCommit(t, db, func(b *Batch) {
		b.PutSession(&Session{ClientID: "alice", Protocol: ProtocolMQTT, Version: 4, Node: "a"})
		b.PutSession(&Session{ClientID: "alice", Protocol: ProtocolNative, Node: "b"})
		b.PutQueued(m, 1, qmsg(c, "mqtt"))
		b.PutQueued(n, 1, qmsg(c, "native"))
	})
	for _, tc := range []struct {
		key, node, payload string
		proto              byte
	}{{m, "a", "mqtt", ProtocolMQTT}, {n, "b", "native", ProtocolNative}} {
		s, err := db.GetSession(tc.key)
		if err != nil || s.Protocol != tc.proto || s.ClientID != "alice" || s.Node != tc.node || s.Key() != tc.key {
			t.Fatalf("GetSession(%q) = %+v, %v", tc.key, s, err)
		}
		if _, msgs := loadQueue(t, db, tc.key); len(msgs) != 1 || string(msgs[0].Payload) != tc.payload {
			t.Fatalf("queue of %q: %+v", tc.key, msgs)
		}
		p, id, ok := SplitSessionKey(tc.key)
		if !ok || p != tc.proto || id != "alice" {
			t.Fatalf("SplitSessionKey(%q) = %d %q %v", tc.key, p, id, ok)
		}
	}
	mustCommit(t, db, func(b *Batch) { b.DeleteSession(m) })
	if _, err := db.GetSession(m); !errors.Is(err, ErrNotFound) {
		t.Fatalf("deleted MQTT session: %v", err)
	}
	if _, err := db.GetSession(n); err != nil || db.QueueLen(n) != 1 || db.QueueLen(m) != 0 {
		t.Fatalf("native session after deleting the MQTT one: %v, queue %d", err, db.QueueLen(n))
	}
	for _, bad := range []string{"", "alice", "\x01", "\x03alice"} {
		if _, _, ok := SplitSessionKey(bad); ok {
			t.Errorf("SplitSessionKey(%q) ok", bad)
		}
		if _, err := db.GetSession(bad); !errors.Is(err, ErrInvalidKey) {
			t.Errorf("GetSession(%q) = %v, want ErrInvalidKey", bad, err)
		}
	}
}

// TestReadQueuePaging: pages of a queue from a seq, in order, skipping
// what was acknowledged; QueueInfo gives the bounds.
func TestReadQueuePaging(t *testing.T) {
	db, c := openMem(t, nil)
	a, ab := mk("a"), mk("ab")
	mustCommit(t, db, func(b *Batch) {
		for seq := uint64(1); seq <= 1000; seq++ {
			b.PutQueued(a, seq, qmsg(c, "a"))
			b.PutQueued(ab, seq, qmsg(c, "ab")) // a neighbour whose key extends a's
		}
	})
	mustCommit(t, db, func(b *Batch) {
		for seq := uint64(1); seq <= 500; seq++ {
			b.DeleteQueued(a, seq)
		}
		b.DeleteQueued(a, 1000) // the newest: a tombstone at the tail
	})
	if info := db.QueueInfo(a); info != (QueueInfo{Count: 499, Bytes: info.Bytes, Head: 501, Tail: 999}) || info.Bytes <= 0 {
		t.Fatalf("QueueInfo = %+v", info)
	}
	page := func(from uint64, max int) []uint64 {
		var seqs []uint64
		n, err := db.ReadQueue(a, from, max, func(seq uint64, m *Message) error {
			if string(m.Payload) != "a" {
				t.Fatalf("seq %d of a holds %q", seq, m.Payload)
			}
			seqs = append(seqs, seq)
			return nil
		})
		if err != nil || n != len(seqs) {
			t.Fatalf("ReadQueue(%d, %d) = %d, %v", from, max, n, err)
		}
		return seqs
	}
	if got := page(0, 3); !reflect.DeepEqual(got, []uint64{501, 502, 503}) {
		t.Fatalf("first page %v", got)
	}
	if got := page(700, 100); len(got) != 100 || got[0] != 700 || got[99] != 799 {
		t.Fatalf("page from 700: %v", got)
	}
	if got := page(990, 100); !reflect.DeepEqual(got, []uint64{990, 991, 992, 993, 994, 995, 996, 997, 998, 999}) {
		t.Fatalf("last page %v", got)
	}
	if got := page(1001, 10); len(got) != 0 {
		t.Fatalf("past the tail: %v", got)
	}
	if _, err := db.ReadQueue(a, 0, 0, func(uint64, *Message) error { return nil }); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("ReadQueue max 0 = %v", err)
	}
	stop := errors.New("enough")
	if n, err := db.ReadQueue(a, 0, 10, func(uint64, *Message) error { return stop }); err != stop || n != 0 {
		t.Fatalf("ReadQueue with a failing fn = %d, %v", n, err)
	}
	if info := db.QueueInfo(mk("none")); info != (QueueInfo{}) {
		t.Fatalf("QueueInfo of an empty queue = %+v", info)
	}
}
