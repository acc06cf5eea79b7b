package cluster

import (
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func ownerOn(n *node, key string) string {
	o, _ := n.Lookup(key)
	return o.Node
}

func TestOwnershipPropagatesNewestWins(t *testing.T) {
	nodes := startCluster(t, 3, nil)
	n1, n2, n3 := nodes[0], nodes[1], nodes[2]
	first, prev, err := n1.Claim("m/dev-1")
	if err != nil || !prev.IsZero() {
		t.Fatalf("claim: %v %+v", err, prev)
	}
	for _, n := range nodes {
		waitFor(t, 5*time.Second, n.Name()+" learns n1 owns dev-1", func() bool { return ownerOn(n, "m/dev-1") == "n1" })
	}
	// n2 learned of n1's claim, so its own claim is newer and wins
	// everywhere; n1 hears it was taken over.
	second, prev, _ := n2.Claim("m/dev-1")
	if prev.Node != "n1" || !prev.Live || second.Epoch <= first.Epoch {
		t.Fatalf("second claim %+v over %+v", second, prev)
	}
	for _, n := range nodes {
		waitFor(t, 5*time.Second, n.Name()+" learns n2 owns dev-1", func() bool { return ownerOn(n, "m/dev-1") == "n2" })
	}
	waitFor(t, time.Second, "n1 told of the takeover", func() bool {
		return n1.rec.count(func(r *recorder) int { return int(r.takenOver["m/dev-1"].Epoch) }) == int(second.Epoch)
	})
	if n3.rec.count(func(r *recorder) int { return len(r.takenOver) }) != 0 {
		t.Fatal("n3 heard a takeover of a key it never owned")
	}
	// Release spreads too, and nobody owns the key afterwards.
	if ok, _ := n2.Release("m/dev-1"); !ok {
		t.Fatal("release")
	}
	if ok, _ := n1.Release("m/dev-1"); ok {
		t.Fatal("n1 released a key it lost")
	}
	for _, n := range nodes {
		waitFor(t, 5*time.Second, n.Name()+" forgets dev-1", func() bool { _, ok := n.Lookup("m/dev-1"); return !ok })
	}
	if _, _, err := n1.Claim(""); err == nil {
		t.Fatal("empty key accepted")
	}
}

// TestOwnershipRepairedByPushPull drops all gossip packets (UDP) between n1
// and the others: broadcasts are lost, probes fall back to TCP, and the
// periodic push/pull (TCP) must carry the claims.
func TestOwnershipRepairedByPushPull(t *testing.T) {
	var udpCut atomic.Bool
	var isolated atomic.Value // gossip addresses of n1
	isolated.Store("")
	block := func(self string) func(addr string, stream bool) bool {
		return func(addr string, stream bool) bool {
			if stream || !udpCut.Load() {
				return false
			}
			iso := isolated.Load().(string)
			return (self == "n1") != (addr == iso) // n1 <-> others
		}
	}
	nodes := startCluster(t, 3, func(o *Options) { o.testGossip = block(o.NodeName) })
	isolated.Store(nodes[0].GossipAddr())
	udpCut.Store(true)
	n1, n2 := nodes[0], nodes[1]
	pp0 := n1.Stats().GossipTCPOut
	// Conflicting claims on both sides of the cut: n1 first, n2 later
	// without having heard of it, so n2's epoch is newer.
	n1.Claim("m/shared")
	for i := range 50 {
		n1.Claim(fmt.Sprintf("m/n1-%d", i))
		n2.Claim(fmt.Sprintf("m/n2-%d", i))
	}
	time.Sleep(5 * time.Millisecond)
	n2.Claim("m/shared")
	for _, n := range nodes {
		waitFor(t, 15*time.Second, n.Name()+" has every claim", func() bool {
			return ownerOn(n, "m/shared") == "n2" && ownerOn(n, "m/n1-49") == "n1" && ownerOn(n, "m/n2-49") == "n2" &&
				n.Stats().OwnerEntries == 101
		})
	}
	waitFor(t, time.Second, "n1 hears the takeover", func() bool {
		return n1.rec.count(func(r *recorder) int { return len(r.takenOver) }) == 1
	})
	if n1.Stats().GossipTCPOut == pp0 {
		t.Fatal("no push/pull happened")
	}
	for _, m := range n1.Members() {
		if !m.Live() {
			t.Fatalf("%s not live during a UDP-only cut", m.Name)
		}
	}
}

// TestOwnershipAcrossFullPartition isolates n1 completely until the others
// declare it dead, lets both sides claim, then heals: the reconnect loop
// merges the halves and the newest epochs win everywhere.
func TestOwnershipAcrossFullPartition(t *testing.T) {
	var cut atomic.Bool
	var isoAddr atomic.Value
	isoAddr.Store("")
	nodes := startCluster(t, 3, func(o *Options) {
		self := o.NodeName
		o.testGossip = func(addr string, stream bool) bool {
			return cut.Load() && (self == "n1") != (addr == isoAddr.Load().(string))
		}
	})
	n1, n2, n3 := nodes[0], nodes[1], nodes[2]
	n1.Claim("m/a")
	n1.Claim("m/b")
	for _, n := range nodes {
		waitFor(t, 5*time.Second, "claims spread", func() bool { return ownerOn(n, "m/b") == "n1" })
	}
	isoAddr.Store(n1.GossipAddr())
	cut.Store(true)
	waitFor(t, 15*time.Second, "n1 declared dead", func() bool {
		m2, _ := n2.Member("n1")
		m3, _ := n3.Member("n1")
		return m2.State == StateDead && m3.State == StateDead
	})
	if o, _ := n3.Lookup("m/a"); o.Live || o.Node != "n1" {
		t.Fatalf("entry of a dead node: %+v (want kept, not live)", o)
	}
	n3.Claim("m/a") // taken over while n1 is away
	n1.Claim("m/c") // n1 works alone meanwhile
	n1.Release("m/b")
	cut.Store(false)
	waitConverged(t, nodes, 20*time.Second)
	for _, n := range nodes {
		waitFor(t, 10*time.Second, n.Name()+" reconciles", func() bool {
			_, hasB := n.Lookup("m/b")
			return ownerOn(n, "m/a") == "n3" && ownerOn(n, "m/c") == "n1" && !hasB
		})
	}
	waitFor(t, time.Second, "n1 hears m/a was taken", func() bool {
		return n1.rec.count(func(r *recorder) int { return len(r.takenOver) }) == 1
	})
}

func TestOwnershipRestoreAfterRestart(t *testing.T) {
	nodes := startCluster(t, 2, nil)
	n1, n2 := nodes[0], nodes[1]
	a, _, _ := n2.Claim("m/kept")
	b, _, _ := n2.Claim("m/moved")
	n2.Claim("m/lost")
	waitFor(t, 5*time.Second, "n1 learns", func() bool { return ownerOn(n1, "m/lost") == "n2" })
	n2.shutdown(time.Second, false)
	waitFor(t, 10*time.Second, "n2 dead", func() bool { m, _ := n1.Member("n2"); return m.State == StateDead })
	n1.Claim("m/moved") // the client reconnected to n1
	// n2 restarts with the same name and restores what it stored (not
	// m/lost); the old epoch of m/moved loses to n1's newer claim.
	n2b := startNode(t, "n2", func(o *Options) { o.Join = []string{n1.GossipAddr()} })
	if _, ok, _ := n2b.Restore("m/kept", a.Epoch); !ok {
		t.Fatal("restore of an unclaimed key refused")
	}
	n2b.Restore("m/moved", b.Epoch) // may or may not know n1's claim yet
	waitConverged(t, []*node{n1, n2b}, 10*time.Second)
	for _, n := range []*node{n1, n2b} {
		waitFor(t, 10*time.Second, n.Name()+" converges after restart", func() bool {
			_, lost := n.Lookup("m/lost")
			return ownerOn(n, "m/kept") == "n2" && ownerOn(n, "m/moved") == "n1" && !lost
		})
	}
	if n2b.Epoch() < b.Epoch {
		t.Fatal("restarted clock below the old epochs")
	}
}

func TestDeadNodeEntriesExpire(t *testing.T) {
	nodes := startCluster(t, 2, func(o *Options) { o.DeadNodeTTL = 500 * time.Millisecond })
	nodes[1].Claim("m/x")
	waitFor(t, 5*time.Second, "claim spreads", func() bool { return ownerOn(nodes[0], "m/x") == "n2" })
	waitFor(t, time.Second, "delegate heard it", func() bool {
		return nodes[0].rec.count(func(r *recorder) int { return len(r.owners) }) == 1
	})
	nodes[1].Close(time.Second)
	waitFor(t, 10*time.Second, "entries of the departed node dropped", func() bool {
		_, ok := nodes[0].Lookup("m/x")
		_, member := nodes[0].Member("n2")
		return !ok && !member
	})
	waitFor(t, time.Second, "delegate heard the drop", func() bool {
		return nodes[0].rec.count(func(r *recorder) int { return len(r.owners) }) == 0
	})
}

func TestForgetNode(t *testing.T) {
	nodes := startCluster(t, 2, nil)
	nodes[1].Claim("m/y")
	waitFor(t, 5*time.Second, "claim spreads", func() bool { return ownerOn(nodes[0], "m/y") == "n2" })
	if err := nodes[0].ForgetNode("n2"); err == nil || !strings.Contains(err.Error(), "live") {
		t.Fatalf("forgot a live node: %v", err)
	}
	nodes[1].Close(time.Second)
	waitFor(t, 5*time.Second, "n2 left", func() bool { m, _ := nodes[0].Member("n2"); return m.State == StateLeft })
	if got := nodes[0].OwnedBy("n2"); len(got) != 1 {
		t.Fatalf("OwnedBy: %v", got)
	}
	if err := nodes[0].ForgetNode("n2"); err != nil {
		t.Fatal(err)
	}
	if _, ok := nodes[0].Lookup("m/y"); ok {
		t.Fatal("entry kept")
	}
}
