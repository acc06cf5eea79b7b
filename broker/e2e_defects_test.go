package broker

// Regression tests for defects found under hostile testing: each one failed
// before its fix.

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cimgo/cim/broker/mqtt"
	mqtt3 "github.com/eclipse/paho.mqtt.golang"
	"github.com/mochi-mqtt/server/v2/packets"
)

func v3Will(topic, payload string, qos byte) v3Opt {
	return func(o *mqtt3.ClientOptions) { o.SetWill(topic, payload, qos, false) }
}

// A persistent session whose will matches its own subscription used to
// deadlock its event loop: the will was routed while the session's lock was
// held, and routing it back to that session took the lock again. With one
// loop, the freeze shows as a broker that serves nobody afterwards.
func TestWillToOwnSessionDoesNotFreeze(t *testing.T) {
	for _, tc := range []struct {
		name   string
		filter string
	}{
		{"plain subscription", "x/#"},
		{"shared subscription", "$share/g/x/#"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := startServer(t, Options{Loops: 1})
			c := connectV3(t, s, "self", false, v3Will("x/will", "bye", 1))
			c.subscribe(tc.filter, 1) // (paho v3 reports no code for $share filters)
			c.drop()
			waitOffline(t, s, "self")
			roundTrip(t, s, "after-will")
			// The will went to the offline session's queue.
			back := connectV3(t, s, "self", false)
			back.expect("x/will", "bye")
		})
	}
}

// Two persistent sessions whose wills match each other's subscriptions, both
// dropped: each will is queued for the other; nothing freezes.
func TestCrossedWillsDoNotFreeze(t *testing.T) {
	s := startServer(t, Options{Loops: 1})
	a := connectV3(t, s, "a", false, v3Will("x/a", "a-gone", 1))
	b := connectV3(t, s, "b", false, v3Will("x/b", "b-gone", 1))
	a.subscribe("x/b", 1)
	b.subscribe("x/a", 1)
	a.drop()
	b.drop()
	waitOffline(t, s, "a")
	waitOffline(t, s, "b")
	roundTrip(t, s, "crossed")
	connectV3(t, s, "a", false).expect("x/b", "b-gone")
	connectV3(t, s, "b", false).expect("x/a", "a-gone")
}

// A v5 session with will delay 0 and a session expiry, the same freeze.
func TestV5WillToOwnSessionDoesNotFreeze(t *testing.T) {
	s := startServer(t, Options{Loops: 1})
	c := connectV5(t, s, "self5", persistent(300), will("x/will", "bye", 1, false, 0))
	c.subscribe("x/#", 1)
	c.drop()
	waitOffline(t, s, "self5")
	roundTrip(t, s, "after-will5")
	connectV5(t, s, "self5", persistent(300)).expect("x/will", "bye")
}

// A closed connection used to stay in its keepalive-wheel slot until the
// slot came round (up to 1.5 × keepalive), so churn held memory with no
// client connected.
func TestClosedConnLeavesWheel(t *testing.T) {
	s := startServer(t, Options{Loops: 1})
	for i := range 50 {
		c := connectV5(t, s, fmt.Sprintf("churn-%d", i), keepAlive(600))
		c.disconnect()
	}
	rc := dialRaw(t, s) // never sends CONNECT: in the wheel until its timeout
	_ = rc
	waitE2E(t, "closed conns gone from the wheel", func() bool { return wheelConns(t, s) == 1 })
	rc.c.Close()
	waitE2E(t, "the last conn gone from the wheel", func() bool { return wheelConns(t, s) == 0 })
}

// wheelConns counts the conns in every loop's keepalive wheel, on the loops.
func wheelConns(t testing.TB, s *Server) int {
	n := 0
	onLoops(t, s, func(l *loop) {
		for _, slot := range l.wheel.slots {
			n += len(slot)
		}
	})
	return n
}

// onLoops runs fn on each event loop in turn and waits for it.
func onLoops(t testing.TB, s *Server, fn func(*loop)) {
	t.Helper()
	s.loopsMu.Lock()
	loops := make([]*loop, 0, len(s.loops))
	for _, l := range s.loops {
		loops = append(loops, l)
	}
	s.loopsMu.Unlock()
	for _, l := range loops {
		done := make(chan struct{})
		if err := l.el.Execute(nilCtx, runFunc(func() { fn(l); close(done) })); err != nil {
			t.Fatal(err)
		}
		<-done
	}
}

