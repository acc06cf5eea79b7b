package broker

// End-to-end tests with MQTT 5 clients: Eclipse Paho (paho.golang) where it
// can express the case, rawClient where it cannot (flow control, DUP,
// subscription identifiers, server-to-client topic aliases).

import (
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
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
	if n := s.Stats().Sessions.Load(); n != 1 {
		t.Fatalf("%d sessions right after disconnect, want 1", n)
	}
	start := time.Now()
	waitE2E(t, "session expiry", func() bool { return s.Stats().Sessions.Load() == 0 })
	within(t, "session ended", time.Since(start), 500*time.Millisecond, 6*time.Second)
	if n := s.Stats().Subscriptions.Load(); n != 0 {
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

func TestV5WildcardsAndDollarTopics(t *testing.T) {
	t.Parallel()
	s := startServer(t, Options{})
	filters := []string{"w/+/c", "w/#", "#", "+/x", "$app/#", "+/y/#"}
	subs := map[string]*v5Client{}
	for i, f := range filters {
		c := connectV5(t, s, "s"+strconv.Itoa(i))
		c.subscribe(f, 1)
		subs[f] = c
	}
	pub := connectV5(t, s, "pub")
	topics := []string{"w/b/c", "w/b/d", "w", "w/b/c/d", "a/x", "$app/x", "$app/y/z", "/x"}
	for _, tp := range topics {
		pub.publish(tp, tp, 1, false)
	}
	want := map[string][]string{
		"w/+/c":  {"w/b/c"},
		"w/#":    {"w/b/c", "w/b/d", "w", "w/b/c/d"},
		"#":      {"w/b/c", "w/b/d", "w", "w/b/c/d", "a/x", "/x"}, // not $app/... [MQTT-4.7.2-1]
		"+/x":    {"a/x", "/x"},
		"$app/#": {"$app/x", "$app/y/z"},
		"+/y/#":  nil, // $app/y/z starts with '$'
	}
	for f, topics := range want {
		for _, tp := range topics {
			subs[f].expect(tp, tp)
		}
	}
	for _, c := range subs {
		c.none()
	}
}

func TestV5Unsubscribe(t *testing.T) {
	t.Parallel()
	s := startServer(t, Options{})
	sub := connectV5(t, s, "sub")
	pub := connectV5(t, s, "pub")
	sub.subscribe("u/#", 1)
	sub.subscribe("u/+", 0)
	pub.publish("u/a", "1", 1, false)
	sub.expect("u/a", "1")
	if rc := sub.unsubscribe("u/#"); rc != 0 {
		t.Fatalf("UNSUBACK %#x", rc)
	}
	pub.publish("u/a", "2", 1, false)
	if p := sub.expect("u/a", "2"); p.QoS != 0 {
		t.Fatalf("after unsubscribing u/# the message came at QoS %d, want 0 (u/+)", p.QoS)
	}
	if rc := sub.unsubscribe("u/+"); rc != 0 {
		t.Fatalf("UNSUBACK %#x", rc)
	}
	pub.publish("u/a", "3", 1, false)
	sub.none()
	if rc := sub.unsubscribe("u/#"); rc != 0x11 {
		t.Fatalf("UNSUBACK %#x for a filter not subscribed, want 0x11", rc)
	}
	if n := s.Stats().Subscriptions.Load(); n != 0 {
		t.Fatalf("%d subscriptions left", n)
	}
}

// Overlapping subscriptions of one client get one copy at the highest QoS
// with every matching subscription identifier [MQTT-3.3.4-2] [MQTT-3.3.4-3].
func TestV5OverlappingSubscriptions(t *testing.T) {
	t.Parallel()
	s := startServer(t, Options{})
	sub := dialRaw(t, s)
	sub.connect5("ov", true, packets.Properties{})
	sub.subscribe(1, 11, packets.Subscription{Filter: "ov/+", Qos: 0})
	sub.subscribe(2, 22, packets.Subscription{Filter: "ov/#", Qos: 2})
	sub.subscribe(3, 0, packets.Subscription{Filter: "ov/x", Qos: 1})
	pub := connectV5(t, s, "pub")

	pub.publish("ov/x", "q2", 2, false)
	p := sub.expect(packets.Publish)
	ids := slices.Sorted(slices.Values(p.Properties.SubscriptionIdentifier))
	if p.FixedHeader.Qos != 2 || !slices.Equal(ids, []int{11, 22}) {
		t.Fatalf("got QoS %d ids %v, want QoS 2 ids [11 22]", p.FixedHeader.Qos, ids)
	}
	sub.ack(packets.Pubrec, p.PacketID)
	sub.expect(packets.Pubrel)
	sub.ack(packets.Pubcomp, p.PacketID)
	sub.expectNone()

	pub.publish("ov/y", "q1", 1, false) // ov/+ (QoS 0) and ov/# (QoS 2): min(1, 2)
	p = sub.expect(packets.Publish)
	ids = slices.Sorted(slices.Values(p.Properties.SubscriptionIdentifier))
	if p.FixedHeader.Qos != 1 || !slices.Equal(ids, []int{11, 22}) {
		t.Fatalf("got QoS %d ids %v, want QoS 1 ids [11 22]", p.FixedHeader.Qos, ids)
	}
	sub.ack(packets.Puback, p.PacketID)
	sub.expectNone()
}

func TestV5NoLocal(t *testing.T) {
	t.Parallel()
	s := startServer(t, Options{})
	a := connectV5(t, s, "a")
	b := connectV5(t, s, "b")
	a.subscribeOpts(paho.SubscribeOptions{Topic: "nl/t", QoS: 1, NoLocal: true}, 0, 1)
	b.subscribe("nl/t", 1)
	a.publish("nl/t", "from a", 1, false)
	b.expect("nl/t", "from a")
	a.none() // [MQTT-3.8.3-3]
	b.publish("nl/t", "from b", 1, false)
	a.expect("nl/t", "from b")
	b.expect("nl/t", "from b") // no NoLocal: own messages come back
}

func TestV5RetainAsPublished(t *testing.T) {
	t.Parallel()
	s := startServer(t, Options{})
	rap := connectV5(t, s, "rap")
	plain := connectV5(t, s, "plain")
	rap.subscribeOpts(paho.SubscribeOptions{Topic: "rap/t", QoS: 1, RetainAsPublished: true}, 0, 1)
	plain.subscribe("rap/t", 1)
	pub := connectV5(t, s, "pub")
	pub.publish("rap/t", "live", 1, true)
	if p := rap.expect("rap/t", "live"); !p.Retain {
		t.Error("retain as published: retain flag cleared")
	}
	if p := plain.expect("rap/t", "live"); p.Retain {
		t.Error("live delivery kept the retain flag without retain as published [MQTT-3.3.1-12]")
	}
	pub.publish("rap/t", "not retained", 1, false)
	if p := rap.expect("rap/t", "not retained"); p.Retain {
		t.Error("retain flag set on a message published without it")
	}
	plain.expect("rap/t", "not retained")
}

func TestV5RetainHandling(t *testing.T) {
	t.Parallel()
	s := startServer(t, Options{})
	pub := connectV5(t, s, "pub")
	pub.publish("rh/t", "r", 1, true)
	sub := func(c *v5Client, rh byte) {
		t.Helper()
		c.subscribeOpts(paho.SubscribeOptions{Topic: "rh/#", QoS: 1, RetainHandling: rh}, 0, 1)
	}
	c0 := connectV5(t, s, "rh0")
	sub(c0, 0)
	if p := c0.expect("rh/t", "r"); !p.Retain {
		t.Error("retained message delivered without the retain flag [MQTT-3.3.1-8]")
	}
	sub(c0, 0) // every subscribe
	c0.expect("rh/t", "r")
	c0.none()

	c1 := connectV5(t, s, "rh1")
	sub(c1, 1)
	c1.expect("rh/t", "r")
	sub(c1, 1) // only for a new subscription
	c1.none()

	c2 := connectV5(t, s, "rh2")
	sub(c2, 2) // never
	c2.none()
	pub.publish("rh/t", "live", 1, false)
	for _, c := range []*v5Client{c0, c1, c2} {
		c.expect("rh/t", "live")
	}
}

// Each message to a $share group goes to exactly one member, spread over
// the members; every group and plain subscriber gets its own copy.
func TestV5SharedSubscriptions(t *testing.T) {
	t.Parallel()
	s := startServer(t, Options{})
	var members []*v5Client
	for i := range 3 {
		c := connectV5(t, s, "m"+strconv.Itoa(i))
		c.subscribe("$share/g/sh/#", 1)
		members = append(members, c)
	}
	other := connectV5(t, s, "h0")
	other.subscribe("$share/h/sh/+", 1)
	plain := connectV5(t, s, "plain")
	plain.subscribe("sh/#", 1)
	pub := connectV5(t, s, "pub")
	const n = 30
	for i := range n {
		pub.publish("sh/t", strconv.Itoa(i), 1, false)
	}
	seen := map[string]int{}
	counts := make([]int, len(members))
	deadline := time.After(e2eWait)
	for total := 0; total < n; {
		for i, m := range members {
			select {
			case p := <-m.msgs:
				seen[string(p.Payload)]++
				counts[i]++
				total++
			case <-deadline:
				t.Fatalf("group received %d of %d messages", total, n)
			default:
			}
		}
		time.Sleep(time.Millisecond)
	}
	for _, m := range members {
		m.none()
	}
	for i := range n {
		if seen[strconv.Itoa(i)] != 1 {
			t.Fatalf("message %d delivered %d times to the group", i, seen[strconv.Itoa(i)])
		}
	}
	for i, c := range counts {
		if c == 0 {
			t.Errorf("member %d got nothing (counts %v)", i, counts)
		}
	}
	for i := range n {
		other.expect("sh/t", strconv.Itoa(i))
		plain.expect("sh/t", strconv.Itoa(i))
	}

	// A member that leaves gets no more; the others share its load.
	members[0].disconnect()
	waitOffline(t, s, "m0")
	for i := range 6 {
		pub.publish("sh/t", "after"+strconv.Itoa(i), 1, false)
	}
	got := 0
	for got < 6 {
		select {
		case <-members[1].msgs:
			got++
		case <-members[2].msgs:
			got++
		case <-time.After(e2eWait):
			t.Fatalf("remaining members received %d of 6", got)
		}
	}
	// Unsubscribing a shared filter leaves the group to the last member.
	if rc := members[1].unsubscribe("$share/g/sh/#"); rc != 0 {
		t.Fatalf("UNSUBACK %#x", rc)
	}
	for i := range 4 {
		pub.publish("sh/t", "last"+strconv.Itoa(i), 1, false)
		members[2].expect("sh/t", "last"+strconv.Itoa(i))
	}
	members[1].none()
}

func TestV5DenyFilters(t *testing.T) {
	t.Parallel()
	s := startServer(t, Options{DenyFilters: []string{"secret/#", "+/private"}})
	rc := dialRaw(t, s)
	rc.connect5("deny", true, packets.Properties{})
	codes := rc.subscribe(1, 0,
		packets.Subscription{Filter: "secret/a", Qos: 1},
		packets.Subscription{Filter: "public/a", Qos: 1},
		packets.Subscription{Filter: "secret/#", Qos: 2},
		packets.Subscription{Filter: "bob/private", Qos: 0},
		packets.Subscription{Filter: "public/b", Qos: 2},
		packets.Subscription{Filter: "$share/g/secret/a", Qos: 1}, // a shared subscription is no way round
		packets.Subscription{Filter: "$share/g/public/c", Qos: 1})
	if want := []byte{0x87, 0x01, 0x87, 0x87, 0x02, 0x87, 0x01}; !slices.Equal(codes, want) {
		t.Fatalf("SUBACK %x, want %x", codes, want)
	}
	c := connectV5(t, s, "paho")
	c.subscribeOpts(paho.SubscribeOptions{Topic: "secret/x", QoS: 1}, 0, 0x87)
	c.publish("secret/x", "leak", 1, false)
	c.none()
}

// ACL rules with %u and %c: publish denied -> PUBACK/PUBREC 0x87, subscribe
// denied -> SUBACK 0x87, and the denied message goes nowhere.
func TestV5ACL(t *testing.T) {
	t.Parallel()
	s := startServer(t, Options{ACL: []ACLRule{
		{Topic: "users/%u/#", Access: "readwrite"},
		{Topic: "clients/%c/in", Access: "read"},
		{Topic: "clients/%c/out", Access: "write"},
		{User: "admin", Topic: "#", Access: "readwrite"},
		{Topic: "public/#", Access: "readwrite"},
	}})
	alice := connectV5(t, s, "c1", credentials("alice", "any"))
	bob := connectV5(t, s, "c2", credentials("bob", "any"))
	admin := connectV5(t, s, "c3", credentials("admin", "any"))
	admin.subscribe("#", 1)

	alice.subscribe("users/alice/#", 1)
	alice.subscribe("clients/c1/in", 1)
	alice.subscribe("$share/g/users/alice/in", 1) // the ACL applies to a shared subscription's filter
	for _, f := range []string{"users/bob/#", "clients/c2/in", "clients/c1/out", "#", "users/+/x", "$share/g/users/bob/#"} {
		alice.subscribeOpts(paho.SubscribeOptions{Topic: f, QoS: 1}, 0, 0x87)
	}
	bob.subscribe("users/bob/#", 1)

	for _, tc := range []struct {
		topic string
		qos   byte
		want  byte
	}{
		{"users/alice/x", 1, 0}, {"users/bob/x", 1, 0x87}, {"clients/c1/in", 1, 0x87},
		{"clients/c1/out", 1, 0}, {"users/bob/y", 2, 0x87}, {"elsewhere", 1, 0x87}, {"public/p", 2, 0},
	} {
		if rc := alice.publish(tc.topic, "m", tc.qos, false); rc != tc.want {
			t.Errorf("publish %s at QoS %d: reason %#x, want %#x", tc.topic, tc.qos, rc, tc.want)
		}
	}
	alice.expect("users/alice/x", "m") // own topic, subscribed
	for _, tp := range []string{"users/alice/x", "clients/c1/out", "public/p"} {
		admin.expect(tp, "m") // only the allowed publishes were routed
	}
	admin.none()
	bob.none()
	admin.publish("clients/c1/in", "cmd", 1, false)
	alice.expect("clients/c1/in", "cmd")
}

func TestV5Retained(t *testing.T) {
	t.Parallel()
	s := startServer(t, Options{})
	pub := connectV5(t, s, "pub")
	pub.publish("rt/a", "1", 1, true)
	pub.publish("rt/b", "b", 0, true)

	s1 := connectV5(t, s, "s1")
	s1.subscribe("rt/a", 2)
	if p := s1.expect("rt/a", "1"); !p.Retain || p.QoS != 1 {
		t.Fatalf("retained delivery retain=%v QoS %d, want true and 1", p.Retain, p.QoS)
	}
	pub.publish("rt/a", "2", 1, true) // replace
	if p := s1.expect("rt/a", "2"); p.Retain {
		t.Fatal("live delivery to an existing subscriber has the retain flag")
	}
	s2 := connectV5(t, s, "s2")
	s2.subscribe("rt/+", 1)
	got := map[string]string{}
	for range 2 {
		p := s2.next()
		if !p.Retain {
			t.Fatalf("%s delivered on subscribe without retain flag", p.Topic)
		}
		got[p.Topic] = string(p.Payload)
	}
	if got["rt/a"] != "2" || got["rt/b"] != "b" {
		t.Fatalf("retained on subscribe: %v", got)
	}
	s2.none()

	pub.publish("rt/a", "", 1, true) // clear [MQTT-3.3.1-6]
	s1.expect("rt/a", "")            // still forwarded to current subscribers
	pub.publish("rt/b", "", 0, true)
	waitE2E(t, "retained cleared", func() bool { return s.Stats().Retained.Load() == 0 })
	s3 := connectV5(t, s, "s3")
	s3.subscribe("rt/#", 1)
	s3.none()
}

func TestV5Will(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		end  func(*v5Client)
		sent bool
	}{
		{"abnormal close", (*v5Client).drop, true},
		{"normal disconnect", (*v5Client).disconnect, false},
		{"disconnect with will 0x04", func(c *v5Client) { c.disconnectWith(0x04) }, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := startServer(t, Options{})
			watch := connectV5(t, s, "watch")
			watch.subscribe("will/#", 1)
			c := connectV5(t, s, "dev", will("will/dev", "gone", 1, true, 0))
			tc.end(c)
			if !tc.sent {
				watch.none()
				return
			}
			if p := watch.expect("will/dev", "gone"); p.QoS != 1 {
				t.Fatalf("will at QoS %d", p.QoS)
			}
			late := connectV5(t, s, "late")
			late.subscribe("will/#", 1)
			if p := late.expect("will/dev", "gone"); !p.Retain {
				t.Fatal("retained will not retained")
			}
		})
	}
}

