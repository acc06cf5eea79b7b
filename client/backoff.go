package client

import (
	"math/rand/v2"
	"time"
)

// Backoff says how long to wait before a connection attempt. The client
// calls it from its connection goroutine only; it must not block.
type Backoff interface {
	// Delay is the wait before attempt n (1 for the first retry after a
	// failed attempt or a lost connection, 2 for the next, ...).
	Delay(n int) time.Duration
}

// ExponentialBackoff doubles the wait after every failed attempt, from
// Initial up to Max, and takes a random part of it away (Jitter 0.5: the
// wait is between half and all of it), so that clients dropped together do
// not come back together.
type ExponentialBackoff struct {
	Initial time.Duration // wait before the first retry; default 250 ms
	Max     time.Duration // longest wait; default 30 s
	Jitter  float64       // fraction of the wait that is random, 0 to 1; default 0.5
}

// Delay implements Backoff.
func (b ExponentialBackoff) Delay(n int) time.Duration {
	initial, max, jitter := b.Initial, b.Max, b.Jitter
	if initial <= 0 {
		initial = 250 * time.Millisecond
	}
	if max <= 0 {
		max = 30 * time.Second
	}
	if jitter <= 0 || jitter > 1 {
		jitter = 0.5
	}
	d := initial
	for i := 1; i < n && d < max; i++ {
		d *= 2
	}
	if d > max {
		d = max
	}
	return d - time.Duration(rand.Float64()*jitter*float64(d))
}