// partialPublish returns the first n bytes of a QoS 0 PUBLISH whose whole
// size is about size: a packet started and never finished.
func partialPublish(t testing.TB, size, n int) []byte {
	t.Helper()
	b, err := mqtt.Append(nil, &packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish},
		ProtocolVersion: 5, TopicName: "held/open", Payload: make([]byte, size)})
	if err != nil {
		t.Fatal(err)
	}
	return b[:n]
}

// holdOpen connects n v5 clients that each send held bytes of a PUBLISH of
// size bytes, in chunks, and never finish it.
func holdOpen(t testing.TB, s *Server, tag string, n, size, held int) []*rawClient {
	t.Helper()
	var cs []*rawClient
	for i := range n {
		rc := dialRaw(t, s)
		rc.connect(5, fmt.Sprintf("%s-%d", tag, i), true, 0)
		b := partialPublish(t, size, held)
		for len(b) > 0 {
			k := min(len(b), 50_000)
			rc.write(b[:k])
			b = b[k:]
		}
		cs = append(cs, rc)
	}
	return cs
}

// An unfinished packet is held once, in memory the conn owns, grown to at
// most a quarter over what arrived: gnet's buffers hold nothing for it
// (before: gnet's doubling ring buffer plus a copy made by every Peek,
// about 3.5 bytes per byte held).
func TestPartialPacketHeldOnce(t *testing.T) {
	s := startServer(t, Options{Loops: 2})
	const n, size, held = 20, 1_000_000, 900_000
	holdOpen(t, s, "holder", n, size, held)
	waitE2E(t, "every partial packet buffered", func() bool { return s.partialBytes.Load() >= n*held })
	if got := s.partialBytes.Load(); got > n*held*5/4 {
		t.Errorf("%d bytes held for %d bytes sent: more than 1.25x", got, n*held)
	}
	inGnet := 0
	onLoops(t, s, func(l *loop) {
		for _, c := range l.partials {
			inGnet += c.gc.InboundBuffered()
		}
	})
	if inGnet != 0 {
		t.Errorf("gnet still buffers %d bytes of unfinished packets", inGnet)
	}
	roundTrip(t, s, "holders")
}

// Past MaxPartialBytes the conns holding the most are closed, counted; the
// others and the broker carry on.
func TestPartialBudget(t *testing.T) {
	s := startServer(t, Options{Loops: 1, MaxPartialBytes: 4 << 20})
	small := holdOpen(t, s, "small", 4, 100_000, 50_000)
	waitE2E(t, "small partials buffered", func() bool { return s.partialBytes.Load() >= 4*50_000 })
	big := holdOpen(t, s, "big", 6, 1_000_000, 900_000)
	waitE2E(t, "big holders shed", func() bool { return s.stats.InputShed.Load() >= 2 })
	// (Growth racing the shedding may pass the budget for a moment.)
	waitE2E(t, "held bytes back within the budget", func() bool { return s.partialBytes.Load() <= 4<<20 })
	closed := 0
	for _, rc := range big {
		if pk, err := rc.tryRead(quiet); err == nil || pk != nil {
			closed++ // DISCONNECT 0x97 or EOF
		} else if ne, ok := err.(net.Error); !ok || !ne.Timeout() {
			closed++
		}
	}
	if closed < 2 {
		t.Errorf("%d big holders closed, want at least 2", closed)
	}
	for _, rc := range small {
		rc.expectNone() // still open: they held the least
	}
	roundTrip(t, s, "after-shed")
}

// A started packet must be finished within PacketTimeout, whatever the
// keepalive: the conn is closed (v5: DISCONNECT 0x8D) and counted.
func TestPartialPacketTimeout(t *testing.T) {
	s := startServer(t, Options{Loops: 1, PacketTimeout: time.Second})
	rc := dialRaw(t, s)
	rc.connect(5, "slowpoke", true, 0)
	start := time.Now()
	rc.write(partialPublish(t, 10_000, 5_000))
	rc.expectDisconnect(packets.ErrKeepAliveTimeout.Code)
	within(t, "closed", time.Since(start), 900*time.Millisecond, 4*time.Second)
	if s.stats.InputTimeouts.Load() != 1 {
		t.Errorf("InputTimeouts = %d, want 1", s.stats.InputTimeouts.Load())
	}
}

