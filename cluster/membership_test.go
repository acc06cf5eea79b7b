package cluster

import (
	"encoding/json"
	"errors"
	"net"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestThreeNodesConverge(t *testing.T) {
	nodes := startCluster(t, 3, nil)
	for _, n := range nodes {
		ms := n.Members()
		if len(ms) != 3 {
			t.Fatalf("%s sees %d members", n.Name(), len(ms))
		}
		for _, m := range ms {
			peer := nodes[int(m.Name[1]-'1')]
			if m.Addr != peer.GossipAddr() || m.Meta.Peer != peer.PeerAddr() || m.Meta.MQTT != "127.0.0.1:1883" || m.Meta.Version != MetaVersion {
				t.Errorf("%s sees %s as %+v", n.Name(), m.Name, m)
			}
			if m.Self != (m.Name == n.Name()) {
				t.Errorf("self flag of %s on %s", m.Name, n.Name())
			}
		}
	}
	// Every pair gets one link, dialed by the lower name.
	waitFor(t, 5*time.Second, "links up", func() bool {
		for _, n := range nodes {
			ls := n.Links()
			if len(ls) != 2 {
				return false
			}
			for _, l := range ls {
				if !l.Connected || l.Dialer != (n.Name() < l.Peer) {
					return false
				}
			}
		}
		return true
	})
	// The shape GET /v1/cluster serves.
	b, err := json.Marshal(map[string]any{"members": nodes[0].Members()})
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Members []struct {
			Name, State, Addr string
			Meta              map[string]any
		}
	}
	if err := json.Unmarshal(b, &doc); err != nil || len(doc.Members) != 3 || doc.Members[1].State != "alive" || doc.Members[1].Addr == "" {
		t.Fatalf("json %s: %v", b, err)
	}
	if !strings.Contains(string(b), `"peer":"`+nodes[1].PeerAddr()+`"`) {
		t.Fatalf("meta missing in %s", b)
	}
}

func TestJoinRetriesUntilSeedAnswers(t *testing.T) {
	// n2 starts first, pointing at an address nobody serves yet.
	seed := startNode(t, "n1", nil)
	addr := seed.GossipAddr()
	seed.Close(time.Second)
	n2 := startNode(t, "n2", func(o *Options) { o.Join = []string{addr, "127.0.0.1:1"} })
	time.Sleep(200 * time.Millisecond) // a few failed attempts (not a synchronisation)
	if got := aliveNames(n2.Cluster); !slices.Equal(got, []string{"n2"}) {
		t.Fatalf("n2 sees %v", got)
	}
	// The seed comes back on the same address; n2 joins it by itself.
	n1 := startNode(t, "n1", func(o *Options) { o.BindAddr = addr })
	waitConverged(t, []*node{n1, n2}, 10*time.Second)
}

func TestWrongSecretCannotJoin(t *testing.T) {
	nodes := startCluster(t, 2, nil)
	bad := startNode(t, "intruder", func(o *Options) {
		o.Secret = "another-secret-0123456789"
		o.Join = []string{nodes[0].GossipAddr()}
	})
	other := startNode(t, "other", func(o *Options) {
		o.ClusterName = "other"
		o.Join = []string{nodes[0].GossipAddr()}
	})
	// Give them many join attempts and gossip rounds.
	deadline := time.Now().Add(1500 * time.Millisecond)
	for time.Now().Before(deadline) {
		for _, n := range nodes {
			if names := aliveNames(n.Cluster); len(names) != 2 {
				t.Fatalf("%s sees %v", n.Name(), names)
			}
		}
		for _, n := range []*node{bad, other} {
			if names := aliveNames(n.Cluster); len(names) != 1 {
				t.Fatalf("%s sees %v", n.Name(), names)
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Nor can it open a peer link. The intruder (its name sorts below
	// n1's, so it dials) finds that n1's proof does not match its secret.
	l := newLink(bad.Cluster, "n1", nodes[0].PeerAddr(), 0, 0)
	if _, err := l.dial(); !errors.Is(err, ErrAuth) || !strings.Contains(err.Error(), "secret") {
		t.Fatalf("dial with the wrong secret: %v", err)
	}
	// And n1 refuses a dialer whose proof is wrong: it closes the
	// connection without sending a frame.
	conn, err := net.Dial("tcp", nodes[0].PeerAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	enc := newFrameEncoder("intruder")
	conn.Write(enc.append(nil, &frame{typ: frameHello, version: linkVersion, cluster: "test", node: "intruder", incarnation: 1, nonce: newNonce()}))
	if _, _, err := readFrame(conn, newFrameDecoder(handshakeMax), make([]byte, handshakeMax)); err != nil {
		t.Fatalf("hello-ack: %v", err)
	}
	conn.Write(enc.append(nil, &frame{typ: frameAuth, mac: make([]byte, 32)}))
	conn.SetReadDeadline(time.Now().Add(3 * time.Second))
	if n, err := conn.Read(make([]byte, 16)); err == nil {
		t.Fatalf("n1 answered a bad auth with %d bytes", n)
	}
	waitFor(t, time.Second, "n1 counts the refused handshake", func() bool { return nodes[0].Stats().AuthFailures > 0 })
}

func TestNodeStoppedIsLeftAndLinksStop(t *testing.T) {
	nodes := startCluster(t, 3, nil)
	waitFor(t, 5*time.Second, "links", func() bool { return len(nodes[0].Links()) == 2 && nodes[0].Links()[1].Connected })
	nodes[2].Close(2 * time.Second)
	for _, n := range nodes[:2] {
		waitFor(t, 5*time.Second, n.Name()+" sees n3 left", func() bool {
			m, ok := n.Member("n3")
			return ok && m.State == StateLeft
		})
		waitFor(t, 2*time.Second, "n3's link removed", func() bool {
			for _, l := range n.Links() {
				if l.Peer == "n3" {
					return false
				}
			}
			return true
		})
		if err := n.Forward("n3", &Publish{Topic: "x"}); err == nil {
			t.Fatal("forward to a departed node accepted")
		}
		if n.rec.count(func(r *recorder) int { return int(r.leaves["n3"]) }) != int(StateLeft) {
			t.Fatal("MemberDelegate did not hear the leave")
		}
	}
}

func TestNodeKilledIsDead(t *testing.T) {
	nodes := startCluster(t, 3, nil)
	nodes[2].shutdown(time.Second, false) // no goodbye: as a crash
	for _, n := range nodes[:2] {
		waitFor(t, 10*time.Second, n.Name()+" declares n3 dead", func() bool {
			m, ok := n.Member("n3")
			return ok && m.State == StateDead
		})
	}
	if pm, err := nodes[0].Pick("anyone"); err != nil || pm.Name == "n3" {
		t.Fatalf("picked %+v %v", pm, err)
	}
}

// TestCloseInterruptsHandshakes: a peer-link connection that never says
// hello must not hold Close for the handshake timeout.
func TestCloseInterruptsHandshakes(t *testing.T) {
	n := startNode(t, "n1", func(o *Options) { o.Link.HandshakeTimeout = time.Minute })
	conn, err := net.Dial("tcp", n.PeerAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	done := make(chan struct{})
	go func() { n.Close(time.Second); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("Close waited for a silent handshake")
	}
}
