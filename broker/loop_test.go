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
