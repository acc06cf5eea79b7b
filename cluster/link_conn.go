package cluster

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"
)

// Connection setup (both directions) and the reading half of a link.
//
//	dialer D                                acceptor A
//	hello    {v, cluster, D, incD, nD}  ->
//	                                    <-  helloAck {v, cluster, A, incA, nA,
//	                                                  HMAC(k, "acceptor"|nD|nA|A|D), deliveredFromD}
//	auth     {HMAC(k, "dialer"|nA|nD|D|A),
//	          deliveredFromA}           ->
//	frames ...                          <-> frames ...
//
// k is the link key derived from the cluster secret. Each side checks the
// other's MAC over both fresh nonces before it trusts a single frame, so a
// node without the secret is refused either way, and a recorded handshake
// cannot be replayed. The frames after it are authenticated only by the
// TCP connection: they are not encrypted or MAC'd (docs/cluster.md).
const (
	roleAcceptor = "acceptor"
	roleDialer   = "dialer"
	nonceLen     = 16
	handshakeMax = 4096
	readChunk    = 64 << 10
)

func newNonce() []byte {
	b := make([]byte, nonceLen)
	_, _ = rand.Read(b)
	return b
}

// readFrame reads one frame during the handshake; leftover is what was
// read past it.
func readFrame(conn net.Conn, dec *frameDecoder, buf []byte) (f frame, leftover []byte, err error) {
	n := 0
	for {
		if n > 0 {
			f, k, err := dec.Decode(buf[:n])
			if err == nil {
				// Handshake frames alias buf: copy what is kept.
				f.nonce, f.mac = append([]byte(nil), f.nonce...), append([]byte(nil), f.mac...)
				return f, append([]byte(nil), buf[k:n]...), nil
			}
			if !errors.Is(err, ErrIncomplete) {
				return f, nil, err
			}
		}
		if n == len(buf) {
			return f, nil, fmt.Errorf("%w: handshake frame too large", ErrFrameTooLarge)
		}
		m, err := conn.Read(buf[n:])
		n += m
		if err != nil {
			return f, nil, err
		}
	}
}

// dial connects to the peer and runs the dialer's handshake.
func (l *link) dial() (*peerConn, error) {
	c := l.c
	l.mu.Lock()
	addr := l.addr
	l.mu.Unlock()
	if addr == "" {
		return nil, fmt.Errorf("%w: %s advertises no peer address", ErrUnknownPeer, l.peer)
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.opts.Link.HandshakeTimeout)
	defer cancel()
	// Stopping the link interrupts the dial and the handshake.
	var mu sync.Mutex
	var conn net.Conn
	finished := make(chan struct{})
	defer close(finished)
	go func() {
		select {
		case <-l.done:
			cancel()
			mu.Lock()
			if conn != nil {
				conn.Close()
			}
			mu.Unlock()
		case <-finished:
		}
	}()
	var d net.Dialer
	cn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	mu.Lock()
	conn = cn
	mu.Unlock()
	pc, err := c.handshakeDial(cn, l)
	if err != nil {
		cn.Close()
		return nil, err
	}
	select {
	case <-l.done:
		cn.Close()
		return nil, ErrPeerGone
	default:
	}
	return pc, nil
}

func (c *Cluster) handshakeDial(conn net.Conn, l *link) (*peerConn, error) {
	conn.SetDeadline(time.Now().Add(c.opts.Link.HandshakeTimeout))
	enc := newFrameEncoder(c.self)
	nd := newNonce()
	if _, err := conn.Write(enc.append(nil, &frame{typ: frameHello, version: linkVersion, cluster: c.opts.ClusterName,
		node: c.self, incarnation: c.incarnation, nonce: nd})); err != nil {
		return nil, err
	}
	ack, _, err := readFrame(conn, newFrameDecoder(handshakeMax), make([]byte, handshakeMax))
	if err != nil {
		return nil, err
	}
	switch {
	case ack.typ != frameHelloAck:
		err = fmt.Errorf("%w: expected hello-ack, got frame type %d", ErrAuth, ack.typ)
	case ack.version != linkVersion:
		err = fmt.Errorf("%w: peer speaks link version %d, we %d", ErrAuth, ack.version, linkVersion)
	case ack.cluster != c.opts.ClusterName:
		err = fmt.Errorf("%w: peer is in cluster %q", ErrAuth, ack.cluster)
	case ack.node != l.peer:
		err = fmt.Errorf("%w: expected node %q, reached %q", ErrAuth, l.peer, ack.node)
	case !hmac.Equal(ack.mac, linkMAC(c.linkKey, roleAcceptor, ack.nonce, nd, ack.node, c.self)):
		err = fmt.Errorf("%w: peer %s does not know the cluster secret", ErrAuth, ack.node)
	}
	if err != nil {
		l.st.authFailed.Add(1)
		c.authFailed.Add(1)
		return nil, err
	}
	if _, err := conn.Write(enc.append(nil, &frame{typ: frameAuth,
		mac:       linkMAC(c.linkKey, roleDialer, nd, ack.nonce, c.self, l.peer),
		delivered: l.deliveredFor(ack.incarnation)})); err != nil {
		return nil, err
	}
	conn.SetDeadline(time.Time{})
	return &peerConn{Conn: conn, peerInc: ack.incarnation, peerDelivered: ack.delivered, dead: make(chan struct{})}, nil
}

