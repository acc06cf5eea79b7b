package bench

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"time"
)

func (r *runner) publishAll(ctx context.Context, start, endAt time.Time) {
	pctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	for _, c := range r.pubs {
		if c.alive.Load() {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r.publish(pctx, c, endAt)
			}()
		}
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	var bound <-chan time.Time
	if !endAt.IsZero() {
		// Publishers stop at endAt by themselves. One still stuck a second
		// later (on a window the broker does not open, or in a write it does
		// not read) is stopped: what the broker already took is drained
		// below, what it did not take is lost.
		t := time.NewTimer(time.Until(endAt) + time.Second)
		defer t.Stop()
		bound = t.C
	}
	// With --count there is no end time: give up when publishing has made
	// no progress (nothing written, nothing acknowledged) for Drain.
	stall := time.NewTicker(100 * time.Millisecond)
	defer stall.Stop()
	progress := func() int64 {
		return r.sum(func(c *client) int64 { return c.sentAll.Load() + c.acked.Load() })
	}
	last, lastAt := progress(), time.Now()
wait:
	for {
		select {
		case <-done:
			return
		case <-r.stop:
			break wait
		case <-ctx.Done():
			break wait
		case <-bound:
			break wait
		case <-stall.C:
			if p := progress(); p != last {
				last, lastAt = p, time.Now()
			} else if time.Since(lastAt) >= r.o.Drain {
				r.errs.note(fmt.Errorf("%w: no publish written or acknowledged for %v", ErrStalled, r.o.Drain))
				break wait
			}
		}
	}
	cancel()
	t := time.NewTimer(time.Second)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		// Blocked in a write to a broker that does not read: dropping the
		// connections is the only way out.
		for _, c := range r.pubs {
			if c.cl != nil {
				c.cl.Abort()
			}
		}
		<-done
	}
}

// publish is one publisher's loop: stamp, send, pace.
func (r *runner) publish(ctx context.Context, c *client, endAt time.Time) {
	o := r.o
	defer func() {
		_ = c.cl.Flush()
		now := time.Now().UnixNano()
		for {
			old := r.pubEnd.Load()
			if now <= old || r.pubEnd.CompareAndSwap(old, now) {
				return
			}
		}
	}()
	payload := make([]byte, o.Size)
	copy(payload[HeaderSize:], o.Payload)
	topics := newTopicGen(c.topic, o.RandMax)
	end := int64(math.MaxInt64)
	if !endAt.IsZero() {
		end = endAt.UnixNano()
	}
	var pace *time.Timer
	allowed := 0 // messages the schedule allows so far (--rate)
	for n := 0; o.Count == 0 || n < o.Count; n++ {
		if n&255 == 0 && (ctx.Err() != nil || r.stopped()) {
			return
		}
		if r.interval > 0 && n >= allowed {
			// Consult the clock once per batch of due messages, not per
			// message, and run up to paceSlack ahead of the schedule so that
			// fast publishers send a few messages per wakeup and syscall. A
			// publisher that fell behind (a window the broker did not open)
			// catches up at once: the schedule, not the broker, sets the pace.
			allowed = r.allowed(c.idx, time.Now().Add(paceSlack).UnixNano())
			if n >= allowed {
				// Ahead of schedule: the loop has caught up, so send what is
				// buffered and sleep until the next message is due.
				if c.cl.Flush() != nil {
					return
				}
				wait := time.Until(time.Unix(0, r.due(uint32(c.idx), uint32(n))))
				if pace == nil {
					pace = time.NewTimer(wait)
					defer pace.Stop()
				} else {
					pace.Reset(wait)
				}
				select {
				case <-pace.C:
				case <-ctx.Done():
					return
				case <-r.stop:
					return
				}
				allowed = n + 1
			}
		}
		putHeader(payload, uint32(c.idx), uint32(n))
		at, err := c.cl.Publish(ctx, topics.next(), payload, o.QoS)
		if err != nil {
			// A dead connection was counted by OnClose; ctx means we stop.
			return
		}
		if at >= end {
			return
		}
	}
}

// paceSlack is how far ahead of its --rate schedule a publisher may run.
const paceSlack = time.Millisecond

// topicGen yields a publisher's topics: the same string each time, or a
// fresh %rand number per message.
type topicGen struct {
	fixed string
	parts []string // split around %rand
	max   int
	rnd   *rand.Rand
	buf   []byte
}

func newTopicGen(pattern string, randMax int) *topicGen {
	if !strings.Contains(pattern, "%rand") {
		return &topicGen{fixed: pattern}
	}
	return &topicGen{
		parts: strings.Split(pattern, "%rand"), max: randMax,
		rnd: rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64())),
	}
}

func (g *topicGen) next() string {
	if g.parts == nil {
		return g.fixed
	}
	b := append(g.buf[:0], g.parts[0]...)
	for _, p := range g.parts[1:] {
		b = strconv.AppendInt(b, int64(g.rnd.IntN(g.max)), 10)
		b = append(b, p...)
	}
	g.buf = b
	return string(b)
}
