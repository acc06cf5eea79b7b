package broker

import (
	"context"
	"sync"
	"time"

	"github.com/cimgo/cim/broker/wire"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/panjf2000/gnet/v2"
)

// loop is cim's state for one gnet event loop. Writes to a connection from
// any goroutine land in its outbound buffer; the transport is put on its
// loop's mailbox, and the loop is asked once (Execute) to flush every
// transport in it: one task and one write per connection per batch,
// however many messages.
type loop struct {
	el  gnet.EventLoop
	srv *Server

	mu        sync.Mutex
	dirty     []*transport // REQUIRES: mu held. transports with bytes to flush
	retry     []*session   // REQUIRES: mu held. sessions to pump at the next tick
	scheduled bool         // REQUIRES: mu held. a flush task is queued on el
	wanted    bool         // REQUIRES: mu held. dirty while flushes were held (holdFlushes)
	inHeld    bool         // REQUIRES: srv.heldMu held. on srv.held

	// Loop only.
	spare    []*transport
	wheel    wheel
	stalled  []*transport   // over MaxOutboundBytes, checked every tick
	holders  []*transport   // keeping a spare outbound buffer
	partials []*transport   // holding an unfinished inbound frame (input.go)
	closing  []*transport   // draining input before they close (close.go)
	pk       packets.Packet // MQTT decode scratch
	wf       wire.Frame     // native decode scratch
	msg      Message        // QoS 0 routing scratch (see handlePublish)
	wall     time.Time      // the wall clock of the read batch being handled (wallNow); zero outside one
	wallUses int
}

// wallNow is the wall clock for the native sends of one read batch (their
// ids and ack times), read again every 64 sends and in every batch:
// time.Now per send was 14% of the broker's CPU in bench/native.sh's pairs
// (profile of cim server --pprof). Loop only, while onTraffic runs.
func (l *loop) wallNow() time.Time {
	if l.wall.IsZero() || l.wallUses >= 64 {
		l.wall, l.wallUses = l.srv.opts.Now(), 0
	}
	l.wallUses++
	return l.wall
}

// markDirty puts t on the mailbox and makes sure a flush is queued.
// Any goroutine.
func (l *loop) markDirty(t *transport) {
	l.mu.Lock()
	l.dirty = append(l.dirty, t)
	if l.srv.flushHold.Load() > 0 {
		l.wanted = true
		l.mu.Unlock()
		l.srv.addHeld(l)
		if l.srv.flushHold.Load() == 0 { // released meanwhile: it may have missed us
			l.kick()
		}
		return
	}
	sched := !l.scheduled
	l.scheduled = true
	l.mu.Unlock()
	if sched {
		l.execute()
	}
}

// execute queues the flush task that l.scheduled says is queued. Any
// goroutine.
func (l *loop) execute() {
	if err := l.el.Execute(nilCtx, l); err != nil {
		// The engine is shutting down; the conns close with it.
		l.mu.Lock()
		l.scheduled = false
		l.mu.Unlock()
	}
}

// kick queues the flush that was held, if any. Any goroutine.
func (l *loop) kick() {
	l.mu.Lock()
	sched := l.wanted && !l.scheduled
	if l.wanted {
		l.wanted = false
		l.scheduled = true
	}
	l.mu.Unlock()
	if sched {
		l.execute()
	}
}

// holdFlushes makes markDirty only collect transports, on every loop,
// until releaseFlushes: a peer link's reader that delivers a batch of
// forwarded messages then asks each loop once for the batch, not once per
// message (each ask is an eventfd write and a loop wake-up; and the
// subscriber gets one write instead of several). Holds nest; a hold is
// short (the reader's batches are bounded, cluster.PublishBatcher).
func (s *Server) holdFlushes() { s.flushHold.Add(1) }

// releaseFlushes ends a hold and asks every loop held so far for its
// flush, even while other holds go on: the readers of several peers hold
// in turn, and under a steady load from two of them the count may never
// come back to 0 (every loop's flushes, local ones too, would wait for a
// lull). A loop dirtied after this drain is asked by the next release, or
// by markDirty itself once no hold is left.
func (s *Server) releaseFlushes() {
	s.flushHold.Add(-1)
	var buf [8]*loop
	s.heldMu.Lock()
	list := append(buf[:0], s.held...)
	for _, l := range list {
		l.inHeld = false
	}
	clear(s.held)
	s.held = s.held[:0]
	s.heldMu.Unlock()
	for _, l := range list {
		l.kick()
	}
}

func (s *Server) addHeld(l *loop) {
	s.heldMu.Lock()
	if !l.inHeld {
		l.inHeld = true
		s.held = append(s.held, l)
	}
	s.heldMu.Unlock()
}

// Run flushes the mailbox; gnet calls it on the loop.
func (l *loop) Run(context.Context) error {
	l.mu.Lock()
	list := l.dirty
	l.dirty = l.spare[:0]
	l.scheduled = false
	l.mu.Unlock()
	for i, t := range list {
		t.flush()
		list[i] = nil
	}
	l.spare = list[:0]
	return nil
}

// retryLater asks the loop to pump s at its next tick (the outbound buffer
// was full when s had queued messages and room in flight). Any goroutine.
func (l *loop) retryLater(s *session) {
	l.mu.Lock()
	l.retry = append(l.retry, s)
	l.mu.Unlock()
}

// tick runs once a second on the loop: deadlines and retries.
func (l *loop) tick(now int64) {
	l.wheel.advance(now, func(t *transport) { t.checkDeadline(now) })
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
		s.pumpLocked(now)
		s.mu.Unlock()
	}
}

// watchStall puts t, whose outbound data just went over its bound, on the
// list checked every tick: its keepalive slot in the wheel may be minutes
// away, and a client that stopped reading must go after
// SlowConsumerTimeout. Loop only.
func (l *loop) watchStall(t *transport) {
	if !t.has(fWatched) {
		t.set(fWatched, true)
		l.stalled = append(l.stalled, t)
	}
}

// checkStalled closes the transports stalled for SlowConsumerTimeout and
// forgets those that drained or closed. It looks at gnet's backlog again
// first: it was recorded at the last flush, and the retries of this tick
// (pumps held back by overBound) go by it. Loop only.
func (l *loop) checkStalled(now int64) {
	keep := l.stalled[:0]
	for _, t := range l.stalled {
		if t.state != stateClosing {
			t.noteBacklog()
		}
		switch {
		case t.state == stateClosing || t.stalled == 0:
			t.set(fWatched, false)
		case now-int64(t.stalled) >= int64(l.srv.opts.SlowConsumerTimeout.Seconds()):
			t.set(fWatched, false)
			t.close(reasonSlowConsumer, nil)
		default:
			keep = append(keep, t)
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

// releaseIdle takes back the spare buffers of transports not flushed since
// the last tick, so only busy ones hold one. Loop only.
func (l *loop) releaseIdle() {
	keep := l.holders[:0]
	for _, t := range l.holders {
		if t.has(fFlushed) {
			t.set(fFlushed, false)
			keep = append(keep, t)
			continue
		}
		t.set(fHolding, false)
		t.releaseSpare()
	}
	clear(l.holders[len(keep):])
	l.holders = keep
}
