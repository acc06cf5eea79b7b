package broker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/cimgo/cim/broker/wire"
	"github.com/cimgo/cim/client"
	"github.com/eclipse/paho.golang/paho"
)

// A native client whose node stops moves to a live node (the SDK tries its
// addresses in turn) and keeps getting messages; the node is dropped by
// the others at once (it left).
func TestClusterStoppedNodeClientsMove(t *testing.T) {
	nodes := startTestCluster(t, 3, nil)
	n1, n2, n3 := nodes[0], nodes[1], nodes[2]
	dan := register(t, n1.srv, "dan", "")
	register(t, n1.srv, "fay", "")
	for _, n := range nodes {
		waitFor15(t, "accounts on "+n.name, func() bool { _, ok := n.srv.LookupAccount(0, "fay"); return ok })
	}
	d := dialUserAt(t, "dan", n2.nativeAddr(), n1.nativeAddr())
	f := dialUserAt(t, "fay", n3.nativeAddr())
	waitInterest(t, nodes, "n2", inboxTopic(dan.ID))
	f.send(client.User(dan.ID), "before")
	d.expect("fay", "before")

	start := time.Now()
	n2.stop()
	waitFor15(t, "n2 dropped", func() bool {
		for _, n := range []*cnode{n1, n3} {
			if m, _ := n.cn().c.Member("n2"); m.Live() {
				return false
			}
		}
		return true
	})
	t.Logf("n2 dropped by the others %v after it stopped", time.Since(start).Round(time.Millisecond))
	waitFor15(t, "dan back, on n1", func() bool { return n1.srv.im.dir.isOnline(dan.ID) })
	// Presence is eventually consistent (it follows the login over the
	// peer link): until n3 has heard it, a send from there says 7000 (and
	// the message is delivered all the same).
	waitFor15(t, "dan online as n3 sees it", func() bool { return n3.srv.Online(dan.ID) })
	waitInterest(t, []*cnode{n1, n3}, "n1", inboxTopic(dan.ID))
	if ack := f.send(client.User(dan.ID), "after"); ack.Code != wire.CodeOK {
		t.Fatalf("to dan on n1: code %d", ack.Code)
	}
	d.expect("fay", "after")
}

// A native session taken over on another node: the old connection is told
// (and the SDK stops: taken over is final), the new one gets the session.
func TestClusterNativeTakeoverKicksOld(t *testing.T) {
	nodes := startTestCluster(t, 2, nil)
	register(t, nodes[0].srv, "gus", "")
	waitFor15(t, "gus on n2", func() bool { _, ok := nodes[1].srv.LookupAccount(0, "gus"); return ok })
	fatal := make(chan error, 1)
	ctx, cancel := contextWithTimeout()
	defer cancel()
	old, err := client.Dial(ctx, client.Options{UserName: "gus", Addrs: []string{nodes[0].nativeAddr()},
		OnFatal: func(err error) { fatal <- err }})
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	dialUserAt(t, "gus", nodes[1].nativeAddr())
	select {
	case err := <-fatal:
		if !errors.Is(err, wire.CodeTakenOver) {
			t.Fatalf("old client ended with %v, want taken over", err)
		}
	case <-time.After(e2eWait):
		t.Fatal("old connection not closed")
	}
}

// proxy is an in-test TCP proxy whose connections can be cut.
type proxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	down   bool
	conns  []net.Conn
}

func startProxy(t testing.TB, target string) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, target: target}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); p.cut(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.mu.Lock()
			if p.down {
				p.mu.Unlock()
				c.Close()
				continue
			}
			u, err := net.DialTimeout("tcp", p.target, time.Second)
			if err != nil {
				p.mu.Unlock()
				c.Close()
				continue
			}
			p.conns = append(p.conns, c, u)
			p.mu.Unlock()
			wg.Add(2)
			go func() { defer wg.Done(); _, _ = io.Copy(u, c); u.Close() }()
			go func() { defer wg.Done(); _, _ = io.Copy(c, u); c.Close() }()
		}
	}()
	return p
}

func (p *proxy) addr() string { return p.ln.Addr().String() }

// cut closes every connection and refuses new ones until heal.
func (p *proxy) cut() {
	p.mu.Lock()
	p.down = true
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
	p.mu.Unlock()
}

func (p *proxy) heal() {
	p.mu.Lock()
	p.down = false
	p.mu.Unlock()
}

// The peer link n1 -> n2 goes through a proxy that is cut for a second in
// the middle of a QoS 1 stream: every message arrives, in order, and every
// PUBACK waited for n2 (none was given for a message n2 did not have).
func TestClusterPeerLinkCutLosesNothing(t *testing.T) {
	peer2 := freePort(t)
	var px *proxy
	nodes := []*cnode{newCNode(t, "n1", nil, nil)}
	px = startProxy(t, peer2)
	nodes = append(nodes, newCNode(t, "n2", nil, func(_ *Options, co *ClusterOptions) {
		co.Cluster.PeerAddr = peer2
		co.Cluster.PeerAdvertiseAddr = px.addr()
	}, nodes[0].gossip()))
	waitClusterUp(t, nodes)
	sub := connectV5(t, nodes[1].srv, "ls")
	sub.subscribe("l/#", 1)
	waitInterest(t, nodes, "n2", "l/#")
	pub := connectV5(t, nodes[0].srv, "lp")
	const total = 400
	done := make(chan error, 1)
	go func() {
		for i := range total {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			pr, err := pub.cli.Publish(ctx, &paho.Publish{Topic: "l/x", Payload: []byte(fmt.Sprint(i)), QoS: 1})
			cancel()
			if err != nil {
				done <- fmt.Errorf("publish %d: %w", i, err)
				return
			}
			if pr.ReasonCode != 0 {
				done <- fmt.Errorf("publish %d: PUBACK %#x", i, pr.ReasonCode)
				return
			}
		}
		done <- nil
	}()
	for i := range total {
		sub.expect("l/x", fmt.Sprint(i))
		if i == total/4 {
			px.cut()
			time.Sleep(time.Second)
			px.heal()
		}
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	sub.none()
	l, _ := nodes[0].cn().linkUp("n2")
	if l.Connects < 2 {
		t.Fatalf("the link never reconnected (connects %d)", l.Connects)
	}
}

// Two nodes whose names give the same message-id node bits cannot both
// be members: the one with the greater name leaves and is told why.
func TestClusterNodeBitsCollide(t *testing.T) {
	n1 := newCNode(t, "n1", nil, nil)
	name := ""
	for i := 0; name == ""; i++ {
		if c := fmt.Sprintf("z%d", i); nodeBits(c) == nodeBits("n1") {
			name = c
		}
	}
	fatal := make(chan error, 1)
	newCNode(t, name, nil, func(_ *Options, co *ClusterOptions) {
		co.OnFatal = func(err error) { fatal <- err }
	}, n1.gossip())
	select {
	case err := <-fatal:
		if !errors.Is(err, ErrNodeBits) {
			t.Fatalf("fatal: %v, want ErrNodeBits", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the colliding node was not refused")
	}
	waitFor15(t, "n1 sees it leave", func() bool { m, ok := n1.cn().c.Member(name); return !ok || !m.Live() })
}
