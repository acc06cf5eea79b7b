package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cimgo/cim/bench"
	mqtt3 "github.com/eclipse/paho.mqtt.golang"
)

// Measurements of the cluster as processes, for docs/cluster.md: not
// tests (they assert nothing about speed), run by hand:
//
//	CIM_CLUSTER_MEASURE=1 go test -count=1 -run TestClusterMeasure -v ./cmd/cim
//	CIM_CLUSTER_MEASURE=1 CIM_CLUSTER_CASES=pairs CIM_CLUSTER_ROUNDS=4 go test ...
//
// Same-node and cross-node runs alternate in one run, so the ratios hold
// on a shared machine even when the absolute numbers do not.

func measureOnly(t *testing.T) {
	if os.Getenv("CIM_CLUSTER_MEASURE") == "" {
		t.Skip("set CIM_CLUSTER_MEASURE=1 to measure")
	}
}

// benchRun runs `cim bench args...` in this process and returns its report.
func benchRun(t *testing.T, args ...string) *bench.Report {
	t.Helper()
	o, _, code := parseBenchFlags(append(args, "--progress", "none"), os.Stderr)
	if code >= 0 {
		t.Fatalf("bench flags %v: exit %d", args, code)
	}
	rep, err := bench.Run(context.Background(), *o, io.Discard, io.Discard)
	if err != nil {
		t.Fatalf("bench %v: %v", args, err)
	}
	return rep
}

// TestClusterMeasureThroughput: fan-in at QoS 0 and paced pairs at QoS 0
// and 1, publishers on n1 and subscribers on n1 (same node) or n2 (cross
// node), alternating, two rounds.
func TestClusterMeasureThroughput(t *testing.T) {
	measureOnly(t)
	nodes := startProcCluster(t)
	n1, n2 := nodes[0].mqtt, nodes[1].mqtt
	type row struct {
		name, args string
	}
	cases := []row{
		{"fanin qos0 10->1", "fanin --pubs 10 --subs 1 --qos 0 --size 64 --duration 5s --warmup 1s"},
		{"pairs qos0 50x200/s", "pairs --pairs 50 --qos 0 --rate 200 --size 64 --duration 5s --warmup 1s"},
		{"pairs qos1 50x200/s", "pairs --pairs 50 --qos 1 --rate 200 --size 64 --duration 5s --warmup 1s"},
		{"fanin qos1 10->1", "fanin --pubs 10 --subs 1 --qos 1 --size 64 --duration 5s --warmup 1s"},
	}
	// CIM_CLUSTER_CASES=pairs,fanin qos0 picks cases by name prefix;
	// CIM_CLUSTER_ROUNDS=5 runs more rounds (default 2).
	rounds, _ := strconv.Atoi(os.Getenv("CIM_CLUSTER_ROUNDS"))
	rounds = max(rounds, 2)
	picked := func(name string) bool {
		only := os.Getenv("CIM_CLUSTER_CASES")
		for _, p := range strings.Split(only, ",") {
			if strings.HasPrefix(name, strings.TrimSpace(p)) {
				return true
			}
		}
		return only == ""
	}
	for _, c := range cases {
		if !picked(c.name) {
			continue
		}
		for round := 1; round <= rounds; round++ {
			for _, cross := range []bool{false, true} {
				sub := n1
				where := "same"
				if cross {
					sub, where = n2, "cross"
				}
				args := append(strings.Fields(c.args), "--pub-addr", n1, "--sub-addr", sub)
				cpu0 := procCPU(nodes[0]) + procCPU(nodes[1])
				rep := benchRun(t, args...)
				cpu := procCPU(nodes[0]) + procCPU(nodes[1]) - cpu0
				perMsg := 0.0
				if rep.Received > 0 {
					perMsg = cpu.Seconds() * 1e6 / float64(rep.Received)
				}
				t.Logf("MEASURE %-20s round %d %-5s rate %9.0f msg/s  p50 %6d us  p99 %6d us  brokers' cpu %5.2f us/msg  lost %d dup %d",
					c.name, round, where, rep.Rate, rep.Latency.P50, rep.Latency.P99, perMsg, rep.Lost, rep.Duplicates)
			}
		}
	}
}

// procCPU is the CPU time n's process used so far (user + system).
func procCPU(n *procNode) time.Duration {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(n.cmd.Process.Pid) + "/stat")
	if err != nil {
		return 0
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseInt(f[11], 10, 64)
	k, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(u+k) * 10 * time.Millisecond // USER_HZ is 100 on Linux
}

// TestClusterMeasureConvergence: n processes started at once, all seeded
// with n1; the time until a publish on every node reaches a subscriber on
// every other node (membership, peer links and interest all converged).
func TestClusterMeasureConvergence(t *testing.T) {
	measureOnly(t)
	for _, timing := range []string{"loopback", "lan"} {
		for _, n := range []int{3, 10} {
			t.Run(timing+"/"+strconv.Itoa(n), func(t *testing.T) { measureConvergence(t, n, timing) })
		}
	}
}

func measureConvergence(t *testing.T, count int, timing string) {
	nodes := make([]*procNode, count)
	for i := range nodes {
		nodes[i] = newProcNode(t, fmt.Sprintf("c%d", i+1))
		nodes[i].extra = []string{"--cluster-timing", timing}
	}
	for i, n := range nodes {
		if i > 0 {
			n.join = nodes[0].gossip
		}
	}
	start := time.Now()
	var wg sync.WaitGroup
	for _, n := range nodes {
		wg.Add(1)
		go func() { defer wg.Done(); n.start() }()
	}
	wg.Wait()
	listening := time.Since(start)
	// got[i][j]: the subscriber on node i has a message from node j.
	var mu sync.Mutex
	got := make([][]bool, count)
	left := count * (count - 1)
	all := make(chan struct{})
	for i, n := range nodes {
		got[i] = make([]bool, count)
		o := mqtt3.NewClientOptions().AddBroker("tcp://" + n.mqtt).SetClientID(fmt.Sprintf("conv-sub-%d", i)).
			SetDefaultPublishHandler(func(_ mqtt3.Client, m mqtt3.Message) {
				j, err := strconv.Atoi(strings.TrimPrefix(m.Topic(), "conv/"))
				if err != nil || j == i {
					return
				}
				mu.Lock()
				defer mu.Unlock()
				if !got[i][j] {
					got[i][j] = true
					if left--; left == 0 {
						close(all)
					}
				}
			})
		c := mqtt3.NewClient(o)
		must(t, c.Connect())
		must(t, c.Subscribe("conv/#", 0, nil))
		defer c.Disconnect(10)
	}
	var pubs []mqtt3.Client
	for i, n := range nodes {
		pubs = append(pubs, pubClient(t, n.mqtt, fmt.Sprintf("conv-pub-%d", i)))
	}
	deadline := time.After(60 * time.Second)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for done := false; !done; {
		select {
		case <-all:
			done = true
		case <-deadline:
			t.Fatalf("%d nodes: not converged after 60 s", count)
		case <-tick.C:
			for j, p := range pubs {
				p.Publish("conv/"+strconv.Itoa(j), 0, false, "x")
			}
		}
	}
	t.Logf("MEASURE convergence %2d nodes, %s timing: all listening %v after start; every node delivers to every other %v after start",
		count, timing, listening.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
}
