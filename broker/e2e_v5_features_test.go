package broker

// End-to-end tests with MQTT 5 clients (continued from e2e_v5_test.go): Paho where it
// can express the case, rawClient where it cannot (flow control, DUP,
// subscription identifiers, server-to-client topic aliases).

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/mochi-mqtt/server/v2/packets"
)

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
	waitE2E(t, "retained cleared", func() bool { return s.Stats().Retained == 0 })
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
	t.Run("never before the delay", func(t *testing.T) {
		// A client that goes 0.9 s into a second: counted from that
		// second (the tick's clock), a 2 s delay passed 1.1 s later
		// (python paho saw the will after 1.45 s).
		t.Parallel()
		var clock atomic.Int64
		clock.Store(time.Date(2026, 1, 1, 0, 0, 0, 900e6, time.UTC).UnixNano())
		now := func() time.Time { return time.Unix(0, clock.Load()) }
		s := startServer(t, Options{Now: now})
		time.Sleep(1100 * time.Millisecond) // a tick: the server's clock is the fake's second
		watch := connectV5(t, s, "watch")
		watch.subscribe("will/#", 1)
		c := connectV5(t, s, "dev", persistent(30), will("will/dev", "late", 1, false, 2))
		c.drop()
		waitFor(t, "dev offline", func() bool {
			for _, ci := range s.Clients() {
				if ci.ID == "dev" {
					return !ci.Connected
				}
			}
			return false
		})
		clock.Add(int64(1600 * time.Millisecond)) // 1.6 s after the drop
		select {
		case p := <-watch.msgs:
			t.Fatalf("will %q sent 1.6 s into a 2 s delay", p.Payload)
		case <-time.After(1300 * time.Millisecond): // a tick or more
		}
		clock.Add(int64(500 * time.Millisecond)) // 2.1 s
		watch.expect("will/dev", "late")
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
	if s.Stats().Expired == 0 {
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
	before := s.Stats().Dropped
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
	if s.Stats().Dropped <= before {
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
