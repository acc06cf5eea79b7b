package broker

import "slices"

// Unfinished inbound frames.
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

// startPartial keeps rest, the start of a packet, in a partial. Loop only.
func (t *transport) startPartial(rest []byte) error {
	p := &partial{since: t.loop.srv.now()}
	t.part = p
	if !t.has(fListedPartial) {
		t.set(fListedPartial, true)
		t.loop.partials = append(t.loop.partials, t)
	}
	_, _, err := t.fillPartial(rest)
	return err
}

// fillPartial appends to the partial what the packet still needs from buf.
// It returns how many bytes it took and whether the packet is now whole.
// Loop only.
func (t *transport) fillPartial(buf []byte) (took int, whole bool, err error) {
	p := t.part
	for p.need == 0 {
		n, err := t.ep.frameLen(p.buf)
		switch {
		case err == nil:
			p.need = n
		case err != errIncomplete:
			return took, false, err
		case took == len(buf):
			return took, false, nil
		default:
			t.growPartial(buf[took : took+1]) // the header comes a byte at a time
			took++
		}
	}
	n := min(p.need-len(p.buf), len(buf)-took)
	t.growPartial(buf[took : took+n])
	took += n
	return took, len(p.buf) == p.need, nil
}

// growPartial appends b, growing the buffer by at least a quarter so a
// packet trickling in costs linear copying, never past the packet's size.
// Loop only.
func (t *transport) growPartial(b []byte) {
	p := t.part
	if len(p.buf)+len(b) > cap(p.buf) {
		size := max(len(p.buf)+len(b), cap(p.buf)+cap(p.buf)/4, 256)
		if p.need > 0 {
			size = min(size, p.need)
		}
		grown := make([]byte, len(p.buf), size)
		copy(grown, p.buf)
		total := t.loop.srv.partialBytes.Add(int64(size - cap(p.buf)))
		p.buf = grown
		if total > t.loop.srv.opts.MaxPartialBytes {
			t.loop.shedPartials()
		}
	}
	p.buf = append(p.buf, b...)
}

// dropPartial forgets the partial packet. Loop only.
func (t *transport) dropPartial() {
	if t.part != nil {
		t.loop.srv.partialBytes.Add(-int64(cap(t.part.buf)))
		t.part = nil
	}
}

// checkPartials closes the conns whose started packet is older than
// PacketTimeout and forgets those that finished theirs. Loop only.
func (l *loop) checkPartials(now int64) {
	timeout := int64(l.srv.opts.PacketTimeout.Seconds())
	keep := l.partials[:0]
	for _, t := range l.partials {
		switch {
		case t.part == nil || t.state == stateClosing:
			t.set(fListedPartial, false)
		case now-t.part.since > timeout: // since is a whole second, up to one before the frame began
			t.set(fListedPartial, false)
			l.srv.stats.InputTimeouts.Add(1)
			t.close(reasonPacketTimeout, nil)
		default:
			keep = append(keep, t)
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
	held := make([]*transport, 0, len(l.partials))
	for _, t := range l.partials {
		if t.part != nil && t.state != stateClosing {
			held = append(held, t)
		}
	}
	slices.SortFunc(held, func(a, b *transport) int { return cap(b.part.buf) - cap(a.part.buf) })
	for _, t := range held {
		if l.srv.partialBytes.Load() <= l.srv.opts.MaxPartialBytes {
			return
		}
		l.srv.stats.InputShed.Add(1)
		t.close(reasonInputBudget, nil)
	}
}
