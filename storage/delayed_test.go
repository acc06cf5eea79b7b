package storage

import (
	"errors"
	"github.com/cockroachdb/pebble"
	"math"
	"reflect"
	"strconv"
	"sync"
	"testing"
	"time"
)

func TestDelayed(t *testing.T) {
	c := newClock()
	fs := newMemFS()
	db, err := Open("db", testOpts(fs, c))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { db.Close() }()
	t0 := c.UnixMilli()
	if _, ok, err := db.NextDue(); ok || err != nil {
		t.Fatalf("NextDue of an empty store: %v %v", ok, err)
	}
	mustCommit(t, db, func(b *Batch) {
		b.PutDelayed(t0+3000, &Message{ID: 1, Topic: "cim/u/7", Payload: []byte("third")})
		b.PutDelayed(t0+1000, &Message{ID: 3, Payload: []byte("first-b")})
		b.PutDelayed(t0+1000, &Message{ID: 2, Payload: []byte("first-a")})
		b.PutDelayed(t0+2000, &Message{ID: 4, Payload: []byte("second")})
		b.PutDelayed(1<<62, &Message{ID: 5, Payload: []byte("far")})
	})
	read := func(upTo int64, after Due, max int) (dues []Due, bodies []string) {
		n, err := db.ReadDue(upTo, after, max, func(d Due, m *Message) error {
			if m.ID != d.ID {
				t.Fatalf("message %d under key id %d", m.ID, d.ID)
			}
			dues, bodies = append(dues, d), append(bodies, string(m.Payload))
			return nil
		})
		if err != nil || n != len(dues) {
			t.Fatalf("ReadDue = %d, %v", n, err)
		}
		return dues, bodies
	}
	if _, bodies := read(t0+999, Due{}, 10); len(bodies) != 0 {
		t.Fatalf("due before the first: %v", bodies)
	}
	if dues, bodies := read(t0+1000, Due{}, 10); !reflect.DeepEqual(bodies, []string{"first-a", "first-b"}) ||
		dues[0] != (Due{t0 + 1000, 2}) {
		t.Fatalf("due at exactly t0+1s: %v %v", dues, bodies)
	}
	dues, bodies := read(t0+5000, Due{}, 2)
	if !reflect.DeepEqual(bodies, []string{"first-a", "first-b"}) {
		t.Fatalf("first page %v", bodies)
	}
	if _, bodies := read(t0+5000, dues[1], 10); !reflect.DeepEqual(bodies, []string{"second", "third"}) {
		t.Fatalf("page after %v: %v", dues[1], bodies)
	}
	if _, bodies := read(math.MaxInt64, Due{}, 10); len(bodies) != 5 {
		t.Fatalf("everything: %v", bodies)
	}
	mustCommit(t, db, func(b *Batch) { b.DeleteDelayed(Due{t0 + 1000, 2}) })
	if d, ok, err := db.NextDue(); !ok || err != nil || d != (Due{t0 + 1000, 3}) {
		t.Fatalf("NextDue after a delete = %v %v %v", d, ok, err)
	}
	for name, fill := range map[string]func(*Batch){
		"negative due": func(b *Batch) { b.PutDelayed(-1, &Message{ID: 1}) },
		"no id":        func(b *Batch) { b.PutDelayed(1, &Message{}) },
		"nil":          func(b *Batch) { b.PutDelayed(1, nil) },
	} {
		b := db.NewBatch()
		fill(b)
		if err := db.Commit(b, nil); !errors.Is(err, ErrInvalidRecord) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := db.ReadDue(t0, Due{}, 0, nil); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("ReadDue max 0: %v", err)
	}
	db.Close()
	db, err = Open("db", testOpts(fs, c))
	if err != nil {
		t.Fatal(err)
	}
	if _, bodies := read(t0+5000, Due{}, 10); !reflect.DeepEqual(bodies, []string{"first-b", "second", "third"}) {
		t.Fatalf("after reopen: %v", bodies)
	}
}

func TestDedup(t *testing.T) {
	c := newClock()
	fs := newMemFS()
	db, err := Open("db", testOpts(fs, c))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { db.Close() }()
	send := func(sender, cmid string, id uint64) *DedupResult {
		var r *DedupResult
		mustCommit(t, db, func(b *Batch) {
			r = b.Dedup(sender, cmid, id)
			b.PutHistory("conv", hmsg(c, id, cmid))
			b.PutQueued(mk("rcv"), id, qmsg(c, cmid))
		})
		return r
	}
	if r := send("u1", "c1", 100); r.Duplicate || r.ServerID != 100 {
		t.Fatalf("first send: %+v", r)
	}
	if r := send("u1", "c1", 101); !r.Duplicate || r.ServerID != 100 {
		t.Fatalf("resend: %+v", r)
	}
	if r := send("u2", "c1", 102); r.Duplicate || r.ServerID != 102 { // another sender
		t.Fatalf("other sender: %+v", r)
	}
	var ids []uint64
	db.LoadHistory("conv", 0, 10, func(m *Message) error { ids = append(ids, m.ID); return nil })
	if !reflect.DeepEqual(ids, []uint64{102, 100}) || db.QueueLen(mk("rcv")) != 2 {
		t.Fatalf("history %v, queue %d: the duplicate's batch was written", ids, db.QueueLen(mk("rcv")))
	}
	if id, err := db.GetDedup("u1", "c1"); err != nil || id != 100 {
		t.Fatalf("GetDedup = %d, %v", id, err)
	}
	// A restart keeps the records.
	db.Close()
	if db, err = Open("db", testOpts(fs, c)); err != nil {
		t.Fatal(err)
	}
	if r := send("u1", "c1", 103); !r.Duplicate || r.ServerID != 100 {
		t.Fatalf("resend after a restart: %+v", r)
	}
	// Past the TTL the pair is new again, and the sweep removes what expired.
	c.Add(DefaultDedupTTL + time.Second)
	if _, err := db.GetDedup("u2", "c1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("GetDedup past the TTL = %v", err)
	}
	if r := send("u1", "c1", 104); r.Duplicate || r.ServerID != 104 {
		t.Fatalf("send past the TTL: %+v", r)
	}
	res, err := db.Sweep()
	if err != nil || res.ExpiredDedup != 1 { // u2/c1; u1/c1 was renewed
		t.Fatalf("sweep = %+v, %v", res, err)
	}
	if st := db.Stats(); st.Duplicates != 1 || st.ExpiredDedup != 1 {
		t.Fatalf("stats %+v", st)
	}
}

