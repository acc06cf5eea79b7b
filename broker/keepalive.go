package broker

// wheel is a timing wheel of one-second slots holding transports by the second
// their deadline falls due. It is lazy: activity does not move a conn; when
// its slot comes round, the conn's real deadline is checked and the conn is
// re-slotted if the deadline moved. One per loop, touched only on the loop,
// so keepalive costs no timer and no goroutine per connection.
type wheel struct {
	slots [wheelSlots][]*transport
	last  int64 // last second processed
}

const wheelSlots = 512

// add slots t to fall due at second at, moving it if it is in the wheel.
func (w *wheel) add(t *transport, at int64) {
	w.remove(t)
	if w.last == 0 {
		w.last = at - 1
	}
	if at <= w.last {
		at = w.last + 1
	}
	i := at % wheelSlots
	t.wslot, t.wpos = int32(i)+1, int32(len(w.slots[i]))
	w.slots[i] = append(w.slots[i], t)
}

// remove takes t out of the wheel, if it is in it, so that a closed conn
// is not kept alive until its slot comes round.
func (w *wheel) remove(t *transport) {
	if t.wslot == 0 {
		return
	}
	slot := &w.slots[t.wslot-1]
	last := len(*slot) - 1
	moved := (*slot)[last]
	(*slot)[t.wpos] = moved
	moved.wpos = t.wpos
	(*slot)[last] = nil
	*slot = (*slot)[:last]
	t.wslot = 0
}

// advance visits the conns of every slot from the last second processed up
// to now. visit re-adds those still alive.
func (w *wheel) advance(now int64, visit func(*transport)) {
	if w.last == 0 {
		w.last = now
		return
	}
	for t := w.last + 1; t <= now; t++ {
		w.last = t
		i := t % wheelSlots
		due := w.slots[i]
		if len(due) == 0 {
			continue
		}
		w.slots[i] = nil
		for _, t := range due {
			t.wslot = 0 // out of the wheel until visit adds it again
		}
		for _, t := range due {
			visit(t)
		}
		if cap(due) <= 1024 && w.slots[i] == nil {
			clear(due)
			w.slots[i] = due[:0]
		}
		if now-t >= wheelSlots {
			t = now - wheelSlots // a long stall: each slot once is enough
		}
	}
}
