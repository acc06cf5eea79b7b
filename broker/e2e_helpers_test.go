package broker

// Helpers for the end-to-end tests: real MQTT clients on loopback, Eclipse
// Paho for v5 (github.com/eclipse/paho.golang) and v3.1.1
// (github.com/eclipse/paho.mqtt.golang), plus rawClient conveniences for
// what real clients never send. Every client is disconnected by t.Cleanup,
// which runs before the server's (registered first) shutdown.

import (
	"context"
	"errors"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	mqtt3 "github.com/eclipse/paho.mqtt.golang"
	"github.com/mochi-mqtt/server/v2/packets"
	"golang.org/x/crypto/bcrypt"
)

const (
	// e2eWait bounds every wait for something that must happen: generous,
	// so that a loaded 2-core machine running -race does not fail a test
	// that only waits longer than usual.
	e2eWait = 10 * time.Second
	// quiet is how long a test watches for something that must not happen.
	quiet = 300 * time.Millisecond
)

// ---- Paho v5 ----

// v5Client is a connected paho.golang client whose received publishes land
// in msgs and whose server DISCONNECT, if any, lands in disc.
type v5Client struct {
	t    testing.TB
	cli  *paho.Client
	conn net.Conn
	ack  *paho.Connack
	msgs chan *paho.Publish
	disc chan *paho.Disconnect
	gone atomic.Bool // Disconnect or drop called
}

// v5Opt changes the CONNECT a v5 client sends.
type v5Opt func(*paho.Connect)

func ptr[T any](v T) *T { return &v }

func connProps(cp *paho.Connect) *paho.ConnectProperties {
	if cp.Properties == nil {
		cp.Properties = &paho.ConnectProperties{}
	}
	return cp.Properties
}

// persistent asks for CleanStart=false and a session expiry (seconds).
func persistent(expiry uint32) v5Opt {
	return func(cp *paho.Connect) {
		cp.CleanStart = false
		connProps(cp).SessionExpiryInterval = ptr(expiry)
	}
}

// expiry sets the session expiry interval, keeping CleanStart.
func expiry(sec uint32) v5Opt {
	return func(cp *paho.Connect) { connProps(cp).SessionExpiryInterval = ptr(sec) }
}

func keepAlive(sec uint16) v5Opt { return func(cp *paho.Connect) { cp.KeepAlive = sec } }

func credentials(user, pass string) v5Opt {
	return func(cp *paho.Connect) {
		cp.Username, cp.UsernameFlag = user, true
		cp.Password, cp.PasswordFlag = []byte(pass), true
	}
}

// will sets a will message; delay > 0 adds a will delay interval.
func will(topic, payload string, qos byte, retain bool, delay uint32) v5Opt {
	return func(cp *paho.Connect) {
		cp.WillMessage = &paho.WillMessage{Topic: topic, Payload: []byte(payload), QoS: qos, Retain: retain}
		cp.WillProperties = &paho.WillProperties{}
		if delay > 0 {
			cp.WillProperties.WillDelayInterval = ptr(delay)
		}
	}
}

// dialV5 connects a paho v5 client. A refused CONNECT returns the CONNACK
// and an error; the client is then already closed.
func dialV5(t testing.TB, s *Server, id string, opts ...v5Opt) (*v5Client, error) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", s.Addr().String(), e2eWait)
	if err != nil {
		t.Fatal(err)
	}
	c := &v5Client{t: t, conn: conn, msgs: make(chan *paho.Publish, 10000), disc: make(chan *paho.Disconnect, 1)}
	c.cli = paho.NewClient(paho.ClientConfig{
		Conn: conn,
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			c.msgs <- pr.Packet
			return true, nil
		}},
		OnServerDisconnect: func(d *paho.Disconnect) {
			select {
			case c.disc <- d:
			default:
			}
		},
		PacketTimeout: e2eWait,
	})
	cp := &paho.Connect{ClientID: id, CleanStart: true, KeepAlive: 30}
	for _, o := range opts {
		o(cp)
	}
	ctx, cancel := context.WithTimeout(context.Background(), e2eWait)
	defer cancel()
	c.ack, err = c.cli.Connect(ctx, cp)
	if err != nil {
		conn.Close()
		return c, err
	}
	t.Cleanup(c.disconnect)
	return c, nil
}

// connectV5 connects a paho v5 client or fails the test.
func connectV5(t testing.TB, s *Server, id string, opts ...v5Opt) *v5Client {
	t.Helper()
	c, err := dialV5(t, s, id, opts...)
	if err != nil {
		t.Fatalf("v5 connect %q: %v (connack %+v)", id, err, c.ack)
	}
	return c
}

