package broker

// End-to-end tests with MQTT 3.1.1 clients: Eclipse Paho
// (paho.mqtt.golang) where it can express the case, rawClient where it
// cannot (DUP redelivery, exactly-once on a resent PUBLISH, keepalive).

import (
	"strconv"
	"testing"
	"time"

	mqtt3 "github.com/eclipse/paho.mqtt.golang"
	"github.com/mochi-mqtt/server/v2/packets"
)

func TestV3ConnectReturnCodes(t *testing.T) {
	t.Parallel()
	s := startServer(t, Options{})
	ok := connectV3(t, s, "ok", true)
	if ok.present {
		t.Fatal("clean session reported session present")
	}
	// An empty client id needs a clean session [MQTT-3.1.3-8].
	if _, rc, err := dialV3(t, s, "", false); err == nil || rc != 0x02 {
		t.Fatalf("empty id, clean=false: return code %d (%v), want 2", rc, err)
	}
	anon := connectV3(t, s, "", true) // allowed with a clean session
	anon.disconnect()
	// Raw: an unknown protocol level is refused with return code 1.
	rc := dialRaw(t, s)
	ack := rc.connectPk(&packets.Packet{ProtocolVersion: 4, Connect: packets.ConnectParams{ProtocolName: []byte("MQTT"), ClientIdentifier: "lvl", Clean: true}})
	if ack.ReasonCode != 0 {
		t.Fatalf("level 4: CONNACK %d", ack.ReasonCode)
	}
	rc = dialRaw(t, s)
	rc.write([]byte{0x10, 13, 0, 4, 'M', 'Q', 'T', 'T', 9, 2, 0, 30, 0, 1, 'x'})
	got := rc.readAll()
	if len(got) != 1 || got[0].FixedHeader.Type != packets.Connack || got[0].ReasonCode != 0x01 {
		t.Fatalf("level 9: got %d packets %+v, want CONNACK 1 then close", len(got), got)
	}
	roundTrip(t, s, "after")
}

func TestV3CleanSession(t *testing.T) {
	t.Parallel()
	s := startServer(t, Options{})
	pub := connectV3(t, s, "pub", true)
	c := connectV3(t, s, "p", false)
	if c.present {
		t.Fatal("new session reported present")
	}
	c.subscribe("v3p/t", 1)
	c.disconnect()
	waitOffline(t, s, "p")

	c = connectV3(t, s, "p", false)
	if !c.present {
		t.Fatal("clean=false session not present on reconnect")
	}
	pub.publish("v3p/t", "kept", 1, false)
	c.expect("v3p/t", "kept")
	c.disconnect()
	waitOffline(t, s, "p")

	c = connectV3(t, s, "p", true) // discards the session...
	if c.present {
		t.Fatal("clean session reported present")
	}
	pub.publish("v3p/t", "gone", 1, false)
	c.none()
	c.disconnect()
	waitOffline(t, s, "p")
	c = connectV3(t, s, "p", false) // ...and the clean session ends with its connection
	if c.present {
		t.Fatal("clean session outlived its connection")
	}
}

func TestV3Takeover(t *testing.T) {
	t.Parallel()
	s := startServer(t, Options{})
	pub := connectV3(t, s, "pub", true)
	old := connectV3(t, s, "dev", false)
	old.subscribe("dev/cmd", 1)
	nw := connectV3(t, s, "dev", false)
	old.closedByServer() // [MQTT-3.1.4-2]
	if !nw.present {
		t.Fatal("new connection did not get the session")
	}
	pub.publish("dev/cmd", "on", 1, false)
	nw.expect("dev/cmd", "on")
	if len(old.msgs) != 0 {
		t.Fatal("old connection got a message after takeover")
	}
}

// QoS 0/1/2 in both directions, within v3 and across v3 and v5.
func TestV3PublishQoS(t *testing.T) {
	t.Parallel()
	s := startServer(t, Options{})
	pub3 := connectV3(t, s, "pub3", true)
	pub5 := connectV5(t, s, "pub5")
	subs := make([]*v3Client, 3)
	for q := range subs {
		subs[q] = connectV3(t, s, "sub"+strconv.Itoa(q), true)
		if rc := subs[q].subscribe("qos/#", byte(q)); rc != byte(q) {
			t.Fatalf("SUBACK %d, want %d", rc, q)
		}
	}
	sub5 := connectV5(t, s, "sub5")
	sub5.subscribe("qos/#", 2)
	for pq := byte(0); pq <= 2; pq++ {
		for _, from := range []string{"v3", "v5"} {
			payload := from + " at " + strconv.Itoa(int(pq))
			if from == "v3" {
				pub3.publish("qos/t", payload, pq, false)
			} else {
				pub5.publish("qos/t", payload, pq, false)
			}
			for sq, sub := range subs {
				m := sub.expect("qos/t", payload)
				if want := min(pq, byte(sq)); m.Qos() != want {
					t.Errorf("%s: published QoS %d, subscribed %d: delivered at %d", from, pq, sq, m.Qos())
				}
			}
			if p := sub5.expect("qos/t", payload); p.QoS != pq {
				t.Errorf("%s to v5: delivered at %d, want %d", from, p.QoS, pq)
			}
		}
	}
}

