package broker

// End-to-end tests with MQTT 5 clients: Eclipse Paho (paho.golang) where it
// can express the case, rawClient where it cannot (flow control, DUP,
// subscription identifiers, server-to-client topic aliases).

import (
	"fmt"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/mochi-mqtt/server/v2/packets"
)

func TestV5ConnectReasonCodes(t *testing.T) {
	t.Parallel()
	s := startServer(t, Options{})
	ok := connectV5(t, s, "ok")
	if ok.ack.ReasonCode != 0 || ok.ack.SessionPresent {
		t.Fatalf("CONNACK %#x present=%v", ok.ack.ReasonCode, ok.ack.SessionPresent)
	}
	cases := []struct {
		name string
		pk   packets.Packet
		want byte
	}{
		{"auth method", packets.Packet{Properties: packets.Properties{AuthenticationMethod: "SCRAM-SHA-1"}}, 0x8C},
		{"will topic wildcard", packets.Packet{Connect: packets.ConnectParams{WillFlag: true, WillTopic: "a/#", WillPayload: []byte("x")}}, 0x90},
	}
	for _, tc := range cases {
		rc := dialRaw(t, s)
		pk := tc.pk
		pk.ProtocolVersion = 5
		pk.Connect.ClientIdentifier = "c-" + tc.name
		pk.Connect.Clean = true
		ack := rc.connectPk(&pk)
		if ack.ReasonCode != tc.want {
			t.Errorf("%s: CONNACK %#x, want %#x", tc.name, ack.ReasonCode, tc.want)
		}
		rc.readAll() // and closed
	}
	roundTrip(t, s, "after")
}

func TestV5CleanStartAndSessionPresent(t *testing.T) {
	t.Parallel()
	s := startServer(t, Options{})
	pub := connectV5(t, s, "pub")

	c := connectV5(t, s, "p1", persistent(60))
	if c.ack.SessionPresent {
		t.Fatal("new session reported present")
	}
	c.subscribe("p1/t", 1)
	c.disconnect()
	waitOffline(t, s, "p1")

	c = connectV5(t, s, "p1", persistent(60))
	if !c.ack.SessionPresent {
		t.Fatal("persistent session not present on reconnect")
	}
	pub.publish("p1/t", "kept", 1, false)
	c.expect("p1/t", "kept") // the subscription survived
	c.disconnect()
	waitOffline(t, s, "p1")

	c = connectV5(t, s, "p1", expiry(60)) // clean start: state discarded
	if c.ack.SessionPresent {
		t.Fatal("clean start reported session present")
	}
	pub.publish("p1/t", "gone", 1, false)
	c.none()
	c.disconnect()
	waitOffline(t, s, "p1")

	// Session expiry 0 (the v5 default): the session ends with the connection.
	c = connectV5(t, s, "p2", persistent(0))
	c.subscribe("p2/t", 1)
	c.disconnect()
	waitOffline(t, s, "p2")
	c = connectV5(t, s, "p2", persistent(0))
	if c.ack.SessionPresent {
		t.Fatal("session with expiry 0 outlived its connection")
	}
	pub.publish("p2/t", "x", 1, false)
	c.none()
}

func TestV5AssignedClientID(t *testing.T) {
	t.Parallel()
	s := startServer(t, Options{})
	a := connectV5(t, s, "")
	b := connectV5(t, s, "")
	ida, idb := a.ack.Properties.AssignedClientID, b.ack.Properties.AssignedClientID
	if ida == "" || idb == "" || ida == idb {
		t.Fatalf("assigned ids %q %q", ida, idb)
	}
	a.subscribe("aid/t", 1)
	b.publish("aid/t", "hi", 1, false)
	a.expect("aid/t", "hi")
	// The assigned id names a real session: taking it over works.
	a2 := connectV5(t, s, ida)
	if d := a.serverDisconnect(); d.ReasonCode != 0x8E {
		t.Fatalf("DISCONNECT %#x, want 0x8E", d.ReasonCode)
	}
	a2.disconnect()
}

