package bench

import (
	"encoding/binary"
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
	if id, qos, body, ok := skimDeliver(frame); ok {
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

// skimDeliver reads what the client needs of a deliver frame (with its
// length prefix): its message id, QoS and body, skipping the other fields
// unchecked, as the MQTT client skips a PUBLISH's topic. A full decode
// (wire.Decode, which checks every field) was most of the client's CPU
// per delivery (BenchmarkNativeReadDeliveries: 94 ns at QoS 0, against
// 17 ns for MQTT's BenchmarkReadDeliveries). ok is false for another frame
// or an encoding it does not know; wire.Decode then reads the frame.
func skimDeliver(frame []byte) (id uint64, qos byte, body []byte, ok bool) {
	size, hl, err := wire.ReadLength(frame)
	if err != nil || size < 2 || hl+size != len(frame) || wire.Type(frame[hl]) != wire.TypeDeliver {
		return 0, 0, nil, false
	}
	b := frame[hl+1:]
	if b[0] < 0x80 || b[0] > 0x8f {
		return 0, 0, nil, false // not a fixmap
	}
	n, p := int(b[0]&0x0f), 1
	for range n {
		if p+2 >= len(b) || b[p] != 0xa1 && b[p] != 0xa2 {
			return 0, 0, nil, false
		}
		k := b[p+1]
		if b[p] == 0xa2 {
			k, p = 0, p+1 // "ts" or a newer field: skipped
		}
		p += 2
		switch k {
		case 'i':
			if id, p, ok = skimUint(b, p); !ok {
				return 0, 0, nil, false
			}
		case 'q':
			var v uint64
			if v, p, ok = skimUint(b, p); !ok || v > 0xff {
				return 0, 0, nil, false
			}
			qos = byte(v)
		case 'b':
			if body, p, ok = skimBin(b, p); !ok {
				return 0, 0, nil, false
			}
		default:
			if p, ok = skipValue(b, p); !ok {
				return 0, 0, nil, false
			}
		}
	}
	return id, qos, body, p == len(b)
}

func skimUint(b []byte, p int) (uint64, int, bool) {
	if p >= len(b) {
		return 0, p, false
	}
	c := b[p]
	switch {
	case c <= 0x7f:
		return uint64(c), p + 1, true
	case c == 0xcc && p+2 <= len(b):
		return uint64(b[p+1]), p + 2, true
	case c == 0xcd && p+3 <= len(b):
		return uint64(binary.BigEndian.Uint16(b[p+1:])), p + 3, true
	case c == 0xce && p+5 <= len(b):
		return uint64(binary.BigEndian.Uint32(b[p+1:])), p + 5, true
	case c == 0xcf && p+9 <= len(b):
		return binary.BigEndian.Uint64(b[p+1:]), p + 9, true
	}
	return 0, p, false
}

func skimBin(b []byte, p int) ([]byte, int, bool) {
	if p+2 > len(b) {
		return nil, p, false
	}
	var n int
	switch b[p] {
	case 0xc4:
		n, p = int(b[p+1]), p+2
	case 0xc5:
		if p+3 > len(b) {
			return nil, p, false
		}
		n, p = int(binary.BigEndian.Uint16(b[p+1:])), p+3
	case 0xc6:
		if p+5 > len(b) {
			return nil, p, false
		}
		n, p = int(binary.BigEndian.Uint32(b[p+1:])), p+5
	default:
		return nil, p, false
	}
	if n > len(b)-p {
		return nil, p, false
	}
	return b[p : p+n : p+n], p + n, true
}

// skipValue skips a scalar: an integer, nil, a bool, a str or a bin.
func skipValue(b []byte, p int) (int, bool) {
	if p >= len(b) {
		return p, false
	}
	c := b[p]
	n := 0 // bytes after the first
	switch {
	case c <= 0x7f || c >= 0xe0 || c == 0xc0 || c == 0xc2 || c == 0xc3:
	case c >= 0xa0 && c <= 0xbf:
		n = int(c & 0x1f)
	case c == 0xcc || c == 0xd0:
		n = 1
	case c == 0xcd || c == 0xd1:
		n = 2
	case c == 0xce || c == 0xd2:
		n = 4
	case c == 0xcf || c == 0xd3:
		n = 8
	case (c == 0xc4 || c == 0xd9) && p+1 < len(b):
		n = 1 + int(b[p+1])
	case (c == 0xc5 || c == 0xda) && p+2 < len(b):
		n = 2 + int(binary.BigEndian.Uint16(b[p+1:]))
	default:
		return p, false
	}
	if n > len(b)-p-1 {
		return p, false
	}
	return p + 1 + n, true
}
