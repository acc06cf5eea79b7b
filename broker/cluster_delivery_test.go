package broker

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/mochi-mqtt/server/v2/packets"
)

// A client on n1 that dies has its will published: a subscriber on n2
// gets it (a will is routed like any publish).
func TestClusterWillCrossesNodes(t *testing.T) {
	nodes := startTestCluster(t, 2, nil)
	s := connectV5(t, nodes[1].srv, "watcher")
	s.subscribe("wills/#", 1)
	waitInterest(t, nodes, "n2", "wills/#")
	d := connectV5(t, nodes[0].srv, "dies", will("wills/dies", "gone", 1, false, 0))
	d.drop()
	if m := s.expect("wills/dies", "gone"); m.QoS != 1 {
		t.Fatalf("will at QoS %d, want 1", m.QoS)
	}
}

// A QoS 1 or 2 publish on n1 whose only subscriber is on n2 is
// acknowledged (PUBACK, PUBREC) only once n2 has it: while the peer link
// is cut (n2 alive in the gossip) the acknowledgement waits; once the
// link is back it comes, and the message arrives.
func TestClusterAckWaitsForOwningNode(t *testing.T) {
	peer2 := freePort(t)
	nodes := []*cnode{newCNode(t, "n1", nil, nil)}
	px := startProxy(t, peer2)
	nodes = append(nodes, newCNode(t, "n2", nil, func(_ *Options, co *ClusterOptions) {
		co.Cluster.PeerAddr = peer2
		co.Cluster.PeerAdvertiseAddr = px.addr()
	}, nodes[0].gossip()))
	waitClusterUp(t, nodes)
	sub := connectV5(t, nodes[1].srv, "owner-sub", persistent(300))
	sub.subscribe("own/#", 2)
	waitInterest(t, nodes, "n2", "own/#")
	pub := connectV5(t, nodes[0].srv, "owner-pub")
	for _, qos := range []byte{1, 2} {
		px.cut()
		acked := make(chan error, 1)
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			_, err := pub.cli.Publish(ctx, &paho.Publish{Topic: "own/x", Payload: []byte(fmt.Sprint(qos)), QoS: qos})
			acked <- err
		}()
		select {
		case err := <-acked:
			t.Fatalf("QoS %d acknowledged while n2 cannot have it (err %v)", qos, err)
		case <-time.After(time.Second):
		}
		if m, ok := nodes[1].cn().c.Member("n1"); !ok || !m.Live() {
			t.Fatal("n1 not alive on n2: the test needs the gossip up")
		}
		px.heal()
		if err := <-acked; err != nil {
			t.Fatalf("QoS %d: %v", qos, err)
		}
		sub.expect("own/x", fmt.Sprint(qos))
	}
	sub.none()
}