func TestV5ServerKeepAlive(t *testing.T) {
	t.Parallel()
	s := startServer(t, Options{MaxKeepalive: 20})
	for _, tc := range []struct {
		ask  uint16
		want uint16 // 0: no Server Keep Alive
	}{{60, 20}, {0, 20}, {10, 0}, {20, 0}} {
		c := connectV5(t, s, fmt.Sprintf("ka%d", tc.ask), keepAlive(tc.ask))
		got := c.ack.Properties.ServerKeepAlive
		switch {
		case tc.want == 0 && got != nil:
			t.Errorf("keepalive %d: unexpected Server Keep Alive %d", tc.ask, *got)
		case tc.want != 0 && (got == nil || *got != tc.want):
			t.Errorf("keepalive %d: Server Keep Alive %v, want %d", tc.ask, got, tc.want)
		}
		c.disconnect()
	}
}

func TestV5Takeover(t *testing.T) {
	t.Parallel()
	s := startServer(t, Options{})
	pub := connectV5(t, s, "pub")
	old := connectV5(t, s, "dev", persistent(60))
	old.subscribe("dev/cmd", 1)

	nw := connectV5(t, s, "dev", persistent(60))
	if d := old.serverDisconnect(); d.ReasonCode != 0x8E {
		t.Fatalf("old connection got DISCONNECT %#x, want 0x8E (session taken over)", d.ReasonCode)
	}
	old.closedByServer()
	if !nw.ack.SessionPresent {
		t.Fatal("new connection did not get the session")
	}
	pub.publish("dev/cmd", "on", 1, false)
	nw.expect("dev/cmd", "on")
	if len(old.msgs) != 0 {
		t.Fatal("old connection received a message after takeover")
	}

	// Clean start takes over too, but drops the state.
	nw2 := connectV5(t, s, "dev")
	if d := nw.serverDisconnect(); d.ReasonCode != 0x8E {
		t.Fatalf("DISCONNECT %#x, want 0x8E", d.ReasonCode)
	}
	if nw2.ack.SessionPresent {
		t.Fatal("clean start takeover reported session present")
	}
	pub.publish("dev/cmd", "off", 1, false)
	nw2.none()
}

func TestV5PublishQoS(t *testing.T) {
	t.Parallel()
	s := startServer(t, Options{})
	pub := connectV5(t, s, "pub")
	subs := make([]*v5Client, 3)
	for q := range subs {
		subs[q] = connectV5(t, s, fmt.Sprintf("sub%d", q))
		subs[q].subscribe("qos/#", byte(q))
	}
	for pq := byte(0); pq <= 2; pq++ {
		payload := fmt.Sprintf("at %d", pq)
		if rc := pub.publish("qos/t", payload, pq, false); rc != 0 {
			t.Fatalf("publish QoS %d: reason %#x", pq, rc)
		}
		for sq, sub := range subs {
			p := sub.expect("qos/t", payload)
			if want := min(pq, byte(sq)); p.QoS != want {
				t.Errorf("published QoS %d, subscribed %d: delivered at %d, want %d", pq, sq, p.QoS, want)
			}
		}
	}
	for _, sub := range subs {
		sub.none()
	}
}

// A QoS 2 PUBLISH resent (DUP) with the same packet id before PUBREL is the
// same message: routed once [MQTT-4.3.3-10].
func TestV5QoS2ExactlyOnce(t *testing.T) {
	t.Parallel()
	s := startServer(t, Options{})
	sub := connectV5(t, s, "sub")
	sub.subscribe("x2/t", 2)
	pub := dialRaw(t, s)
	pub.connect5("pub", true, packets.Properties{})

	pub.publish("x2/t", []byte("once"), 2, 9, false, packets.Properties{})
	if rec := pub.expect(packets.Pubrec); rec.PacketID != 9 || rec.ReasonCode != 0 {
		t.Fatalf("PUBREC %+v", rec)
	}
	pub.publish("x2/t", []byte("once"), 2, 9, true, packets.Properties{})
	pub.expect(packets.Pubrec)
	pub.ack(packets.Pubrel, 9)
	if comp := pub.expect(packets.Pubcomp); comp.PacketID != 9 || comp.ReasonCode != 0 {
		t.Fatalf("PUBCOMP %+v", comp)
	}
	if p := sub.expect("x2/t", "once"); p.QoS != 2 {
		t.Fatalf("delivered at QoS %d", p.QoS)
	}
	sub.none()

	// After PUBCOMP the id is free: the same id is a new message.
	pub.publish("x2/t", []byte("again"), 2, 9, false, packets.Properties{})
	pub.expect(packets.Pubrec)
	pub.ack(packets.Pubrel, 9)
	pub.expect(packets.Pubcomp)
	sub.expect("x2/t", "again")
	sub.none()

	// PUBREL for an unknown id: PUBCOMP "packet identifier not found".
	pub.ack(packets.Pubrel, 77)
	if comp := pub.expect(packets.Pubcomp); comp.PacketID != 77 || comp.ReasonCode != 0x92 {
		t.Fatalf("PUBCOMP %+v, want reason 0x92", comp)
	}
}

