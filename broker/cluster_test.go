package broker

import (
	"fmt"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"
)

// Three nodes: a publish on n1 reaches MQTT subscribers on n2 and n3,
// through wildcards, at QoS 0 and 1, once each; nothing goes to a node
// without a matching filter.
func TestClusterMQTTAcrossNodes(t *testing.T) {
	nodes := startTestCluster(t, 3, nil)
	n1, n2, n3 := nodes[0], nodes[1], nodes[2]
	s2 := connectV5(t, n2.srv, "s2")
	s2.subscribe("a/+/c", 1)
	s3 := connectV5(t, n3.srv, "s3")
	s3.subscribe("a/#", 1)
	waitInterest(t, nodes, "n2", "a/+/c")
	waitInterest(t, nodes, "n3", "a/#")

	p := connectV5(t, n1.srv, "p")
	for i := range 20 {
		qos := byte(i % 2)
		if rc := p.publish("a/b/c", fmt.Sprint(i), qos, false); qos == 1 && rc != 0 {
			t.Fatalf("PUBACK %#x", rc)
		}
	}
	for i := range 20 {
		s2.expect("a/b/c", fmt.Sprint(i))
		s3.expect("a/b/c", fmt.Sprint(i))
	}
	p.publish("a/x", "only-n3", 1, false)
	s3.expect("a/x", "only-n3")
	s2.none()
	s3.none()
	// n2 forwarded nothing to n3 (n1's message is n1's to forward).
	if fwd := linkForwarded(n2, "n3"); fwd != 0 {
		t.Fatalf("n2 forwarded %d messages to n3", fwd)
	}
}

func linkForwarded(n *cnode, peer string) uint64 {
	l, _ := n.cn().linkUp(peer)
	return l.Forwarded
}

// A retained message published on n1 reaches a subscriber that arrives
// later on n3, and a node that joins later still.
func TestClusterRetainedReplicated(t *testing.T) {
	nodes := startTestCluster(t, 3, nil)
	p := connectV5(t, nodes[0].srv, "p")
	p.publish("status/door", "open", 1, true)
	p.publish("status/light", "on", 0, true)
	for _, n := range nodes[1:] {
		waitFor15(t, "retained on "+n.name, func() bool { r, _ := n.srv.Retained("status/#"); return len(r) == 2 })
	}
	s := connectV5(t, nodes[2].srv, "late")
	s.subscribe("status/door", 1)
	if m := s.expect("status/door", "open"); !m.Retain {
		t.Fatal("retained message without the retain flag")
	}
	n4 := newCNode(t, "n4", nil, nil, nodes[0].gossip())
	waitClusterUp(t, append(nodes, n4))
	waitFor15(t, "retained fetched by n4", func() bool { r, _ := n4.srv.Retained("status/#"); return len(r) == 2 })
	// Clearing it clears it everywhere.
	p.publish("status/door", "", 1, true)
	for _, n := range append(nodes, n4) {
		waitFor15(t, "retained cleared on "+n.name, func() bool { r, _ := n.srv.Retained("status/door"); return len(r) == 0 })
	}
}

// A retained message cleared while a node was away is cleared there too
// when it returns: it fetches the clear with the retained set (it kept
// serving the stale copy before).
func TestClusterRetainedClearedWhileAway(t *testing.T) {
	nodes := startTestCluster(t, 3, nil)
	n1, n3 := nodes[0], nodes[2]
	p := connectV5(t, n1.srv, "p")
	p.publish("state/valve", "open", 1, true)
	p.publish("state/pump", "on", 1, true)
	waitFor15(t, "retained on n3", func() bool { r, _ := n3.srv.Retained("state/#"); return len(r) == 2 })
	n3.stop()
	waitFor15(t, "n3 gone", func() bool { m, _ := n1.cn().c.Member("n3"); return !m.Live() })
	p.publish("state/valve", "", 1, true) // cleared while n3 is away
	n3.start()
	waitClusterUp(t, nodes)
	waitFor15(t, "the clear fetched by n3", func() bool { r, _ := n3.srv.Retained("state/valve"); return len(r) == 0 })
	late := connectV5(t, n3.srv, "late")
	late.subscribe("state/#", 1)
	late.expect("state/pump", "on") // the one not cleared stays
	late.none()
}

