package cluster

import (
	"bytes"
	"net"
	"testing"
	"time"
)

// discardConn is a net.Conn that takes every write.
type discardConn struct{ net.Conn }

func (discardConn) Write(p []byte) (int, error)      { return len(p), nil }
func (discardConn) SetWriteDeadline(time.Time) error { return nil }

// A busy link reuses its two encoding arenas however large a batch is,
// and lets them go once idle. Before, an arena past 1 MiB was dropped
// after its batch and regrown by doubling for the next: a seventh of a
// publishing node's CPU in a flat-out fan-in to another node.
func TestBusyLinkKeepsItsArenas(t *testing.T) {
	c := &Cluster{self: "a"}
	c.opts.Link.ensureDefaults()
	l := newLink(c, "b", "", 0, 0)
	w := writer{l: l, pc: &peerConn{Conn: discardConn{}}, enc: newFrameEncoder("a")}
	p := &Publish{Topic: "t/1", Payload: bytes.Repeat([]byte("p"), 100)}
	cycle := func() {
		for range 12000 { // ~1.5 MiB of frames per batch
			if err := l.enqueuePublish(p, p.size()); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.flush(); err != nil {
			t.Fatal(err)
		}
	}
	cycle()
	cycle() // both arenas grown
	if allocs := testing.AllocsPerRun(5, cycle); allocs > 0 {
		t.Fatalf("%.0f allocations per batch of a busy link, want 0", allocs)
	}
	if cap(w.arena) < 1<<20 {
		t.Fatalf("the writer's spare arena is %d bytes, want the batch's", cap(w.arena))
	}
	w.releaseIdle()
	if w.arena != nil || l.arena != nil {
		t.Fatalf("an idle link keeps arenas of %d and %d bytes", cap(w.arena), cap(l.arena))
	}
}