// The packet ids of QoS 2 publishes received but not released are session
// state: resent after a reconnect, the PUBLISH is still not routed twice.
func TestV5QoS2ExactlyOnceAcrossReconnect(t *testing.T) {
	t.Parallel()
	s := startServer(t, Options{})
	sub := connectV5(t, s, "sub")
	sub.subscribe("x2r/t", 2)
	props := packets.Properties{SessionExpiryInterval: 60, SessionExpiryIntervalFlag: true}
	pub := dialRaw(t, s)
	pub.connect5("pub", false, props)
	pub.publish("x2r/t", []byte("once"), 2, 4, false, packets.Properties{})
	pub.expect(packets.Pubrec)
	pub.c.Close()
	sub.expect("x2r/t", "once")
	waitOffline(t, s, "pub")

	pub = dialRaw(t, s)
	if ack := pub.connect5("pub", false, props); !ack.SessionPresent {
		t.Fatal("session not present")
	}
	pub.publish("x2r/t", []byte("once"), 2, 4, true, packets.Properties{})
	pub.expect(packets.Pubrec)
	pub.ack(packets.Pubrel, 4)
	if comp := pub.expect(packets.Pubcomp); comp.ReasonCode != 0 {
		t.Fatalf("PUBCOMP reason %#x", comp.ReasonCode)
	}
	sub.none()
}

// The broker never has more unacknowledged QoS 1 messages in flight to a
// client than the client's Receive Maximum [MQTT-3.3.4-7].
func TestV5ReceiveMaximumOutbound(t *testing.T) {
	t.Parallel()
	s := startServer(t, Options{})
	sub := dialRaw(t, s)
	sub.connect5("rm", true, packets.Properties{ReceiveMaximum: 2})
	sub.subscribe(1, 0, packets.Subscription{Filter: "rm/#", Qos: 1})
	pub := connectV5(t, s, "pub")
	for i := range 5 {
		pub.publish("rm/t", strconv.Itoa(i), 1, false)
	}
	recv := func(want string) *packets.Packet {
		t.Helper()
		p := sub.expect(packets.Publish)
		if string(p.Payload) != want || p.FixedHeader.Qos != 1 {
			t.Fatalf("got %q at QoS %d, want %q", p.Payload, p.FixedHeader.Qos, want)
		}
		return p
	}
	p0, p1 := recv("0"), recv("1")
	sub.expectNone() // window full
	sub.ack(packets.Puback, p0.PacketID)
	p2 := recv("2")
	sub.expectNone()
	sub.ack(packets.Puback, p1.PacketID)
	p3 := recv("3")
	sub.ack(packets.Puback, p2.PacketID)
	sub.ack(packets.Puback, p3.PacketID)
	p4 := recv("4")
	sub.ack(packets.Puback, p4.PacketID)
	sub.expectNone()
}

