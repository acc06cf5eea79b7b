package broker

import "golang.org/x/sys/unix"

// How the broker closes a connection it decided to end.
//
// Closing a socket that still has unread input makes the kernel answer
// with a reset and drop whatever output it had not sent yet, so a client
// that keeps sending (or is slow to read) may never see the DISCONNECT or
// CONNACK that says why it was closed. Instead the conn stops reading
// packets, flushes, shuts its write side once gnet has handed everything to
// the kernel (the client reads the reason, then end of stream), reads and
// drops input, and closes when the client closes its side or after
// lingerSeconds, whichever is first.

// lingerSeconds bounds how long a closing conn drains input.
const lingerSeconds = 2

// linger starts closing c: no more packets are applied, the session is let
// go now (a will goes out as for any abnormal end), and the socket closes
// as described above. Loop only.
func (c *conn) linger() {
	c.state = stateClosing
	c.dropPartial()
	if c.lingerUntil != 0 {
		return
	}
	c.lingerUntil = c.srv.now() + lingerSeconds
	c.flush()
	c.release()
	c.shutWrite()
	c.loop.closing = append(c.loop.closing, c)
}

// shutWrite half-closes the socket once gnet holds no more output for it.
// Loop only.
func (c *conn) shutWrite() {
	if c.shut || c.gc.OutboundBuffered() > 0 {
		return
	}
	c.shut = true
	_ = unix.Shutdown(c.gc.Fd(), unix.SHUT_WR)
}

// checkClosing half-closes the closing conns whose output drained and
// closes those whose time is up. Loop only.
func (l *loop) checkClosing(now int64) {
	keep := l.closing[:0]
	for _, c := range l.closing {
		c.mu.Lock()
		gone := c.closed
		c.mu.Unlock()
		switch {
		case gone:
		case now >= c.lingerUntil:
			_ = c.gc.Close()
		default:
			c.shutWrite()
			keep = append(keep, c)
		}
	}
	clear(l.closing[len(keep):])
	l.closing = keep
}