func TestV3QoS2ExactlyOnce(t *testing.T) {
	t.Parallel()
	s := startServer(t, Options{})
	sub := connectV3(t, s, "sub", true)
	sub.subscribe("x2/t", 2)
	pub := dialRaw(t, s)
	pub.connect(4, "pub", true, 0)
	for range 3 { // the original and two resends before PUBREL
		pub.publish("x2/t", []byte("once"), 2, 3, true, packets.Properties{})
		if rec := pub.expect(packets.Pubrec); rec.PacketID != 3 {
			t.Fatalf("PUBREC for %d", rec.PacketID)
		}
	}
	pub.ack(packets.Pubrel, 3)
	pub.expect(packets.Pubcomp)
	sub.expect("x2/t", "once")
	sub.none()
}

// Offline queueing and DUP redelivery for a v3 clean=false session.
func TestV3OfflineQueueAndRedelivery(t *testing.T) {
	t.Parallel()
	s := startServer(t, Options{})
	sub := connectV3(t, s, "q", false)
	sub.subscribe("q/#", 2)
	sub.disconnect()
	waitOffline(t, s, "q")
	pub := connectV3(t, s, "pub", true)
	for i := range 10 {
		pub.publish("q/t", strconv.Itoa(i), 1, false)
	}
	sub = connectV3(t, s, "q", false)
	for i := range 10 {
		sub.expect("q/t", strconv.Itoa(i))
	}
	sub.none()
	waitAcked(t, s, "q")
	sub.disconnect()
	waitOffline(t, s, "q")

	// Raw: unacknowledged QoS 1 and 2 come back with DUP and the same ids.
	rc := dialRaw(t, s)
	rc.connect(4, "q", false, 0)
	pub.publish("q/a", "a", 1, false)
	pub.publish("q/b", "b", 2, false)
	a, b := rc.expect(packets.Publish), rc.expect(packets.Publish)
	rc.c.Close()
	rc = dialRaw(t, s)
	if ack := rc.connect(4, "q", false, 0); !ack.SessionPresent {
		t.Fatal("session not present")
	}
	for _, was := range []*packets.Packet{a, b} {
		p := rc.expect(packets.Publish)
		if !p.FixedHeader.Dup || p.PacketID != was.PacketID || string(p.Payload) != string(was.Payload) {
			t.Fatalf("redelivered dup=%v id %d %q, want DUP copy of id %d %q", p.FixedHeader.Dup, p.PacketID, p.Payload, was.PacketID, was.Payload)
		}
	}
	rc.ack(packets.Puback, a.PacketID)
	rc.ack(packets.Pubrec, b.PacketID)
	rc.expect(packets.Pubrel)
	rc.ack(packets.Pubcomp, b.PacketID)
	rc.expectNone()
}

