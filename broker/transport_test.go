package broker

import (
	"testing"

	"github.com/panjf2000/gnet/v2"
)

// writeConn is the part of a gnet.Conn that transport.flush uses. During
// each Write it runs during, as another loop delivering to the conn while
// its buffer is written out would.
type writeConn struct {
	gnet.Conn // nil: any other method panics
	during    func()
}

func (c *writeConn) Write(b []byte) (int, error) {
	if c.during != nil {
		c.during()
	}
	return len(b), nil
}

func (c *writeConn) OutboundBuffered() int { return 0 }

// A busy connection's outbound buffers are reused, flush after flush,
// whatever each flush writes: a small flush between large ones, and
// deliveries made while a flush writes, used to let a grown buffer go and
// grow a fresh one from the pool (a flat-out fan-in's subscriber made
// ~250 MB/s of garbage that way, and the collector's work cost more than
// the routing).
func TestBusyConnKeepsItsBuffers(t *testing.T) {
	srv, err := New(Options{Logger: startServerLogger(), SysInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	l := &loop{el: fakeEventLoop{}, srv: srv}
	c := &mqttConn{}
	c.loop, c.ep = l, c
	tr := &c.transport
	big, small := make([]byte, 100<<10), make([]byte, 1<<10)
	add := func(b []byte) {
		tr.mu.Lock()
		ob := tr.bufLocked()
		ob.b = append(ob.b, b...)
		tr.mu.Unlock()
	}
	wc := &writeConn{}
	tr.gc = wc
	meanwhile := func() { add(big) } // delivered while the first is written
	cycle := func() {
		add(big)
		wc.during = meanwhile
		tr.flush()
		wc.during = nil
		tr.flush()
		add(small)
		tr.flush()
	}
	for range 3 {
		cycle() // the two buffers grow once
	}
	if n := testing.AllocsPerRun(50, cycle); n > 0 {
		t.Errorf("%.1f allocations per cycle of flushes, want 0: a grown buffer was let go", n)
	}
	if tr.spare == nil || cap(tr.spare.b) < len(big) {
		t.Errorf("no grown spare buffer kept after the flushes")
	}
	l.releaseIdle() // flushed since the last tick: keeps them
	l.releaseIdle() // a tick without a flush: gives them back
	if tr.spare != nil || tr.out != nil {
		t.Errorf("an idle connection still holds buffers: out %v, spare %v", tr.out != nil, tr.spare != nil)
	}
}
