package cluster

import (
	"errors"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// A link is this node's side of the one peer-link TCP connection to a
// peer. The node with the lower name dials, the other accepts, so a pair
// never has two connections; a new connection in the same direction (the
// dialer reconnected) replaces the old one.
//
// Goroutines: run (one per link, for its lifetime) dials or waits for the
// acceptor's connection, and is the writer: it takes the whole queue at
// once, encodes it and writes it in batches of ~WriteBatchBytes. Each
// connection has a reader goroutine that decodes frames and calls the
// delegates. Callers (Forward, Request, Reply) only append to the queue
// under mu and wake the writer; they never block.
//
// QoS 1/2 publishes get a sequence number at Forward and stay in unacked
// after they are written, until the peer's cumulative ack covers them;
// after a reconnect they are written again first, and the receiver drops
// sequence numbers it already handed over. Queued and unacked frames count
// against QueueBytes/QueueFrames.
type link struct {
	c      *Cluster
	peer   string
	dialer bool

	wake   chan struct{}  // cap 1: there is something to write
	attach chan *peerConn // authenticated inbound connections
	done   chan struct{}  // closed by stop

	mu      sync.Mutex
	addr    string     // peer-link address to dial; REQUIRES: mu held
	queue   []outFrame // REQUIRES: mu held
	arena   []byte     // the encoded QoS 0 publishes in queue; REQUIRES: mu held
	unacked []outFrame // written QoS>0 publishes, by seq; REQUIRES: mu held
	bytes   int        // queue + unacked; REQUIRES: mu held
	frames  int        // queue + unacked; REQUIRES: mu held
	nextSeq uint64     // REQUIRES: mu held
	calls   map[uint64]*call
	nextID  uint64
	conn    *peerConn // current connection, nil while down; REQUIRES: mu held
	// writing: a goroutine (the writer, or a Forward writing directly,
	// direct.go) is writing to conn; no other may. REQUIRES: mu held.
	writing   bool
	lastWrite int64 // monoNow when the last write ended; REQUIRES: mu held
	closed    bool  // REQUIRES: mu held
	// Receive side: the peer's incarnation, the last seq of its QoS>0
	// publishes handed to the delegate (duplicates are those at or below
	// it), and the last one the delegate is done with (acknowledged, and
	// told in the hello): the same unless the delegate is asynchronous,
	// whose publishes in progress wait in pending, in seq order.
	recvInc   uint64     // REQUIRES: mu held
	handed    uint64     // REQUIRES: mu held
	delivered uint64     // REQUIRES: mu held
	pending   []asyncAck // REQUIRES: mu held
	ackDue    bool       // REQUIRES: mu held

	st linkCounters
}

// asyncAck is a publish handed to an AsyncPublishDelegate, done or not.
type asyncAck struct {
	seq  uint64
	done bool
}

// completed records that the asynchronous delegate is done with seq (of
// the peer's incarnation inc) and moves delivered past every done publish
// at the head. Any goroutine.
func (l *link) completed(inc, seq uint64) {
	l.mu.Lock()
	if inc != l.recvInc {
		l.mu.Unlock()
		return // the peer restarted since: its old seqs mean nothing now
	}
	for i := range l.pending {
		if l.pending[i].seq == seq {
			l.pending[i].done = true
			break
		}
	}
	k := 0
	for k < len(l.pending) && l.pending[k].done {
		l.delivered = l.pending[k].seq
		k++
	}
	if k > 0 {
		l.pending = append(l.pending[:0], l.pending[k:]...)
		l.ackDue = true
	}
	l.mu.Unlock()
	if k > 0 {
		l.signal()
	}
}

// outFrame is a queued frame. A publish is encoded when queued (enc:
// QoS 0 in the link's arena, QoS 1/2 in a slice of its own, kept until
// acknowledged), with id its Publish.ID; requests and responses are
// encoded by the writer.
type outFrame struct {
	typ    frameType
	seq    uint64
	id     uint64
	enc    []byte
	conn   *peerConn // set on the rest of a frame partly written: for this connection only
	body   []byte
	failed bool
	errMsg string
	size   int
}

type call struct {
	done  func([]byte, error)
	timer *time.Timer
	sent  bool
}

type linkCounters struct {
	forwarded, refused, sentFrames, sentBytes, writes     atomic.Uint64
	received, receivedBytes, duplicates, resent, acked    atomic.Uint64
	connects, disconnects, requests, timeouts, authFailed atomic.Uint64
}

// LinkStats are one peer link's counters (Stats.Links).
type LinkStats struct {
	Peer      string `json:"peer"`
	Connected bool   `json:"connected"`
	// Dialer: this node dials the link (its name is the lower).
	Dialer bool `json:"dialer"`
	// Queued frames wait to be written; Unacked QoS 1/2 publishes were
	// written and wait for the peer's ack; QueuedBytes counts both
	// against LinkOptions.QueueBytes.
	Queued      int `json:"queued"`
	Unacked     int `json:"unacked"`
	QueuedBytes int `json:"queued_bytes"`
	// Forwarded publishes accepted; Refused by back-pressure (ErrQueueFull).
	Forwarded uint64 `json:"forwarded"`
	Refused   uint64 `json:"refused"`
	// SentFrames in Writes write calls; SentBytes on the wire.
	SentFrames uint64 `json:"sent_frames"`
	SentBytes  uint64 `json:"sent_bytes"`
	Writes     uint64 `json:"writes"`
	// Received frames and bytes; Duplicates: resent publishes dropped.
	Received      uint64 `json:"received"`
	ReceivedBytes uint64 `json:"received_bytes"`
	Duplicates    uint64 `json:"duplicates"`
	// Resent: unacked publishes written again after a reconnect; Acked:
	// publishes the peer acknowledged.
	Resent uint64 `json:"resent"`
	Acked  uint64 `json:"acked"`
	// Connects and Disconnects of the TCP connection.
	Connects    uint64 `json:"connects"`
	Disconnects uint64 `json:"disconnects"`
	// Requests sent; Timeouts among them.
	Requests uint64 `json:"requests"`
	Timeouts uint64 `json:"timeouts"`
}

func newLink(c *Cluster, peer, addr string, recvInc, delivered uint64) *link {
	return &link{
		c: c, peer: peer, addr: addr, dialer: c.self < peer,
		wake:    make(chan struct{}, 1),
		attach:  make(chan *peerConn),
		done:    make(chan struct{}),
		calls:   make(map[uint64]*call),
		recvInc: recvInc, handed: delivered, delivered: delivered,
	}
}

func (l *link) signal() {
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// enqueue appends f under the queue bounds (unless control, which only
// fails on a stopped link).
func (l *link) enqueue(f outFrame, reliable, control bool) error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return ErrPeerGone
	}
	o := &l.c.opts.Link
	if !control && (l.bytes+f.size > o.QueueBytes || l.frames >= o.QueueFrames) {
		l.mu.Unlock()
		l.st.refused.Add(1)
		return ErrQueueFull
	}
	if reliable {
		l.nextSeq++
		f.seq = l.nextSeq
	}
	l.queue = append(l.queue, f)
	l.bytes += f.size
	l.frames++
	l.mu.Unlock()
	l.signal()
	return nil
}