func TestV5WillDelay(t *testing.T) {
	t.Parallel()
	setup := func(t *testing.T, opts ...v5Opt) (*Server, *v5Client, *v5Client) {
		s := startServer(t, Options{})
		watch := connectV5(t, s, "watch")
		watch.subscribe("will/#", 1)
		c := connectV5(t, s, "dev", opts...)
		return s, watch, c
	}
	t.Run("sent after delay", func(t *testing.T) {
		t.Parallel()
		_, watch, c := setup(t, persistent(30), will("will/dev", "late", 1, false, 1))
		start := time.Now()
		c.drop()
		watch.expect("will/dev", "late")
		within(t, "will", time.Since(start), 800*time.Millisecond, 6*time.Second)
	})
	t.Run("not sent on reconnect within delay", func(t *testing.T) {
		t.Parallel()
		s, watch, c := setup(t, persistent(30), will("will/dev", "late", 1, false, 1))
		c.drop()
		c2 := connectV5(t, s, "dev", persistent(30))
		if !c2.ack.SessionPresent {
			t.Fatal("session not present")
		}
		select { // let the delay pass, with margin
		case p := <-watch.msgs:
			t.Fatalf("will %q sent although the client came back", p.Payload)
		case <-time.After(2500 * time.Millisecond):
		}
	})
	t.Run("sent when session expires first", func(t *testing.T) {
		t.Parallel()
		_, watch, c := setup(t, persistent(1), will("will/dev", "end", 1, false, 30))
		start := time.Now()
		c.drop()
		watch.expect("will/dev", "end")
		within(t, "will", time.Since(start), 500*time.Millisecond, 6*time.Second)
	})
	t.Run("sent at once when session ends at close", func(t *testing.T) {
		t.Parallel()
		_, watch, c := setup(t, will("will/dev", "now", 1, false, 30))
		c.drop()
		watch.expect("will/dev", "now")
	})
}

