package cluster

import (
	"testing"
	"time"
)

func TestEpochMonotonic(t *testing.T) {
	now := time.UnixMilli(1_000_000)
	c := newHLC(0, func() time.Time { return now })
	a := c.Next()
	b := c.Next() // same millisecond: counter
	if b != a+1 {
		t.Fatalf("same ms: %d then %d", a, b)
	}
	now = now.Add(-time.Hour) // wall clock stepped back
	if d := c.Next(); d <= b {
		t.Fatalf("clock went back with the wall clock: %d after %d", d, b)
	}
	c.Observe(Epoch(physical(now.Add(2 * time.Hour))))
	if e := c.Next(); e.Time().Before(now.Add(2*time.Hour)) || e <= b {
		t.Fatalf("observed epoch not passed: %v", e.Time())
	}
	if got := c.NextAfter(c.Last() + 100); got <= c.Last()-1 || got < b+100 {
		t.Fatalf("NextAfter not above min: %d", got)
	}
}

func TestEpochRestartFloor(t *testing.T) {
	now := time.UnixMilli(5_000)
	first := newHLC(0, func() time.Time { return now })
	var last Epoch
	for range 10 {
		last = first.Next()
	}
	// A restart whose wall clock is behind the last run's: MinEpoch keeps
	// the new run above it.
	now = time.UnixMilli(4_000)
	second := newHLC(last, func() time.Time { return now })
	if e := second.Next(); e <= last {
		t.Fatalf("restarted clock issued %d <= %d", e, last)
	}
	// Without MinEpoch but a later wall clock, the same holds.
	now = time.UnixMilli(6_000)
	third := newHLC(0, func() time.Time { return now })
	if e := third.Next(); e <= last {
		t.Fatalf("restarted clock issued %d <= %d", e, last)
	}
}
