package broker

import (
	"errors"
	"slices"

	"github.com/cimgo/cim/broker/mqtt"
	"github.com/mochi-mqtt/server/v2/packets"
)

// Unfinished inbound packets.
//
// gnet keeps the bytes a handler does not consume in a ring buffer that
// grows by doubling, and Peek copies that ring into a fresh buffer on every
// read event, so a client holding a large packet open cost the broker about
// 3.5 bytes per byte it sent. Instead, a conn consumes everything gnet read:
// whole packets are decoded in place, and the start of an unfinished one is
// moved into a partial that the conn owns, grown by a quarter at a time up
// to the packet's declared size, so gnet's buffers stay empty and a held
// byte costs about one byte. Two limits bound what clients can make the
// broker hold: Options.PacketTimeout for finishing a started packet, and
// Options.MaxPartialBytes over all conns, past which the conns holding the
// most are closed.

// partial is the start of an inbound packet that has not fully arrived.
type partial struct {
	buf   []byte
	need  int   // the packet's whole size; 0 while its fixed header is incomplete
	since int64 // unix seconds of its first byte
}

// errPacketTimeout and errInputBudget are the close reasons of a conn that
// did not finish a packet in time, or held the most when the budget ran out.
var (
	errPacketTimeout = packets.Code{Code: packets.ErrKeepAliveTimeout.Code, Reason: "packet not finished in time"}
	errInputBudget   = packets.Code{Code: packets.ErrQuotaExceeded.Code, Reason: "too much unfinished input buffered"}
)

// startPartial keeps rest, the start of a packet, in a partial. Loop only.
func (c *conn) startPartial(rest []byte) error {
	p := &partial{since: c.srv.now()}
	c.part = p
	if !c.listedPartial {
		c.listedPartial = true
		c.loop.partials = append(c.loop.partials, c)
	}
	_, _, err := c.fillPartial(rest)
	return err
}

// fillPartial appends to the partial what the packet still needs from buf.
// It returns how many bytes it took and whether the packet is now whole.
// Loop only.
func (c *conn) fillPartial(buf []byte) (took int, whole bool, err error) {
	p := c.part
	for p.need == 0 {
		_, hl, rem, err := mqtt.Header(p.buf)
		switch {
		case err == nil:
			p.need = hl + rem
			if max := c.srv.opts.MaxPacketSize; uint64(p.need) > uint64(max) {
				return took, false, packets.ErrPacketTooLarge
			}
		case !errors.Is(err, mqtt.ErrIncomplete):
			return took, false, err
		case took == len(buf):
			return took, false, nil
		default:
			c.growPartial(buf[took : took+1]) // the header comes a byte at a time
			took++
		}
	}
	n := min(p.need-len(p.buf), len(buf)-took)
	c.growPartial(buf[took : took+n])
	took += n
	return took, len(p.buf) == p.need, nil
}

// growPartial appends b, growing the buffer by at least a quarter so a
// packet trickling in costs linear copying, never past the packet's size.
// Loop only.
func (c *conn) growPartial(b []byte) {
	p := c.part
	if len(p.buf)+len(b) > cap(p.buf) {
		size := max(len(p.buf)+len(b), cap(p.buf)+cap(p.buf)/4, 256)
		if p.need > 0 {
			size = min(size, p.need)
		}
		grown := make([]byte, len(p.buf), size)
		copy(grown, p.buf)
		total := c.srv.partialBytes.Add(int64(size - cap(p.buf)))
		p.buf = grown
		if total > c.srv.opts.MaxPartialBytes {
			c.loop.shedPartials()
		}
	}
	p.buf = append(p.buf, b...)
}

// dropPartial forgets the partial packet. Loop only.
func (c *conn) dropPartial() {
	if c.part != nil {
		c.srv.partialBytes.Add(-int64(cap(c.part.buf)))
		c.part = nil
	}
}

// checkPartials closes the conns whose started packet is older than
// PacketTimeout and forgets those that finished theirs. Loop only.
func (l *loop) checkPartials(now int64) {
	timeout := int64(l.srv.opts.PacketTimeout.Seconds())
	keep := l.partials[:0]
	for _, c := range l.partials {
		switch {
		case c.part == nil || c.state == stateClosing:
			c.listedPartial = false
		case now-c.part.since >= timeout:
			c.listedPartial = false
			l.srv.stats.InputTimeouts.Add(1)
			l.srv.log.Debug("packet not finished in time", "client", c.clientID, "remote", c.gc.RemoteAddr(), "held", len(c.part.buf))
			c.closeWith(errPacketTimeout)
		default:
			keep = append(keep, c)
		}
	}
	clear(l.partials[len(keep):])
	l.partials = keep
	if l.srv.partialBytes.Load() > l.srv.opts.MaxPartialBytes {
		l.shedPartials()
	}
}

// shedPartials closes this loop's conns holding the most unfinished input
// until all conns together hold no more than MaxPartialBytes (or this loop
// has none left to close). Loop only.
func (l *loop) shedPartials() {
	held := make([]*conn, 0, len(l.partials))
	for _, c := range l.partials {
		if c.part != nil && c.state != stateClosing {
			held = append(held, c)
		}
	}
	slices.SortFunc(held, func(a, b *conn) int { return cap(b.part.buf) - cap(a.part.buf) })
	for _, c := range held {
		if l.srv.partialBytes.Load() <= l.srv.opts.MaxPartialBytes {
			return
		}
		l.srv.stats.InputShed.Add(1)
		l.srv.log.Debug("input budget exceeded: closing", "client", c.clientID, "remote", c.gc.RemoteAddr(), "held", len(c.part.buf))
		c.closeWith(errInputBudget)
	}
}