// enqueuePublish encodes p into the queue (see outFrame), under the same
// bounds as enqueue.
func (l *link) enqueuePublish(p *Publish, size int) error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return ErrPeerGone
	}
	o := &l.c.opts.Link
	if l.bytes+size > o.QueueBytes || l.frames >= o.QueueFrames {
		l.mu.Unlock()
		l.st.refused.Add(1)
		return ErrQueueFull
	}
	f := outFrame{typ: framePublish, id: p.ID, size: size}
	if p.QoS > 0 {
		l.nextSeq++
		f.seq = l.nextSeq
		f.enc = appendPublishFrame(make([]byte, 0, size+24), f.seq, p, l.c.self)
	} else {
		start := len(l.arena)
		l.arena = appendPublishFrame(l.arena, 0, p, l.c.self)
		f.enc = l.arena[start:len(l.arena):len(l.arena)]
	}
	// The writer takes the whole queue at once and flushes until it is
	// empty: only the first frame after that needs to wake it.
	wake := len(l.queue) == 0
	l.queue = append(l.queue, f)
	l.bytes += size
	l.frames++
	l.st.forwarded.Add(1)
	if wake && l.canWriteDirect() {
		l.writeDirect() // unlocks mu
		return nil
	}
	l.mu.Unlock()
	if wake {
		l.signal()
	}
	return nil
}

