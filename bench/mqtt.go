package bench

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	cmqtt "github.com/cimgo/cim/broker/mqtt"
)

// The MQTT client is hand-encoded rather than built on a general codec: the
// load generator must cost the broker's machine as little CPU as possible, so
// the hot paths (encode PUBLISH, decode PUBLISH, ack) touch only the bytes
// they need and allocate nothing.

func init() { Register(mqttProto{}) }

type mqttProto struct{}

func (mqttProto) Name() string { return "mqtt" }

// MQTT control packet types (high nibble of the first byte).
const (
	pkConnect    = 0x10
	pkConnack    = 0x20
	pkPublish    = 0x30
	pkPuback     = 0x40
	pkPubrec     = 0x50
	pkPubrel     = 0x60
	pkPubcomp    = 0x70
	pkSubscribe  = 0x80
	pkSuback     = 0x90
	pkPingreq    = 0xC0
	pkPingresp   = 0xD0
	pkDisconnect = 0xE0
)

// stamp locates a buffered PUBLISH: its payload offset in wbuf (the send
// time goes there) and its packet id (0 for QoS 0).
type stamp struct {
	off int
	pid uint16
}

// countingReader counts socket reads, so the reader can take the clock once
// per read rather than once per message: time.Now is not free (~0.4 µs on
// this VM's kvm-clock), and every message of one read arrived together.
type countingReader struct {
	r     io.Reader
	reads uint64
}

func (c *countingReader) Read(p []byte) (int, error) {
	c.reads++
	return c.r.Read(p)
}

// subscribePID is reserved for SUBSCRIBE: publish ids come from 1..window and
// the window is at most 65534, so they never collide.
const subscribePID = 0xFFFF

type mqttClient struct {
	sock
	version byte
	cr      countingReader // under br: tells the reader when bytes are fresh
	br      *bufio.Reader
	big     []byte // packets larger than br's buffer are read here
	now     int64  // reader goroutine: unix ns of the latest socket read

	keepAlive int64 // nanoseconds; the server may lower ours (v5)
	lastWrite atomic.Int64
	present   bool   // CONNACK session present
	retain    bool   // publish with the retain flag
	props     []byte // v5 PUBLISH properties (user properties), encoded once

	mu      sync.Mutex // guards wbuf, stamps, werr, dirty and writes to conn
	wbuf    []byte
	stamps  []stamp // publishes in wbuf whose send time is set at flush
	werr    error
	dirty   bool // acks queued by the reader, not yet flushed
	flushAt int

	// free holds the packet ids not in flight; taking one is how Publish
	// waits for the window. inflight[pid] is the send time of an
	// unacknowledged publish, 0 when free.
	free     chan uint16
	inflight []atomic.Int64

	subAck chan byte
	done   chan struct{} // closed when the reader goroutine has returned
}

func (mqttProto) Dial(ctx context.Context, cfg *ClientConfig, h Handler) (Client, error) {
	ctx, cancel := context.WithTimeout(ctx, cfg.ConnectTimeout)
	defer cancel()
	// No TCP keepalive: MQTT's own keeps the connection alive, and the
	// option is three setsockopt calls per connect.
	d := net.Dialer{KeepAlive: -1}
	if cfg.LocalAddr != nil {
		d.LocalAddr = cfg.LocalAddr
		d.Control = bindNoPort
	}
	conn, err := d.DialContext(ctx, "tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrDial, err)
	}
	c := &mqttClient{
		sock:      sock{conn: conn, h: h, dead: make(chan struct{})},
		version:   cfg.Version,
		keepAlive: int64(cfg.KeepAlive),
		flushAt:   max(cfg.WriteBuffer, 64),
		retain:    cfg.Retain,
		subAck:    make(chan byte, 1),
		done:      make(chan struct{}),
	}
	if cfg.Version == 5 {
		for _, p := range cfg.UserProperties {
			c.props = append(c.props, 0x26) // User Property [MQTT-3.3.2.3.7]
			c.props = appendString(c.props, p.Key)
			c.props = appendString(c.props, p.Value)
		}
	}
	c.cr.r = conn
	c.br = bufio.NewReaderSize(&c.cr, max(cfg.ReadBuffer, 64))
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	window, err := c.handshake(cfg)
	if err != nil {
		conn.Close()
		if ctx.Err() != nil && !isConnack(err) {
			err = fmt.Errorf("%w: %w", err, context.DeadlineExceeded)
		}
		return nil, err
	}
	_ = conn.SetDeadline(time.Time{})
	c.lastWrite.Store(time.Now().UnixNano())
	if cfg.Inflight > 0 {
		window = min(window, cfg.Inflight)
		c.free = make(chan uint16, window)
		c.inflight = make([]atomic.Int64, window+1)
		for pid := 1; pid <= window; pid++ {
			c.free <- uint16(pid)
		}
	}
	go c.readLoop()
	return c, nil
}

