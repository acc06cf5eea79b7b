package bench

import (
	"net"
	"sync"
	"sync/atomic"
)

// sock is the end of a connection, the part the MQTT and native clients
// share: the socket, the Handler told when it ends unasked, and why it
// ended.
type sock struct {
	conn    net.Conn
	h       Handler
	dead    chan struct{} // closed when the connection is finished
	deadErr error         // why; written once before dead is closed
	once    sync.Once
	closing atomic.Bool // Close or Abort was called: the end is not news to h
}

// Abort drops the connection at once (a reset, no goodbye).
func (s *sock) Abort() {
	s.closing.Store(true)
	if tc, ok := s.conn.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	s.die(net.ErrClosed)
}

// die ends the connection once; the first error is the one reported.
func (s *sock) die(err error) {
	s.once.Do(func() {
		s.deadErr = err
		s.conn.Close()
		close(s.dead)
		if !s.closing.Load() {
			s.h.OnClose(err)
		}
	})
}

// finished reports whether the connection has ended.
func (s *sock) finished() bool {
	select {
	case <-s.dead:
		return true
	default:
		return false
	}
}