// A shared subscription with members on three nodes gets each message
// once, cluster-wide, and every member gets some.
func TestClusterSharedSubscriptionOnce(t *testing.T) {
	nodes := startTestCluster(t, 3, nil)
	var members []*v5Client
	for i, n := range nodes {
		c := connectV5(t, n.srv, fmt.Sprintf("m%d", i))
		c.subscribe("$share/g/jobs/#", 1)
		members = append(members, c)
	}
	for _, n := range nodes {
		waitInterest(t, nodes, n.name, "$share/g/jobs/#")
	}
	p := connectV5(t, nodes[0].srv, "p")
	const total = 60
	for i := range total {
		p.publish("jobs/x", fmt.Sprint(i), 1, false)
	}
	got := map[string]int{}
	per := make([]int, len(members))
	deadline := time.After(e2eWait)
	for n := 0; n < total; {
		select {
		case m := <-members[0].msgs:
			got[string(m.Payload)]++
			per[0]++
		case m := <-members[1].msgs:
			got[string(m.Payload)]++
			per[1]++
		case m := <-members[2].msgs:
			got[string(m.Payload)]++
			per[2]++
		case <-deadline:
			t.Fatalf("%d of %d delivered (%v)", n, total, per)
		}
		n++
	}
	for _, c := range members {
		c.none()
	}
	for i := range total {
		if got[fmt.Sprint(i)] != 1 {
			t.Fatalf("message %d delivered %d times", i, got[fmt.Sprint(i)])
		}
	}
	for i, n := range per {
		if n == 0 {
			t.Fatalf("member %d got nothing: %v", i, per)
		}
	}
}

// A persistent session on n1 with queued messages is taken over by a
// login on n3: session present, every queued message in order, and n1
// keeps nothing. A second takeover while connected closes the old
// connection with "session taken over".
func TestClusterTakeoverAcrossNodes(t *testing.T) {
	nodes := startTestCluster(t, 3, nil)
	n1, n2, n3 := nodes[0], nodes[1], nodes[2]
	leaveSubscribed(t, nodes, n1, "mover", "q/#", 300)
	waitOffline(t, n1.srv, "mover")
	p := connectV5(t, n2.srv, "p")
	const queued = 50
	for i := range queued {
		if rc := p.publish("q/x", fmt.Sprint(i), 1, false); rc != 0 {
			t.Fatalf("PUBACK %#x", rc)
		}
	}
	s3 := connectV5(t, n3.srv, "mover", persistent(300))
	if !s3.ack.SessionPresent {
		t.Fatal("session present not set after a takeover across nodes")
	}
	for i := range queued {
		s3.expect("q/x", fmt.Sprint(i))
	}
	if lookupSession(n1.srv, "mover") != nil {
		t.Fatal("n1 still holds the session")
	}
	// New messages follow the session to n3.
	waitInterest(t, nodes, "n3", "q/#")
	p.publish("q/y", "after", 1, false)
	s3.expect("q/y", "after")
	// (its PUBACK follows the handler: until n3 has it, the message is in
	// flight and goes with the session, to come again on n2, as QoS 1 may)
	waitFor15(t, "q/y acknowledged on n3", func() bool {
		s := lookupSession(n3.srv, "mover")
		return s != nil && len(s.pendingIDs()) == 0
	})

	// Taken over again, from n2, while connected to n3.
	s2 := connectV5(t, n2.srv, "mover", persistent(300))
	if !s2.ack.SessionPresent {
		t.Fatal("session present not set on the second takeover")
	}
	if d := s3.serverDisconnect(); d.ReasonCode != 0x8E {
		t.Fatalf("old connection: DISCONNECT %#x, want 0x8E session taken over", d.ReasonCode)
	}
	waitInterest(t, nodes, "n2", "q/#")
	p.publish("q/z", "on n2", 1, false)
	s2.expect("q/z", "on n2")
	s3.none()
}