// deliveredFor is the last seq the delegate is done with, of incarnation
// inc of the peer.
func (l *link) deliveredFor(inc uint64) uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	if inc != l.recvInc {
		return 0
	}
	return l.delivered
}

// acceptLoop accepts peer-link connections until the listener closes.
func (c *Cluster) acceptLoop() {
	defer c.wg.Done()
	for {
		conn, err := c.peerLn.Accept()
		if err != nil {
			if c.closed.Load() || errors.Is(err, net.ErrClosed) {
				return
			}
			c.log.Warn("peer link accept", "err", err)
			select {
			case <-time.After(50 * time.Millisecond):
			case <-c.stop:
				return
			}
			continue
		}
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			done := make(chan struct{})
			defer close(done)
			go func() { // Close interrupts a handshake in progress
				select {
				case <-c.stop:
					conn.Close()
				case <-done:
				}
			}()
			if err := c.handshakeAccept(conn); err != nil {
				conn.Close()
				c.log.Debug("peer link refused", "remote", conn.RemoteAddr().String(), "err", err)
			}
		}()
	}
}

func (c *Cluster) handshakeAccept(conn net.Conn) error {
	conn.SetDeadline(time.Now().Add(c.opts.Link.HandshakeTimeout))
	dec := newFrameDecoder(handshakeMax)
	buf := make([]byte, handshakeMax)
	h, _, err := readFrame(conn, dec, buf)
	if err != nil {
		return err
	}
	fail := func(err error) error {
		c.authFailed.Add(1)
		return err
	}
	switch {
	case h.typ != frameHello:
		return fail(fmt.Errorf("%w: expected hello, got frame type %d", ErrAuth, h.typ))
	case h.version != linkVersion:
		return fail(fmt.Errorf("%w: peer speaks link version %d, we %d", ErrAuth, h.version, linkVersion))
	case h.cluster != c.opts.ClusterName:
		return fail(fmt.Errorf("%w: peer is in cluster %q", ErrAuth, h.cluster))
	case validName(h.node) != nil || h.node == c.self:
		return fail(fmt.Errorf("%w: bad node name %q", ErrAuth, h.node))
	case h.node > c.self:
		// The lower name dials: a peer that dials the other way is
		// misconfigured (or a stranger); we dial it ourselves.
		return fail(fmt.Errorf("%w: %s dialed but %s is the dialer of this pair", ErrAuth, h.node, c.self))
	case len(h.nonce) != nonceLen:
		return fail(fmt.Errorf("%w: nonce", ErrAuth))
	}
	l := c.links.getOrCreate(h.node)
	if l == nil {
		return ErrClosed
	}
	na := newNonce()
	enc := newFrameEncoder(c.self)
	if _, err := conn.Write(enc.append(nil, &frame{typ: frameHelloAck, version: linkVersion, cluster: c.opts.ClusterName,
		node: c.self, incarnation: c.incarnation, nonce: na,
		mac:       linkMAC(c.linkKey, roleAcceptor, na, h.nonce, c.self, h.node),
		delivered: l.deliveredFor(h.incarnation)})); err != nil {
		return err
	}
	a, leftover, err := readFrame(conn, dec, buf)
	if err != nil {
		return err
	}
	if a.typ != frameAuth || !hmac.Equal(a.mac, linkMAC(c.linkKey, roleDialer, h.nonce, na, h.node, c.self)) {
		l.st.authFailed.Add(1)
		return fail(fmt.Errorf("%w: %s does not know the cluster secret", ErrAuth, h.node))
	}
	conn.SetDeadline(time.Time{})
	pc := &peerConn{Conn: conn, peerInc: h.incarnation, peerDelivered: a.delivered, pending: leftover, dead: make(chan struct{})}
	select {
	case l.attach <- pc:
		return nil
	case <-l.done:
		return ErrPeerGone
	}
}

