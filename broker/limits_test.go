package broker

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cimgo/cim/broker/mqtt"
	mqtt3 "github.com/eclipse/paho.mqtt.golang"
	"github.com/mochi-mqtt/server/v2/packets"
)

func setLimits(t testing.TB, s *Server, l Limits) {
	t.Helper()
	if err := s.SetLimits(l); err != nil {
		t.Fatal(err)
	}
}

func TestLimitsValidate(t *testing.T) {
	for _, c := range []struct {
		l   Limits
		key string
	}{
		{Limits{MaxConnections: -1}, "max_connections"},
		{Limits{MaxConnectionsPerIP: -1}, "max_connections_per_ip"},
		{Limits{MaxSubscriptionsPerClient: -2}, "max_subscriptions_per_client"},
		{Limits{MaxPublishRate: -1}, "max_publish_rate"},
		{Limits{MaxPublishBytesRate: -0.5}, "max_publish_bytes_rate"},
	} {
		err := c.l.Validate()
		if err == nil || !strings.Contains(err.Error(), c.key) {
			t.Errorf("%+v: %v, want an error naming %s", c.l, err, c.key)
		}
	}
	s := startServer(t, Options{})
	if err := s.SetLimits(Limits{MaxConnections: -1}); err == nil {
		t.Fatal("SetLimits took a negative limit")
	}
	if got := s.Limits(); got.MaxConnections != 0 || got.LogRate != 0 {
		t.Fatalf("limits after a refused SetLimits: %+v", got)
	}
}

func TestMaxConnections(t *testing.T) {
	s := startServer(t, Options{})
	setLimits(t, s, Limits{MaxConnections: 2})
	connectV5(t, s, "c1")
	connectV5(t, s, "c2")
	c, err := dialV5(t, s, "c3")
	if err == nil || c.ack == nil || c.ack.ReasonCode != packets.ErrQuotaExceeded.Code {
		t.Fatalf("third v5 connect: %v, connack %+v; want 0x97", err, c.ack)
	}
	_, rc, err := dialV3(t, s, "c4", true)
	if err == nil || rc != packets.Err3ServerUnavailable.Code {
		t.Fatalf("v3 connect over the limit: rc %d, %v; want 3 (server unavailable)", rc, err)
	}
	if st := s.Stats(); st.RefusedConnections != 2 {
		t.Fatalf("RefusedConnections %d, want 2", st.RefusedConnections)
	}
	// Raising the limit (a reload) lets the next one in.
	setLimits(t, s, Limits{MaxConnections: 3})
	waitE2E(t, "refused sockets closed", func() bool { return countOf(s, ProtocolMQTT, "tcp") == 2 })
	connectV5(t, s, "c5")
}

func TestMaxConnectionsPerIP(t *testing.T) {
	s := startServer(t, Options{})
	setLimits(t, s, Limits{MaxConnectionsPerIP: 1})
	connectV5(t, s, "ip1")
	c, err := dialV5(t, s, "ip1b")
	if err == nil || c.ack.ReasonCode != packets.ErrQuotaExceeded.Code {
		t.Fatalf("second connect from 127.0.0.1: %v %+v, want 0x97", err, c.ack)
	}
	// Another source address has its own count.
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}, Timeout: e2eWait}
	conn, err := d.Dial("tcp", s.Addr().String())
	if err != nil {
		t.Skipf("cannot bind 127.0.0.2: %v", err)
	}
	if _, err := startV5(t, conn, "ip2"); err != nil {
		t.Fatalf("connect from 127.0.0.2: %v", err)
	}
	if st := s.Stats(); st.RefusedConnectionsPerIP != 1 {
		t.Fatalf("RefusedConnectionsPerIP %d, want 1", st.RefusedConnectionsPerIP)
	}
	// Bridged connections count under their real address.
	pki := newTestPKI(t)
	addr := serveTLS(t, s, pki.serverConfig(tls.NoClientCert), false)
	if c, err := dialV5TLS(t, addr, pki.clientConfig(), "ip1-tls"); err == nil || c.ack.ReasonCode != packets.ErrQuotaExceeded.Code {
		t.Fatalf("TLS connect from 127.0.0.1 over the per-IP limit: %v", err)
	}
	s.guard.ipMu.Lock()
	n := len(s.guard.perIP)
	s.guard.ipMu.Unlock()
	if n != 2 {
		waitE2E(t, "per-IP table of 2 addresses", func() bool {
			s.guard.ipMu.Lock()
			defer s.guard.ipMu.Unlock()
			return len(s.guard.perIP) == 2
		})
	}
}

