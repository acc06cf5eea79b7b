package broker

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/cimgo/cim/storage"
	"github.com/cockroachdb/pebble/vfs"
	"github.com/mochi-mqtt/server/v2/packets"
)

// startStored runs a broker over a store in fs with the given options; stop
// shuts both down.
func startStored(t *testing.T, fs vfs.FS, opts Options, sopts storage.Options) (*Server, func()) {
	t.Helper()
	sopts.FS, sopts.SweepInterval, sopts.Logger = fs, -1, startServerLogger()
	db, err := storage.Open("data", sopts)
	if err != nil {
		t.Fatal(err)
	}
	opts.MQTTAddr, opts.Store, opts.SysInterval, opts.Logger = "127.0.0.1:0", db, -1, startServerLogger()
	s, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	return s, func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Error(err)
		}
		if err := db.Close(); err != nil {
			t.Error(err)
		}
	}
}

// subscribeOffline leaves a persistent v3 session subscribed to topic.
func subscribeOffline(t *testing.T, s *Server, id, filter string) {
	t.Helper()
	sub := dialRaw(t, s)
	sub.connect(4, id, false, 0)
	sub.subscribe(1, 0, packets.Subscription{Filter: filter, Qos: 1})
	sub.send(&packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Disconnect}})
	sub.expectClosed()
	waitOffline(t, s, id)
}

// publishQoS1 publishes n acknowledged QoS 1 messages "0".."n-1", pipelined.
func publishQoS1(t *testing.T, s *Server, topic string, n int) {
	t.Helper()
	pub := dialRaw(t, s)
	pub.connect(4, "publisher", true, 0)
	for i := range n {
		pub.publish(topic, []byte(fmt.Sprint(i)), 1, uint16(i%60000+1), false, packets.Properties{})
		if i%100 == 99 { // keep at most 100 unacknowledged
			for range 100 {
				pub.expect(packets.Puback)
			}
		}
	}
	for range n % 100 {
		pub.expect(packets.Puback)
	}
	pub.c.Close()
}

// receiveAll connects id and reads n messages, acknowledging each; it
// returns their payloads in order.
func receiveAll(t *testing.T, s *Server, id string, n int) []string {
	t.Helper()
	sub := dialRaw(t, s)
	sub.connect(4, id, false, 0)
	got := make([]string, 0, n)
	for range n {
		p := sub.expect(packets.Publish)
		got = append(got, string(p.Payload))
		sub.ack(packets.Puback, p.PacketID)
	}
	sub.expectNone()
	return got
}

func checkSequence(t *testing.T, got []string, from, n int) {
	t.Helper()
	if len(got) != n {
		t.Fatalf("received %d messages, want %d", len(got), n)
	}
	for i, p := range got {
		if p != fmt.Sprint(from+i) {
			t.Fatalf("message %d is %q, want %q (order or loss)", i, p, fmt.Sprint(from+i))
		}
	}
}

// Acknowledged QoS 1 messages for an offline persistent session are all
// delivered, in order, even far past the in-memory window (MaxQueued): the
// rest waits on disk and is paged back in. Before, the memory limit dropped
// the oldest and deleted its stored copy too. With and without a restart.
func TestQueueBeyondMemoryWindow(t *testing.T) {
	const window, n = 200, 1500
	for _, restart := range []bool{false, true} {
		t.Run(fmt.Sprintf("restart=%v", restart), func(t *testing.T) {
			fs := vfs.NewMem()
			opts := Options{MaxQueued: window}
			s, stop := startStored(t, fs, opts, storage.Options{})
			subscribeOffline(t, s, "far-behind", "deep/q")
			publishQoS1(t, s, "deep/q", n)
			if restart {
				stop()
				s, stop = startStored(t, fs, opts, storage.Options{})
			}
			defer stop()
			checkSequence(t, receiveAll(t, s, "far-behind", n), 0, n)
			if d := s.Stats().QueueDropped; d != 0 {
				t.Errorf("QueueDropped = %d, want 0", d)
			}
		})
	}
}

// Messages keep arriving while the subscriber drains a queue that is mostly
// on disk: the order still holds.
func TestQueueSpillWhileOnline(t *testing.T) {
	fs := vfs.NewMem()
	s, stop := startStored(t, fs, Options{MaxQueued: 50}, storage.Options{})
	defer stop()
	subscribeOffline(t, s, "racer", "race/q")
	publishQoS1(t, s, "race/q", 400)
	sub := dialRaw(t, s)
	sub.connect(4, "racer", false, 0)
	pub := dialRaw(t, s)
	pub.connect(4, "late-publisher", true, 0)
	var got []string
	for i := 400; i < 800; i++ {
		pub.publish("race/q", []byte(fmt.Sprint(i)), 1, uint16(i), false, packets.Properties{})
		pub.expect(packets.Puback)
		p := sub.expect(packets.Publish)
		got = append(got, string(p.Payload))
		sub.ack(packets.Puback, p.PacketID)
	}
	for len(got) < 800 {
		p := sub.expect(packets.Publish)
		got = append(got, string(p.Payload))
		sub.ack(packets.Puback, p.PacketID)
	}
	checkSequence(t, got, 0, 800)
}

// At the store's own cap the oldest are dropped (the documented default),
// counted, and logged once for the session, not once per message.
func TestQueueStoreCapDropsOldest(t *testing.T) {
	fs := vfs.NewMem()
	s, stop := startStored(t, fs, Options{MaxQueued: 100}, storage.Options{MaxQueuedPerSession: 300})
	defer stop()
	subscribeOffline(t, s, "capped", "cap/q")
	publishQoS1(t, s, "cap/q", 1000)
	waitE2E(t, "drops counted", func() bool { return s.Stats().QueueDropped == 700 })
	checkSequence(t, receiveAll(t, s, "capped", 300), 700, 300)
}

// With the store's reject-new policy, a publish the queue cannot take is
// answered with PUBACK 0x97 Quota exceeded (v5); what the queue holds stays.
func TestQueueStoreCapRejectsNew(t *testing.T) {
	fs := vfs.NewMem()
	s, stop := startStored(t, fs, Options{MaxQueued: 10}, storage.Options{MaxQueuedPerSession: 20, QueueFullPolicy: storage.RejectNew})
	defer stop()
	subscribeOffline(t, s, "full", "full/q")
	pub := dialRaw(t, s)
	pub.connect5("v5-publisher", true, packets.Properties{})
	for i := range 25 {
		pub.publish("full/q", []byte(fmt.Sprint(i)), 1, uint16(i+1), false, packets.Properties{})
		ack := pub.expect(packets.Puback)
		want := byte(0)
		if i >= 20 {
			want = packets.ErrQuotaExceeded.Code
		}
		if ack.ReasonCode != want {
			t.Fatalf("publish %d: PUBACK %#x, want %#x", i, ack.ReasonCode, want)
		}
	}
	checkSequence(t, receiveAll(t, s, "full", 20), 0, 20)
	if r := s.Stats().QueueRejected; r != 5 {
		t.Errorf("QueueRejected = %d, want 5", r)
	}
}
