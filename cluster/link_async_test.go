package cluster

import (
	"sync"
	"testing"
	"time"
)

// asyncRecorder is an AsyncPublishDelegate that holds every done until the
// test releases it.
type asyncRecorder struct {
	mu    sync.Mutex
	ids   []uint64          // in the order handed over
	times map[uint64]int    // how often each id was handed over
	dones map[uint64]func() // QoS 1/2 not released yet
	nils  int               // QoS 0: done was nil
}

func (r *asyncRecorder) HandlePublish(string, *Publish) { panic("the async form must be used") }

func (r *asyncRecorder) HandlePublishAsync(_ string, p *Publish, done func()) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ids = append(r.ids, p.ID)
	r.times[p.ID]++
	if done == nil {
		r.nils++
		return
	}
	r.dones[p.ID] = done
}

// release runs the held dones of ids, in the order given.
func (r *asyncRecorder) release(ids ...uint64) {
	for _, id := range ids {
		r.mu.Lock()
		d := r.dones[id]
		delete(r.dones, id)
		r.mu.Unlock()
		if d != nil {
			d()
		}
	}
}

// An asynchronous delegate's publishes are acknowledged only once done,
// cumulatively (a done one behind an undone one waits), while the link
// goes on reading; after a cut the resent ones are not handed over again.
func TestAsyncPublishAckedWhenDone(t *testing.T) {
	ar := &asyncRecorder{times: map[uint64]int{}, dones: map[uint64]func(){}}
	a, b, p := linkPair(t, func(o *Options) {
		if o.NodeName == "b" {
			o.Publish = ar
		}
	})
	const n = 20
	for i := uint64(1); i <= n; i++ {
		if err := a.Forward("b", &Publish{Topic: "t", QoS: 1, ID: i}); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.Forward("b", &Publish{Topic: "t", QoS: 0, ID: 1000}); err != nil {
		t.Fatal(err)
	}
	count := func() int { ar.mu.Lock(); defer ar.mu.Unlock(); return len(ar.ids) }
	acks := func() int { return a.rec.count(func(r *recorder) int { return len(r.acks) }) }
	waitFor(t, 5*time.Second, "all handed over without any done", func() bool { return count() == n+1 })
	time.Sleep(100 * time.Millisecond) // pings go by: still no ack may come
	if got := acks(); got != 0 {
		t.Fatalf("%d acks before any done", got)
	}
	// Done out of order: 2..10 first acknowledge nothing (1 is not done).
	ar.release(10, 9, 8, 7, 6, 5, 4, 3, 2)
	time.Sleep(100 * time.Millisecond)
	if got := acks(); got != 0 {
		t.Fatalf("%d acks while the first is not done", got)
	}
	ar.release(1)
	waitFor(t, 5*time.Second, "acks of 1..10", func() bool { return acks() == 10 })
	// A cut with 11..20 in progress: they are resent, dropped as
	// duplicates (not handed over twice), and acked once done.
	p.cut()
	waitFor(t, 5*time.Second, "link back", func() bool { return linkUp(a, "b") && linkStats(a, "b").Resent > 0 })
	waitFor(t, 5*time.Second, "resent ones dropped", func() bool { return linkStats(b, "a").Duplicates >= 10 })
	ar.release(20, 19, 18, 17, 16, 15, 14, 13, 12, 11)
	waitFor(t, 5*time.Second, "acks of all", func() bool { return acks() == n })
	a.rec.mu.Lock()
	for id, k := range a.rec.acks {
		if k != 1 || a.rec.ackErrs[id] != nil {
			t.Errorf("ack of %d: %d times, err %v", id, k, a.rec.ackErrs[id])
		}
	}
	a.rec.mu.Unlock()
	ar.mu.Lock()
	defer ar.mu.Unlock()
	for id, k := range ar.times {
		if k != 1 {
			t.Errorf("publish %d handed over %d times", id, k)
		}
	}
	if ar.nils != 1 {
		t.Errorf("QoS 0 publishes with a nil done: %d, want 1", ar.nils)
	}
}
