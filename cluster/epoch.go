package cluster

import (
	"sync"
	"time"
)

// Epoch orders ownership claims and interest changes. It is a hybrid
// logical clock value: the upper 48 bits are Unix milliseconds, the lower
// 16 a counter for events within one millisecond (or ahead of the wall
// clock). Comparing epochs compares (time, counter).
//
//	63                              16 15            0
//	+---------------------------------+---------------+
//	|        unix milliseconds        |    counter    |
//	+---------------------------------+---------------+
//
// Every node's clock only moves forward: Next returns a value above every
// epoch it issued or observed (Observe is called with each epoch received
// from a peer). Across a restart it stays monotonic because its physical
// part starts at the wall clock, which has passed every millisecond the
// previous run used, unless the wall clock is stepped back by more than the
// restart took, or the previous run issued more than 65,536 epochs per
// millisecond for long enough to run ahead of the wall clock. Against both,
// Options.MinEpoch lets the broker seed the clock with an epoch it stored
// (Cluster.Epoch), and on join the node observes the epochs its peers still
// hold for it.
type Epoch uint64

// Time is the wall-clock part of e.
func (e Epoch) Time() time.Time { return time.UnixMilli(int64(e >> 16)) }

// hlc is the node's clock.
type hlc struct {
	mu   sync.Mutex
	last uint64 // REQUIRES: mu held
	now  func() time.Time
}

func newHLC(floor Epoch, now func() time.Time) *hlc {
	c := &hlc{now: now}
	c.last = uint64(floor)
	if p := physical(now()); p > c.last {
		c.last = p
	}
	return c
}

func physical(t time.Time) uint64 { return uint64(t.UnixMilli()) << 16 }

// Next issues a new epoch, above every epoch issued or observed so far.
func (c *hlc) Next() Epoch {
	p := physical(c.now())
	c.mu.Lock()
	if p > c.last {
		c.last = p
	} else {
		c.last++
	}
	e := c.last
	c.mu.Unlock()
	return Epoch(e)
}

// NextAfter issues an epoch above both the clock and min.
func (c *hlc) NextAfter(min Epoch) Epoch {
	c.Observe(min)
	return c.Next()
}

// Observe moves the clock to at least e.
func (c *hlc) Observe(e Epoch) {
	c.mu.Lock()
	if uint64(e) > c.last {
		c.last = uint64(e)
	}
	c.mu.Unlock()
}

// Last is the highest epoch issued or observed.
func (c *hlc) Last() Epoch {
	c.mu.Lock()
	defer c.mu.Unlock()
	return Epoch(c.last)
}
