package broker

// Micro-benchmarks of the native message path without sockets: a send
// frame is decoded and applied (handleSend → imSend → route → deliver →
// encode into each receiver's outbound buffer), on the fake event loop of
// route_bench_test.go. BenchmarkNativeSend is the native twin of
// BenchmarkMQTTPublish: the two should cost about the same per message.

import (
	"context"
	"fmt"
	"testing"

	"github.com/cimgo/cim/broker/topic"
	"github.com/cimgo/cim/broker/wire"
	"github.com/cimgo/cim/storage"
	"github.com/mochi-mqtt/server/v2/packets"
)

// benchNativeConn logs in a native user (registered here) on a fake
// connection of l, as attach does without the socket.
func benchNativeConn(b *testing.B, srv *Server, l *loop, name string) *nativeConn {
	b.Helper()
	acct, _, err := srv.Register(context.Background(), name, "")
	if err != nil {
		b.Fatal(err)
	}
	a, _ := srv.im.dir.account(acct.ID)
	c := &nativeConn{acct: a, id: a.ident}
	c.loop, c.ep = l, c
	now := srv.now()
	s, _ := srv.sessions.attach(attachment{key: nativeKey(a.ID), ident: c.id, expiry: foreverExpiry, window: 65535, version: 1}, c, now)
	c.sess = s
	c.state = stateActive
	srv.im.dir.setOnline(a.ID, +1)
	srv.imSubscriptions(s, a.ID)
	s.start(c, now)
	return c
}

// BenchmarkNativeSend sends one 64-byte message per op to a topic n native
// users subscribe to (the bench's fan-in and fan-out: wire.KindTopic).
// The figure per op is for all n deliveries.
func BenchmarkNativeSend(b *testing.B) {
	for _, qos := range []byte{0, 1} {
		for _, n := range []int{1, 100} {
			b.Run(fmt.Sprintf("qos=%d/subs=%d", qos, n), func(b *testing.B) {
				srv, err := New(Options{Logger: startServerLogger(), SysInterval: -1, MaxInflight: 65535, MaxQueued: 1 << 30,
					Store: openTestStore(b)})
				if err != nil {
					b.Fatal(err)
				}
				l := &loop{el: fakeEventLoop{}, srv: srv}
				for i := range n {
					r := benchNativeConn(b, srv, l, fmt.Sprintf("sub%d", i))
					srv.subscribe(r.sess, "bench/+/x", topic.Subscription{QoS: qos})
				}
				c := benchNativeConn(b, srv, l, "pub")
				srv.im.marks.learn(c.acct.ID, 0) // its sends are new: no look-up in the store
				send := wire.Send{Target: wire.ToTopic("bench/7/x"), QoS: qos, Body: make([]byte, 64)}
				frame, err := wire.Append(nil, &send)
				if err != nil {
					b.Fatal(err)
				}
				b.ReportAllocs()
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					if qos > 0 {
						send.ID = uint64(i + 1)
						frame, _ = wire.Append(frame[:0], &send)
					}
					c.handle(frame)
				}
				b.StopTimer()
				if qos > 0 {
					if err := srv.commitWait(context.Background(), func(*storage.Batch) {}); err != nil { // behind every send's
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/delivery")
			})
		}
	}
}

// BenchmarkMQTTPublish is BenchmarkNativeSend's MQTT twin: a decoded
// PUBLISH applied by handlePublish (QoS 0: the loop's scratch message, no
// copy) to n MQTT 3.1.1 subscribers.
func BenchmarkMQTTPublish(b *testing.B) {
	for _, n := range []int{1, 100} {
		b.Run(fmt.Sprintf("qos=0/subs=%d", n), func(b *testing.B) {
			_, ss := benchServer(b, n, 4, "bench/+/x", 0)
			c := &mqttConn{version: 4}
			c.loop, c.ep = ss[0].ep.tr().loop, c
			c.state = stateActive
			c.sess = ss[0]
			pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish}, TopicName: "bench/7/x",
				Payload: make([]byte, 64), ProtocolVersion: 4}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				c.handlePublish(&pk)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/delivery")
		})
	}
}