// disconnect sends DISCONNECT (normal) and waits for the client to stop.
func (c *v5Client) disconnect() { c.disconnectWith(0) }

func (c *v5Client) disconnectWith(code byte) {
	if c.gone.Swap(true) {
		return
	}
	_ = c.cli.Disconnect(&paho.Disconnect{ReasonCode: code})
	c.waitDone()
}

// drop closes the socket without DISCONNECT: an abnormal end.
func (c *v5Client) drop() {
	if c.gone.Swap(true) {
		return
	}
	c.conn.Close()
	c.waitDone()
}

func (c *v5Client) waitDone() {
	select {
	case <-c.cli.Done():
	case <-time.After(e2eWait):
		c.t.Errorf("paho v5 client did not stop")
	}
}

// closedByServer waits until the server closes the connection.
func (c *v5Client) closedByServer() {
	c.t.Helper()
	select {
	case <-c.cli.Done():
		c.gone.Store(true)
	case <-time.After(e2eWait):
		c.t.Fatal("connection not closed by the server")
	}
}

func (c *v5Client) subscribe(filter string, qos byte) {
	c.t.Helper()
	c.subscribeOpts(paho.SubscribeOptions{Topic: filter, QoS: qos}, 0, qos)
}

// subscribeOpts subscribes with options and a subscription id (0 = none)
// and checks the SUBACK reason code.
func (c *v5Client) subscribeOpts(o paho.SubscribeOptions, id int, want byte) {
	c.t.Helper()
	sub := &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{o}}
	if id != 0 {
		sub.Properties = &paho.SubscribeProperties{SubscriptionIdentifier: ptr(id)}
	}
	ctx, cancel := context.WithTimeout(context.Background(), e2eWait)
	defer cancel()
	sa, err := c.cli.Subscribe(ctx, sub)
	if sa == nil {
		c.t.Fatalf("subscribe %q: %v", o.Topic, err)
	}
	if len(sa.Reasons) != 1 || sa.Reasons[0] != want {
		c.t.Fatalf("subscribe %q: SUBACK %x, want %#x", o.Topic, sa.Reasons, want)
	}
}

func (c *v5Client) unsubscribe(filter string) byte {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), e2eWait)
	defer cancel()
	ua, err := c.cli.Unsubscribe(ctx, &paho.Unsubscribe{Topics: []string{filter}})
	if ua == nil || len(ua.Reasons) != 1 {
		c.t.Fatalf("unsubscribe %q: %v", filter, err)
	}
	return ua.Reasons[0]
}

// publish sends a message and, for QoS > 0, waits for its acknowledgement.
// It returns the reason code (PUBACK / PUBREC; 0 for QoS 0).
func (c *v5Client) publish(topic, payload string, qos byte, retain bool) byte {
	c.t.Helper()
	return c.publishMsg(&paho.Publish{Topic: topic, Payload: []byte(payload), QoS: qos, Retain: retain})
}

func (c *v5Client) publishMsg(p *paho.Publish) byte {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), e2eWait)
	defer cancel()
	pr, err := c.cli.Publish(ctx, p)
	if pr == nil {
		c.t.Fatalf("publish %q: %v", p.Topic, err)
	}
	return pr.ReasonCode
}

// next returns the next received publish or fails after e2eWait.
func (c *v5Client) next() *paho.Publish {
	c.t.Helper()
	select {
	case p := <-c.msgs:
		return p
	case <-time.After(e2eWait):
		c.t.Fatal("v5: no message received")
		return nil
	}
}

// expect receives the next message and checks its topic and payload.
func (c *v5Client) expect(topic, payload string) *paho.Publish {
	c.t.Helper()
	p := c.next()
	if p.Topic != topic || string(p.Payload) != payload {
		c.t.Fatalf("v5: got %q %q, want %q %q", p.Topic, p.Payload, topic, payload)
	}
	return p
}

// none checks that no message arrives for a while.
func (c *v5Client) none() {
	c.t.Helper()
	select {
	case p := <-c.msgs:
		c.t.Fatalf("v5: unexpected message %q %q", p.Topic, p.Payload)
	case <-time.After(quiet):
	}
}

// serverDisconnect waits for a DISCONNECT from the server.
func (c *v5Client) serverDisconnect() *paho.Disconnect {
	c.t.Helper()
	select {
	case d := <-c.disc:
		return d
	case <-time.After(e2eWait):
		c.t.Fatal("v5: no DISCONNECT from the server")
		return nil
	}
}