// QoS 1 and 2 messages in flight when a persistent session is taken over
// from another node are sent again under their packet ids with DUP set
// [MQTT-4.4.0-1], as on one node; a QoS 1 one came under a new id without
// DUP before.
func TestClusterTakeoverResendsInFlight(t *testing.T) {
	nodes := startTestCluster(t, 2, nil)
	n1, n2 := nodes[0], nodes[1]
	old := dialRaw(t, n1.srv)
	old.connect(4, "flier", false, 0)
	old.subscribe(1, 0, packets.Subscription{Filter: "fl/#", Qos: 2})
	waitInterest(t, nodes, "n1", "fl/#")
	p := connectV5(t, n2.srv, "p")
	for q, topic := range []string{"fl/1", "fl/2"} {
		if rc := p.publish(topic, topic, byte(q+1), false); rc != 0 {
			t.Fatalf("publish %s: %#x", topic, rc)
		}
	}
	first := map[string]uint16{}
	for range 2 {
		pk := old.expect(packets.Publish)
		first[pk.TopicName] = pk.PacketID
	}
	old.c.Close() // neither PUBACK nor PUBREC
	waitOffline(t, n1.srv, "flier")
	moved := dialRaw(t, n2.srv)
	if ack := moved.connect(4, "flier", false, 0); !ack.SessionPresent {
		t.Fatal("session not present on n2")
	}
	for range 2 {
		pk := moved.expect(packets.Publish)
		if id, ok := first[pk.TopicName]; !ok || pk.PacketID != id || !pk.FixedHeader.Dup {
			t.Errorf("%s again under id %d dup=%v, first sent under %d", pk.TopicName, pk.PacketID, pk.FixedHeader.Dup, id)
		}
		delete(first, pk.TopicName)
	}
}

// A node with another secret cannot join, nor open a peer link.
func TestClusterWrongSecretCannotJoin(t *testing.T) {
	nodes := startTestCluster(t, 2, nil)
	bad := newCNode(t, "intruder", nil, func(_ *Options, co *ClusterOptions) {
		co.Cluster.Secret = "another-secret-0123456789abcdef"
	}, nodes[0].gossip())
	time.Sleep(time.Second) // joining is retried in the background; give it several rounds
	for _, n := range nodes {
		if _, ok := n.cn().c.Member("intruder"); ok {
			t.Fatalf("%s sees the intruder as a member", n.name)
		}
	}
	if ms := bad.srv.ClusterMembers(); len(ms) != 1 {
		t.Fatalf("the intruder sees %d members, want itself only", len(ms))
	}
}