func isConnack(err error) bool {
	_, ok := err.(*connackError)
	return ok
}

// connackError is a CONNACK with a non-zero code.
type connackError struct {
	version, code byte
}

func (e *connackError) Error() string {
	return fmt.Sprintf("bench: CONNACK code 0x%02x (MQTT %d)", e.code, e.version)
}

func (e *connackError) Unwrap() error {
	switch {
	case e.version < 5 && (e.code == 4 || e.code == 5), // [MQTT-3.2.2] bad user name or password, not authorized
		e.version == 5 && (e.code == 0x86 || e.code == 0x87 || e.code == 0x8C):
		return ErrAuth
	}
	return ErrRefused
}

// handshake writes CONNECT and reads CONNACK; it returns the publish window
// the broker allows (MQTT 5 Receive Maximum, else 65534).
func (c *mqttClient) handshake(cfg *ClientConfig) (int, error) {
	b := c.wbuf[:0]
	var props []byte
	if c.version == 5 {
		if !cfg.Clean {
			props = append(props, 0x11) // Session Expiry Interval
			props = binary.BigEndian.AppendUint32(props, uint32(cfg.SessionExpiry/time.Second))
		}
		props = append(props, 0x21, 0xFF, 0xFF) // Receive Maximum: let the broker push freely
	}
	rem := 10 + 2 + len(cfg.ClientID)
	if c.version == 5 {
		rem += vbiLen(len(props)) + len(props)
	}
	var flags byte
	if cfg.Clean {
		flags |= 0x02
	}
	if cfg.Username != "" {
		flags |= 0x80
		rem += 2 + len(cfg.Username)
	}
	if cfg.Password != "" {
		flags |= 0x40
		rem += 2 + len(cfg.Password)
	}
	b = append(b, pkConnect)
	b = cmqtt.AppendVBI(b, rem)
	b = append(b, 0, 4, 'M', 'Q', 'T', 'T', c.version, flags)
	b = binary.BigEndian.AppendUint16(b, uint16(min(c.keepAlive/int64(time.Second), 65535)))
	if c.version == 5 {
		b = cmqtt.AppendVBI(b, len(props))
		b = append(b, props...)
	}
	b = appendString(b, cfg.ClientID)
	if cfg.Username != "" {
		b = appendString(b, cfg.Username)
	}
	if cfg.Password != "" {
		b = appendString(b, cfg.Password)
	}
	if _, err := c.conn.Write(b); err != nil {
		return 0, fmt.Errorf("%w: %w", ErrDial, err)
	}
	c.wbuf = b[:0]
	first, body, total, err := c.next()
	if err != nil {
		return 0, fmt.Errorf("%w: waiting for CONNACK: %w", ErrDial, err)
	}
	defer c.discard(total)
	if first&0xF0 != pkConnack || len(body) < 2 {
		return 0, fmt.Errorf("%w: %w: want CONNACK, got packet 0x%02x", ErrDial, ErrProtocol, first)
	}
	if body[1] != 0 {
		return 0, &connackError{c.version, body[1]}
	}
	c.present = body[0]&1 == 1 // [MQTT-3.2.2-2]
	window := 65534
	if c.version == 5 && len(body) > 2 {
		err := walkProps(body[2:], func(id byte, v []byte) {
			switch id {
			case 0x21: // Receive Maximum
				if len(v) == 2 {
					window = min(window, int(binary.BigEndian.Uint16(v)))
				}
			case 0x13: // Server Keep Alive overrides ours [MQTT-3.2.2-21]
				if len(v) == 2 {
					c.keepAlive = int64(binary.BigEndian.Uint16(v)) * int64(time.Second)
				}
			}
		})
		if err != nil {
			return 0, fmt.Errorf("%w: %w: CONNACK properties", ErrDial, err)
		}
	}
	return max(window, 1), nil
}

