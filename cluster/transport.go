package cluster

import (
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
)

// gossipTransport wraps memberlist's NetTransport to count gossip bytes
// (Stats) and, in tests, to drop traffic to chosen addresses (partitions).
type gossipTransport struct {
	inner *memberlist.NetTransport
	// block, if set, reports whether traffic to addr is dropped.
	block func(addr string, stream bool) bool

	packets chan *memberlist.Packet
	streams chan net.Conn
	done    chan struct{}
	once    sync.Once
	wg      sync.WaitGroup

	udpIn, udpOut, tcpIn, tcpOut atomic.Uint64
	pktIn, pktOut                atomic.Uint64
}

var _ memberlist.NodeAwareTransport = (*gossipTransport)(nil)

var errBlocked = errors.New("cluster: gossip blocked (test partition)")

func newGossipTransport(inner *memberlist.NetTransport, block func(string, bool) bool) *gossipTransport {
	t := &gossipTransport{
		inner: inner, block: block,
		packets: make(chan *memberlist.Packet),
		streams: make(chan net.Conn),
		done:    make(chan struct{}),
	}
	t.wg.Add(2)
	go t.pumpPackets()
	go t.pumpStreams()
	return t
}

func (t *gossipTransport) pumpPackets() {
	defer t.wg.Done()
	in := t.inner.PacketCh()
	for {
		select {
		case p := <-in:
			t.udpIn.Add(uint64(len(p.Buf)))
			t.pktIn.Add(1)
			select {
			case t.packets <- p:
			case <-t.done:
				return
			}
		case <-t.done:
			return
		}
	}
}

func (t *gossipTransport) pumpStreams() {
	defer t.wg.Done()
	in := t.inner.StreamCh()
	for {
		select {
		case c := <-in:
			select {
			case t.streams <- &countingConn{Conn: c, in: &t.tcpIn, out: &t.tcpOut}:
			case <-t.done:
				c.Close()
				return
			}
		case <-t.done:
			return
		}
	}
}

func (t *gossipTransport) FinalAdvertiseAddr(ip string, port int) (net.IP, int, error) {
	return t.inner.FinalAdvertiseAddr(ip, port)
}

func (t *gossipTransport) WriteTo(b []byte, addr string) (time.Time, error) {
	return t.WriteToAddress(b, memberlist.Address{Addr: addr})
}

func (t *gossipTransport) WriteToAddress(b []byte, a memberlist.Address) (time.Time, error) {
	if t.block != nil && t.block(a.Addr, false) {
		return time.Now(), nil // lost on the wire
	}
	t.udpOut.Add(uint64(len(b)))
	t.pktOut.Add(1)
	return t.inner.WriteToAddress(b, a)
}

func (t *gossipTransport) PacketCh() <-chan *memberlist.Packet { return t.packets }

func (t *gossipTransport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	return t.DialAddressTimeout(memberlist.Address{Addr: addr}, timeout)
}

func (t *gossipTransport) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	if t.block != nil && t.block(a.Addr, true) {
		return nil, errBlocked
	}
	c, err := t.inner.DialAddressTimeout(a, timeout)
	if err != nil {
		return nil, err
	}
	return &countingConn{Conn: c, in: &t.tcpIn, out: &t.tcpOut}, nil
}

func (t *gossipTransport) StreamCh() <-chan net.Conn { return t.streams }

func (t *gossipTransport) Shutdown() error {
	err := t.inner.Shutdown()
	t.once.Do(func() { close(t.done) })
	t.wg.Wait()
	return err
}

// countingConn counts a gossip stream's bytes.
type countingConn struct {
	net.Conn
	in, out *atomic.Uint64
}

func (c *countingConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.in.Add(uint64(n))
	return n, err
}

func (c *countingConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	c.out.Add(uint64(n))
	return n, err
}
