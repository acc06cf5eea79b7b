package broker

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/cimgo/cim/storage"
	"github.com/cockroachdb/pebble/vfs"
	"github.com/mochi-mqtt/server/v2/packets"
)

// restartable runs a broker on a store in fs; stop shuts both down cleanly.
func restartable(t *testing.T, fs vfs.FS) (*Server, func()) {
	t.Helper()
	db, err := storage.Open("data", storage.Options{FS: fs, SweepInterval: -1, Logger: startServerLogger()})
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Options{MQTTAddr: "127.0.0.1:0", Store: db, SysInterval: -1, Logger: startServerLogger()})
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

func TestRestartKeepsRetainedAndSubscriptions(t *testing.T) {
	fs := vfs.NewMem()
	s, stop := restartable(t, fs)
	c := dialRaw(t, s)
	c.connect(5, "keeper", true, 0)
	// v5 session expiry: a persistent session.
	c.send(&packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Disconnect}, ProtocolVersion: 5})
	c.expectClosed()

	sub := dialRaw(t, s)
	sub.version = 4
	sub.connect(4, "persistent-sub", false, 0)
	sub.send(&packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Subscribe, Qos: 1}, PacketID: 1,
		Filters: packets.Subscriptions{{Filter: "news/+", Qos: 1}}})
	if ack := sub.read(); ack.FixedHeader.Type != packets.Suback {
		t.Fatalf("want SUBACK, got %v", ack.FixedHeader.Type)
	}
	sub.send(&packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Disconnect}})
	sub.expectClosed()

	pub := dialRaw(t, s)
	pub.connect(4, "pub", true, 0)
	pub.send(&packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1, Retain: true}, PacketID: 1,
		TopicName: "status/door", Payload: []byte("open")})
	if ack := pub.read(); ack.FixedHeader.Type != packets.Puback {
		t.Fatalf("want PUBACK, got %v", ack.FixedHeader.Type)
	}
	stop()

	s, stop = restartable(t, fs)
	defer stop()
	// The subscription survived: a message published now is queued for the offline session.
	pub = dialRaw(t, s)
	pub.connect(4, "pub", true, 0)
	pub.send(&packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1}, PacketID: 2,
		TopicName: "news/today", Payload: []byte("after restart")})
	if ack := pub.read(); ack.FixedHeader.Type != packets.Puback {
		t.Fatalf("want PUBACK, got %v", ack.FixedHeader.Type)
	}
	sub = dialRaw(t, s)
	if ack := sub.connect(4, "persistent-sub", false, 0); !ack.SessionPresent {
		t.Fatal("session not present after restart")
	}
	got := sub.read()
	if got.FixedHeader.Type != packets.Publish || string(got.Payload) != "after restart" {
		t.Fatalf("want queued publish, got %v %q", got.FixedHeader.Type, got.Payload)
	}
	// The retained message survived.
	r := dialRaw(t, s)
	r.connect(4, "reader", true, 0)
	r.send(&packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Subscribe, Qos: 1}, PacketID: 1,
		Filters: packets.Subscriptions{{Filter: "status/#", Qos: 0}}})
	r.read() // SUBACK
	if m := r.read(); string(m.Payload) != "open" || !m.FixedHeader.Retain {
		t.Fatalf("retained: got %q retain=%v", m.Payload, m.FixedHeader.Retain)
	}
	// The clean session with expiry 0 was never kept.
	if _, err := s.store.GetSession(mqttKey("keeper").storeKey()); err == nil {
		t.Fatal("a session with expiry 0 was stored")
	}
}

func TestExpiredSessionGoneFromStore(t *testing.T) {
	fs := vfs.NewMem()
	s, stop := restartable(t, fs)
	defer stop()
	c := dialRaw(t, s)
	c.version = 5
	c.send(&packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connect}, ProtocolVersion: 5,
		Connect:    packets.ConnectParams{ProtocolName: []byte("MQTT"), ClientIdentifier: "short", Keepalive: 30},
		Properties: packets.Properties{SessionExpiryInterval: 1, SessionExpiryIntervalFlag: true}})
	c.read() // CONNACK
	waitFor(t, "session stored", func() bool { _, err := s.store.GetSession(mqttKey("short").storeKey()); return err == nil })
	c.c.Close()
	waitFor(t, "session expired and deleted", func() bool { _, err := s.store.GetSession(mqttKey("short").storeKey()); return err != nil })
}