// TestDedupMarks: with numeric client message ids, a send above the
// sender's mark is new without a lookup; everything at or below it is
// still checked, also after a restart and in a store without marks.
func TestDedupMarks(t *testing.T) {
	c := newClock()
	fs := newMemFS()
	db, err := Open("db", testOpts(fs, c))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { db.Close() }()
	next := uint64(100)
	send := func(cmid string) *DedupResult {
		var r *DedupResult
		next++
		mustCommit(t, db, func(b *Batch) {
			r = b.Dedup("u1", cmid, next)
			b.PutHistory("conv", hmsg(c, next, cmid))
		})
		return r
	}
	check := func(what, cmid string, dup bool) {
		t.Helper()
		if r := send(cmid); r.Duplicate != dup {
			t.Fatalf("%s %s: %+v, want duplicate %v", what, cmid, r, dup)
		}
	}
	check("first", "5", false)
	check("above the mark", "7", false)
	check("below the mark, new", "6", false)
	check("resend", "7", true)
	check("resend", "5", true)
	check("resend", "6", true)
	reopen := func() {
		t.Helper()
		db.Close()
		if db, err = Open("db", testOpts(fs, c)); err != nil {
			t.Fatal(err)
		}
	}
	reopen()
	check("resend after a restart", "7", true)
	check("new after a restart", "8", false)
	mark := func(want uint64) {
		t.Helper()
		if m, err := db.DedupMark("u1"); err != nil || m != want {
			t.Fatalf("DedupMark = %d, %v; want %d", m, err, want)
		}
	}
	mark(5 + markLease) // written with the first record, leased ahead
	check("new below the stored mark", "100", false)
	check("resend below the stored mark", "100", true)
	far := strconv.FormatUint(5+markLease+1, 10)
	check("past the lease", far, false)
	mark(5 + markLease + 1 + markLease)
	check("resend past the lease", far, true)
	// A store from before marks: the records alone.
	if err := db.pdb.Delete(appendNameKey(nil, spaceDedupMark, "u1"), pebble.Sync); err != nil {
		t.Fatal(err)
	}
	reopen()
	mark(5 + markLease + 1) // scanned: the highest record
	check("resend without a mark", far, true)
	check("resend without a mark", "8", true)
	check("resend without a mark", "6", true)
	check("new without a mark", "9", false)
	check("not a number", "x", false)
	check("not a number, resent", "x", true)
}

// TestDedupRace: resends of one message race each other (as a client's
// resend after a reconnect races the original still committing): exactly
// one copy is stored, and every sender learns its id.
func TestDedupRace(t *testing.T) {
	db, c := openMem(t, nil)
	const racers = 32
	var wg sync.WaitGroup
	results := make([]*DedupResult, racers)
	start := make(chan struct{})
	for i := range racers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			b := db.NewBatch()
			results[i] = b.Dedup("u1", "c-race", uint64(1000+i))
			b.PutHistory("conv", hmsg(c, uint64(1000+i), "m"))
			if err := commitWait(t, db, func(b2 *Batch) {}); err != nil { // spread the racers over groups
				t.Error(err)
			}
			ch := make(chan error, 1)
			if err := db.Commit(b, func(err error) { ch <- err }); err != nil {
				t.Error(err)
				return
			}
			if err := <-ch; err != nil {
				t.Error(err)
			}
		}()
	}
	close(start)
	wg.Wait()
	var fresh []uint64
	for _, r := range results {
		if !r.Duplicate {
			fresh = append(fresh, r.ServerID)
		}
	}
	if len(fresh) != 1 {
		t.Fatalf("%d fresh results: %v", len(fresh), fresh)
	}
	for _, r := range results {
		if r.ServerID != fresh[0] {
			t.Fatalf("a racer got id %d, the stored copy is %d", r.ServerID, fresh[0])
		}
	}
	n, _ := db.LoadHistory("conv", 0, 100, func(*Message) error { return nil })
	if n != 1 {
		t.Fatalf("%d stored copies", n)
	}
}
