package broker

import (
	"sync"
	"sync/atomic"

	"github.com/cimgo/cim/broker/mqtt"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/panjf2000/gnet/v2"
)

// conn states (loop only).
const (
	stateNew     uint8 = iota // waiting for CONNECT
	stateAuth                 // CONNECT read, password check running off the loop
	stateActive               // CONNACK sent
	stateClosing              // closing; no more input is read
)

// conn is one client socket on a gnet event loop. Fields are touched only on
// its loop unless they sit under mu.
type conn struct {
	gc   gnet.Conn
	loop *loop
	srv  *Server

	// Loop only.
	state     uint8
	version   byte // protocol level: 3, 4 or 5 (0 before CONNECT)
	normalEnd bool // DISCONNECT received: no will
	released  bool // detached from its session (at DISCONNECT or close)
	kaSpan    int32
	wslot     int32 // keepalive wheel slot + 1, 0 when not in the wheel
	wpos      int32 // index in that slot
	lastSeen  int64 // unix seconds of the last packet (after CONNECT)
	stalled   int64 // unix seconds since the outbound buffer has been over its bound, 0 if not
	watched   bool  // on the loop's stalled list
	flushed   bool  // flushed since the loop's last tick
	holding   bool  // on the loop's holders list (has a spare buffer)
	sess      *session
	clientID  string
	username  string
	will      *Message
	willDelay uint32
	aliasIn   []string // inbound topic aliases, grown on first use
	part      *partial // an inbound packet not fully arrived (input.go)

	listedPartial bool  // on the loop's partials list
	shut          bool  // write side shut down (close.go)
	lingerUntil   int64 // unix seconds the socket closes at, 0 while not closing (close.go)

	// Set before CONNACK on the loop, read by deliveries under session.mu.
	maxPacketOut uint32 // client's Maximum Packet Size, 0 = none
	aliasMaxOut  uint16 // client's Topic Alias Maximum

	backlog atomic.Int64 // bytes gnet still held for the socket after the last flush

	mu       sync.Mutex
	out      *outBuf           // REQUIRES: mu held. bytes to write, nil when idle
	spare    *outBuf           // REQUIRES: mu held. the buffer of the last flush, kept while the conn is busy
	aliasOut map[string]uint16 // REQUIRES: mu held. outbound topic aliases (v5)
	dirty    bool              // REQUIRES: mu held. on the loop's mailbox
	outMsgs  int32             // REQUIRES: mu held. PUBLISHes in out, counted into Stats at flush
	closed   bool              // REQUIRES: mu held. socket closed or closing
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

// bufLocked returns c's outbound buffer, taking one from the pool if needed.
// REQUIRES: c.mu held.
func (c *conn) bufLocked() *outBuf {
	if c.out == nil {
		if c.out, c.spare = c.spare, nil; c.out == nil {
			c.out = outPool.Get().(*outBuf)
		}
	}
	return c.out
}

// pendingLocked is how many bytes wait for the socket. REQUIRES: c.mu held.
func (c *conn) pendingLocked() int {
	n := int(c.backlog.Load())
	if c.out != nil {
		n += len(c.out.b)
	}
	return n
}

// overBound reports whether c's outbound data is past MaxOutboundBytes.
func (c *conn) overBound() bool {
	c.mu.Lock()
	over := c.pendingLocked() > c.srv.opts.MaxOutboundBytes
	c.mu.Unlock()
	return over
}

// appendPacket encodes pk into c's outbound buffer and schedules a flush.
// Safe from any goroutine.
func (c *conn) appendPacket(pk *packets.Packet) {
	var err error
	c.appendRaw(func(b []byte) []byte {
		b, err = mqtt.Append(b, pk)
		return b
	})
	if err != nil {
		c.srv.log.Debug("encode", "client", c.clientID, "type", packets.PacketNames[pk.FixedHeader.Type], "err", err)
	}
}

// appendRaw appends already-encoded bytes and schedules a flush.
func (c *conn) appendRaw(f func([]byte) []byte) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	ob := c.bufLocked()
	ob.b = f(ob.b)
	c.scheduleLocked()
}