// A packet split at every byte, the fixed header included, still arrives.
func TestPacketSplitEverywhere(t *testing.T) {
	s := startServer(t, Options{Loops: 1})
	sub := connectV5(t, s, "split-sub")
	sub.subscribe("split/#", 1)
	rc := dialRaw(t, s)
	b, err := mqtt.Append(nil, &packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connect}, ProtocolVersion: 5,
		Connect: packets.ConnectParams{ProtocolName: []byte("MQTT"), ClientIdentifier: "split-pub", Clean: true, Keepalive: 30}})
	if err != nil {
		t.Fatal(err)
	}
	pub, err := mqtt.Append(nil, &packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1}, PacketID: 7,
		ProtocolVersion: 5, TopicName: "split/x", Payload: make([]byte, 300)})
	if err != nil {
		t.Fatal(err)
	}
	rc.version = 5
	for _, by := range append(b, pub...) {
		rc.write([]byte{by})
		time.Sleep(100 * time.Microsecond) // separate reads on the broker, not synchronization
	}
	rc.expect(packets.Connack)
	if ack := rc.expect(packets.Puback); ack.PacketID != 7 {
		t.Fatalf("PUBACK for %d", ack.PacketID)
	}
	if p := sub.next(); p.Topic != "split/x" || len(p.Payload) != 300 {
		t.Fatalf("got %q with %d bytes", p.Topic, len(p.Payload))
	}
}

// TestPartialRSS measures the broker's RSS growth per byte of unfinished
// packets held: 300 conns each holding ~1 MB (CIM_MEASURE=1; it prints, it
// does not judge).
func TestPartialRSS(t *testing.T) {
	if os.Getenv("CIM_MEASURE") == "" {
		t.Skip("set CIM_MEASURE=1 to measure")
	}
	s := startServer(t, Options{Loops: 2, MaxPartialBytes: 1 << 30})
	const n, size, held = 300, 1_000_000, 990_000
	chunk := partialPublish(t, size, held)
	runtime.GC()
	before := rssBytes(t)
	for i := range n {
		rc := dialRaw(t, s)
		rc.connect(5, fmt.Sprintf("rss-%d", i), true, 0)
		rc.write(chunk)
	}
	waitE2E(t, "every partial buffered", func() bool { return s.partialBytes.Load() >= n*held })
	time.Sleep(time.Second) // let the heap settle; a measurement, not synchronization
	after := rssBytes(t)
	t.Logf("PARTIAL held=%d MB rss_growth=%d MB per_byte=%.2f", n*held>>20, (after-before)>>20, float64(after-before)/float64(n*held))
}

func rssBytes(t testing.TB) int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Skip(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	t.Skip("no VmRSS")
	return 0
}

// A broker closing a connection whose client is still sending used to
// close with unread input and with its last bytes still queued: the kernel
// answered with a reset and dropped them, so the client never read the
// DISCONNECT that said why. The broker now flushes, half-closes and drains
// input for a while before closing. Here the client is slow to read (a
// backlog of QoS 0 messages sits in front of the DISCONNECT) and keeps
// sending after its Receive Maximum overrun.
func TestDisconnectReasonSurvivesClientStillSending(t *testing.T) {
	s := startServer(t, Options{Loops: 1, ReceiveMaximum: 2})
	nc, err := net.DialTCP("tcp", nil, s.Addr().(*net.TCPAddr))
	if err != nil {
		t.Fatal(err)
	}
	_ = nc.SetReadBuffer(64 << 10) // a small window (above loopback's MSS), so output backs up in the broker
	t.Cleanup(func() { nc.Close() })
	rc := &rawClient{t: t, c: nc, r: bufio.NewReader(nc)}
	rc.connect(5, "flooded", true, 0)
	rc.subscribe(1, 0, packets.Subscription{Filter: "backlog", Qos: 0})
	pub := connectV5(t, s, "backlogger")
	payload := strings.Repeat("b", 1000)
	for range 600 {
		pub.publish("backlog", payload, 0, false) // ~600 KB the flooded client has not read
	}
	var b []byte
	for pid := uint16(1); pid <= 3; pid++ { // the third overruns Receive Maximum 2
		pk, err := mqtt.Append(nil, &packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 2},
			ProtocolVersion: 5, PacketID: pid, TopicName: "flood", Payload: []byte("x")})
		if err != nil {
			t.Fatal(err)
		}
		b = append(b, pk...)
	}
	rel, _ := mqtt.Append(nil, &packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pubrel, Qos: 1}, ProtocolVersion: 5, PacketID: 1})
	for range 50000 {
		b = append(b, rel...) // still sending when the broker decides to close
	}
	go func() { _, _ = nc.Write(b) }() // the broker may stop reading first
	got := rc.readAll()
	if len(got) == 0 || got[len(got)-1].FixedHeader.Type != packets.Disconnect || got[len(got)-1].ReasonCode != packets.ErrReceiveMaximum.Code {
		t.Fatalf("read %d packets, the last not DISCONNECT 0x93", len(got))
	}
}