// stop ends the link: pending QoS>0 publishes and requests fail with err.
// Called from the event goroutine or Close; it does not wait for run.
func (l *link) stop(err error) {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	l.closed = true
	var ids []uint64
	for _, q := range [][]outFrame{l.unacked, l.queue} {
		for _, f := range q {
			if f.typ == framePublish && f.seq != 0 {
				ids = append(ids, f.id)
			}
		}
	}
	l.queue, l.arena, l.unacked, l.bytes, l.frames = nil, nil, nil, 0, 0
	calls := l.calls
	l.calls = make(map[uint64]*call)
	l.mu.Unlock()
	close(l.done)
	l.c.forwardDone(l.peer, ids, err)
	for _, cl := range calls {
		cl.timer.Stop()
		cl.done(nil, err)
	}
}

// run is the link's goroutine: connect (or wait for the peer to), write,
// repeat until stop.
func (l *link) run() {
	defer l.c.wg.Done()
	o := &l.c.opts.Link
	backoff := o.BackoffMin
	for {
		var pc *peerConn
		if l.dialer {
			var err error
			pc, err = l.dial()
			if err != nil {
				select {
				case <-l.done:
					return
				default:
				}
				l.c.log.Debug("peer link dial failed", "peer", l.peer, "err", err)
				t := time.NewTimer(jitter(backoff))
				select {
				case <-t.C:
				case <-l.done:
					t.Stop()
					return
				}
				backoff = min(2*backoff, o.BackoffMax)
				continue
			}
			backoff = o.BackoffMin
		} else {
			select {
			case pc = <-l.attach:
			case <-l.done:
				return
			}
		}
		for pc != nil {
			pc = l.serve(pc)
		}
		select {
		case <-l.done:
			return
		default:
		}
	}
}

// jitter is "full jitter" on d: uniform in [d/2, d).
func jitter(d time.Duration) time.Duration {
	if d <= 1 {
		return d
	}
	return d/2 + rand.N(d/2)
}

// serve runs one connection as its writer until it fails, the link stops,
// or a newer inbound connection replaces it (returned).
func (l *link) serve(pc *peerConn) (next *peerConn) {
	l.connected(pc)
	l.c.wg.Add(1)
	go l.read(pc)
	o := &l.c.opts.Link
	ping := time.NewTicker(o.PingInterval)
	defer ping.Stop()
	w := writer{l: l, pc: pc, enc: newFrameEncoder(l.c.self)}
	for {
		if err := w.flush(); err != nil {
			l.disconnected(pc, err)
			return nil
		}
		select {
		case <-l.wake:
		case <-ping.C:
			if time.Since(w.last) >= o.PingInterval/2 {
				w.releaseIdle()
				if err := w.ping(); err != nil {
					l.disconnected(pc, err)
					return nil
				}
			}
		case <-pc.dead:
			l.disconnected(pc, pc.err)
			return nil
		case nc := <-l.attach:
			l.disconnected(pc, errReplaced)
			return nc
		case <-l.done:
			pc.Close()
			<-pc.dead
			return nil
		}
	}
}

var errReplaced = errors.New("cluster: replaced by a newer connection")