// read is a connection's reader goroutine.
func (l *link) read(pc *peerConn) {
	defer l.c.wg.Done()
	defer close(pc.dead)
	o := &l.c.opts.Link
	dec := newFrameDecoder(o.MaxFrameSize)
	dec.reuse = true
	buf := make([]byte, max(readChunk, len(pc.pending)))
	n := copy(buf, pc.pending)
	pc.pending = nil
	bt, _ := l.c.opts.Publish.(PublishBatcher)
	inBatch := 0 // publishes handed over in the open batch
	endBatch := func() {
		if inBatch > 0 {
			inBatch = 0
			bt.PublishBatchEnd(l.peer)
		}
	}
	defer endBatch()
	for {
		off := 0
		for off < n {
			f, k, err := dec.Decode(buf[off:n])
			if errors.Is(err, ErrIncomplete) {
				break
			}
			if err != nil {
				pc.err = err
				l.c.log.Warn("peer link: bad frame", "peer", l.peer, "err", err)
				pc.Close()
				return
			}
			off += k
			l.st.received.Add(1)
			l.st.receivedBytes.Add(uint64(k))
			if bt != nil {
				if f.typ != framePublish || inBatch == publishBatchMax {
					endBatch()
				}
				if f.typ == framePublish {
					if inBatch == 0 {
						bt.PublishBatchBegin(l.peer)
					}
					inBatch++
				}
			}
			if err := l.handle(&f); err != nil {
				pc.err = err
				pc.Close()
				return
			}
		}
		endBatch() // before waiting for more
		n = copy(buf, buf[off:n])
		if n == len(buf) { // one frame larger than the buffer (bounded by MaxFrameSize)
			nb := make([]byte, min(2*len(buf), o.MaxFrameSize+16))
			copy(nb, buf[:n])
			buf = nb
		} else if n == 0 && len(buf) > readChunk {
			buf = make([]byte, readChunk) // give a large frame's buffer back
		}
		pc.SetReadDeadline(time.Now().Add(3 * o.PingInterval))
		m, err := pc.Read(buf[n:])
		n += m
		if err != nil && m == 0 {
			pc.err = err
			return
		}
	}
}

// handle dispatches one frame received on the link.
func (l *link) handle(f *frame) error {
	c := l.c
	switch f.typ {
	case framePing:
	case framePublish:
		if f.seq != 0 {
			l.mu.Lock()
			if f.seq <= l.handed {
				l.ackDue = true
				l.mu.Unlock()
				l.st.duplicates.Add(1)
				l.signal()
				return nil
			}
			l.mu.Unlock()
		}
		if ad, ok := c.opts.Publish.(AsyncPublishDelegate); ok {
			var done func()
			if seq := f.seq; seq != 0 {
				l.mu.Lock()
				l.handed = seq
				l.pending = append(l.pending, asyncAck{seq: seq})
				inc := l.recvInc
				l.mu.Unlock()
				done = func() { l.completed(inc, seq) }
			}
			ad.HandlePublishAsync(l.peer, f.pub, done)
			return nil
		}
		if d := c.opts.Publish; d != nil {
			d.HandlePublish(l.peer, f.pub)
		}
		if f.seq != 0 {
			l.mu.Lock()
			l.handed, l.delivered = f.seq, f.seq
			l.ackDue = true
			l.mu.Unlock()
			l.signal()
		}
	case frameAck:
		l.mu.Lock()
		k := 0
		var ids []uint64
		for k < len(l.unacked) && l.unacked[k].seq <= f.seq {
			ids = append(ids, l.unacked[k].id)
			l.bytes -= l.unacked[k].size
			l.frames--
			k++
		}
		clear(l.unacked[:k])
		l.unacked = l.unacked[k:]
		l.mu.Unlock()
		if len(ids) > 0 {
			l.st.acked.Add(uint64(len(ids)))
			c.forwardDone(l.peer, ids, nil)
		}
	case frameRequest:
		if d := c.opts.Requests; d != nil {
			d.HandleRequest(l.peer, f.body, Reply{l: l, id: f.id})
		} else {
			_ = Reply{l: l, id: f.id}.Fail(errors.New("no request handler on this node"))
		}
	case frameResponse:
		l.mu.Lock()
		cl := l.calls[f.id]
		delete(l.calls, f.id)
		l.mu.Unlock()
		if cl != nil {
			cl.timer.Stop()
			if f.failed {
				cl.done(nil, &RemoteError{Msg: f.errMsg})
			} else {
				cl.done(f.body, nil)
			}
		}
	default:
		return fmt.Errorf("%w: frame type %d after the handshake", ErrMalformed, f.typ)
	}
	return nil
}