// A persistent session with messages in flight (sent, not acknowledged)
// and queued behind them moves from n1 to n3 when its client reconnects
// there: session present; the in-flight ones first, again, then the
// queued ones, all in order, once. A QoS 2 one in flight keeps its packet
// id (the receiver knows it by that), one whose PUBREC came gets its
// PUBREL, under its id, and not the message again.
func TestClusterTakeoverInflightAndQueued(t *testing.T) {
	nodes := startTestCluster(t, 3, func(o *Options, _ *ClusterOptions) { o.MaxInflight = 5 })
	n1, n2, n3 := nodes[0], nodes[1], nodes[2]
	rc := dialRaw(t, n1.srv)
	rc.connect(4, "inflight", false, 0)
	rc.subscribe(1, 0, packets.Subscription{Filter: "f/#", Qos: 2})
	waitInterest(t, nodes, "n1", "f/#")
	pub := connectV5(t, n2.srv, "f-pub")
	// 0: QoS 2, PUBREC sent (its release is due); 1: QoS 2, unacknowledged;
	// 2..4: QoS 1, unacknowledged (the window is 5); 5..11 queued.
	const total = 12
	for i := range total {
		qos := byte(1)
		if i < 2 {
			qos = 2
		}
		if rc := pub.publish("f/x", fmt.Sprint(i), qos, false); rc != 0 {
			t.Fatalf("PUBACK %#x", rc)
		}
	}
	var inflight []*packets.Packet
	for i := range 5 {
		p := rc.expect(packets.Publish)
		if string(p.Payload) != fmt.Sprint(i) {
			t.Fatalf("got %q, want %d", p.Payload, i)
		}
		inflight = append(inflight, p)
	}
	rc.ack(packets.Pubrec, inflight[0].PacketID)
	for { // (the window may move on: more publishes, in order, before the PUBREL)
		p, err := rc.tryRead(e2eWait)
		if err != nil {
			t.Fatalf("waiting for PUBREL: %v", err)
		}
		if p.FixedHeader.Type == packets.Pubrel {
			if p.PacketID != inflight[0].PacketID {
				t.Fatalf("PUBREL %d, want %d", p.PacketID, inflight[0].PacketID)
			}
			break
		}
		if p.FixedHeader.Type != packets.Publish || string(p.Payload) != fmt.Sprint(len(inflight)) {
			t.Fatalf("got %s %q, want PUBREL or message %d", packets.PacketNames[p.FixedHeader.Type], p.Payload, len(inflight))
		}
		inflight = append(inflight, p)
	}
	rc.c.Close()
	waitOffline(t, n1.srv, "inflight")

	rc3 := dialRaw(t, n3.srv)
	if ack := rc3.connect(4, "inflight", false, 0); !ack.SessionPresent {
		t.Fatal("session present not set")
	}
	if rel := rc3.expect(packets.Pubrel); rel.PacketID != inflight[0].PacketID {
		t.Fatalf("PUBREL %d, want %d (the release of message 0)", rel.PacketID, inflight[0].PacketID)
	}
	rc3.ack(packets.Pubcomp, inflight[0].PacketID)
	next, released := 1, false
	for next < total || !released {
		p, err := rc3.tryRead(e2eWait)
		if err != nil {
			t.Fatalf("after message %d: %v", next-1, err)
		}
		switch {
		case p.FixedHeader.Type == packets.Pubrel && p.PacketID == inflight[1].PacketID && next > 1 && !released:
			released = true
			rc3.ack(packets.Pubcomp, p.PacketID)
		case p.FixedHeader.Type != packets.Publish || string(p.Payload) != fmt.Sprint(next):
			t.Fatalf("got %s %q (id %d), want message %d", packets.PacketNames[p.FixedHeader.Type], p.Payload, p.PacketID, next)
		case next == 1:
			if p.FixedHeader.Qos != 2 || p.PacketID != inflight[1].PacketID {
				t.Fatalf("QoS 2 in flight again: QoS %d id %d, want QoS 2 id %d", p.FixedHeader.Qos, p.PacketID, inflight[1].PacketID)
			}
			rc3.ack(packets.Pubrec, p.PacketID)
			next++
		default:
			rc3.ack(packets.Puback, p.PacketID)
			next++
		}
	}
	rc3.expectNone()
	if lookupSession(n1.srv, "inflight") != nil {
		t.Fatal("n1 still holds the session")
	}
}

// A client that moves to another node while QoS 1 (or 2) messages keep
// coming for it gets every one its publisher had acknowledged: on its old
// connection before that closed, or on the new one (some twice: each
// connection is a new paho client, which cannot know what the old one
// had). The publisher is on the old node, then on the new one, then on a
// third; the client moves back and forth.
func TestClusterTakeoverUnderLoad(t *testing.T) {
	for _, c := range []struct {
		pubOn int
		moves []int // the nodes the client moves to, in turn
		qos   byte
	}{{0, []int{1}, 1}, {1, []int{1}, 1}, {0, []int{1, 0, 1, 0}, 1}, {1, []int{1, 0}, 2}, {2, []int{1, 0, 1}, 1}} {
		t.Run(fmt.Sprintf("QoS %d, publisher on n%d, moves %v", c.qos, c.pubOn+1, c.moves), func(t *testing.T) {
			nodes := startTestCluster(t, max(2, c.pubOn+1), nil) // a third node publishes
			id := fmt.Sprintf("mover%d%d", c.pubOn, len(c.moves))
			conns := []*v5Client{connectV5(t, nodes[0].srv, id, persistent(600))}
			conns[0].subscribe("mv/#", c.qos)
			waitInterest(t, nodes, "n1", "mv/#")
			pub := connectV5(t, nodes[c.pubOn].srv, id+"-pub")
			stream := startAckedStream(t, func(i int) error {
				ctx, cancel := context.WithTimeout(context.Background(), e2eWait)
				defer cancel()
				pr, err := pub.cli.Publish(ctx, &paho.Publish{Topic: "mv/a", Payload: []byte(strconv.Itoa(i)), QoS: c.qos})
				if pr == nil || pr.ReasonCode >= 0x80 {
					return fmt.Errorf("%v %v", pr, err)
				}
				return nil
			})
			stream.waitMore(200)
			for _, n := range c.moves {
				moved := connectV5(t, nodes[n].srv, id, persistent(600))
				if !moved.ack.SessionPresent {
					t.Fatalf("session present not set on n%d", n+1)
				}
				conns = append(conns, moved)
				stream.waitMore(300)
			}
			total := stream.end()
			var closed []chan *paho.Publish
			for _, c := range conns[:len(conns)-1] { // taken over
				closed = append(closed, c.msgs)
			}
			expectEvery(t, total, func(p *paho.Publish) []byte { return p.Payload }, closed, conns[len(conns)-1].msgs)
		})
	}
}