func TestV3WildcardsAndDeny(t *testing.T) {
	t.Parallel()
	s := startServer(t, Options{DenyFilters: []string{"secret/#"}})
	c := connectV3(t, s, "c", true)
	for _, tc := range []struct {
		filter string
		qos    byte
		want   byte
	}{{"w/+/c", 1, 1}, {"w/#", 0, 0}, {"secret/#", 2, 0x80}, {"#", 0, 0x80}, {"+/#", 1, 0x80}} {
		// A deny filter refuses filters equal to or broader than it.
		if rc := c.subscribe(tc.filter, tc.qos); rc != tc.want {
			t.Errorf("subscribe %q: SUBACK %#x, want %#x", tc.filter, rc, tc.want)
		}
	}
	// Paho refuses to send an invalid filter: raw. It fails alone [MQTT-3.9.3-2].
	rc := dialRaw(t, s)
	rc.connect(4, "raw", true, 0)
	codes := rc.subscribe(1, 0, packets.Subscription{Filter: "a/#/b", Qos: 1}, packets.Subscription{Filter: "a/+", Qos: 2},
		packets.Subscription{Filter: "secret/+", Qos: 0})
	if want := []byte{0x80, 2, 0}; string(codes) != string(want) { // secret/+ is narrower than secret/#: allowed
		t.Fatalf("SUBACK %x, want %x", codes, want)
	}
	pub := connectV3(t, s, "pub", true)
	for _, tp := range []string{"w/b/c", "w/b/d", "other/x", "w"} {
		pub.publish(tp, tp, 1, false)
	}
	// w/b/c matches both filters: one copy [MQTT-3.3.5-1 allows one], at the higher QoS.
	if m := c.expect("w/b/c", "w/b/c"); m.Qos() != 1 {
		t.Errorf("overlap delivered at QoS %d, want 1", m.Qos())
	}
	c.expect("w/b/d", "w/b/d")
	c.expect("w", "w")
	c.none()
	c.unsubscribe("w/#")
	pub.publish("w/b/d", "x", 1, false)
	c.none()
}

func TestV3Retained(t *testing.T) {
	t.Parallel()
	s := startServer(t, Options{})
	pub := connectV3(t, s, "pub", true)
	pub.publish("rt/a", "1", 1, true)
	pub.publish("rt/a", "2", 1, true) // replace
	sub := connectV3(t, s, "sub", true)
	sub.subscribe("rt/#", 1)
	if m := sub.expect("rt/a", "2"); !m.Retained() {
		t.Fatal("retained message delivered without retain flag")
	}
	sub.none()
	pub.publish("rt/a", "", 1, true) // clear
	sub.expect("rt/a", "")
	sub2 := connectV3(t, s, "sub2", true)
	sub2.subscribe("rt/#", 1)
	sub2.none()
}

func TestV3Will(t *testing.T) {
	t.Parallel()
	s := startServer(t, Options{})
	watch := connectV3(t, s, "watch", true)
	watch.subscribe("will/#", 1)
	withWill := func(o *mqtt3.ClientOptions) { o.SetWill("will/dev", "gone", 1, false) }

	c := connectV3(t, s, "dev", true, withWill)
	c.drop() // socket closed, no DISCONNECT
	watch.expect("will/dev", "gone")

	c = connectV3(t, s, "dev2", true, withWill)
	c.disconnect() // DISCONNECT: the will is discarded [MQTT-3.1.2-10]
	watch.none()

	// Keepalive timeout is an abnormal end too (raw: paho would ping).
	rc := dialRaw(t, s)
	rc.connectPk(&packets.Packet{ProtocolVersion: 4, Connect: packets.ConnectParams{ClientIdentifier: "silent", Clean: true,
		Keepalive: 1, WillFlag: true, WillTopic: "will/silent", WillPayload: []byte("timeout")}})
	start := time.Now()
	if got := rc.readAll(); len(got) != 0 {
		t.Fatalf("v3 keepalive timeout sent %d packets, want a plain close", len(got))
	}
	within(t, "keepalive close", time.Since(start), 1500*time.Millisecond, 7*time.Second)
	watch.expect("will/silent", "timeout")
}

func TestV3AuthAndACL(t *testing.T) {
	t.Parallel()
	s := startServer(t, Options{
		PasswordFile: writePasswordFile(t, map[string]string{"alice": "s3cret", "bob": "hunter2"}),
		ACL: []ACLRule{
			{Topic: "users/%u/#", Access: "readwrite"},
			{User: "bob", Topic: "users/#", Access: "read"},
		},
	})
	creds := func(u, p string) v3Opt { return func(o *mqtt3.ClientOptions) { o.SetUsername(u).SetPassword(p) } }
	for _, tc := range []struct {
		name string
		opts []v3Opt
	}{
		{"wrong password", []v3Opt{creds("alice", "nope")}},
		{"unknown user", []v3Opt{creds("eve", "s3cret")}},
		{"no credentials", nil},
	} {
		_, rc, err := dialV3(t, s, "x-"+tc.name, true, tc.opts...)
		if err == nil || (rc != 4 && rc != 5) { // bad user name or password / not authorized
			t.Errorf("%s: return code %d (%v), want 4 or 5", tc.name, rc, err)
		}
	}
	alice := connectV3(t, s, "alice-dev", true, creds("alice", "s3cret"))
	bob := connectV3(t, s, "bob-dev", true, creds("bob", "hunter2"))
	if rc := bob.subscribe("users/#", 1); rc != 1 {
		t.Fatalf("bob: SUBACK %#x", rc)
	}
	if rc := alice.subscribe("users/bob/#", 1); rc != 0x80 {
		t.Fatalf("alice subscribing to bob's topics: SUBACK %#x, want 0x80", rc)
	}
	alice.subscribe("users/alice/#", 1)
	alice.publish("users/alice/x", "mine", 1, false)
	bob.expect("users/alice/x", "mine")
	alice.expect("users/alice/x", "mine")
	alice.publish("users/bob/x", "forged", 1, false) // v3 PUBACK has no code: dropped silently
	bob.publish("users/alice/y", "read only", 1, false)
	alice.publish("users/alice/z", "last", 1, false)
	bob.expect("users/alice/z", "last") // the forged one never arrived before it
	alice.expect("users/alice/z", "last")
	bob.none()
	alice.none()
}

