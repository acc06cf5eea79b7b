package cluster

import (
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"
)

// interestAgrees reports whether every other node, in its table and its
// delegate's view, has exactly want for node n.
func interestAgrees(nodes []*node, n *node, want []string) bool {
	for _, o := range nodes {
		if o == n {
			continue
		}
		got, seen := o.Interest(n.Name()), o.rec.interestOf(n.Name())
		if !slices.Equal(got, want) || !slices.Equal(seen, want) {
			return false
		}
	}
	return true
}

func TestInterestConvergesOnThreeNodes(t *testing.T) {
	nodes := startCluster(t, 3, nil)
	want := map[string][]string{}
	for i, n := range nodes {
		fs := []string{"shared/#", fmt.Sprintf("n%d/+/x", i+1)}
		for _, f := range fs {
			n.AddInterest(f)
			n.AddInterest(f) // two local subscribers
		}
		slices.Sort(fs)
		want[n.Name()] = fs
	}
	for _, n := range nodes {
		waitFor(t, 5*time.Second, "interest of "+n.Name(), func() bool { return interestAgrees(nodes, n, want[n.Name()]) })
	}
	// One of two holders goes: still live. The second goes: dead.
	n1 := nodes[0]
	n1.RemoveInterest("shared/#")
	time.Sleep(100 * time.Millisecond) // gossip rounds that must change nothing
	if !interestAgrees(nodes, n1, want["n1"]) {
		t.Fatal("a filter with a holder left went dead")
	}
	n1.RemoveInterest("shared/#")
	waitFor(t, 5*time.Second, "dead filter spreads", func() bool { return interestAgrees(nodes, n1, []string{"n1/+/x"}) })
	if err := n1.RemoveInterest("shared/#"); !errors.Is(err, ErrNotLive) {
		t.Fatalf("remove of a dead filter: %v", err)
	}
	if got := n1.Interest("n1"); !slices.Equal(got, []string{"n1/+/x"}) {
		t.Fatalf("own interest %v", got)
	}
	// A node that leaves has its interest reset to nothing.
	nodes[2].Close(time.Second)
	for _, n := range nodes[:2] {
		waitFor(t, 5*time.Second, "n3's interest dropped", func() bool {
			return len(n.Interest("n3")) == 0 && len(n.rec.interestOf("n3")) == 0
		})
	}
}

// TestInterestDeltasRaceFullState churns filters with UDP gossip to n2
// dropped half the time, so deltas are lost, reordered against push/pull
// states, and relayed; in the end every view equals the source.
func TestInterestDeltasRaceFullState(t *testing.T) {
	var drop atomic.Uint64
	nodes := startCluster(t, 3, func(o *Options) {
		o.testGossip = func(addr string, stream bool) bool { return !stream && drop.Add(1)%2 == 0 }
	})
	n1 := nodes[0]
	live := map[string]bool{}
	for i := range 300 {
		f := fmt.Sprintf("t/%d", i%40)
		if live[f] {
			n1.RemoveInterest(f)
			delete(live, f)
		} else {
			n1.AddInterest(f)
			live[f] = true
		}
		if i%50 == 0 {
			time.Sleep(30 * time.Millisecond)
		}
	}
	var want []string
	for f := range live {
		want = append(want, f)
	}
	slices.Sort(want)
	waitFor(t, 15*time.Second, "views converge", func() bool { return interestAgrees(nodes, n1, want) })
	if nodes[1].rec.count(func(r *recorder) int { return r.resets["n1"] }) == 0 {
		t.Fatal("no full state was applied")
	}
}

func TestInterestBurstUsesFullState(t *testing.T) {
	nodes := startCluster(t, 2, nil)
	var want []string
	for i := range 3000 {
		f := fmt.Sprintf("user/%05d/inbox", i)
		nodes[0].AddInterest(f)
		want = append(want, f)
	}
	waitFor(t, 10*time.Second, "3000 filters spread", func() bool { return interestAgrees(nodes, nodes[0], want) })
	waitFor(t, 2*time.Second, "the backlog switches to a full-state sync", func() bool { return nodes[0].Stats().Bursts > 0 })
}