func TestMaxSubscriptionsPerClient(t *testing.T) {
	s := startServer(t, Options{})
	setLimits(t, s, Limits{MaxSubscriptionsPerClient: 2})
	rc := dialRaw(t, s)
	rc.connect5("subs", true, packets.Properties{})
	codes := rc.subscribe(1, 0, packets.Subscription{Filter: "a", Qos: 1}, packets.Subscription{Filter: "b"}, packets.Subscription{Filter: "c"})
	if !bytes.Equal(codes, []byte{1, 0, packets.ErrQuotaExceeded.Code}) {
		t.Fatalf("SUBACK % x, want 01 00 97", codes)
	}
	// Re-subscribing to a held filter is not a new one.
	if codes := rc.subscribe(2, 0, packets.Subscription{Filter: "a", Qos: 0}); !bytes.Equal(codes, []byte{0}) {
		t.Fatalf("re-subscribe SUBACK % x", codes)
	}
	v3 := connectV3(t, s, "subs3", true)
	v3.subscribe("x", 0)
	v3.subscribe("y", 0)
	if code := v3.subscribe("z", 0); code != 0x80 {
		t.Fatalf("v3 SUBACK %#x, want 0x80", code)
	}
	if st := s.Stats(); st.RefusedSubscriptions != 2 {
		t.Fatalf("RefusedSubscriptions %d, want 2", st.RefusedSubscriptions)
	}
}

func TestPublishRateLimit(t *testing.T) {
	s := startServer(t, Options{})
	setLimits(t, s, Limits{MaxPublishRate: 5})
	rc := dialRaw(t, s)
	rc.connect5("fast", true, packets.Properties{})
	for i := 0; i < 50; i++ {
		pk := &packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish}, ProtocolVersion: 5, TopicName: "r", Payload: []byte("x")}
		b, _ := mqtt.Append(nil, pk)
		if _, err := rc.c.Write(b); err != nil {
			break // closed already
		}
	}
	rc.expectDisconnect(packets.ErrMessageRateTooHigh.Code)
	if st := s.Stats(); st.RateLimited != 1 {
		t.Fatalf("RateLimited %d, want 1", st.RateLimited)
	}

	// v3: the connection is closed.
	v3 := connectV3(t, s, "fast3", true)
	for i := 0; i < 10 && v3.cli.IsConnectionOpen(); i++ {
		v3.cli.Publish("r", 0, false, "x")
	}
	v3.closedByServer()

	// Bytes: a bucket of 1000 B/s passes 800 + 800 (into debt), then refuses.
	setLimits(t, s, Limits{MaxPublishBytesRate: 1000})
	rb := dialRaw(t, s)
	rb.connect5("bytes", true, packets.Properties{})
	payload := bytes.Repeat([]byte("b"), 800)
	for i := 0; i < 3; i++ {
		rb.publish("r", payload, 1, uint16(i+1), false, packets.Properties{})
		if i < 2 {
			if ack := rb.expect(packets.Puback); ack.PacketID != uint16(i+1) {
				t.Fatalf("PUBACK %d", ack.PacketID)
			}
		}
	}
	rb.expectDisconnect(packets.ErrMessageRateTooHigh.Code)

	// Within the rate nothing happens.
	setLimits(t, s, Limits{MaxPublishRate: 1000})
	ok := connectV5(t, s, "slow")
	for i := 0; i < 20; i++ {
		ok.publish("r", "x", 1, false)
	}
	if st := s.Stats(); st.RateLimited != 3 {
		t.Fatalf("RateLimited %d, want 3", st.RateLimited)
	}
}

// logBuf is a slog handler target that tests can read.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) lines(msg string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, line := range strings.Split(l.b.String(), "\n") {
		if strings.Contains(line, "msg=\""+msg+"\"") || strings.Contains(line, "msg="+msg+" ") {
			out = append(out, line)
		}
	}
	return out
}

