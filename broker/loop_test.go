package broker

import (
	"testing"
	"time"
)

// wallNow reads the clock once per read batch and again every 64 sends,
// so a send's time is never more than 64 sends old.
func TestLoopWallNow(t *testing.T) {
	clock := time.UnixMilli(1_800_000_000_000)
	l := &loop{srv: &Server{opts: Options{Now: func() time.Time { return clock }}}}
	first := l.wallNow()
	clock = clock.Add(time.Millisecond)
	for i := 1; i < 64; i++ {
		if got := l.wallNow(); !got.Equal(first) {
			t.Fatalf("use %d: %v, want the batch's %v", i, got, first)
		}
	}
	if got := l.wallNow(); !got.Equal(clock) {
		t.Fatalf("use 64: %v, want a fresh %v", got, clock)
	}
	clock = clock.Add(time.Millisecond)
	l.wall = time.Time{} // a new batch (onTraffic)
	if got := l.wallNow(); !got.Equal(clock) {
		t.Fatalf("new batch: %v, want %v", got, clock)
	}
}

// Holds of several peer readers overlap: each release must ask the loops
// held so far for their flush, or under a steady load from two peers the
// hold count never reaches 0 and no loop flushes.
func TestReleaseFlushesWhileOthersHold(t *testing.T) {
	srv := &Server{}
	l := &loop{srv: srv, scheduled: true} // (a flush already queued: kick needs no event loop)
	srv.holdFlushes()                     // reader A
	srv.holdFlushes()                     // reader B
	l.mu.Lock()
	l.wanted = true // what markDirty records while a hold is on
	l.mu.Unlock()
	srv.addHeld(l)
	srv.releaseFlushes() // A ends its batch; B goes on
	l.mu.Lock()
	wanted := l.wanted
	l.mu.Unlock()
	srv.releaseFlushes()
	if wanted {
		t.Fatal("a loop dirtied during A's batch still waits for B's to end")
	}
}