// A client that exceeds our Receive Maximum with QoS 2 publishes it has not
// released is disconnected with 0x93 [MQTT-3.3.4-9].
func TestV5ReceiveMaximumInbound(t *testing.T) {
	t.Parallel()
	s := startServer(t, Options{ReceiveMaximum: 2})
	rc := dialRaw(t, s)
	ack := rc.connect5("greedy", true, packets.Properties{})
	if ack.Properties.ReceiveMaximum != 2 {
		t.Fatalf("CONNACK Receive Maximum %d, want 2", ack.Properties.ReceiveMaximum)
	}
	for pid := uint16(1); pid <= 2; pid++ {
		rc.publish("rmi/t", []byte("x"), 2, pid, false, packets.Properties{})
		rc.expect(packets.Pubrec)
	}
	rc.publish("rmi/t", []byte("x"), 2, 3, false, packets.Properties{})
	rc.expectDisconnect(0x93)

	// A well-behaved client (Paho honours the server's Receive Maximum)
	// sending many QoS 2 publishes at once is never cut off.
	sub := connectV5(t, s, "sub")
	sub.subscribe("rmi/#", 2)
	pub := connectV5(t, s, "polite")
	errs := make(chan byte, 10)
	for i := range 10 {
		go func() {
			ctx, cancel := contextWithTimeout()
			defer cancel()
			pr, err := pub.cli.Publish(ctx, &paho.Publish{Topic: "rmi/p", Payload: []byte(strconv.Itoa(i)), QoS: 2})
			switch {
			case err != nil:
				errs <- 0xFF
			default:
				errs <- pr.ReasonCode
			}
		}()
	}
	for range 10 {
		if rc := <-errs; rc != 0 {
			t.Fatalf("publish failed: %#x", rc)
		}
	}
	got := map[string]bool{}
	for range 10 {
		got[string(sub.next().Payload)] = true
	}
	if len(got) != 10 {
		t.Fatalf("got %d distinct messages, want 10", len(got))
	}
}

// Unacknowledged messages are resent with DUP, and PUBRELs re-sent, when a
// persistent session reconnects [MQTT-4.4.0-1].
func TestV5RedeliveryOnReconnect(t *testing.T) {
	t.Parallel()
	s := startServer(t, Options{})
	props := packets.Properties{SessionExpiryInterval: 60, SessionExpiryIntervalFlag: true}
	sub := dialRaw(t, s)
	sub.connect5("rd", false, props)
	sub.subscribe(1, 0, packets.Subscription{Filter: "rd/#", Qos: 2})
	pub := connectV5(t, s, "pub")
	pub.publish("rd/1", "a", 1, false)
	pub.publish("rd/2", "b", 2, false)
	pub.publish("rd/3", "c", 2, false)
	a, b, c := sub.expect(packets.Publish), sub.expect(packets.Publish), sub.expect(packets.Publish)
	for _, p := range []*packets.Packet{a, b, c} {
		if p.FixedHeader.Dup {
			t.Fatalf("first delivery of %q has DUP", p.Payload)
		}
	}
	sub.ack(packets.Pubrec, c.PacketID)
	if rel := sub.expect(packets.Pubrel); rel.PacketID != c.PacketID {
		t.Fatalf("PUBREL for %d, want %d", rel.PacketID, c.PacketID)
	}
	sub.c.Close() // a and b unacknowledged, c awaiting PUBCOMP

	sub2 := dialRaw(t, s)
	if ack := sub2.connect5("rd", false, props); !ack.SessionPresent {
		t.Fatal("session not present")
	}
	a2, b2 := sub2.expect(packets.Publish), sub2.expect(packets.Publish)
	for _, w := range []struct{ got, was *packets.Packet }{{a2, a}, {b2, b}} {
		if !w.got.FixedHeader.Dup || w.got.PacketID != w.was.PacketID || string(w.got.Payload) != string(w.was.Payload) ||
			w.got.TopicName != w.was.TopicName || w.got.FixedHeader.Qos != w.was.FixedHeader.Qos {
			t.Fatalf("redelivered %+v, want DUP copy of %+v", w.got.FixedHeader, w.was.FixedHeader)
		}
	}
	if rel := sub2.expect(packets.Pubrel); rel.PacketID != c.PacketID {
		t.Fatalf("PUBREL for %d, want %d", rel.PacketID, c.PacketID)
	}
	sub2.ack(packets.Puback, a2.PacketID)
	sub2.ack(packets.Pubrec, b2.PacketID)
	sub2.expect(packets.Pubrel)
	sub2.ack(packets.Pubcomp, b2.PacketID)
	sub2.ack(packets.Pubcomp, c.PacketID)
	sub2.expectNone()
	sub2.c.Close()

	// All acknowledged: nothing is resent on the next reconnect.
	sub3 := dialRaw(t, s)
	sub3.connect5("rd", false, props)
	sub3.expectNone()
}

