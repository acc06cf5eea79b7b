package broker

// End-to-end tests with MQTT 5 clients (continued from e2e_v5_test.go): Paho where it
// can express the case, rawClient where it cannot (flow control, DUP,
// subscription identifiers, server-to-client topic aliases).

import (
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/mochi-mqtt/server/v2/packets"
)

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
	if n := s.Stats().Subscriptions; n != 0 {
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
	// A deny filter refuses exactly the filters equal to or broader than it
	// (what it is for: nobody subscribes to everything); reading a narrower
	// topic is the ACL's business.
	s := startServer(t, Options{DenyFilters: []string{"secret/#", "+/private"}})
	rc := dialRaw(t, s)
	rc.connect5("deny", true, packets.Properties{})
	codes := rc.subscribe(1, 0,
		packets.Subscription{Filter: "secret/a", Qos: 1},          // narrower: allowed
		packets.Subscription{Filter: "public/a", Qos: 1},          // unrelated
		packets.Subscription{Filter: "secret/#", Qos: 2},          // equal
		packets.Subscription{Filter: "bob/private", Qos: 0},       // narrower than +/private
		packets.Subscription{Filter: "+/+", Qos: 2},               // broader than +/private
		packets.Subscription{Filter: "#", Qos: 1},                 // broader than both
		packets.Subscription{Filter: "$share/g/secret/#", Qos: 1}, // a shared subscription is no way round
		packets.Subscription{Filter: "$share/g/public/c", Qos: 1})
	if want := []byte{0x01, 0x01, 0x87, 0x00, 0x87, 0x87, 0x87, 0x01}; !slices.Equal(codes, want) {
		t.Fatalf("SUBACK %x, want %x", codes, want)
	}
	c := connectV5(t, s, "paho")
	c.subscribeOpts(paho.SubscribeOptions{Topic: "#", QoS: 1}, 0, 0x87)
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