// A node that leaves is dropped by the others at once; QoS 1 messages for
// its persistent session are parked meanwhile (acknowledged), and handed
// over when it returns with its stored sessions. Then the same with the
// client gone to another node meanwhile: nothing acknowledged is lost.
func TestClusterNodeLeavesAndReturns(t *testing.T) {
	nodes := startTestCluster(t, 3, nil)
	n1, n2, n3 := nodes[0], nodes[1], nodes[2]
	leaveSubscribed(t, nodes, n3, "ps", "ev/#", 600)
	p := connectV5(t, n1.srv, "p")

	n3.stop()
	waitFor15(t, "n3 gone on n1 and n2", func() bool {
		for _, n := range []*cnode{n1, n2} {
			if m, _ := n.cn().c.Member("n3"); m.Live() {
				return false
			}
		}
		return true
	})
	for i := range 20 {
		if rc := p.publish("ev/a", fmt.Sprint(i), 1, false); rc != 0 {
			t.Fatalf("PUBACK %#x while n3 is away", rc)
		}
	}
	if st, _ := n1.srv.ClusterStats(); st.Parked != 20 {
		t.Fatalf("n1 parked %d messages, want 20", st.Parked)
	}
	n3.start()
	waitClusterUp(t, nodes)
	waitFor15(t, "parked messages replayed", func() bool { st, _ := n1.srv.ClusterStats(); return st.Replayed == 20 })
	ps := connectV5(t, n3.srv, "ps", persistent(600))
	if !ps.ack.SessionPresent {
		t.Fatal("n3 lost its stored session")
	}
	for i := range 20 {
		ps.expect("ev/a", fmt.Sprint(i))
	}
	ps.disconnect()

	// n3 goes again; the client comes back on n2 meanwhile (a new session:
	// its old one is on n3's disk), and n3 returns later.
	n3.stop()
	waitFor15(t, "n3 gone again", func() bool { m, _ := n1.cn().c.Member("n3"); return !m.Live() })
	for i := 20; i < 30; i++ {
		p.publish("ev/a", fmt.Sprint(i), 1, false) // parked only
	}
	ps2 := connectV5(t, n2.srv, "ps", persistent(600))
	if ps2.ack.SessionPresent {
		t.Fatal("session present on n2 while its node is away")
	}
	ps2.subscribe("ev/#", 1)
	waitInterest(t, []*cnode{n1, n2}, "n2", "ev/#")
	for i := 30; i < 40; i++ {
		p.publish("ev/a", fmt.Sprint(i), 1, false) // to n2, and parked for n3
	}
	n3.start()
	// Every message of 20..39 arrives (some may come twice: QoS 1; the
	// stale copy may also bring back ones the client had, unacked).
	got := map[string]int{}
	missing := func() []int {
		var out []int
		for i := 20; i < 40; i++ {
			if got[fmt.Sprint(i)] == 0 {
				out = append(out, i)
			}
		}
		return out
	}
	deadline := time.After(e2eWait)
	for len(missing()) > 0 {
		select {
		case m := <-ps2.msgs:
			got[string(m.Payload)]++
		case <-deadline:
			t.Fatalf("messages %v lost (got %v)", missing(), got)
		}
	}
	waitFor15(t, "n3 merged its stale copy", func() bool { return lookupSession(n3.srv, "ps") == nil })
}

// A node that returns with a stale copy of a session the client took to
// another node meanwhile merges it there; a message that reaches it for
// that session while the merge is on its way (a parked message replayed to
// it alone, as here) is passed on to the new owner, not dropped as being
// for a session that ended (TestClusterNodeLeavesAndReturns lost the
// parked messages so, now and then).
func TestClusterYieldRelaysWhatArrivesMeanwhile(t *testing.T) {
	nodes := startTestCluster(t, 3, nil)
	n1, n2, n3 := nodes[0], nodes[1], nodes[2]
	leaveSubscribed(t, nodes, n3, "ps", "ev/#", 600)
	n3.stop()
	waitFor15(t, "n3 gone", func() bool { m, _ := n1.cn().c.Member("n3"); return !m.Live() })
	ps2 := connectV5(t, n2.srv, "ps", persistent(600))
	ps2.subscribe("ev/#", 1)
	waitInterest(t, []*cnode{n1, n2}, "n2", "ev/#")

	// While n3 holds the stale copy out of its registry, n1 hands it a
	// message as a replay of what it parked for n3 would: for n3 only.
	hooked := make(chan error, 1)
	yieldHook = func(k skey) {
		if k.id != "ps" {
			return
		}
		m := newMessageOf("ev/a", []byte("meanwhile"))
		m.QoS, m.ID, m.Created = 1, n1.srv.ids.next(time.Now()), time.Now().Unix()
		deadline := time.Now().Add(e2eWait)
		for {
			acked := make(chan error, 1)
			pub := newPublish(m, &fwdTarget{node: "n3", plain: true}, nil)
			err := n1.cn().forwardOnce("n3", pub, func(err error) { acked <- err })
			if err == nil {
				err = <-acked
			}
			if err == nil || time.Now().After(deadline) {
				hooked <- err
				return
			}
			time.Sleep(20 * time.Millisecond) // the link from n1 is not up yet
		}
	}
	t.Cleanup(func() { yieldHook = nil })
	n3.start()
	select {
	case err := <-hooked:
		if err != nil {
			t.Fatalf("n3 did not take the message: %v", err)
		}
	case <-time.After(2 * e2eWait):
		t.Fatal("n3 never yielded its stale copy of the session")
	}
	ps2.expect("ev/a", "meanwhile")
}