// A client silent past 1.5 x keepalive gets DISCONNECT 0x8D, is closed and
// its will is sent [MQTT-3.1.2-22]; never before 1.5 x, wherever in the
// broker's one-second tick its last packet fell. A client that pings stays.
func TestV5KeepaliveTimeout(t *testing.T) {
	t.Parallel()
	s := startServer(t, Options{})
	watch := connectV5(t, s, "watch")
	watch.subscribe("ka/#", 0)
	pinger := dialRaw(t, s)
	pinger.connectPk(&packets.Packet{ProtocolVersion: 5, Connect: packets.ConnectParams{ClientIdentifier: "pinger", Clean: true, Keepalive: 2}})

	// Two silent clients, one early and one late in a tick, timed together.
	afterTick(t, s, 0)
	first := time.Now()
	var ends []<-chan closeResult
	for i, phase := range []time.Duration{0, 900 * time.Millisecond} {
		if phase > 0 {
			time.Sleep(phase) // a position in the tick, not synchronization
		}
		rc := dialRaw(t, s)
		id := "silent" + strconv.Itoa(i)
		ack := rc.connectPk(&packets.Packet{ProtocolVersion: 5, Connect: packets.ConnectParams{
			ClientIdentifier: id, Clean: true, Keepalive: 1,
			WillFlag: true, WillTopic: "ka/" + id, WillPayload: []byte("timeout")}})
		if ack.ReasonCode != 0 || ack.Properties.ServerKeepAliveFlag {
			t.Fatalf("CONNACK %#x server keepalive %v", ack.ReasonCode, ack.Properties.ServerKeepAliveFlag)
		}
		ends = append(ends, rc.closedAfter())
	}
	for time.Since(first) < 3*time.Second { // meanwhile the pinger keeps its connection
		time.Sleep(500 * time.Millisecond) // a client's own pace, not synchronization
		pinger.send(&packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pingreq}})
		pinger.expect(packets.Pingresp)
	}
	for i, end := range ends {
		r := <-end
		if r.err != nil {
			t.Fatalf("silent%d: %v", i, r.err)
		}
		if len(r.got) != 1 || r.got[0].FixedHeader.Type != packets.Disconnect || r.got[0].ReasonCode != 0x8D {
			t.Fatalf("silent%d: got %s, want DISCONNECT 0x8d", i, names(r.got))
		}
		within(t, fmt.Sprintf("silent%d: keepalive disconnect", i), r.after, 1500*time.Millisecond, 7*time.Second)
	}
	got := map[string]bool{}
	for range ends {
		got[watch.next().Topic] = true
	}
	if !got["ka/silent0"] || !got["ka/silent1"] {
		t.Fatalf("wills received: %v", got)
	}
}