// next returns the packet at the front of the reader without consuming it;
// the caller processes it, then calls discard(total). body aliases the
// reader's buffer (or c.big for large packets) until then.
func (c *mqttClient) next() (first byte, body []byte, total int, err error) {
	h, err := c.br.Peek(2)
	if err != nil {
		return 0, nil, 0, err
	}
	first = h[0]
	rem, mult, n := 0, 1, 1
	for {
		if n > 4 {
			return 0, nil, 0, fmt.Errorf("%w: remaining length over 4 bytes", ErrProtocol)
		}
		h, err = c.br.Peek(n + 1)
		if err != nil {
			return 0, nil, 0, err
		}
		v := h[n]
		rem += int(v&0x7F) * mult
		mult <<= 7
		n++
		if v&0x80 == 0 {
			break
		}
	}
	total = n + rem
	if total <= c.br.Size() {
		p, err := c.br.Peek(total)
		if err != nil {
			return 0, nil, 0, err
		}
		return first, p[n:], total, nil
	}
	// Larger than the buffer: copy it out (rare; only big payloads).
	if _, err := c.br.Discard(n); err != nil {
		return 0, nil, 0, err
	}
	if cap(c.big) < rem {
		c.big = make([]byte, rem)
	}
	c.big = c.big[:rem]
	if _, err := io.ReadFull(c.br, c.big); err != nil {
		return 0, nil, 0, err
	}
	return first, c.big, 0, nil
}

func (c *mqttClient) discard(total int) {
	if total > 0 {
		_, _ = c.br.Discard(total)
	}
}

// readLoop is the connection's only reader. It flushes queued acks whenever
// it has consumed everything already received, so acks go out batched.
func (c *mqttClient) readLoop() {
	defer close(c.done)
	var reads uint64
	for {
		if c.br.Buffered() == 0 {
			c.flushAcks()
		}
		first, body, total, err := c.next()
		if err != nil {
			c.die(err)
			return
		}
		if c.cr.reads != reads {
			reads = c.cr.reads
			c.now = time.Now().UnixNano()
		}
		if err := c.handle(first, body); err != nil {
			c.die(err)
			return
		}
		c.discard(total)
	}
}

func (c *mqttClient) handle(first byte, body []byte) error {
	switch first & 0xF0 {
	case pkPublish:
		qos := first >> 1 & 3
		if len(body) < 2 {
			return fmt.Errorf("%w: short PUBLISH", ErrProtocol)
		}
		p := 2 + int(binary.BigEndian.Uint16(body))
		var pid uint16
		if qos > 0 {
			if p+2 > len(body) {
				return fmt.Errorf("%w: short PUBLISH", ErrProtocol)
			}
			pid = binary.BigEndian.Uint16(body[p:])
			p += 2
		}
		if c.version == 5 {
			plen, n, ok := readVBI(body[min(p, len(body)):])
			if !ok {
				return fmt.Errorf("%w: PUBLISH properties", ErrProtocol)
			}
			p += n + plen
		}
		if p > len(body) {
			return fmt.Errorf("%w: short PUBLISH", ErrProtocol)
		}
		// The ack is queued before the handler sees the message: a client
		// that closes as soon as its message arrives (churn) must still
		// acknowledge it, or the broker rightly delivers it again.
		switch qos {
		case 1:
			c.queueAck(pkPuback, pid)
		case 2:
			c.queueAck(pkPubrec, pid)
		}
		c.h.OnMessage(body[p:], c.now)
	case pkPuback, pkPubcomp:
		if len(body) < 2 {
			return fmt.Errorf("%w: short ack", ErrProtocol)
		}
		if len(body) > 2 && body[2] >= 0x80 {
			c.h.OnError(fmt.Errorf("%w: reason 0x%02x", ErrPublish, body[2]))
		}
		c.release(binary.BigEndian.Uint16(body))
	case pkPubrec:
		if len(body) < 2 {
			return fmt.Errorf("%w: short PUBREC", ErrProtocol)
		}
		pid := binary.BigEndian.Uint16(body)
		if len(body) > 2 && body[2] >= 0x80 { // v5: refused, the flow ends here
			c.h.OnError(fmt.Errorf("%w: reason 0x%02x", ErrPublish, body[2]))
			c.release(pid)
			return nil
		}
		c.queueAck(pkPubrel|0x02, pid)
	case pkPubrel:
		if len(body) < 2 {
			return fmt.Errorf("%w: short PUBREL", ErrProtocol)
		}
		c.queueAck(pkPubcomp, binary.BigEndian.Uint16(body))
	case pkSuback:
		if len(body) < 3 {
			return fmt.Errorf("%w: short SUBACK", ErrProtocol)
		}
		p := 2
		if c.version == 5 {
			plen, n, ok := readVBI(body[2:])
			if !ok || 2+n+plen >= len(body) {
				return fmt.Errorf("%w: short SUBACK", ErrProtocol)
			}
			p += n + plen
		}
		select {
		case c.subAck <- body[p]:
		default:
		}
	case pkPingresp:
	case pkDisconnect:
		reason := byte(0)
		if len(body) > 0 {
			reason = body[0]
		}
		return fmt.Errorf("%w: reason 0x%02x", ErrDisconnect, reason)
	default:
		return fmt.Errorf("%w: unexpected packet 0x%02x", ErrProtocol, first)
	}
	return nil
}