func TestConnectionLogs(t *testing.T) {
	lb := &logBuf{}
	pw := writePasswordFile(t, map[string]string{"u": "p"})
	s := startServer(t, Options{PasswordFile: pw, Logger: slog.New(slog.NewTextHandler(lb, nil))})
	setLimits(t, s, Limits{LogRate: 3})
	c := connectV5(t, s, "logged", credentials("u", "p"), keepAlive(45))
	waitE2E(t, "client connected line", func() bool { return len(lb.lines("client connected")) == 1 })
	line := lb.lines("client connected")[0]
	for _, want := range []string{"client=logged", "user=u", "remote=" + c.conn.LocalAddr().String(), "protocol=mqtt/5", "transport=tcp", "keepalive=45", "clean_start=true"} {
		if !strings.Contains(line, want) {
			t.Errorf("%q lacks %q", line, want)
		}
	}
	if err := s.Kick(ProtocolMQTT, "logged"); err != nil {
		t.Fatal(err)
	}
	waitE2E(t, "client disconnected line", func() bool { return len(lb.lines("client disconnected")) == 1 })
	if l := lb.lines("client disconnected")[0]; !strings.Contains(l, `reason="kicked by an administrator"`) {
		t.Errorf("disconnect line %q", l)
	}
	v3 := connectV3(t, s, "v3log", true, func(o *mqtt3.ClientOptions) { o.SetUsername("u").SetPassword("p") })
	v3.disconnect()
	waitE2E(t, "second disconnect line", func() bool { return len(lb.lines("client disconnected")) == 2 })
	if l := lb.lines("client disconnected")[1]; !strings.Contains(l, `reason="client disconnected"`) {
		t.Errorf("disconnect line %q", l)
	}

	// A flood of bad logins: LogRate lines, then one summary.
	for i := 0; i < 10; i++ {
		if _, err := dialV5(t, s, "bad", credentials("u", "wrong")); err == nil {
			t.Fatal("bad password accepted")
		}
	}
	if st := s.Stats(); st.AuthFailures != 10 {
		t.Fatalf("AuthFailures %d, want 10", st.AuthFailures)
	}
	waitE2E(t, "summary line", func() bool { return len(lb.lines("log lines suppressed")) > 0 })
	n := len(lb.lines("auth failed"))
	if n < 3 || n > 5 { // 3 in the burst, plus the refill over the seconds the logins took
		t.Fatalf("%d auth failed lines, want about 3", n)
	}
	total := 0
	for _, l := range lb.lines("log lines suppressed") {
		if !strings.Contains(l, `kind="auth failed"`) {
			t.Fatalf("summary %q", l)
		}
		var k int
		i := strings.Index(l, "suppressed=")
		_, _ = fmt.Sscan(l[i+len("suppressed="):], &k)
		total += k
	}
	if total+n != 10 {
		t.Fatalf("%d logged + %d suppressed, want 10", n, total)
	}
	if st := s.Stats(); st.LogsSuppressed != int64(total) {
		t.Fatalf("LogsSuppressed %d, want %d", st.LogsSuppressed, total)
	}
}

func TestLogLimiterBucket(t *testing.T) {
	var ll logLimiter
	ll.setRate(2)
	got := 0
	for i := 0; i < 10; i++ {
		if ll.allow(logConnected) {
			got++
		}
	}
	if got != 2 {
		t.Fatalf("%d allowed of a burst, want 2", got)
	}
	if !ll.allow(logAuthFailed) {
		t.Fatal("one kind's flood silenced another")
	}
	ll.mu.Lock()
	ll.kinds[logConnected].last = ll.kinds[logConnected].last.Add(-time.Second)
	ll.mu.Unlock()
	if !ll.allow(logConnected) {
		t.Fatal("no refill after a second")
	}
	ll.setRate(-1)
	for i := 0; i < 100; i++ {
		if !ll.allow(logConnected) {
			t.Fatal("unbounded rate refused")
		}
	}
}

func TestKeepaliveOf(t *testing.T) {
	for ka := 1; ka <= 65535; ka++ {
		span := int32(ka) + int32(ka+1)/2
		if got := keepaliveOf(span); got != ka {
			t.Fatalf("keepaliveOf(%d) = %d, want %d", span, got, ka)
		}
	}
	if keepaliveOf(-1) != 0 {
		t.Fatal("no keepalive")
	}
}
