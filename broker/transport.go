package broker

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"
)

// transport states (loop only).
const (
	stateNew     uint8 = iota // waiting for the login (MQTT CONNECT)
	stateWaiting              // login read, an off-loop step running (offloop.go); input stays buffered
	stateActive               // logged in
	stateClosing              // closing; no more input is applied (close.go)
)

// errIncomplete is what frameLen says while a frame's header is not all there.
var errIncomplete = errors.New("broker: incomplete frame")

// transport is the part of a connection every protocol shares: the socket
// and its event loop, the outbound buffer and its flush, the backlog of a
// slow reader, the keepalive deadline, unfinished input (input.go) and
// closing (close.go). An endpoint embeds it by value. Fields are touched
// only on its loop unless they sit under mu or are atomic.
type transport struct {
	gc   gnet.Conn
	loop *loop
	ep   endpoint // the endpoint embedding this transport

	// The transport is in every connection, so its size is counted: fields
	// are ordered so that it has no holes (128 B; TestIdleConnCost).

	// Loop only. Times are unix seconds, in 32 bits (good until 2106).
	kaSpan      int32  // keepalive deadline span in seconds (-1: none)
	wslot       int32  // keepalive wheel slot + 1, 0 when not in the wheel
	wpos        int32  // index in that slot
	opened      uint32 // the socket opened
	lastSeen    uint32 // the last frame (after login)
	stalled     uint32 // since the outbound data has been over its bound, 0 if not
	lingerUntil uint32 // the socket closes at, 0 while not closing (close.go)

	mu      sync.Mutex // guards the fields that say REQUIRES: mu held
	outMsgs int32      // REQUIRES: mu held. messages in out, counted into Stats at flush

	part *partial // loop only. an inbound frame not fully arrived (input.go)

	backlog atomic.Int64 // bytes gnet still held for the socket after the last flush

	// ext is rare per-connection state (a bridged connection's real address
	// and TLS identity, a publish rate bucket), nil for most (bridge.go).
	ext atomic.Pointer[connExt]

	out    *outBuf // REQUIRES: mu held. bytes to write, nil when idle
	spare  *outBuf // REQUIRES: mu held. the buffer of the last flush, kept while the conn is busy
	dirty  bool    // REQUIRES: mu held. on the loop's mailbox
	closed bool    // REQUIRES: mu held. socket closed

	// Loop only.
	state uint8 //
	flags tflag // list memberships and the close's progress (tflag)

	// Loop only; for the guard rails and connection logs (limits.go).
	closedBy uint8 // close reason + 1 once the broker closed it (close.go)
	kind     uint8 // (protocol, transport) index of the per-listener counts
}

// tflag is one of a transport's loop-only yes/no facts, kept as bits of
// one byte: with them the transport is 128 B and an endpoint embedding it
// 160 (TestIdleConnCost), where a bool each made both 176.
type tflag uint8

const (
	fWatched       tflag = 1 << iota // on the loop's stalled list
	fFlushed                         // flushed since the loop's last tick
	fHolding                         // on the loop's holders list (has a spare buffer)
	fListedPartial                   // on the loop's partials list
	fShut                            // write side shut down (close.go)
	fIPCounted                       // counted in the per-IP connection table (limits.go)
	fReleased                        // the endpoint let its session go (endpoint.release)
)

func (t *transport) has(f tflag) bool { return t.flags&f != 0 }

func (t *transport) set(f tflag, on bool) {
	if on {
		t.flags |= f
	} else {
		t.flags &^= f
	}
}

// init sets up t for a socket on loop l. Loop only.
func (t *transport) init(gc gnet.Conn, l *loop, ep endpoint) {
	t.gc, t.loop, t.ep = gc, l, ep
	now := t.loop.srv.now()
	t.opened, t.lastSeen = uint32(now), uint32(now)
	t.kaSpan = int32(max(t.loop.srv.opts.ConnectTimeout.Seconds(), 1))
	l.wheel.add(t, now+int64(t.kaSpan))
}

// outBuf is a pooled outbound buffer: idle conns hold none.
type outBuf struct{ b []byte }

var outPool = sync.Pool{New: func() any { return &outBuf{b: make([]byte, 0, 4096)} }}

// putOut returns a buffer to the pool; big ones, which only busy conns
// need, are left to the collector so the pool stays small.
func putOut(ob *outBuf) {
	if cap(ob.b) <= 64<<10 {
		ob.b = ob.b[:0]
		outPool.Put(ob)
	}
}

// bufLocked returns the outbound buffer, taking one from the pool if needed.
// REQUIRES: t.mu held.
func (t *transport) bufLocked() *outBuf {
	if t.out == nil {
		if t.out, t.spare = t.spare, nil; t.out == nil {
			t.out = outPool.Get().(*outBuf)
		}
	}
	return t.out
}