// connected installs pc: what the peer already has of our reliable
// publishes is acknowledged, the rest is queued again in front, in order.
func (l *link) connected(pc *peerConn) {
	l.mu.Lock()
	var acked []uint64
	k := 0
	for k < len(l.unacked) && l.unacked[k].seq <= pc.peerDelivered {
		acked = append(acked, l.unacked[k].id)
		l.bytes -= l.unacked[k].size
		l.frames--
		k++
	}
	rest := l.unacked[k:]
	if len(rest) > 0 {
		q := make([]outFrame, 0, len(rest)+len(l.queue))
		q = append(q, rest...)
		l.queue = append(q, l.queue...)
		l.st.resent.Add(uint64(len(rest)))
	}
	l.unacked = nil
	if pc.peerInc != l.recvInc {
		l.recvInc, l.handed, l.delivered, l.pending = pc.peerInc, 0, 0, nil
	}
	pc.rc = rawConn(pc)
	pc.dwFn = pc.dw.write
	l.conn = pc
	l.ackDue = true // tell the peer where we are, even if it knows
	l.mu.Unlock()
	l.st.connects.Add(1)
	l.st.acked.Add(uint64(len(acked)))
	l.c.forwardDone(l.peer, acked, nil)
	l.c.log.Debug("peer link up", "peer", l.peer, "dialer", l.dialer, "resend", len(rest))
}

// disconnected closes pc and waits for its reader; requests written on it
// fail with ErrLinkDown (their fate is unknown).
func (l *link) disconnected(pc *peerConn, err error) {
	pc.Close()
	<-pc.dead
	l.mu.Lock()
	if l.conn == pc {
		l.conn = nil
	}
	var failed []*call
	for id, cl := range l.calls {
		if cl.sent {
			delete(l.calls, id)
			failed = append(failed, cl)
		}
	}
	l.mu.Unlock()
	for _, cl := range failed {
		cl.timer.Stop()
		cl.done(nil, ErrLinkDown)
	}
	l.st.disconnects.Add(1)
	l.c.log.Debug("peer link down", "peer", l.peer, "err", err)
}

// writer is the writing half of serve.
type writer struct {
	l     *link
	pc    *peerConn
	enc   *frameEncoder
	buf   []byte
	spare []outFrame
	arena []byte // the spare of link.arena
	last  time.Time
}

// flush writes everything queued (and a pending ack).
func (w *writer) flush() error {
	l := w.l
	for {
		l.mu.Lock()
		if l.writing || len(l.queue) == 0 && !l.ackDue {
			l.mu.Unlock() // (a direct writer wakes us when it is done)
			return nil
		}
		l.writing = true
		batch, arena := l.queue, l.arena
		l.queue, l.arena = w.spare[:0], w.arena[:0]
		ack, ackSeq := l.ackDue, l.delivered
		l.ackDue = false
		for i := range batch {
			f := &batch[i]
			switch {
			case f.typ == framePublish && f.seq != 0:
				l.unacked = append(l.unacked, *f)
			default:
				l.bytes -= f.size
				l.frames--
				if f.typ == frameRequest {
					if cl := l.calls[f.id]; cl != nil {
						cl.sent = true
					}
				}
			}
		}
		l.mu.Unlock()

		w.buf = w.buf[:0]
		if ack {
			w.buf = w.enc.append(w.buf, &frame{typ: frameAck, seq: ackSeq})
		}
		n := 0
		var fr frame
		for i := range batch {
			f := &batch[i]
			if f.conn != nil && f.conn != w.pc {
				continue // the rest of a frame begun on a connection since closed (QoS 0: lost with it)
			}
			if f.enc != nil {
				w.buf = append(w.buf, f.enc...)
			} else {
				fr = frame{typ: f.typ, seq: f.seq, id: f.id, body: f.body, failed: f.failed, errMsg: f.errMsg}
				w.buf = w.enc.append(w.buf, &fr)
			}
			n++
			if len(w.buf) >= l.c.opts.Link.WriteBatchBytes {
				if err := w.write(n); err != nil {
					l.doneWriting()
					return err
				}
				n = 0
			}
		}
		if len(w.buf) > 0 {
			if err := w.write(n); err != nil {
				l.doneWriting()
				return err
			}
		}
		l.doneWriting()
		clear(batch)
		w.spare = batch
		// No frame refers to arena any more: it is the link's next one.
		// A busy link keeps its two arenas, however large they grew (at
		// most the queue bound, twice), and the writer lets them go once
		// the link is idle (releaseIdle). Let go after every large batch,
		// a publishing node regrew them by doubling: ~300 MB/s of garbage
		// and a seventh of its CPU in growslice in a flat-out fan-in to
		// another node (TestClusterMeasureThroughput).
		w.arena = arena[:0]
	}
}