func TestV3KeepaliveTimeout(t *testing.T) {
	t.Parallel()
	s := startServer(t, Options{MaxKeepalive: 1})
	// Within the maximum: enforced at 1.5 × the keepalive.
	rc := dialRaw(t, s)
	rc.connectPk(&packets.Packet{ProtocolVersion: 4, Connect: packets.ConnectParams{ClientIdentifier: "lazy", Clean: true, Keepalive: 1}})
	start := time.Now()
	if got := rc.readAll(); len(got) != 0 {
		t.Fatalf("got %d packets, want a plain close", len(got))
	}
	within(t, "keepalive close", time.Since(start), 1000*time.Millisecond, 7*time.Second)
}

// A v3 client cannot be told another keepalive, so asking for more than
// MaxKeepalive, or for none while there is a maximum, is refused (CONNACK
// 0x02, as Mosquitto does) instead of getting a deadline it cannot know.
func TestV3KeepaliveAboveMaximumRefused(t *testing.T) {
	t.Parallel()
	s := startServer(t, Options{MaxKeepalive: 60})
	for _, ka := range []uint16{0, 61, 3600} {
		rc := dialRaw(t, s)
		rc.version = 4
		rc.send(&packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connect}, ProtocolVersion: 4, Connect: packets.ConnectParams{
			ProtocolName: []byte("MQTT"), ClientIdentifier: "battery", Clean: true, Keepalive: ka}}) // (connectPk would turn 0 into 30)
		ack := rc.expect(packets.Connack)
		if ack.ReasonCode != packets.Err3ClientIdentifierNotValid.Code {
			t.Errorf("keepalive %d: CONNACK %#x, want 0x02", ka, ack.ReasonCode)
		}
		rc.expectClosed()
	}
	// With no maximum, a keepalive of an hour is accepted.
	s = startServer(t, Options{MaxKeepalive: -1})
	rc := dialRaw(t, s)
	if ack := rc.connectPk(&packets.Packet{ProtocolVersion: 4, Connect: packets.ConnectParams{ClientIdentifier: "battery", Clean: true, Keepalive: 3600}}); ack.ReasonCode != 0 {
		t.Fatalf("CONNACK %#x with no maximum", ack.ReasonCode)
	}
}

// Payloads far larger than one socket read (gnet reads 64 KiB at a time)
// arrive whole, in both directions and both protocol versions.
func TestLargePayload(t *testing.T) {
	t.Parallel()
	s := startServer(t, Options{})
	sub3 := connectV3(t, s, "sub3", true)
	sub3.subscribe("big/#", 1)
	sub5 := connectV5(t, s, "sub5")
	sub5.subscribe("big/#", 2)
	pub3 := connectV3(t, s, "pub3", true)
	pub5 := connectV5(t, s, "pub5")
	payload := make([]byte, 700<<10)
	for i := range payload {
		payload[i] = byte(i * 7)
	}
	pub3.publish("big/3", string(payload), 1, false)
	pub5.publish("big/5", string(payload), 2, false)
	for _, topic := range []string{"big/3", "big/5"} {
		if m := sub3.next(); m.Topic() != topic || string(m.Payload()) != string(payload) {
			t.Fatalf("v3 subscriber: %s, %d bytes intact=%v", m.Topic(), len(m.Payload()), string(m.Payload()) == string(payload))
		}
		if p := sub5.next(); p.Topic != topic || string(p.Payload) != string(payload) {
			t.Fatalf("v5 subscriber: %s, %d bytes intact=%v", p.Topic, len(p.Payload), string(p.Payload) == string(payload))
		}
	}
}
