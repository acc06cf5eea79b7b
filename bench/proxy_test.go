package bench

import (
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// proxy is a TCP proxy in front of a broker for tests: it counts what
// passes and can stop reading from the clients for a while (a broker that
// stalls), without the test touching the broker's internals.
type proxy struct {
	addr    string
	paused  atomic.Bool  // stop copying client -> broker
	up      atomic.Int64 // bytes client -> broker
	subacks atomic.Int64 // broker -> client reads that start with a SUBACK
	wg      sync.WaitGroup
}

func startProxy(t *testing.T, target string) *proxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{addr: l.Addr().String()}
	var mu sync.Mutex
	var conns []net.Conn
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			b, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			mu.Lock()
			conns = append(conns, c, b)
			mu.Unlock()
			p.wg.Add(2)
			go func() {
				defer p.wg.Done()
				defer b.Close()
				p.copy(b, c, true)
			}()
			go func() {
				defer p.wg.Done()
				defer c.Close()
				p.copy(c, b, false)
			}()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		p.wg.Wait()
	})
	return p
}

func (p *proxy) copy(dst io.Writer, src io.Reader, up bool) {
	buf := make([]byte, 32<<10)
	for {
		for up && p.paused.Load() {
			time.Sleep(time.Millisecond) // the stall itself, not synchronisation
		}
		n, err := src.Read(buf)
		if n > 0 {
			if up {
				p.up.Add(int64(n))
			} else if buf[0] == pkSuback {
				p.subacks.Add(1)
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// waitFor polls cond until it holds or 10 s pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond) // polling with a deadline
	}
}