// scheduleLocked puts c on its loop's mailbox once and unlocks c.mu.
// REQUIRES: c.mu held; releases it.
func (c *conn) scheduleLocked() {
	was := c.dirty
	c.dirty = true
	c.mu.Unlock()
	if !was {
		c.loop.markDirty(c)
	}
}

// sendPublish encodes m for this conn. pid is 0 for QoS 0. It returns false
// when the packet is larger than the client accepts (dropped, counted);
// QoS 0 is also dropped (counted) when the outbound buffer is full.
// Safe from any goroutine; called under the session's lock for QoS > 0.
func (c *conn) sendPublish(m *Message, qos byte, retain, dup bool, pid uint16, subIDs []uint32, now int64) bool {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return true // QoS > 0 stays in flight and is resent on reconnect
	}
	if qos == 0 && c.pendingLocked() > c.srv.opts.MaxOutboundBytes {
		c.mu.Unlock()
		c.srv.stats.Dropped.Add(1)
		return true
	}
	name := m.Topic
	var extra [96]byte
	props := extra[:0]
	var alias uint16
	if c.version >= 5 {
		if c.aliasMaxOut > 0 {
			name, alias = c.outAliasLocked(m.Topic)
		}
		props = appendDeliveryProps(props, m, now, alias, subIDs)
	}
	if c.maxPacketOut > 0 && mqtt.PublishSize(c.version, name, m.Payload, len(props)+len(m.Props), qos) > int(c.maxPacketOut) {
		if name != "" && alias != 0 {
			delete(c.aliasOut, m.Topic) // just assigned: the client never learns it
		}
		c.mu.Unlock()
		c.srv.stats.Dropped.Add(1) // [MQTT-3.1.2-25]
		return false
	}
	ob := c.bufLocked()
	ob.b, _ = mqtt.AppendPublish(ob.b, c.version, name, m.Payload, m.Props, props, qos, retain, dup, pid)
	c.outMsgs++
	c.scheduleLocked()
	return true
}

// outAliasLocked returns the topic to send and the alias to carry: a known
// alias goes with an empty topic; a new one is assigned while there is room.
// REQUIRES: c.mu held.
func (c *conn) outAliasLocked(name string) (string, uint16) {
	if a, ok := c.aliasOut[name]; ok {
		return "", a
	}
	if len(c.aliasOut) >= int(c.aliasMaxOut) {
		return name, 0
	}
	if c.aliasOut == nil {
		c.aliasOut = make(map[string]uint16)
	}
	a := uint16(len(c.aliasOut) + 1)
	c.aliasOut[name] = a
	return name, a
}

// flush writes the outbound buffer to the socket. Loop only.
func (c *conn) flush() {
	c.mu.Lock()
	ob := c.out
	c.out = nil
	c.dirty = false
	closed := c.closed
	msgs := c.outMsgs
	c.outMsgs = 0
	c.mu.Unlock()
	if ob == nil {
		return
	}
	if !closed && len(ob.b) > 0 {
		_, _ = c.gc.Write(ob.b)
		// Counted per flush, not per message: the counters are shared by all loops.
		c.srv.stats.MessagesOut.Add(int64(msgs))
		c.srv.stats.BytesOut.Add(int64(len(ob.b)))
		c.noteBacklog()
	}
	if cap(ob.b) > 2*c.srv.opts.MaxOutboundBytes+64<<10 {
		return // grown past what the bound lets a conn use: let it go
	}
	// A busy conn (one whose batch outgrew a pooled buffer) keeps its
	// grown buffer for the next batch instead of growing a fresh one each
	// flush; the loop's tick takes it back once the conn goes a tick
	// without a flush (loop.releaseIdle). Small writes, like a CONNACK,
	// hand the buffer straight back, so idle conns hold none.
	busy := len(ob.b) > 4096
	ob.b = ob.b[:0]
	c.mu.Lock()
	keep := busy && c.spare == nil && !c.closed
	if keep {
		c.spare = ob
	}
	c.mu.Unlock()
	if !keep {
		putOut(ob)
		return
	}
	c.flushed = true
	if !c.holding {
		c.holding = true
		c.loop.holders = append(c.loop.holders, c)
	}
}