// release frees a packet id when its publish flow completes.
func (c *mqttClient) release(pid uint16) {
	if int(pid) >= len(c.inflight) || pid == 0 {
		c.h.OnError(fmt.Errorf("%w: ack for unknown packet id %d", ErrProtocol, pid))
		return
	}
	at := c.inflight[pid].Swap(0)
	if at == 0 {
		c.h.OnError(fmt.Errorf("%w: ack for packet id %d not in flight", ErrProtocol, pid))
		return
	}
	c.h.OnAck(time.Duration(c.now - at))
	c.free <- pid // cannot block: pid was taken from free
}

func (c *mqttClient) queueAck(typ byte, pid uint16) {
	c.mu.Lock()
	c.wbuf = append(c.wbuf, typ, 2, byte(pid>>8), byte(pid))
	c.dirty = true
	c.mu.Unlock()
}

func (c *mqttClient) flushAcks() {
	c.mu.Lock()
	if c.dirty {
		c.flushLocked()
	}
	c.mu.Unlock()
}

// flushLocked writes the buffer out, first stamping the send time into
// every buffered PUBLISH: the moment the bytes leave for the broker, so
// time spent in this buffer is not counted as latency. REQUIRES: mu held.
func (c *mqttClient) flushLocked() {
	c.dirty = false
	if len(c.wbuf) == 0 || c.werr != nil {
		return
	}
	now := time.Now().UnixNano()
	for _, s := range c.stamps {
		binary.BigEndian.PutUint64(c.wbuf[s.off:], uint64(now))
		if s.pid != 0 {
			c.inflight[s.pid].Store(now)
		}
	}
	n := len(c.stamps)
	c.stamps = c.stamps[:0]
	_, err := c.conn.Write(c.wbuf)
	c.wbuf = c.wbuf[:0]
	c.lastWrite.Store(now)
	if n > 0 && err == nil {
		c.h.OnSent(n, now)
	}
	if err != nil {
		c.werr = err
		c.die(err) // die takes no lock, so calling it under mu is safe
	}
}

