package cluster

import (
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// tcpProxy is an in-test TCP proxy for peer links: it can cut every
// connection, refuse new ones, stall the client->server direction (the
// server "stops reading") and drop the server->client bytes (acks lost).
type tcpProxy struct {
	ln       net.Listener
	target   atomic.Value // string
	refuse   atomic.Bool
	pause    atomic.Bool // stop copying client -> server
	drop     atomic.Bool // discard server -> client
	mu       sync.Mutex
	conns    map[net.Conn]struct{}
	wg       sync.WaitGroup
	accepted atomic.Int64
}

func newProxy(t testing.TB) *tcpProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &tcpProxy{ln: ln, conns: map[net.Conn]struct{}{}}
	p.target.Store("")
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

func (p *tcpProxy) addr() string { return p.ln.Addr().String() }

func (p *tcpProxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		target := p.target.Load().(string)
		if p.refuse.Load() || target == "" {
			c.Close()
			continue
		}
		s, err := net.Dial("tcp", target)
		if err != nil {
			c.Close()
			continue
		}
		p.accepted.Add(1)
		p.mu.Lock()
		p.conns[c], p.conns[s] = struct{}{}, struct{}{}
		p.mu.Unlock()
		p.wg.Add(2)
		go p.pipe(s, c, &p.pause, nil)
		go p.pipe(c, s, nil, &p.drop)
	}
}

// pipe copies src to dst, stalling while *stall and discarding while
// *discard.
func (p *tcpProxy) pipe(dst, src net.Conn, stall, discard *atomic.Bool) {
	defer p.wg.Done()
	defer dst.Close()
	defer src.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		// Bytes read while stalled are held, not passed on.
		for stall != nil && stall.Load() {
			time.Sleep(2 * time.Millisecond)
			if p.isClosed(src) {
				return
			}
		}
		if n > 0 && (discard == nil || !discard.Load()) {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (p *tcpProxy) isClosed(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	_, ok := p.conns[c]
	return !ok
}

// cut closes every proxied connection.
func (p *tcpProxy) cut() {
	p.mu.Lock()
	for c := range p.conns {
		c.Close()
		delete(p.conns, c)
	}
	p.mu.Unlock()
}

func (p *tcpProxy) close() {
	p.ln.Close()
	p.cut()
	p.wg.Wait()
}

// linkPair starts nodes "a" (the dialer) and "b", whose peer link goes
// through a proxy.
func linkPair(t testing.TB, mod func(*Options)) (a, b *node, p *tcpProxy) {
	p = newProxy(t)
	b = startNode(t, "b", func(o *Options) {
		o.PeerAdvertiseAddr = p.addr()
		if mod != nil {
			mod(o)
		}
	})
	p.target.Store(b.peerLn.Addr().String())
	a = startNode(t, "a", func(o *Options) {
		o.Join = []string{b.GossipAddr()}
		if mod != nil {
			mod(o)
		}
	})
	waitConverged(t, []*node{a, b}, 10*time.Second)
	waitFor(t, 5*time.Second, "link up", func() bool { return linkUp(a, "b") && linkUp(b, "a") })
	return a, b, p
}

func linkUp(n *node, peer string) bool {
	for _, l := range n.Links() {
		if l.Peer == peer {
			return l.Connected
		}
	}
	return false
}

func linkStats(n *node, peer string) LinkStats {
	for _, l := range n.Links() {
		if l.Peer == peer {
			return l
		}
	}
	return LinkStats{}
}