// An acknowledged message's stored copy is deleted by its queue seq, also
// after a restart renumbered nothing but the send order: the messages
// acknowledged after a restart do not come back after the next one.
// (Before, the stored copy was deleted by the send order, which diverges
// from the queue seq once a session lived through a restart.)
func TestAckedAfterRestartStaysAcked(t *testing.T) {
	fs := vfs.NewMem()
	s, stop := restartable(t, fs)
	publish := func(s *Server, from, to int) {
		t.Helper()
		pub := dialRaw(t, s)
		pub.connect(4, "pub", true, 0)
		for i := from; i < to; i++ {
			pub.publish("acked/x", []byte(fmt.Sprint(i)), 1, uint16(i+1), false, packets.Properties{})
			pub.expect(packets.Puback)
		}
		pub.c.Close()
	}
	receive := func(s *Server, n int) []string {
		t.Helper()
		sub := dialRaw(t, s)
		sub.connect(4, "acker", false, 0)
		var got []string
		for range n {
			p := sub.expect(packets.Publish)
			got = append(got, string(p.Payload))
			sub.ack(packets.Puback, p.PacketID)
		}
		waitAcked(t, s, "acker")
		sub.send(&packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Disconnect}})
		sub.expectClosed()
		return got
	}
	sub := dialRaw(t, s)
	sub.connect(4, "acker", false, 0)
	sub.subscribe(1, 0, packets.Subscription{Filter: "acked/x", Qos: 1})
	sub.send(&packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Disconnect}})
	sub.expectClosed()
	publish(s, 0, 5)
	receive(s, 5) // seqs 1-5 acknowledged before any restart
	publish(s, 5, 10)
	stop()
	s, stop = restartable(t, fs)
	if got := receive(s, 5); fmt.Sprint(got) != "[5 6 7 8 9]" {
		t.Fatalf("after the first restart got %v", got)
	}
	stop()
	s, stop = restartable(t, fs)
	defer stop()
	sub = dialRaw(t, s)
	sub.connect(4, "acker", false, 0)
	sub.expectNone() // nothing acknowledged comes back
}

// Subscription identifiers of queued messages are stored with them and
// delivered after a restart.
func TestSubscriptionIDsSurviveRestart(t *testing.T) {
	fs := vfs.NewMem()
	s, stop := restartable(t, fs)
	sub := dialRaw(t, s)
	sub.connect5("ids", false, packets.Properties{SessionExpiryInterval: 300, SessionExpiryIntervalFlag: true})
	sub.subscribe(1, 7, packets.Subscription{Filter: "ids/+", Qos: 1})
	sub.subscribe(2, 9, packets.Subscription{Filter: "ids/#", Qos: 1})
	sub.send(&packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Disconnect}, ProtocolVersion: 5})
	sub.expectClosed()
	waitOffline(t, s, "ids")
	pub := dialRaw(t, s)
	pub.connect(4, "ids-pub", true, 0)
	pub.publish("ids/x", []byte("queued"), 1, 1, false, packets.Properties{})
	pub.expect(packets.Puback)
	stop()
	s, stop = restartable(t, fs)
	defer stop()
	sub = dialRaw(t, s)
	sub.connect5("ids", false, packets.Properties{SessionExpiryInterval: 300, SessionExpiryIntervalFlag: true})
	p := sub.expect(packets.Publish)
	ids := p.Properties.SubscriptionIdentifier
	slices.Sort(ids)
	if string(p.Payload) != "queued" || !slices.Equal(ids, []int{7, 9}) {
		t.Fatalf("got %q with subscription ids %v, want [7 9]", p.Payload, ids)
	}
}