// Messages for an offline persistent session are queued and delivered in
// order when it reconnects.
func TestV5OfflineQueue(t *testing.T) {
	t.Parallel()
	s := startServer(t, Options{})
	sub := connectV5(t, s, "q", persistent(60))
	sub.subscribe("q/#", 2)
	sub.disconnect()
	waitOffline(t, s, "q")
	pub := connectV5(t, s, "pub")
	for i := range 10 {
		pub.publish("q/t", strconv.Itoa(i), byte(1+i%2), false)
	}
	sub = connectV5(t, s, "q", persistent(60))
	if !sub.ack.SessionPresent {
		t.Fatal("session not present")
	}
	for i := range 10 {
		if p := sub.expect("q/t", strconv.Itoa(i)); p.QoS != byte(1+i%2) {
			t.Fatalf("message %d at QoS %d", i, p.QoS)
		}
	}
	sub.none()
}

func TestV5SessionExpiry(t *testing.T) {
	t.Parallel()
	s := startServer(t, Options{})
	sub := connectV5(t, s, "exp", persistent(1))
	sub.subscribe("exp/t", 1)
	sub.disconnect()
	if n := s.Stats().Sessions; n != 1 {
		t.Fatalf("%d sessions right after disconnect, want 1", n)
	}
	start := time.Now()
	waitE2E(t, "session expiry", func() bool { return s.Stats().Sessions == 0 })
	within(t, "session ended", time.Since(start), 500*time.Millisecond, 6*time.Second)
	if n := s.Stats().Subscriptions; n != 0 {
		t.Fatalf("%d subscriptions left after expiry", n)
	}
	pub := connectV5(t, s, "pub")
	pub.publish("exp/t", "late", 1, false)
	sub = connectV5(t, s, "exp", persistent(1))
	if sub.ack.SessionPresent {
		t.Fatal("expired session still present")
	}
	sub.none()
}

// A v5 client may change its session expiry in DISCONNECT; set to 0 the
// session ends at once [MQTT-3.14.2-2 allows any change but 0 to non-0].
func TestV5DisconnectSessionExpiry(t *testing.T) {
	t.Parallel()
	s := startServer(t, Options{})
	c := connectV5(t, s, "shorten", persistent(3600))
	c.subscribe("se/t", 1)
	c.gone.Store(true)
	_ = c.cli.Disconnect(&paho.Disconnect{Properties: &paho.DisconnectProperties{SessionExpiryInterval: ptr(uint32(0))}})
	c.waitDone()
	waitE2E(t, "session ended", func() bool { return lookupSession(s, "shorten") == nil })
	if c = connectV5(t, s, "shorten", persistent(3600)); c.ack.SessionPresent {
		t.Fatal("session present after DISCONNECT with expiry 0")
	}
	c.disconnectWith(0)
	waitOffline(t, s, "shorten")
	if lookupSession(s, "shorten") == nil {
		t.Fatal("session with expiry 3600 ended at DISCONNECT")
	}
}

// Shutdown tells v5 clients why (DISCONNECT 0x8B) and closes v3 clients.
func TestShutdownDisconnects(t *testing.T) {
	t.Parallel()
	s := startServer(t, Options{})
	c5 := connectV5(t, s, "v5")
	c3 := connectV3(t, s, "v3", true)
	ctx, cancel := contextWithTimeout()
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if d := c5.serverDisconnect(); d.ReasonCode != 0x8B {
		t.Fatalf("DISCONNECT %#x, want 0x8B (server shutting down)", d.ReasonCode)
	}
	c5.closedByServer()
	c3.closedByServer()
	if _, err := net.DialTimeout("tcp", s.Addr().String(), time.Second); err == nil {
		t.Fatal("still accepting after Shutdown")
	}
}
