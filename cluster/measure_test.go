package cluster

import (
	"fmt"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"
)

// The measurements of docs/cluster.md. They run only with
// CLUSTER_MEASURE=1 (they take ~1 minute and print numbers, asserting
// only that the cluster converged):
//
//	CLUSTER_MEASURE=1 go test -run Measure -v ./cluster
func measuring(t *testing.T) {
	if os.Getenv("CLUSTER_MEASURE") == "" {
		t.Skip("set CLUSTER_MEASURE=1")
	}
}

func lanOptions(o *Options) {
	o.Timing = LANTiming()
	o.ReconnectInterval = 5 * time.Second
}

func TestMeasureConvergence(t *testing.T) {
	measuring(t)
	for _, n := range []int{3, 10} {
		for _, prof := range []struct {
			name string
			mod  func(*Options)
		}{{"LAN", lanOptions}, {"loopback", nil}} {
			seed := startNode(t, "n1", prof.mod)
			nodes := []*node{seed}
			var mu sync.Mutex
			var wg sync.WaitGroup
			start := time.Now()
			for i := 2; i <= n; i++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					nd := startNode(t, "n"+strconv.Itoa(i), func(o *Options) {
						if prof.mod != nil {
							prof.mod(o)
						}
						o.Join = []string{seed.GossipAddr()}
					})
					mu.Lock()
					nodes = append(nodes, nd)
					mu.Unlock()
				}()
			}
			wg.Wait()
			waitConverged(t, nodes, 30*time.Second)
			members := time.Since(start)
			waitFor(t, 30*time.Second, "all links up", func() bool {
				for _, nd := range nodes {
					ls := nd.Links()
					if len(ls) != n-1 {
						return false
					}
					for _, l := range ls {
						if !l.Connected {
							return false
						}
					}
				}
				return true
			})
			t.Logf("%2d nodes, %s timing: membership converged in %v, all %d peer links up in %v",
				n, prof.name, members.Round(time.Millisecond), n*(n-1)/2, time.Since(start).Round(time.Millisecond))
			for _, nd := range nodes {
				nd.Close(time.Second)
			}
		}
	}
}

func gossipBytes(n *node) uint64 {
	s := n.Stats()
	return s.GossipUDPIn + s.GossipUDPOut + s.GossipTCPIn + s.GossipTCPOut
}

func TestMeasureOwnership10k(t *testing.T) {
	measuring(t)
	const claims = 10000
	for _, mode := range []struct {
		name  string
		burst int
	}{{"broadcasts + burst sync (default)", 0}, {"broadcasts only", 1 << 30}} {
		nodes := startCluster(t, 3, func(o *Options) {
			lanOptions(o)
			o.BurstBroadcasts = mode.burst
		})
		// Idle gossip: probes, and a push/pull every PushPullInterval.
		idle0 := make([]uint64, 3)
		for i, n := range nodes {
			idle0[i] = gossipBytes(n)
		}
		time.Sleep(10 * time.Second)
		var idle []string
		for i, n := range nodes {
			idle = append(idle, fmt.Sprintf("%s %.0f B/s", n.Name(), float64(gossipBytes(n)-idle0[i])/10))
		}
		b0 := make([]uint64, 3)
		for i, n := range nodes {
			b0[i] = gossipBytes(n)
		}
		start := time.Now()
		for i := range claims {
			if _, _, err := nodes[0].Claim(fmt.Sprintf("m/client-%05d", i)); err != nil {
				t.Fatal(err)
			}
		}
		claimed := time.Since(start)
		waitFor(t, 120*time.Second, "10k claims everywhere", func() bool {
			for _, n := range nodes {
				if n.Stats().OwnerEntries != claims {
					return false
				}
			}
			return true
		})
		took := time.Since(start)
		var during []string
		for i, n := range nodes {
			during = append(during, fmt.Sprintf("%s %d KB", n.Name(), (gossipBytes(n)-b0[i])/1000))
		}
		s := nodes[0].Stats()
		t.Logf("%s: %d claims issued in %v, on all 3 nodes after %v (bursts %d, syncs %d)",
			mode.name, claims, claimed.Round(time.Millisecond), took.Round(time.Millisecond), s.Bursts, s.Syncs)
		t.Logf("  gossip bytes per node, idle: %v; for the claims (in+out, until converged): %v", idle, during)
		// Idle again, now with 10,000 entries in every push/pull.
		for i, n := range nodes {
			idle0[i] = gossipBytes(n)
		}
		time.Sleep(10 * time.Second)
		idle = idle[:0]
		for i, n := range nodes {
			idle = append(idle, fmt.Sprintf("%s %.0f B/s", n.Name(), float64(gossipBytes(n)-idle0[i])/10))
		}
		t.Logf("  idle with the 10k entries: %v", idle)
		for _, n := range nodes {
			n.Close(time.Second)
		}
	}
}