// Session present [MQTT-3.1.2-6] [MQTT-3.2.2-2]: a clean connection taking
// over a live session gets 0; so does a persistent connection taking over a
// clean one (that session ends with its connection); v3.1 never gets the
// bit (reserved in 3.1).
func TestSessionPresentOnTakeover(t *testing.T) {
	s := startServer(t, Options{})
	for _, v := range []byte{3, 4, 5} {
		for _, tc := range []struct {
			name         string
			first, again bool // clean flags of the two connections
			want         byte
		}{
			{"clean takes over clean", true, true, 0},
			{"clean takes over persistent", false, true, 0},
			{"persistent takes over clean", true, false, 0},
			{"persistent takes over persistent", false, false, 1},
		} {
			id := fmt.Sprintf("sp-%d-%t-%t", v, tc.first, tc.again)
			a := dialRaw(t, s)
			connectWithExpiry(a, v, id, tc.first)
			b := dialRaw(t, s)
			ack := connectWithExpiry(b, v, id, tc.again)
			want := tc.want
			if v == 3 {
				want = 0
			}
			if got := ack.SessionPresent; got != (want == 1) {
				t.Errorf("v%d %s: session present %v, want %d", v, tc.name, got, want)
			}
			b.c.Close()
			a.c.Close()
		}
	}
}

// connectWithExpiry connects a raw client; a persistent v5 session asks for
// an expiry so it outlives the connection.
func connectWithExpiry(rc *rawClient, v byte, id string, clean bool) *packets.Packet {
	rc.t.Helper()
	name := []byte("MQTT")
	if v == 3 {
		name = []byte("MQIsdp")
	}
	pk := &packets.Packet{ProtocolVersion: v, Connect: packets.ConnectParams{ProtocolName: name, ClientIdentifier: id, Clean: clean}}
	if v == 5 && !clean {
		pk.Properties.SessionExpiryInterval, pk.Properties.SessionExpiryIntervalFlag = 300, true
	}
	ack := rc.connectPk(pk)
	if ack.ReasonCode != 0 {
		rc.t.Fatalf("CONNACK %#x", ack.ReasonCode)
	}
	return ack
}

// MQTT 3.1 requires a client id of 1 to 23 characters: an empty one is
// refused with return code 2 (3.1.1 accepts it with clean session).
func TestV31EmptyClientIDRefused(t *testing.T) {
	s := startServer(t, Options{})
	rc := dialRaw(t, s)
	rc.connect(3, "", true, packets.Err3ClientIdentifierNotValid.Code)
	rc.expectClosed()
}

// A CONNACK larger than the client's Maximum Packet Size is not sent; the
// connection is closed [MQTT-3.1.2-24].
func TestConnackLargerThanClientMaximum(t *testing.T) {
	s := startServer(t, Options{})
	rc := dialRaw(t, s)
	rc.version = 5
	rc.send(&packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connect}, ProtocolVersion: 5,
		Properties: packets.Properties{MaximumPacketSize: 8},
		Connect:    packets.ConnectParams{ProtocolName: []byte("MQTT"), ClientIdentifier: "tiny", Clean: true, Keepalive: 30}})
	if got := rc.readAll(); len(got) != 0 {
		t.Fatalf("got %d packets (%s first), want none", len(got), packets.PacketNames[got[0].FixedHeader.Type])
	}
}

// A v5 QoS 1/2 publish that reached nobody is acknowledged with 0x10 No
// matching subscribers (as Mosquitto and EMQX do); one that reached a
// subscriber with 0.
func TestNoMatchingSubscribers(t *testing.T) {
	for _, store := range []bool{false, true} {
		t.Run(fmt.Sprintf("store=%v", store), func(t *testing.T) {
			opts := Options{}
			if store {
				opts.Store = openTestStore(t)
			}
			s := startServer(t, opts)
			rc := dialRaw(t, s)
			rc.connect5("nobody-pub", true, packets.Properties{})
			ack := func(qos byte, pid uint16) byte {
				rc.publish("nobody/here", []byte("x"), qos, pid, false, packets.Properties{})
				typ := packets.Puback
				if qos == 2 {
					typ = packets.Pubrec // the publisher learns it here, not at PUBCOMP
				}
				a := rc.expect(typ)
				if qos == 2 {
					rc.ack(packets.Pubrel, pid)
					rc.expect(packets.Pubcomp)
				}
				return a.ReasonCode
			}
			for _, qos := range []byte{1, 2} {
				if got := ack(qos, uint16(qos)); got != packets.CodeNoMatchingSubscribers.Code {
					t.Errorf("QoS %d to nobody: reason %#x, want 0x10", qos, got)
				}
			}
			sub := connectV5(t, s, "somebody")
			sub.subscribe("nobody/#", 1)
			for _, qos := range []byte{1, 2} {
				if got := ack(qos, 10+uint16(qos)); got != 0 {
					t.Errorf("QoS %d to a subscriber: reason %#x, want 0", qos, got)
				}
			}
		})
	}
}