// A socket that never sends a whole CONNECT is closed after ConnectTimeout,
// not before.
func TestConnectTimeout(t *testing.T) {
	t.Parallel()
	s := startServer(t, Options{ConnectTimeout: time.Second})
	afterTick(t, s, 0)
	var ends []<-chan closeResult
	for i, phase := range []time.Duration{0, 900 * time.Millisecond} {
		if phase > 0 {
			time.Sleep(phase) // a position in the tick, not synchronization
		}
		rc := dialRaw(t, s)
		if i == 1 {
			rc.write([]byte{0x10, 0x20, 0x00}) // a partial CONNECT does not extend the deadline
		}
		ends = append(ends, rc.closedAfter())
	}
	for i, end := range ends {
		r := <-end
		if r.err != nil || len(r.got) != 0 {
			t.Fatalf("socket %d: %v, got %s, want a plain close", i, r.err, names(r.got))
		}
		within(t, fmt.Sprintf("socket %d: close", i), r.after, time.Second, 7*time.Second)
	}
	roundTrip(t, s, "after")
}

func TestV5TopicAliasInbound(t *testing.T) {
	t.Parallel()
	s := startServer(t, Options{})
	sub := connectV5(t, s, "sub")
	sub.subscribe("ta/#", 1)
	pub := connectV5(t, s, "pub")
	if tam := pub.ack.Properties.TopicAliasMaximum; tam == nil || *tam == 0 {
		t.Fatal("CONNACK has no Topic Alias Maximum")
	}
	alias := func(topic, payload string, a uint16) {
		t.Helper()
		pub.publishMsg(&paho.Publish{Topic: topic, Payload: []byte(payload), QoS: 1,
			Properties: &paho.PublishProperties{TopicAlias: ptr(a)}})
	}
	alias("ta/in", "set", 1)
	alias("", "use", 1)
	alias("ta/other", "remap", 1)
	alias("", "use2", 1)
	sub.expect("ta/in", "set")
	sub.expect("ta/in", "use")
	sub.expect("ta/other", "remap")
	sub.expect("ta/other", "use2")
}