// ---- Paho v3.1.1 ----

// v3Client is a connected paho.mqtt.golang client (protocol level 4).
type v3Client struct {
	t       testing.TB
	cli     mqtt3.Client
	conn    atomic.Pointer[net.Conn]
	msgs    chan mqtt3.Message
	lost    chan error
	present bool
}

type v3Opt func(*mqtt3.ClientOptions)

// dialV3 connects a v3.1.1 client; on a refused CONNECT it returns the
// return code and an error.
func dialV3(t testing.TB, s *Server, id string, clean bool, opts ...v3Opt) (*v3Client, byte, error) {
	t.Helper()
	c := &v3Client{t: t, msgs: make(chan mqtt3.Message, 10000), lost: make(chan error, 1)}
	o := mqtt3.NewClientOptions().
		AddBroker("tcp://" + s.Addr().String()).
		SetClientID(id).
		SetCleanSession(clean).
		SetProtocolVersion(4).
		SetAutoReconnect(false).
		SetConnectRetry(false).
		SetKeepAlive(30 * time.Second).
		SetConnectTimeout(e2eWait).
		SetWriteTimeout(e2eWait).
		SetOrderMatters(true).
		SetDefaultPublishHandler(func(_ mqtt3.Client, m mqtt3.Message) { c.msgs <- m }).
		SetConnectionLostHandler(func(_ mqtt3.Client, err error) {
			select {
			case c.lost <- err:
			default:
			}
		}).
		SetCustomOpenConnectionFn(func(u *url.URL, _ mqtt3.ClientOptions) (net.Conn, error) {
			nc, err := net.DialTimeout("tcp", u.Host, e2eWait)
			if err == nil {
				c.conn.Store(&nc)
			}
			return nc, err
		})
	for _, f := range opts {
		f(o)
	}
	c.cli = mqtt3.NewClient(o)
	tok := c.cli.Connect()
	if !tok.WaitTimeout(e2eWait) {
		t.Fatalf("v3 connect %q: timed out", id)
	}
	ct := tok.(*mqtt3.ConnectToken)
	if err := tok.Error(); err != nil {
		return c, ct.ReturnCode(), err
	}
	c.present = ct.SessionPresent()
	t.Cleanup(c.disconnect)
	return c, 0, nil
}

func connectV3(t testing.TB, s *Server, id string, clean bool, opts ...v3Opt) *v3Client {
	t.Helper()
	c, rc, err := dialV3(t, s, id, clean, opts...)
	if err != nil {
		t.Fatalf("v3 connect %q: return code %d: %v", id, rc, err)
	}
	return c
}

func (c *v3Client) disconnect() {
	if c.cli.IsConnectionOpen() {
		c.cli.Disconnect(100)
	}
}

// drop closes the socket without DISCONNECT. (Paho v3 does not notice a
// socket closed under it until it writes; Disconnect then stops it, its
// DISCONNECT failing on the closed socket.)
func (c *v3Client) drop() {
	if p := c.conn.Load(); p != nil {
		(*p).Close()
	}
	c.cli.Disconnect(0)
}

// subscribe subscribes and returns the SUBACK return code.
func (c *v3Client) subscribe(filter string, qos byte) byte {
	c.t.Helper()
	tok := c.cli.Subscribe(filter, qos, nil)
	if !tok.WaitTimeout(e2eWait) {
		c.t.Fatalf("v3 subscribe %q: timed out", filter)
	}
	if err := tok.Error(); err != nil && !strings.Contains(err.Error(), "subscription") {
		c.t.Fatalf("v3 subscribe %q: %v", filter, err)
	}
	return tok.(*mqtt3.SubscribeToken).Result()[filter]
}

func (c *v3Client) unsubscribe(filter string) {
	c.t.Helper()
	tok := c.cli.Unsubscribe(filter)
	if !tok.WaitTimeout(e2eWait) || tok.Error() != nil {
		c.t.Fatalf("v3 unsubscribe %q: %v", filter, tok.Error())
	}
}

func (c *v3Client) publish(topic, payload string, qos byte, retain bool) {
	c.t.Helper()
	tok := c.cli.Publish(topic, qos, retain, []byte(payload))
	if !tok.WaitTimeout(e2eWait) || tok.Error() != nil {
		c.t.Fatalf("v3 publish %q: %v", topic, tok.Error())
	}
}

func (c *v3Client) next() mqtt3.Message {
	c.t.Helper()
	select {
	case m := <-c.msgs:
		return m
	case <-time.After(e2eWait):
		c.t.Fatal("v3: no message received")
		return nil
	}
}

