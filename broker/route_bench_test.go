package broker

// Micro-benchmarks of the publish path without sockets: route → deliver →
// encode into each subscriber's outbound buffer, and the in-flight window's
// pump. Subscribers are real mqttConns on a fake event loop whose flush
// task just empties their buffers, so what is measured is matching,
// delivery and encoding.

import (
	"context"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/cimgo/cim/broker/topic"
	"github.com/panjf2000/gnet/v2"
)

// fakeEventLoop runs a loop's flush task by emptying the buffers it would
// have written. Its tasks run one at a time, as on a real loop (a store's
// committer schedules acks from its own goroutine).
type fakeEventLoop struct{}

var fakeLoopMu sync.Mutex

func (fakeEventLoop) Register(context.Context, net.Addr) (<-chan gnet.RegisteredResult, error) {
	return nil, nil
}
func (fakeEventLoop) Enroll(context.Context, net.Conn) (<-chan gnet.RegisteredResult, error) {
	return nil, nil
}
func (fakeEventLoop) Schedule(context.Context, gnet.Runnable, time.Duration) error { return nil }
func (fakeEventLoop) Close(gnet.Conn) error                                        { return nil }
func (fakeEventLoop) Execute(_ context.Context, r gnet.Runnable) error {
	l, ok := r.(*loop)
	if !ok {
		return nil
	}
	fakeLoopMu.Lock()
	defer fakeLoopMu.Unlock()
	l.mu.Lock()
	list := l.dirty
	l.dirty = l.spare[:0]
	l.scheduled = false
	l.mu.Unlock()
	defer func() { clear(list); l.spare = list[:0] }()
	for _, t := range list {
		t.mu.Lock()
		if t.out != nil {
			putOut(t.out)
			t.out = nil
		}
		t.dirty = false
		t.outMsgs = 0
		t.mu.Unlock()
	}
	return nil
}

// benchServer is a Server that never listens, with n MQTT sessions of the
// given version subscribed to filter, each on a fake connection.
func benchServer(b *testing.B, n int, version byte, filter string, qos byte) (*Server, []*session) {
	b.Helper()
	srv, err := New(Options{Logger: startServerLogger(), SysInterval: -1, MaxInflight: 65535, MaxQueued: 1 << 30})
	if err != nil {
		b.Fatal(err)
	}
	l := &loop{el: fakeEventLoop{}, srv: srv}
	ss := make([]*session, n)
	for i := range n {
		c := &mqttConn{version: version}
		c.gc, c.loop, c.ep = nil, l, c
		c.state = stateActive
		id := fmt.Sprintf("sub-%d", i)
		s, _ := srv.sessions.attach(attachment{key: mqttKey(id), window: 65535, version: version}, c, srv.now())
		c.sess = s
		s.start(c, srv.now())
		srv.subscribe(s, filter, topic.Subscription{QoS: qos})
		ss[i] = s
	}
	return srv, ss
}

// BenchmarkRoute publishes one 64-byte message per op to n subscribers.
// The figure per op is for all n deliveries.
func BenchmarkRoute(b *testing.B) {
	for _, qos := range []byte{0, 1} {
		for _, n := range []int{1, 100, 10000} {
			b.Run(fmt.Sprintf("qos=%d/subs=%d", qos, n), func(b *testing.B) {
				srv, ss := benchServer(b, n, 4, "bench/+/x", qos)
				payload := make([]byte, 64)
				b.ReportAllocs()
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					m := &Message{ID: uint64(i), Topic: "bench/7/x", Payload: payload, QoS: qos, Created: srv.now()}
					srv.route(m, nil, nil)
					if qos > 0 {
						for _, s := range ss {
							s.ack(s.nextTag, stepAck, srv.now()) // keep the window empty
						}
					}
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/delivery")
			})
		}
	}
}

// BenchmarkPump measures the in-flight window: a QoS 1 message queued
// behind a full window goes out when an acknowledgement makes room.
func BenchmarkPump(b *testing.B) {
	srv, ss := benchServer(b, 1, 4, "pump", 1)
	s := ss[0]
	s.mu.Lock()
	s.window = 16
	s.mu.Unlock()
	payload := make([]byte, 64)
	var lb lazyBatch
	for range 32 { // fill the window and queue as many behind it
		s.deliver(&Message{Topic: "pump", Payload: payload, QoS: 1}, 1, false, nil, srv.now(), &lb)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		s.mu.Lock()
		var tag uint16
		for t := range s.inflight {
			tag = t
			break
		}
		s.mu.Unlock()
		s.ack(tag, stepAck, srv.now())                                                              // sends one from the queue
		s.deliver(&Message{Topic: "pump", Payload: payload, QoS: 1}, 1, false, nil, srv.now(), &lb) // queues one
	}
}
