package cluster

import (
	"syscall"
	"time"
	"unsafe"
)

// Direct writes. A publish that finds its link idle (nothing
// queued, nothing being written, no ack due, and nothing written for
// directIdle) is written by Forward's
// caller itself, with one non-blocking write: no wake-up of the link's
// writer goroutine between the publisher's event loop and the socket,
// which on a 2-core machine was tens of µs of the cross-node latency
// (TestClusterMeasureThroughput, pairs QoS 0). Whatever the socket does
// not take at once stays queued for the writer, which is woken; so the
// caller never blocks, and frames keep their order (the writer waits for
// a direct write to end: link.writing). Only after directIdle without a
// write: a busy link is left to the writer, whose batches cost one write
// for many frames (a direct write per message cost 3x the CPU per
// forwarded message in BenchmarkClusterForwardQoS0). A QoS 1/2 frame
// too: cross-node pairs QoS 1 p50 went from 467–1188 µs (median ~970) to
// 472–1005 µs (median ~750) in interleaved runs of
// TestClusterMeasureThroughput.
const directIdle = 50 * time.Microsecond

// clockStart is the origin of link.lastWrite (monotonic).
var clockStart = time.Now()

func monoNow() int64 { return int64(time.Since(clockStart)) }

// rawConn is pc's socket for non-blocking writes, or nil (a connection
// that is not a plain TCP socket is always written by the writer).
func rawConn(pc *peerConn) syscall.RawConn {
	sc, ok := pc.Conn.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	return rc
}

// canWriteDirect: the frame just queued is alone and the link idle.
// REQUIRES: mu held.
func (l *link) canWriteDirect() bool {
	return len(l.queue) == 1 && l.conn != nil && l.conn.rc != nil && !l.writing && !l.ackDue &&
		monoNow()-l.lastWrite >= int64(directIdle)
}

// directWrite is a peerConn's non-blocking write, a method value made
// once per connection (a closure per write would allocate).
type directWrite struct {
	buf []byte
	n   int
}

func (d *directWrite) write(fd uintptr) bool {
	m, err := syscall.Write(int(fd), d.buf)
	d.n = 0
	if err == nil && m > 0 {
		d.n = m
	}
	return true // never wait for the socket: the writer does
}

// writeDirect writes the queue's only frame on the caller's goroutine.
// REQUIRES: mu held, canWriteDirect; unlocks mu.
func (l *link) writeDirect() {
	pc, f := l.conn, l.queue[0]
	if f.seq != 0 {
		// A QoS 1/2 frame is unacknowledged from before its write (the
		// peer's ack may come before this goroutine locks mu again); what
		// the socket does not take is queued as a rest for this
		// connection only (a new one resends the frame from unacked).
		l.unacked = append(l.unacked, f)
		f.seq, f.size, f.conn = 0, 0, pc
		l.queue[0] = f
		l.frames++ // the rest's, until written
	}
	l.writing = true
	l.mu.Unlock()
	pc.dw.buf, pc.dw.n = f.enc, 0
	_ = pc.rc.Write(pc.dwFn) // (the fd's write lock only: it does not wait)
	n := pc.dw.n
	pc.dw.buf = nil
	l.mu.Lock()
	l.writing = false
	l.lastWrite = monoNow()
	// Our frame: first in the queue, unless a reconnect put resends in
	// front of it or stop cleared the queue meanwhile.
	i := 0
	for i < len(l.queue) && unsafe.SliceData(l.queue[i].enc) != unsafe.SliceData(f.enc) {
		i++
	}
	if i < len(l.queue) && n > 0 {
		if n == len(f.enc) {
			l.bytes -= f.size
			l.frames--
			l.queue = append(l.queue[:i], l.queue[i+1:]...)
			if len(l.queue) == 0 {
				l.arena = l.arena[:0] // it held only frames written since: reuse it
			}
		} else {
			q := &l.queue[i]
			q.enc, q.conn = q.enc[n:], pc // the rest, on this connection or never
		}
	}
	more := len(l.queue) > 0 || l.ackDue
	l.mu.Unlock()
	if n > 0 {
		l.st.writes.Add(1)
		l.st.sentFrames.Add(1)
		l.st.sentBytes.Add(uint64(n))
	}
	if more {
		l.signal()
	}
}