// pendingLocked is how many bytes wait for the socket. REQUIRES: t.mu held.
func (t *transport) pendingLocked() int {
	n := int(t.backlog.Load())
	if t.out != nil {
		n += len(t.out.b)
	}
	return n
}

// overBound reports whether the outbound data is past MaxOutboundBytes.
// Any goroutine.
func (t *transport) overBound() bool {
	t.mu.Lock()
	over := t.pendingLocked() > t.loop.srv.opts.MaxOutboundBytes
	t.mu.Unlock()
	return over
}

// appendRaw appends what f writes to the outbound buffer and schedules a
// flush. Any goroutine; f runs with t.mu held.
func (t *transport) appendRaw(f func([]byte) []byte) {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return
	}
	ob := t.bufLocked()
	ob.b = f(ob.b)
	t.scheduleLocked()
}

// dropLocked counts a QoS 0 delivery dropped for the bound and asks the
// loop for a flush, unless one is due: the backlog is what gnet held at the
// last flush, and a connection whose every delivery is dropped would never
// flush again to see it drain (it went silent, reading, until closed as a
// slow consumer; TestSlowSubscriberRecovers). Any goroutine.
// REQUIRES: t.mu held; releases it.
func (t *transport) dropLocked() {
	t.loop.srv.stats.Dropped.Add(1)
	t.scheduleLocked()
}

// dropBacklogged drops a QoS 0 delivery, before it is encoded, if what
// gnet holds for the socket is alone over the bound (dropLocked), and says
// whether it did. Any goroutine.
func (t *transport) dropBacklogged() bool {
	if t.backlog.Load() <= int64(t.loop.srv.opts.MaxOutboundBytes) {
		return false
	}
	t.mu.Lock()
	if !t.closed {
		t.dropLocked()
		return true
	}
	t.mu.Unlock()
	return true
}

// scheduleLocked puts t on its loop's mailbox once and unlocks t.mu.
// REQUIRES: t.mu held; releases it.
func (t *transport) scheduleLocked() {
	was := t.dirty
	t.dirty = true
	t.mu.Unlock()
	if !was {
		t.loop.markDirty(t)
	}
}

// flush writes the outbound buffer to the socket. Loop only.
func (t *transport) flush() {
	t.mu.Lock()
	ob := t.out
	t.out = nil
	if ob != nil {
		// Deliveries made while ob is written go into the spare, so a
		// busy conn's two buffers take turns. Left to take a pooled 4 KiB
		// buffer, they grew a fresh one every other flush: in a flat-out
		// fan-in that was ~250 MB/s of garbage for one subscriber, and the
		// collector's work and write barriers cost more than the routing.
		t.out, t.spare = t.spare, nil
	}
	t.dirty = false
	closed := t.closed
	msgs := t.outMsgs
	t.outMsgs = 0
	t.mu.Unlock()
	if ob == nil {
		if !closed && t.backlog.Load() > 0 {
			t.noteBacklog() // asked by dropLocked: has the socket taken it since?
		}
		return
	}
	if !closed && len(ob.b) > 0 {
		// Counted per flush, not per message: the counters are shared by
		// all loops. Counted before the write, so a peer that has read
		// the bytes finds them counted.
		t.loop.srv.stats.MessagesOut.Add(int64(msgs))
		t.loop.srv.stats.BytesOut.Add(int64(len(ob.b)))
		_, _ = t.gc.Write(ob.b)
		t.noteBacklog()
	}
	if cap(ob.b) > 2*t.loop.srv.opts.MaxOutboundBytes+64<<10 {
		return // grown past what the bound lets a conn use: let it go
	}
	// A busy conn (one whose batches outgrew a pooled buffer) keeps its
	// grown buffer for the next batches instead of growing a fresh one,
	// however little this flush wrote (judged by length, a small flush
	// between large ones let a grown buffer go); the loop's tick takes it
	// back once the conn goes a tick without a flush (loop.releaseIdle).
	// A pooled buffer that never grew, like a CONNACK's, goes straight
	// back, so idle conns hold none.
	busy := cap(ob.b) > 4096
	ob.b = ob.b[:0]
	t.mu.Lock()
	keep := busy && t.spare == nil && !t.closed
	if keep {
		t.spare = ob
	}
	t.mu.Unlock()
	if !keep {
		putOut(ob)
		return
	}
	t.set(fFlushed, true)
	if !t.has(fHolding) {
		t.set(fHolding, true)
		t.loop.holders = append(t.loop.holders, t)
	}
}

