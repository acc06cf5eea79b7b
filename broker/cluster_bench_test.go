package broker

import (
	"bytes"
	"io"
	"net"
	"syscall"
	"testing"
	"time"
)

// cpuTime is this process's CPU time so far (user + system): on a shared
// 2-core machine, the benchmarks report CPU per message, not wall time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// rawSub is a bare MQTT 3.1.1 subscriber that discards what it reads, so
// a benchmark counts the brokers' allocations only.
func rawSub(b *testing.B, srv *Server, filter string) net.Conn {
	b.Helper()
	c, err := net.Dial("tcp", srv.ListenerAddr(ProtocolMQTT).String())
	if err != nil {
		b.Fatal(err)
	}
	id := "bench-sub"
	connect := []byte{0x10, byte(12 + len(id)), 0, 4, 'M', 'Q', 'T', 'T', 4, 2, 0, 60, 0, byte(len(id))}
	connect = append(connect, id...)
	sub := []byte{0x82, byte(5 + len(filter)), 0, 1, 0, byte(len(filter))}
	sub = append(append(sub, filter...), 0)
	if _, err := c.Write(append(connect, sub...)); err != nil {
		b.Fatal(err)
	}
	go func() { _, _ = io.Copy(io.Discard, c) }()
	return c
}

// BenchmarkClusterForwardQoS0: a QoS 0 publish routed on n1 and delivered
// to a subscriber on n2, end to end; allocations are both nodes' (one
// process), per forwarded message. The CPU and allocation work of
// cluster_forward.go and cluster/link.go is measured here.
func BenchmarkClusterForwardQoS0(b *testing.B) {
	nodes := startTestCluster(b, 2, nil)
	n1, n2 := nodes[0], nodes[1]
	c := rawSub(b, n2.srv, "bench/#")
	defer c.Close()
	waitInterest(b, nodes, "n2", "bench/#")
	benchRoute(b, n1.srv, n2.srv)
}

// BenchmarkLocalRouteQoS0 is BenchmarkClusterForwardQoS0 with the
// subscriber on the publishing node: the same-node cost to compare with.
func BenchmarkLocalRouteQoS0(b *testing.B) {
	nodes := startTestCluster(b, 2, nil)
	n1 := nodes[0]
	c := rawSub(b, n1.srv, "bench/#")
	defer c.Close()
	waitFor15(b, "subscription", func() bool { return n1.srv.subs.Len() > 0 })
	benchRoute(b, n1.srv, n1.srv)
}

// benchRoute routes b.N QoS 0 messages on n1, delivered by n2.
func benchRoute(b *testing.B, n1, n2 *Server) {
	m := &Message{Topic: "bench/t/1", Payload: bytes.Repeat([]byte("p"), 64), From: "bench-pub", QoS: 0}
	out0 := n2.stats.MessagesOut.Load()
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := cpuTime()
	for i := 0; i < b.N; i++ {
		n1.route(m, nil, nil)
		// Stay within the link's queue (QoS 0 past it is dropped), but do
		// not wait for what a bound dropped.
		for w := 0; w < 100 && int64(i)-(n2.stats.MessagesOut.Load()-out0) > 2000; w++ {
			time.Sleep(20 * time.Microsecond)
		}
	}
	last, still := int64(-1), 0
	for got := n2.stats.MessagesOut.Load() - out0; got < int64(b.N) && still < 20; got = n2.stats.MessagesOut.Load() - out0 {
		if got == last {
			still++
		} else {
			last, still = got, 0
		}
		time.Sleep(10 * time.Millisecond)
	}
	b.ReportMetric(float64(n2.stats.MessagesOut.Load()-out0)/float64(b.N), "delivered/msg")
	b.ReportMetric(float64((cpuTime()-cpu0).Nanoseconds())/float64(b.N), "cpu-ns/msg")
}