func (c *mqttClient) Publish(ctx context.Context, topic string, payload []byte, qos byte) (int64, error) {
	var pid uint16
	if qos > 0 {
		if c.free == nil {
			return 0, fmt.Errorf("%w: QoS %d without an in-flight window", ErrUsage, qos)
		}
		select {
		case pid = <-c.free:
		default:
			// Window full: send what is buffered so acks can come back.
			if err := c.Flush(); err != nil {
				return 0, err
			}
			select {
			case pid = <-c.free:
			case <-c.dead:
				return 0, c.deadErr
			case <-ctx.Done():
				return 0, ctx.Err()
			}
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.werr != nil {
		return 0, c.werr
	}
	c.wbuf = appendPublishProps(c.wbuf, c.version, topic, payload, qos, pid, c.retain, c.props)
	c.stamps = append(c.stamps, stamp{off: len(c.wbuf) - len(payload), pid: pid})
	if len(c.wbuf) >= c.flushAt {
		c.flushLocked()
	}
	return c.lastWrite.Load(), c.werr
}

func (c *mqttClient) Flush() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.flushLocked()
	return c.werr
}

func (c *mqttClient) Subscribe(ctx context.Context, filter string, qos byte) error {
	rem := 2 + 2 + len(filter) + 1
	if c.version == 5 {
		rem++
	}
	c.mu.Lock()
	c.wbuf = append(c.wbuf, pkSubscribe|0x02)
	c.wbuf = cmqtt.AppendVBI(c.wbuf, rem)
	c.wbuf = binary.BigEndian.AppendUint16(c.wbuf, subscribePID)
	if c.version == 5 {
		c.wbuf = append(c.wbuf, 0) // no properties
	}
	c.wbuf = appendString(c.wbuf, filter)
	c.wbuf = append(c.wbuf, qos)
	c.flushLocked()
	err := c.werr
	c.mu.Unlock()
	if err != nil {
		return err
	}
	select {
	case code := <-c.subAck:
		if code >= 0x80 {
			return fmt.Errorf("%w: %q code 0x%02x", ErrSubscribe, filter, code)
		}
		return nil
	case <-c.dead:
		return c.deadErr
	case <-ctx.Done():
		return fmt.Errorf("%w: no SUBACK for %q: %w", ErrSubscribe, filter, ctx.Err())
	}
}

func (c *mqttClient) Ping(now time.Time) {
	if c.keepAlive <= 0 || now.UnixNano()-c.lastWrite.Load() < c.keepAlive/2 {
		return
	}
	c.mu.Lock()
	c.wbuf = append(c.wbuf, pkPingreq, 0)
	c.flushLocked()
	c.mu.Unlock()
}

func (c *mqttClient) Close() error {
	c.closing.Store(true)
	// A stalled broker must not hold Close (or a publisher blocked in Write
	// under mu) forever.
	_ = c.conn.SetWriteDeadline(time.Now().Add(time.Second))
	c.mu.Lock()
	if c.werr == nil {
		c.wbuf = append(c.wbuf, pkDisconnect, 0)
		c.flushLocked()
	}
	c.mu.Unlock()
	c.die(net.ErrClosed)
	<-c.done
	return nil
}

func appendPublish(dst []byte, version byte, topic string, payload []byte, qos byte, pid uint16) []byte {
	return appendPublishProps(dst, version, topic, payload, qos, pid, false, nil)
}

// appendPublishProps encodes a PUBLISH; props is the v5 property block
// without its length (nil for none).
func appendPublishProps(dst []byte, version byte, topic string, payload []byte, qos byte, pid uint16, retain bool, props []byte) []byte {
	rem := 2 + len(topic) + len(payload)
	if qos > 0 {
		rem += 2
	}
	if version == 5 {
		rem += vbiLen(len(props)) + len(props)
	}
	first := pkPublish | qos<<1
	if retain {
		first |= 1
	}
	dst = append(dst, first)
	dst = cmqtt.AppendVBI(dst, rem)
	dst = appendString(dst, topic)
	if qos > 0 {
		dst = append(dst, byte(pid>>8), byte(pid))
	}
	if version == 5 {
		dst = cmqtt.AppendVBI(dst, len(props))
		dst = append(dst, props...)
	}
	return append(dst, payload...)
}

// SessionPresent implements SessionPresenter.
func (c *mqttClient) SessionPresent() bool { return c.present }

func appendString(dst []byte, s string) []byte {
	dst = append(dst, byte(len(s)>>8), byte(len(s)))
	return append(dst, s...)
}

func vbiLen(v int) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}

func readVBI(b []byte) (v, n int, ok bool) {
	mult := 1
	for n < len(b) && n < 4 {
		x := b[n]
		v += int(x&0x7F) * mult
		mult <<= 7
		n++
		if x&0x80 == 0 {
			return v, n, true
		}
	}
	return 0, 0, false
}

// walkProps calls f for each MQTT 5 property in b (property length first).
func walkProps(b []byte, f func(id byte, v []byte)) error {
	plen, n, ok := readVBI(b)
	if !ok || n+plen > len(b) {
		return ErrProtocol
	}
	b = b[n : n+plen]
	for len(b) > 0 {
		id := b[0]
		b = b[1:]
		var size int
		switch id {
		case 0x01, 0x17, 0x19, 0x24, 0x25, 0x28, 0x29, 0x2A:
			size = 1
		case 0x13, 0x21, 0x22, 0x23:
			size = 2
		case 0x02, 0x11, 0x18, 0x27:
			size = 4
		case 0x0B:
			_, m, ok := readVBI(b)
			if !ok {
				return ErrProtocol
			}
			size = m
		case 0x03, 0x08, 0x09, 0x12, 0x15, 0x16, 0x1A, 0x1C, 0x1F:
			if len(b) < 2 {
				return ErrProtocol
			}
			size = 2 + int(binary.BigEndian.Uint16(b))
		case 0x26: // user property: two strings
			if len(b) < 2 {
				return ErrProtocol
			}
			k := 2 + int(binary.BigEndian.Uint16(b))
			if len(b) < k+2 {
				return ErrProtocol
			}
			size = k + 2 + int(binary.BigEndian.Uint16(b[k:]))
		default:
			return ErrProtocol
		}
		if size > len(b) {
			return ErrProtocol
		}
		v := b[:size]
		if size >= 2 && (id == 0x03 || id == 0x08 || id == 0x09 || id == 0x12 || id == 0x15 || id == 0x16 || id == 0x1A || id == 0x1C || id == 0x1F) {
			v = v[2:]
		}
		f(id, v)
		b = b[size:]
	}
	return nil
}
