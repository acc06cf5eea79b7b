package broker

import (
	"context"
	"sync"

	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/panjf2000/gnet/v2"
)

// loop is cim's state for one gnet event loop. Writes to a conn from any
// goroutine land in the conn's outbound buffer; the conn is put on its loop's
// mailbox, and the loop is asked once (Execute) to flush every conn in it:
// one task and one write per conn per batch, however many messages.
type loop struct {
	el  gnet.EventLoop
	srv *Server

	mu        sync.Mutex
	dirty     []*conn    // REQUIRES: mu held. conns with bytes to flush
	retry     []*session // REQUIRES: mu held. sessions to pump at the next tick
	scheduled bool       // REQUIRES: mu held. a flush task is queued on el

	// Loop only.
	spare    []*conn
	wheel    wheel
	stalled  []*conn        // conns over MaxOutboundBytes, checked every tick
	holders  []*conn        // conns keeping a spare outbound buffer
	partials []*conn        // conns holding an unfinished inbound packet
	closing  []*conn        // conns draining input before they close (close.go)
	pk       packets.Packet // decode scratch
	msg      Message        // QoS 0 routing scratch (see handlePublish)
}

// markDirty puts c on the mailbox and makes sure a flush is queued.
// Safe from any goroutine.
func (l *loop) markDirty(c *conn) {
	l.mu.Lock()
	l.dirty = append(l.dirty, c)
	sched := !l.scheduled
	l.scheduled = true
	l.mu.Unlock()
	if sched {
		if err := l.el.Execute(context.Background(), l); err != nil {
			// The engine is shutting down; the conns close with it.
			l.mu.Lock()
			l.scheduled = false
			l.mu.Unlock()
		}
	}
}

// Run flushes the mailbox; gnet calls it on the loop.
func (l *loop) Run(context.Context) error {
	l.mu.Lock()
	list := l.dirty
	l.dirty = l.spare[:0]
	l.scheduled = false
	l.mu.Unlock()
	for i, c := range list {
		c.flush()
		list[i] = nil
	}
	l.spare = list[:0]
	return nil
}

// retryLater asks the loop to pump s at its next tick (the conn's outbound
// buffer was full when s had queued messages and room in flight).
func (l *loop) retryLater(s *session) {
	l.mu.Lock()
	l.retry = append(l.retry, s)
	l.mu.Unlock()
}

// tick runs once a second on the loop: keepalive deadlines and retries.
func (l *loop) tick(now int64) {
	l.wheel.advance(now, func(c *conn) { c.checkDeadline(now) })
	l.releaseIdle()
	l.checkStalled(now)
	l.checkPartials(now)
	l.checkClosing(now)
	l.mu.Lock()
	retry := l.retry
	l.retry = nil
	l.mu.Unlock()
	for _, s := range retry {
		s.mu.Lock()
		s.retrying = false
		s.pump(now)
		s.mu.Unlock()
	}
}

// watchStall puts c, whose outbound data just went over its bound, on the
// list checked every tick: its keepalive slot in the wheel may be minutes
// away, and a client that stopped reading must go after
// SlowConsumerTimeout. Loop only.
func (l *loop) watchStall(c *conn) {
	if !c.watched {
		c.watched = true
		l.stalled = append(l.stalled, c)
	}
}

// checkStalled closes the conns stalled for SlowConsumerTimeout and forgets
// those that drained or closed. Loop only.
func (l *loop) checkStalled(now int64) {
	keep := l.stalled[:0]
	for _, c := range l.stalled {
		switch {
		case c.state == stateClosing || c.stalled == 0:
			c.watched = false
		case now-c.stalled >= int64(l.srv.opts.SlowConsumerTimeout.Seconds()):
			c.watched = false
			l.srv.log.Debug("slow consumer", "client", c.clientID)
			c.closeWith(packets.ErrPendingClientWritesExceeded)
		default:
			keep = append(keep, c)
		}
	}
	clear(l.stalled[len(keep):])
	l.stalled = keep
}

// tickTask adapts tick to gnet.Runnable.
type tickTask struct {
	l   *loop
	now int64
}

func (t tickTask) Run(context.Context) error { t.l.tick(t.now); return nil }

// releaseIdle takes back the spare buffers of conns not flushed since the
// last tick, so only busy conns hold one. Loop only.
func (l *loop) releaseIdle() {
	keep := l.holders[:0]
	for _, c := range l.holders {
		if c.flushed {
			c.flushed = false
			keep = append(keep, c)
			continue
		}
		c.holding = false
		c.releaseSpare()
	}
	clear(l.holders[len(keep):])
	l.holders = keep
}
