package bench

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// errChurnTimeout: a churn client's own message did not come back before
// it had to disconnect.
var errChurnTimeout = errors.New("bench: churn: own message not delivered")

// churn runs the churn scenario's share of this runner: every client
// loops connect, subscribe (skipped when a persistent session was
// resumed: the broker must have kept the subscription), publish one
// message to itself, wait for it, disconnect. ConnRate bounds the cycles
// per second over all runners; Count the cycles per client.
func (r *runner) churn(ctx context.Context, endAt time.Time) {
	o := r.o
	if r.prepFailed {
		return
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var tokens chan struct{}
	if rate := o.ConnRate / float64(r.n); rate > 0 {
		tokens = make(chan struct{})
		go func() {
			t0 := time.Now()
			t := time.NewTimer(0)
			defer t.Stop()
			for i := 0; ; i++ {
				t.Reset(time.Until(t0.Add(time.Duration(float64(i) / rate * float64(time.Second)))))
				select {
				case <-t.C:
				case <-ctx.Done():
					return
				}
				select {
				case tokens <- struct{}{}:
				case <-ctx.Done():
					return
				}
			}
		}()
	}
	if o.Count > 0 {
		endAt = time.Time{}
	}
	var wg sync.WaitGroup
	for _, c := range r.clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.churnClient(ctx, c, tokens, endAt)
		}()
	}
	wg.Wait()
	r.pubEnd.Store(time.Now().UnixNano())
}

func (r *runner) churnClient(ctx context.Context, c *client, tokens <-chan struct{}, endAt time.Time) {
	o := r.o
	payload := make([]byte, o.Size)
	copy(payload[HeaderSize:], o.Payload)
	topics := newTopicGen(c.topic, o.RandMax)
	for n := 0; o.Count == 0 || n < o.Count; n++ {
		if ctx.Err() != nil || r.stopped() || (!endAt.IsZero() && !time.Now().Before(endAt)) {
			return
		}
		if tokens != nil {
			select {
			case <-tokens:
			case <-ctx.Done():
				return
			case <-r.stop:
				return
			}
		}
		if !r.cycle(ctx, c, payload, topics, n) {
			// Refused or unreachable: do not spin on a dead broker.
			if !r.sleepUntil(ctx, time.Now().Add(100*time.Millisecond)) && (ctx.Err() != nil || r.stopped()) {
				return
			}
		}
	}
}

// cycle is one connect-subscribe-publish-receive-disconnect; false if it
// could not connect.
func (r *runner) cycle(ctx context.Context, c *client, payload []byte, topics *topicGen, n int) bool {
	o := r.o
	cl, err := r.dial(ctx, c)
	if err != nil {
		return false
	}
	c.cl = cl
	c.alive.Store(true)
	r.alive.Add(1)
	defer func() {
		if c.alive.CompareAndSwap(true, false) {
			r.alive.Add(-1)
		}
		_ = cl.Close()
		c.cl = nil
	}()
	present := false
	if sp, ok := cl.(SessionPresenter); ok {
		present = sp.SessionPresent()
	}
	if present {
		r.sessionPresent.Add(1)
	}
	if !o.Persistent || !present {
		sctx, cancel := context.WithTimeout(ctx, o.ConnectTimeout)
		err := cl.Subscribe(sctx, c.topic, o.QoS)
		cancel()
		if err != nil {
			if c.alive.Load() {
				r.errs.note(err)
			}
			return true
		}
	}
	select {
	case <-c.own: // left over from a previous cycle
	default:
	}
	putHeader(payload, uint32(c.idx), uint32(n))
	if _, err := cl.Publish(ctx, topics.next(), payload, o.QoS); err != nil {
		return true
	}
	if cl.Flush() != nil {
		return true
	}
	t := time.NewTimer(o.Drain)
	defer t.Stop()
	select {
	case <-c.own:
	case <-t.C:
		r.errs.note(fmt.Errorf("%w within %v (%s)", errChurnTimeout, o.Drain, c.id))
	case <-ctx.Done():
	case <-r.stop:
	}
	return true
}