func (w *writer) write(frames int) error {
	w.pc.SetWriteDeadline(time.Now().Add(w.l.c.opts.Link.WriteTimeout))
	_, err := w.pc.Write(w.buf)
	if err != nil {
		return err
	}
	w.l.st.writes.Add(1)
	w.l.st.sentFrames.Add(uint64(frames))
	w.l.st.sentBytes.Add(uint64(len(w.buf)))
	w.last = time.Now()
	w.buf = w.buf[:0]
	return nil
}

// releaseIdle lets an idle link's arenas go (flush keeps them while it
// is busy).
func (w *writer) releaseIdle() {
	w.arena = nil
	l := w.l
	l.mu.Lock()
	if len(l.queue) == 0 && cap(l.arena) > 64<<10 {
		l.arena = nil
	}
	l.mu.Unlock()
}

func (w *writer) ping() error {
	l := w.l
	l.mu.Lock()
	busy := l.writing
	l.writing = true
	l.mu.Unlock()
	if busy {
		return nil // something is being written: no need for a ping
	}
	w.buf = w.enc.append(w.buf[:0], &frame{typ: framePing})
	err := w.write(1)
	l.doneWriting()
	return err
}

// doneWriting ends a writer's turn (writing).
func (l *link) doneWriting() {
	l.mu.Lock()
	l.writing = false
	l.lastWrite = monoNow()
	l.mu.Unlock()
}

// peerConn is one authenticated connection.
type peerConn struct {
	net.Conn
	peerInc       uint64          // the peer's incarnation
	peerDelivered uint64          // the last of our seqs the peer handed over
	pending       []byte          // bytes read past the handshake
	rc            syscall.RawConn // for direct writes (direct.go), or nil
	dw            directWrite     // REQUIRES: link.writing is ours
	dwFn          func(uintptr) bool
	dead          chan struct{}
	err           error // why the reader stopped; set before dead closes
}

func (l *link) stats() LinkStats {
	l.mu.Lock()
	s := LinkStats{
		Peer: l.peer, Connected: l.conn != nil, Dialer: l.dialer,
		Queued: len(l.queue), Unacked: len(l.unacked), QueuedBytes: l.bytes,
	}
	l.mu.Unlock()
	s.Forwarded = l.st.forwarded.Load()
	s.Refused = l.st.refused.Load()
	s.SentFrames = l.st.sentFrames.Load()
	s.SentBytes = l.st.sentBytes.Load()
	s.Writes = l.st.writes.Load()
	s.Received = l.st.received.Load()
	s.ReceivedBytes = l.st.receivedBytes.Load()
	s.Duplicates = l.st.duplicates.Load()
	s.Resent = l.st.resent.Load()
	s.Acked = l.st.acked.Load()
	s.Connects = l.st.connects.Load()
	s.Disconnects = l.st.disconnects.Load()
	s.Requests = l.st.requests.Load()
	s.Timeouts = l.st.timeouts.Load()
	return s
}

// idle reports whether nothing waits to be written or acknowledged.
func (l *link) idle() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.closed || (len(l.queue) == 0 && len(l.unacked) == 0)
}