func (c *v3Client) expect(topic, payload string) mqtt3.Message {
	c.t.Helper()
	m := c.next()
	if m.Topic() != topic || string(m.Payload()) != payload {
		c.t.Fatalf("v3: got %q %q, want %q %q", m.Topic(), m.Payload(), topic, payload)
	}
	return m
}

func (c *v3Client) none() {
	c.t.Helper()
	select {
	case m := <-c.msgs:
		c.t.Fatalf("v3: unexpected message %q %q", m.Topic(), m.Payload())
	case <-time.After(quiet):
	}
}

// closedByServer waits for the client to see its connection lost.
func (c *v3Client) closedByServer() {
	c.t.Helper()
	select {
	case <-c.lost:
	case <-time.After(e2eWait):
		c.t.Fatal("v3: connection not closed by the server")
	}
}

// ---- raw client conveniences ----

// connectPk sends a hand-made CONNECT and returns the CONNACK.
func (rc *rawClient) connectPk(pk *packets.Packet) *packets.Packet {
	rc.t.Helper()
	pk.FixedHeader.Type = packets.Connect
	if pk.Connect.ProtocolName == nil {
		pk.Connect.ProtocolName = []byte("MQTT")
	}
	if pk.Connect.Keepalive == 0 {
		pk.Connect.Keepalive = 30
	}
	rc.version = pk.ProtocolVersion
	rc.send(pk)
	return rc.expect(packets.Connack)
}

// connect5 connects as v5 with the given properties and expects success.
func (rc *rawClient) connect5(id string, clean bool, props packets.Properties) *packets.Packet {
	rc.t.Helper()
	ack := rc.connectPk(&packets.Packet{ProtocolVersion: 5, Properties: props,
		Connect: packets.ConnectParams{ClientIdentifier: id, Clean: clean}})
	if ack.ReasonCode != 0 {
		rc.t.Fatalf("CONNACK %#x", ack.ReasonCode)
	}
	return ack
}

// subscribe sends one SUBSCRIBE (with subscription id subID if not 0) and
// returns the SUBACK reason codes.
func (rc *rawClient) subscribe(pid uint16, subID int, filters ...packets.Subscription) []byte {
	rc.t.Helper()
	pk := &packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Subscribe, Qos: 1}, PacketID: pid, Filters: filters}
	if subID != 0 {
		pk.Properties.SubscriptionIdentifier = []int{subID}
	}
	rc.send(pk)
	ack := rc.expect(packets.Suback)
	if ack.PacketID != pid {
		rc.t.Fatalf("SUBACK for %d, want %d", ack.PacketID, pid)
	}
	return ack.ReasonCodes
}

// publish sends a PUBLISH; the caller reads the acknowledgement.
func (rc *rawClient) publish(topic string, payload []byte, qos byte, pid uint16, dup bool, props packets.Properties) {
	rc.t.Helper()
	rc.send(&packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: qos, Dup: dup}, PacketID: pid,
		TopicName: topic, Payload: payload, Properties: props})
}

// ack sends a PUBACK, PUBREC, PUBREL or PUBCOMP.
func (rc *rawClient) ack(typ byte, pid uint16) {
	rc.t.Helper()
	fh := packets.FixedHeader{Type: typ}
	if typ == packets.Pubrel {
		fh.Qos = 1
	}
	rc.send(&packets.Packet{FixedHeader: fh, PacketID: pid})
}

// expect reads the next packet and checks its type.
func (rc *rawClient) expect(typ byte) *packets.Packet {
	rc.t.Helper()
	pk, err := rc.tryRead(e2eWait)
	if err != nil {
		rc.t.Fatalf("want %s: %v", packets.PacketNames[typ], err)
	}
	if pk.FixedHeader.Type != typ {
		rc.t.Fatalf("want %s, got %s (%+v)", packets.PacketNames[typ], packets.PacketNames[pk.FixedHeader.Type], pk.FixedHeader)
	}
	return pk
}

// expectNone checks that nothing arrives for a while.
func (rc *rawClient) expectNone() {
	rc.t.Helper()
	pk, err := rc.tryRead(quiet)
	if err == nil {
		rc.t.Fatalf("unexpected %s (%+v)", packets.PacketNames[pk.FixedHeader.Type], pk)
	}
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		rc.t.Fatalf("connection failed: %v", err)
	}
}