// Server-to-client aliases: only when the client allows them; a known topic
// goes out as an empty topic with the alias.
func TestV5TopicAliasOutbound(t *testing.T) {
	t.Parallel()
	s := startServer(t, Options{})
	sub := dialRaw(t, s)
	sub.connect5("alias", true, packets.Properties{TopicAliasMaximum: 2})
	sub.subscribe(1, 0, packets.Subscription{Filter: "tao/#", Qos: 0})
	none := dialRaw(t, s)
	none.connect5("noalias", true, packets.Properties{})
	none.subscribe(1, 0, packets.Subscription{Filter: "tao/#", Qos: 0})
	pub := connectV5(t, s, "pub")
	sent := []string{"tao/a", "tao/a", "tao/b", "tao/c", "tao/c", "tao/b"}
	for _, tp := range sent {
		pub.publish(tp, tp, 1, false)
	}
	want := []struct {
		topic string
		alias uint16
	}{{"tao/a", 1}, {"", 1}, {"tao/b", 2}, {"tao/c", 0}, {"tao/c", 0}, {"", 2}}
	for i, w := range want {
		p := sub.expect(packets.Publish)
		if p.TopicName != w.topic || p.Properties.TopicAlias != w.alias || string(p.Payload) != sent[i] {
			t.Fatalf("message %d: topic %q alias %d payload %q, want topic %q alias %d", i, p.TopicName, p.Properties.TopicAlias, p.Payload, w.topic, w.alias)
		}
		q := none.expect(packets.Publish)
		if q.TopicName != sent[i] || q.Properties.TopicAlias != 0 {
			t.Fatalf("client without aliases got topic %q alias %d", q.TopicName, q.Properties.TopicAlias)
		}
	}

	// A message too big for the client is not sent, and neither is the
	// alias it would have introduced: the next one on the topic must name it.
	small := dialRaw(t, s)
	small.connect5("small", true, packets.Properties{TopicAliasMaximum: 2, MaximumPacketSize: 64})
	small.subscribe(1, 0, packets.Subscription{Filter: "tao/#", Qos: 0})
	pub.publish("tao/big", strings.Repeat("x", 100), 0, false)
	pub.publish("tao/big", "fits", 0, false)
	p := small.expect(packets.Publish)
	if p.TopicName != "tao/big" || string(p.Payload) != "fits" {
		t.Fatalf("after a dropped message: topic %q alias %d payload %q, want the topic named", p.TopicName, p.Properties.TopicAlias, p.Payload)
	}
}