// releaseSpare returns the spare buffer to the pool, and the outbound
// one if it is empty (a spare that became it at the last flush). Loop only.
func (t *transport) releaseSpare() {
	t.mu.Lock()
	sp, out := t.spare, t.out
	t.spare = nil
	if out != nil && len(out.b) == 0 {
		t.out = nil
	} else {
		out = nil
	}
	t.mu.Unlock()
	if sp != nil {
		putOut(sp)
	}
	if out != nil {
		putOut(out)
	}
}

// noteBacklog records what gnet still holds for the socket and tracks how
// long the client has not been reading. Loop only.
func (t *transport) noteBacklog() {
	n := t.gc.OutboundBuffered()
	t.backlog.Store(int64(n))
	if n <= t.loop.srv.opts.MaxOutboundBytes {
		t.stalled = 0
		return
	}
	if t.stalled == 0 {
		t.stalled = uint32(t.loop.srv.now())
		t.loop.watchStall(t)
	}
}

// checkDeadline is the keepalive wheel's visit. Loop only.
func (t *transport) checkDeadline(now int64) {
	if t.state == stateClosing {
		return
	}
	slow := int64(t.loop.srv.opts.SlowConsumerTimeout.Seconds())
	if t.stalled != 0 && now-int64(t.stalled) >= slow {
		t.close(reasonSlowConsumer, nil)
		return
	}
	if t.kaSpan < 0 {
		return // no keepalive asked for and no maximum set: no idle deadline
	}
	// lastSeen is a whole second of the coarse clock, up to a second behind
	// the frame: without the extra second a deadline could fall that much
	// early (a 1.5 s keepalive window closing after 0.5 s).
	due := int64(t.lastSeen) + int64(t.kaSpan) + 1
	if due > now {
		next := due
		if t.stalled != 0 {
			next = min(due, now+1+slow)
		}
		t.loop.wheel.add(t, next)
		return
	}
	if t.state == stateActive {
		t.close(reasonKeepalive, nil)
		return
	}
	t.close(reasonLoginTimeout, nil) // (MQTT has nothing to say before CONNACK)
}

// onTraffic applies every whole frame gnet read, in place; the start of an
// unfinished frame moves into t's partial (input.go), so gnet keeps
// nothing buffered. Replies go out in one write. Loop only.
func (t *transport) onTraffic() gnet.Action {
	switch {
	case t.lingerUntil != 0:
		_, _ = t.gc.Discard(-1) // closing: input is read and dropped (close.go)
		return gnet.None
	case t.state == stateWaiting || t.state == stateClosing:
		return gnet.None // leave the bytes buffered until the login is settled
	}
	// Replies to these frames go out in the flush below: marked dirty
	// now, an append on the loop does not also put t on the loop's
	// mailbox (a gnet task, 3 allocations and an eventfd wake-up per
	// CONNACK or PUBACK; TestIdleConnCost counts them).
	t.mu.Lock()
	t.dirty = true
	t.mu.Unlock()
	buf, _ := t.gc.Peek(-1)
	used := 0
	t.loop.wall = time.Time{} // wallNow reads the clock for this batch
	defer func() { t.loop.wall = time.Time{} }()
	if t.part != nil {
		n, whole, err := t.fillPartial(buf)
		used = n
		switch {
		case err != nil:
			t.ep.fail(err)
		case whole && t.state != stateClosing:
			t.ep.handle(t.part.buf)
			t.dropPartial()
		}
	}
	for used < len(buf) && t.state != stateWaiting && t.state != stateClosing {
		n, err := t.ep.frameLen(buf[used:])
		if err == errIncomplete || err == nil && n > len(buf)-used {
			if err := t.startPartial(buf[used:]); err != nil {
				t.ep.fail(err)
			}
			used = len(buf)
			break
		}
		if err != nil {
			t.ep.fail(err)
			break
		}
		t.ep.handle(buf[used : used+n])
		used += n
	}
	if used > 0 {
		_, _ = t.gc.Discard(used) // gnet's Discard(0) drops everything buffered
	}
	t.loop.srv.stats.BytesIn.Add(int64(used))
	t.flush()
	if t.state == stateClosing && t.lingerUntil == 0 {
		return gnet.Close // the client said goodbye: nothing more to say or read
	}
	return gnet.None
}

// kick closes the connection from any goroutine for r: the endpoint's
// goodbye, then the socket, on the loop.
func (t *transport) kick(r closeReason) {
	if err := t.loop.el.Execute(nilCtx, kickTask{t, r}); err != nil {
		_ = t.gc.Close() // the engine is stopping: it closes everything
	}
}

type kickTask struct {
	t *transport
	r closeReason
}

func (k kickTask) Run(context.Context) error { k.t.close(k.r, nil); return nil }