// releaseSpare returns c's spare buffer to the pool. Loop only.
func (c *conn) releaseSpare() {
	c.mu.Lock()
	sp := c.spare
	c.spare = nil
	c.mu.Unlock()
	if sp != nil {
		putOut(sp)
	}
}

// noteBacklog records what gnet still holds for the socket and tracks how
// long the client has not been reading. Loop only.
func (c *conn) noteBacklog() {
	n := c.gc.OutboundBuffered()
	c.backlog.Store(int64(n))
	if n <= c.srv.opts.MaxOutboundBytes {
		c.stalled = 0
		return
	}
	now := c.srv.now()
	if c.stalled == 0 {
		c.stalled = now
		c.loop.watchStall(c)
	}
}

// checkDeadline is the keepalive wheel's visit. Loop only.
func (c *conn) checkDeadline(now int64) {
	if c.state == stateClosing {
		return
	}
	if c.stalled != 0 && now-c.stalled >= int64(c.srv.opts.SlowConsumerTimeout.Seconds()) {
		c.srv.log.Debug("slow consumer", "client", c.clientID)
		c.closeWith(packets.ErrPendingClientWritesExceeded)
		return
	}
	// lastSeen is a whole second of the coarse clock, up to a second behind
	// the packet: without the extra second a deadline could fall that much
	// early (a 1.5 s keepalive window closing after 0.5 s).
	due := c.lastSeen + int64(c.kaSpan) + 1
	if due > now {
		next := due
		if c.stalled != 0 {
			next = min(due, now+1+int64(c.srv.opts.SlowConsumerTimeout.Seconds()))
		}
		c.loop.wheel.add(c, next)
		return
	}
	if c.state == stateActive {
		c.srv.log.Debug("keepalive timeout", "client", c.clientID)
		c.closeWith(packets.ErrKeepAliveTimeout) // [MQTT-3.1.2-22]
		return
	}
	c.srv.log.Debug("no CONNECT in time", "remote", c.gc.RemoteAddr())
	c.state = stateClosing
	_ = c.gc.Close()
}

// closeWith sends a v5 DISCONNECT with code (when the client speaks v5 and
// is past CONNECT) and closes the connection (close.go). Loop only.
func (c *conn) closeWith(code packets.Code) {
	if c.state == stateClosing {
		return
	}
	if c.state == stateActive && c.version >= 5 {
		c.appendPacket(&packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Disconnect}, ProtocolVersion: 5, ReasonCode: code.Code})
	}
	c.linger()
}

// release detaches c from its session, once: at DISCONNECT, so that a
// reconnect racing the socket's close finds the session as the DISCONNECT
// left it (ended for expiry 0), or else when the socket closes. Loop only.
func (c *conn) release() {
	if c.sess == nil || c.released {
		return
	}
	c.released = true
	c.srv.stats.ClientsConnected.Add(-1)
	c.srv.sessions.detach(c, c.srv.now())
}

// kick closes c from any goroutine, telling a v5 client why.
func (c *conn) kick(code packets.Code) {
	if c.version >= 5 {
		c.appendPacket(&packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Disconnect}, ProtocolVersion: 5, ReasonCode: code.Code})
	}
	// Close is queued behind the flush task markDirty queued (gnet runs a
	// loop's tasks of one priority in order), so the DISCONNECT goes first.
	_ = c.gc.Close()
}