func TestV5MessageExpiry(t *testing.T) {
	t.Parallel()
	s := startServer(t, Options{})
	sub := connectV5(t, s, "me", persistent(60))
	sub.subscribe("me/#", 1)
	pub := connectV5(t, s, "pub")
	// Online: the remaining interval is forwarded.
	pub.publishMsg(&paho.Publish{Topic: "me/live", Payload: []byte("x"), QoS: 1,
		Properties: &paho.PublishProperties{MessageExpiry: ptr(uint32(50))}})
	p := sub.expect("me/live", "x")
	if e := p.Properties.MessageExpiry; e == nil || *e == 0 || *e > 50 {
		t.Fatalf("forwarded expiry %v, want 1..50", e)
	}
	waitAcked(t, s, "me")
	sub.disconnect()
	waitOffline(t, s, "me")

	start := s.now()
	for _, m := range []struct {
		topic string
		exp   uint32
	}{{"me/short", 1}, {"me/long", 100}, {"me/none", 0}} {
		pp := &paho.Publish{Topic: m.topic, Payload: []byte(m.topic), QoS: 1, Properties: &paho.PublishProperties{}}
		if m.exp > 0 {
			pp.Properties.MessageExpiry = ptr(m.exp)
		}
		pub.publishMsg(pp)
	}
	// Retained messages expire too [MQTT-3.3.2-5].
	pub.publishMsg(&paho.Publish{Topic: "ret/short", Payload: []byte("r"), QoS: 1, Retain: true,
		Properties: &paho.PublishProperties{MessageExpiry: ptr(uint32(1))}})
	pub.publish("ret/keep", "k", 1, true)
	// Let the short ones' second pass on the broker's clock.
	waitE2E(t, "two seconds on the broker clock", func() bool { return s.now() >= start+3 })
	sub = connectV5(t, s, "me", persistent(60))
	p = sub.expect("me/long", "me/long")
	if e := p.Properties.MessageExpiry; e == nil || *e == 0 || *e >= 100 {
		t.Fatalf("queued message forwarded expiry %v, want below 100 after waiting", e)
	}
	p = sub.expect("me/none", "me/none")
	if p.Properties.MessageExpiry != nil {
		t.Fatalf("message without expiry got expiry %d", *p.Properties.MessageExpiry)
	}
	sub.none()
	if s.Stats().Expired.Load() == 0 {
		t.Fatal("expired message not counted")
	}
	late := connectV5(t, s, "late")
	late.subscribe("ret/#", 1)
	late.expect("ret/keep", "k")
	late.none()
}