// readAll reads packets until the server closes the connection, failing if
// that takes longer than e2eWait.
func (rc *rawClient) readAll() []*packets.Packet {
	rc.t.Helper()
	deadline := time.Now().Add(e2eWait)
	var got []*packets.Packet
	for {
		pk, err := rc.tryRead(time.Until(deadline))
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				rc.t.Fatalf("connection not closed; read %d packets", len(got))
			}
			return got
		}
		got = append(got, pk)
	}
}

// expectDisconnect checks that the server sends a v5 DISCONNECT with code
// (after any other packets) and closes the connection.
func (rc *rawClient) expectDisconnect(code byte) {
	rc.t.Helper()
	got := rc.readAll()
	if len(got) == 0 || got[len(got)-1].FixedHeader.Type != packets.Disconnect {
		rc.t.Fatalf("closed without DISCONNECT (%d packets before)", len(got))
	}
	if c := got[len(got)-1].ReasonCode; c != code {
		rc.t.Fatalf("DISCONNECT %#x, want %#x", c, code)
	}
}

// ---- misc ----

// roundTrip checks that s still serves: a fresh v5 subscriber receives a
// fresh publisher's QoS 1 message.
func roundTrip(t testing.TB, s *Server, tag string) {
	t.Helper()
	sub := connectV5(t, s, "rt-sub-"+tag)
	sub.subscribe("rt/"+tag, 1)
	pub := connectV5(t, s, "rt-pub-"+tag)
	pub.publish("rt/"+tag, "ping", 1, false)
	sub.expect("rt/"+tag, "ping")
	pub.disconnect()
	sub.disconnect()
}

// writePasswordFile writes "user:bcrypt-hash" lines to a temporary file.
func writePasswordFile(t testing.TB, users map[string]string) string {
	t.Helper()
	var b strings.Builder
	b.WriteString("# test users\n")
	for u, p := range users {
		h, err := bcrypt.GenerateFromPassword([]byte(p), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		b.WriteString(u + ":" + string(h) + "\n")
	}
	path := filepath.Join(t.TempDir(), "passwd")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// waitE2E is waitFor with the e2eWait deadline.
func waitE2E(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(e2eWait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// within fails unless d lies in [lo, hi].
func within(t testing.TB, what string, d, lo, hi time.Duration) {
	t.Helper()
	if d < lo || d > hi {
		t.Fatalf("%s after %v, want between %v and %v", what, d, lo, hi)
	}
}

func contextWithTimeout() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), e2eWait)
}

// afterTick returns d after the broker's coarse clock last ticked, so a test
// can place an event early or late in the one-second tick the broker's
// deadlines are counted in.
func afterTick(t testing.TB, s *Server, d time.Duration) {
	t.Helper()
	was := s.now()
	waitE2E(t, "a clock tick", func() bool { return s.now() != was })
	time.Sleep(d) // a position in the tick, not synchronization
}

// waitOffline waits until the broker has released client id's connection
// (a client's DISCONNECT may still be in flight when it returns), so that
// what is published next is queued rather than sent to the old socket.
func waitOffline(t testing.TB, s *Server, id string) {
	t.Helper()
	waitE2E(t, id+" offline", func() bool {
		ss := lookupSession(s, id)
		return ss == nil || !ss.online.Load()
	})
}

// lookupSession returns the broker's session for client id, or nil.
func lookupSession(s *Server, id string) *session { return s.sessions.lookup(mqttKey(id)) }

// closeResult is what a raw client read until the server closed it.
type closeResult struct {
	got   []*packets.Packet
	after time.Duration // from closedAfter's call to the close
	err   error         // the server did not close it within e2eWait
}

// closedAfter reads rc on a goroutine until the server closes it, so that
// several connections can be timed at once. Only the channel is touched
// from the test goroutine.
func (rc *rawClient) closedAfter() <-chan closeResult {
	start := time.Now()
	ch := make(chan closeResult, 1)
	go func() {
		var r closeResult
		for {
			pk, err := rc.tryRead(time.Until(start.Add(e2eWait)))
			if err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					r.err = errors.New("connection not closed")
				}
				r.after = time.Since(start)
				ch <- r
				return
			}
			r.got = append(r.got, pk)
		}
	}()
	return ch
}

// waitAcked waits until client id's session has nothing in flight: Paho
// acknowledges after its handler returns, so a test that disconnects right
// after receiving would otherwise see the message again (DUP) on resume.
func waitAcked(t testing.TB, s *Server, id string) {
	t.Helper()
	waitE2E(t, id+" acknowledged everything", func() bool {
		ss := lookupSession(s, id)
		if ss == nil {
			return true
		}
		ss.mu.Lock()
		defer ss.mu.Unlock()
		return len(ss.inflight) == 0
	})
}
