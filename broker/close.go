package broker

import "golang.org/x/sys/unix"

// How the broker closes a connection it decided to end.
//
// Closing a socket that still has unread input makes the kernel answer
// with a reset and drop whatever output it had not sent yet, so a client
// that keeps sending (or is slow to read) may never see the DISCONNECT or
// CONNACK that says why it was closed. Instead the transport stops applying
// frames, lets the session go, flushes, shuts its write side once gnet has
// handed everything to the kernel (the client reads the reason, then end of
// stream), reads and drops input, and closes when the client closes its
// side or after lingerSeconds, whichever is first.

// lingerSeconds bounds how long a closing conn drains input.
const lingerSeconds = 2

// close ends the connection for r: the endpoint's goodbye (err is the
// protocol's code for a protocol error), then linger. Loop only.
func (t *transport) close(r closeReason, err error) {
	if t.state == stateClosing {
		return
	}
	t.closedBy = uint8(r) + 1 // for the disconnect log (limits.go)
	if r != reasonProtocolError {
		t.loop.srv.log.Debug("closing", "reason", r.String(), "remote", t.gc.RemoteAddr())
	}
	t.ep.goodbye(r, err)
	t.linger()
}

// linger starts closing as described above. Loop only.
func (t *transport) linger() {
	t.state = stateClosing
	t.dropPartial()
	if t.lingerUntil != 0 {
		return
	}
	t.lingerUntil = uint32(t.loop.srv.now() + lingerSeconds)
	t.flush()
	t.ep.release()
	t.shutWrite()
	t.loop.closing = append(t.loop.closing, t)
}

// shutWrite half-closes the socket once gnet holds no more output for it.
// Loop only.
func (t *transport) shutWrite() {
	if t.has(fShut) || t.gc.OutboundBuffered() > 0 {
		return
	}
	t.set(fShut, true)
	_ = unix.Shutdown(t.gc.Fd(), unix.SHUT_WR)
}

// checkClosing half-closes the closing conns whose output drained and
// closes those whose time is up. Loop only.
func (l *loop) checkClosing(now int64) {
	keep := l.closing[:0]
	for _, t := range l.closing {
		t.mu.Lock()
		gone := t.closed
		t.mu.Unlock()
		switch {
		case gone:
		case now >= int64(t.lingerUntil):
			_ = t.gc.Close()
		default:
			t.shutWrite()
			keep = append(keep, t)
		}
	}
	clear(l.closing[len(keep):])
	l.closing = keep
}