func TestV5MaximumPacketSize(t *testing.T) {
	t.Parallel()
	s := startServer(t, Options{MaxPacketSize: 512})
	c := connectV5(t, s, "c")
	if m := c.ack.Properties.MaximumPacketSize; m == nil || *m != 512 {
		t.Fatalf("CONNACK Maximum Packet Size %v, want 512", m)
	}
	// Inbound: a client sending more than ours is disconnected with 0x95.
	big := dialRaw(t, s)
	big.connect5("big", true, packets.Properties{})
	big.publish("mps/t", make([]byte, 1000), 0, 0, false, packets.Properties{})
	big.expectDisconnect(0x95)

	// Outbound: a message larger than the client's maximum is not sent to it
	// [MQTT-3.1.2-25], and does not block what follows (QoS 1 window).
	sub := dialRaw(t, s)
	sub.connect5("small", true, packets.Properties{MaximumPacketSize: 100, ReceiveMaximum: 1})
	sub.subscribe(1, 0, packets.Subscription{Filter: "mps/#", Qos: 1})
	roomy := connectV5(t, s, "roomy")
	roomy.subscribe("mps/#", 1)
	before := s.Stats().Dropped.Load()
	c.publish("mps/t", string(make([]byte, 200)), 1, false)
	c.publish("mps/t", "small", 1, false)
	p := sub.expect(packets.Publish)
	if string(p.Payload) != "small" {
		t.Fatalf("got %d bytes, want the small message", len(p.Payload))
	}
	sub.ack(packets.Puback, p.PacketID)
	sub.expectNone()
	if len(roomy.next().Payload) != 200 {
		t.Fatal("big message not delivered to a client that accepts it")
	}
	roomy.expect("mps/t", "small")
	if s.Stats().Dropped.Load() <= before {
		t.Fatal("oversize message not counted as dropped")
	}
}

