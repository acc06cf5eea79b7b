package cluster

import (
	"errors"
	"fmt"
	"testing"
	"time"
)

func TestPickStrategies(t *testing.T) {
	nodes := startCluster(t, 3, nil)
	// Hash: every node answers the same for a user, and users spread.
	count := map[string]int{}
	for i := range 300 {
		u := fmt.Sprintf("user-%d", i)
		m, err := nodes[0].Pick(u)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range nodes[1:] {
			if o, _ := n.Pick(u); o.Name != m.Name {
				t.Fatalf("%s: %s picks %s, n1 picks %s", u, n.Name(), o.Name, m.Name)
			}
		}
		if m.Meta.MQTT == "" {
			t.Fatal("picked member without metadata")
		}
		count[m.Name]++
	}
	for _, n := range nodes {
		if count[n.Name()] < 50 {
			t.Fatalf("uneven spread %v", count)
		}
	}
	// Round robin cycles through the live nodes.
	seen := map[string]bool{}
	for range 3 {
		m, _ := nodes[0].PickWith(PickRoundRobin, "")
		seen[m.Name] = true
	}
	if len(seen) != 3 {
		t.Fatalf("round robin gave %v", seen)
	}
	if m, err := nodes[0].PickWith(PickRandom, ""); err != nil || m.Name == "" {
		t.Fatal(m, err)
	}
	// When a node goes, only its users move.
	before := map[string]string{}
	for i := range 300 {
		u := fmt.Sprintf("user-%d", i)
		m, _ := nodes[0].Pick(u)
		before[u] = m.Name
	}
	nodes[2].Close(time.Second)
	waitFor(t, 5*time.Second, "n3 gone", func() bool { m, _ := nodes[0].Member("n3"); return !m.Live() })
	for u, was := range before {
		m, _ := nodes[0].Pick(u)
		if m.Name == "n3" || (was != "n3" && m.Name != was) {
			t.Fatalf("%s moved from %s to %s", u, was, m.Name)
		}
	}
}

func TestPickNoLiveNode(t *testing.T) {
	c := &Cluster{members: newMemberTable("x")}
	if _, err := c.Pick("u"); !errors.Is(err, ErrNoLiveNode) {
		t.Fatal(err)
	}
}
