package bench

import (
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/cimgo/cim/broker/wire"
)

// The native client's reader: frames are decoded straight from the bufio
// buffer (wire.Decode into the reused c.f, strings and bodies aliasing the
// buffer until the frame is discarded), so a delivery costs no allocation.

// readChunk is how much a frame larger than the read buffer grows c.big by
// at a time: memory follows the bytes that really arrived, not the length
// prefix.
const readChunk = 1 << 20

// nextFrame returns the frame at the front of the reader without consuming
// it; the caller decodes it, then calls discard(total). frame aliases the
// reader's buffer (or c.big for large frames) until then.
func (c *nativeClient) nextFrame() (frame []byte, total int, err error) {
	var hdr []byte
	if c.br.Buffered() >= 4 {
		hdr, _ = c.br.Peek(4) // the longest prefix, at once: ReadLength reads what it needs
	} else {
		for n := 1; ; n++ {
			if hdr, err = c.br.Peek(n); err != nil {
				return nil, 0, err
			}
			if hdr[n-1]&0x80 == 0 || n == 4 {
				break
			}
		}
	}
	size, pl, err := wire.ReadLength(hdr)
	if err != nil {
		return nil, 0, fmt.Errorf("%w: %v", ErrProtocol, err)
	}
	total = pl + size
	switch {
	case size == 0:
		return nil, 0, fmt.Errorf("%w: empty frame", ErrProtocol)
	case total > nativeMaxFrame:
		return nil, 0, fmt.Errorf("%w: frame of %d bytes over the maximum of %d", ErrProtocol, total, nativeMaxFrame)
	case total <= c.br.Size():
		p, err := c.br.Peek(total)
		if err != nil {
			return nil, 0, err
		}
		return p, total, nil
	}
	c.big = c.big[:0]
	for len(c.big) < total {
		k := min(total-len(c.big), readChunk)
		c.big = slices.Grow(c.big, k)
		n, err := io.ReadFull(c.br, c.big[len(c.big):len(c.big)+k])
		c.big = c.big[:len(c.big)+n]
		if err != nil {
			return nil, 0, err
		}
	}
	return c.big, 0, nil
}

func (c *nativeClient) discard(total int) {
	if total > 0 {
		_, _ = c.br.Discard(total)
	}
}

// readLoop is the connection's only reader. It flushes queued acks whenever
// it has consumed everything already received, so acks go out batched.
func (c *nativeClient) readLoop() {
	defer close(c.done)
	var reads uint64
	for {
		if c.br.Buffered() == 0 {
			c.flushAcks()
		}
		frame, total, err := c.nextFrame()
		if err != nil {
			c.die(err)
			return
		}
		if c.cr.reads != reads {
			reads = c.cr.reads
			c.now = time.Now().UnixNano()
		}
		if err := c.handle(frame); err != nil {
			c.die(err)
			return
		}
		c.discard(total)
	}
}

// handle decodes and applies one frame; an error ends the connection.
func (c *nativeClient) handle(frame []byte) error {
	// wire.SkimDeliver reads only the id, QoS and body, as the MQTT
	// client skips a PUBLISH's topic: a full decode (wire.Decode, which
	// checks every field) was most of the client's CPU per delivery
	// (BenchmarkNativeReadDeliveries: 94 ns at QoS 0, against 17 ns for
	// MQTT's BenchmarkReadDeliveries). Another frame, or one it cannot
	// read, goes to wire.Decode.
	if id, qos, body, ok := wire.SkimDeliver(frame); ok {
		if qos > 0 && id != 0 {
			c.queueDeliverAck(id) // (as below)
		}
		c.h.OnMessage(body, c.now)
		return nil
	}
	f := &c.f
	if _, err := wire.Decode(frame, f, nativeMaxFrame); err != nil {
		if wire.CodeOf(err) == wire.CodeUnknownFrame {
			// A newer server's frame: framing is intact, skip it.
			c.h.OnError(fmt.Errorf("%w: %v", ErrProtocol, err))
			return nil
		}
		return fmt.Errorf("%w: %v", ErrProtocol, err)
	}
	switch f.Type {
	case wire.TypeDeliver:
		d := &f.Deliver
		// The ack is queued before the handler sees the message, as in
		// the MQTT client: a churn client closes as soon as its message
		// is there and must still have acknowledged it.
		if d.QoS > 0 && d.MsgID != 0 {
			c.queueDeliverAck(d.MsgID)
		}
		c.h.OnMessage(d.Body, c.now)
	case wire.TypeSendAck:
		a := &f.SendAck
		if a.Code != wire.CodeOK && a.Code != wire.CodeOffline {
			c.h.OnError(fmt.Errorf("%w: send-ack code %d (%v): %s", ErrPublish, uint16(a.Code), a.Code, a.Text))
		}
		if a.ID != 0 {
			c.release(a.ID)
		}
	case wire.TypePing:
		c.mu.Lock()
		c.wbuf, _ = wire.Append(c.wbuf, &wire.Pong{})
		c.dirty = true
		c.mu.Unlock()
	case wire.TypePong:
	case wire.TypeSubAck:
		c.answered(f.SubAck.ID, f.SubAck.Codes)
	case wire.TypeUnsubAck:
		c.answered(f.UnsubAck.ID, f.UnsubAck.Codes)
	case wire.TypeResponse:
		// No requests are sent; a stray answer is harmless.
	case wire.TypeKick:
		return fmt.Errorf("%w: kick %d (%v): %s", ErrDisconnect, uint16(f.Kick.Code), f.Kick.Code, f.Kick.Text)
	case wire.TypeError:
		err := fmt.Errorf("error frame %d (%v): %s", uint16(f.Error.Code), f.Error.Code, f.Error.Text)
		if f.Error.Code.ClosesConnection() {
			return fmt.Errorf("%w: %w", ErrDisconnect, err)
		}
		c.h.OnError(fmt.Errorf("%w: %w", ErrProtocol, err))
	default: // login-ack after the login, or a client's frame
		return fmt.Errorf("%w: unexpected %v frame", ErrProtocol, f.Type)
	}
	return nil
}

// answered hands a sub-ack or unsub-ack to the request waiting for it.
func (c *nativeClient) answered(id uint64, codes []wire.Code) {
	if id == 0 || id != c.pending.Load() {
		return // an answer nobody waits for any more
	}
	select {
	case c.answer <- slices.Clone(codes):
	default:
	}
}

func (c *nativeClient) queueDeliverAck(id uint64) {
	c.mu.Lock()
	c.dack.MsgID = id
	c.wbuf, _ = wire.Append(c.wbuf, &c.dack)
	c.dirty = true
	c.mu.Unlock()
}

func (c *nativeClient) flushAcks() {
	c.mu.Lock()
	if c.dirty {
		c.flushLocked()
	}
	c.mu.Unlock()
}