// ACL read access applies per delivery: a permitted "#" subscription never
// carries a topic its holder may not read (before, only SUBSCRIBE was
// judged, so "#" received everything). Retained messages too.
func TestACLAppliesPerDelivery(t *testing.T) {
	s := startServer(t, Options{
		ACLDefault: "allow",
		ACL: []ACLRule{
			{User: "admin", Topic: "#", Access: "readwrite"},
			{Topic: "secret/#", Access: "deny"},
		},
	})
	pubRetained := connectV5(t, s, "admin-early", credentials("admin", "x"))
	pubRetained.publish("secret/plan", "retained secret", 1, true)
	pubRetained.publish("public/news", "retained news", 1, true)
	snoop := connectV5(t, s, "snoop", credentials("eve", "x"))
	snoop.subscribe("#", 1)
	snoop.expect("public/news", "retained news") // the retained secret is not sent
	admin := connectV5(t, s, "admin", credentials("admin", "x"))
	admin.subscribe("#", 1)
	got := map[string]string{}
	for range 2 {
		p := admin.next()
		got[p.Topic] = string(p.Payload)
	}
	if got["secret/plan"] != "retained secret" || got["public/news"] != "retained news" {
		t.Fatalf("admin's retained messages: %v", got)
	}
	pub := connectV5(t, s, "pub", credentials("admin", "x"))
	pub.publish("secret/x", "for admins", 1, false)
	pub.publish("public/x", "for all", 1, false)
	admin.expect("secret/x", "for admins")
	admin.expect("public/x", "for all")
	snoop.expect("public/x", "for all") // and secret/x never came before it
	snoop.none()
}

// Spec points Mosquitto's own test suite checks (issue: "Mosquitto's broker
// test suite fails on these"), end to end; the decoder-level golden tests
// are in broker/mqtt.
func TestMosquittoSuiteSpecPoints(t *testing.T) {
	s := startServer(t, Options{})
	// An empty will payload is valid (3.1.1 §3.1.3.3, v5 §3.1.3.4), and the
	// will goes out with it.
	watcher := connectV5(t, s, "will-watcher")
	watcher.subscribe("empty/will/#", 0)
	for _, v := range []byte{4, 5} {
		rc := dialRaw(t, s)
		ack := rc.connectPk(&packets.Packet{ProtocolVersion: v, Connect: packets.ConnectParams{
			ClientIdentifier: fmt.Sprintf("empty-will-%d", v), Clean: true,
			WillFlag: true, WillTopic: fmt.Sprintf("empty/will/%d", v)}})
		if ack.ReasonCode != 0 {
			t.Fatalf("v%d empty will payload: CONNACK %#x", v, ack.ReasonCode)
		}
		rc.c.Close()
		if p := watcher.next(); p.Topic != fmt.Sprintf("empty/will/%d", v) || len(p.Payload) != 0 {
			t.Fatalf("v%d will: got %q %q", v, p.Topic, p.Payload)
		}
	}
	// A user name with a surrogate is malformed [MQTT-1.5.4-1].
	rc := dialRaw(t, s)
	rc.version = 5
	name := frame(0x10, str("MQTT"), b(5, 0x82, 0, 30, 0), str("sur"), []byte{0, 3, 0xED, 0xA0, 0x80})
	rc.write(name)
	if ack := rc.expect(packets.Connack); ack.ReasonCode != packets.ErrMalformedPacket.Code {
		t.Fatalf("surrogate user name: CONNACK %#x, want 0x81", ack.ReasonCode)
	}
	// An empty topic filter is malformed [MQTT-4.7.3-1].
	rc = dialRaw(t, s)
	rc.connect5("empty-filter", true, packets.Properties{})
	rc.write(frame(0x82, b(0, 1, 0), []byte{0, 0}, b(0)))
	rc.expectDisconnect(packets.ErrMalformedPacket.Code)
	// A PUBACK with packet id 0 is a protocol error [MQTT-2.2.1-3].
	rc = dialRaw(t, s)
	rc.connect5("zero-pid", true, packets.Properties{})
	rc.write(b(0x40, 2, 0, 0))
	rc.expectDisconnect(packets.ErrProtocolViolation.Code)
	roundTrip(t, s, "spec-points")
}