func TestV5PropertiesForwarded(t *testing.T) {
	t.Parallel()
	s := startServer(t, Options{})
	sub := connectV5(t, s, "sub")
	sub.subscribe("props/#", 2)
	v3 := connectV3(t, s, "v3sub", true)
	v3.subscribe("props/#", 1)
	pub := connectV5(t, s, "pub")
	user := paho.UserProperties{{Key: "k", Value: "v1"}, {Key: "k", Value: "v2"}, {Key: "trace", Value: "abc"}}
	for q := byte(0); q <= 2; q++ {
		pub.publishMsg(&paho.Publish{Topic: "props/t", Payload: []byte(`{"a":1}`), QoS: q, Properties: &paho.PublishProperties{
			ContentType: "application/json", PayloadFormat: ptr(byte(1)), ResponseTopic: "reply/here",
			CorrelationData: []byte{0, 1, 2, 0xff}, User: user}})
		p := sub.expect("props/t", `{"a":1}`)
		pp := p.Properties
		if pp == nil || pp.ContentType != "application/json" || pp.PayloadFormat == nil || *pp.PayloadFormat != 1 ||
			pp.ResponseTopic != "reply/here" || string(pp.CorrelationData) != "\x00\x01\x02\xff" || !slices.Equal(pp.User, user) {
			t.Fatalf("QoS %d: properties not forwarded: %+v", q, pp)
		}
		v3.expect("props/t", `{"a":1}`)
	}
}

func TestSysTopics(t *testing.T) {
	t.Parallel()
	s := startServer(t, Options{SysInterval: 100 * time.Millisecond})
	all := connectV5(t, s, "all")
	all.subscribe("#", 0)
	plus := connectV5(t, s, "plus")
	plus.subscribe("+/broker/uptime", 0)
	sys := connectV5(t, s, "sys")
	sys.subscribe("$SYS/broker/#", 0)
	want := map[string]bool{"$SYS/broker/uptime": false, "$SYS/broker/clients/connected": false,
		"$SYS/broker/messages/received": false, "$SYS/broker/bytes/sent": false, "$SYS/broker/version": false}
	var connected int
	deadline := time.After(e2eWait)
	for missing := len(want); missing > 0 || connected < 3; {
		select {
		case p := <-sys.msgs:
			if done, ok := want[p.Topic]; ok && !done {
				want[p.Topic] = true
				missing--
			}
			if p.Topic == "$SYS/broker/clients/connected" {
				connected, _ = strconv.Atoi(string(p.Payload))
			}
		case <-deadline:
			t.Fatalf("$SYS topics seen %v, clients/connected %d", want, connected)
		}
	}
	all.none() // '#' and '+/...' never match $SYS [MQTT-4.7.2-1]
	plus.none()
}

func TestV5Auth(t *testing.T) {
	t.Parallel()
	s := startServer(t, Options{PasswordFile: writePasswordFile(t, map[string]string{"alice": "s3cret", "bob": "hunter2"})})
	for _, tc := range []struct {
		name string
		opts []v5Opt
		want byte
	}{
		{"good", []v5Opt{credentials("alice", "s3cret")}, 0},
		{"good again (cached)", []v5Opt{credentials("alice", "s3cret")}, 0},
		{"other user", []v5Opt{credentials("bob", "hunter2")}, 0},
		{"wrong password", []v5Opt{credentials("alice", "hunter2")}, 0x86},
		{"unknown user", []v5Opt{credentials("mallory", "s3cret")}, 0x86},
		{"no credentials", nil, 0x86},
	} {
		c, err := dialV5(t, s, "auth-"+tc.name, tc.opts...)
		switch {
		case c.ack == nil:
			t.Fatalf("%s: no CONNACK: %v", tc.name, err)
		case c.ack.ReasonCode != tc.want:
			t.Errorf("%s: CONNACK %#x, want %#x", tc.name, c.ack.ReasonCode, tc.want)
		case tc.want == 0:
			c.disconnect()
		}
	}
	roundTripAuth(t, s)
}

// roundTripAuth is roundTrip with credentials.
func roundTripAuth(t *testing.T, s *Server) {
	sub := connectV5(t, s, "rt-sub", credentials("alice", "s3cret"))
	sub.subscribe("rt/auth", 1)
	pub := connectV5(t, s, "rt-pub", credentials("bob", "hunter2"))
	pub.publish("rt/auth", "ok", 1, false)
	sub.expect("rt/auth", "ok")
}
