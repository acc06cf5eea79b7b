package httpapi

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/cimgo/cim/broker"
	"github.com/cimgo/cim/broker/mqtt"
	mqtt3 "github.com/eclipse/paho.mqtt.golang"
	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"github.com/mochi-mqtt/server/v2/packets"
)

// pahoWS connects a Paho v3.1.1 client over ws:// or wss:// (its
// WebSocket transport offers the "mqtt" subprotocol).
func pahoWS(t testing.TB, url string, cfg *tls.Config, id string, msgs chan mqtt3.Message) mqtt3.Client {
	t.Helper()
	o := mqtt3.NewClientOptions().AddBroker(url).SetClientID(id).SetProtocolVersion(4).
		SetAutoReconnect(false).SetConnectRetry(false).SetConnectTimeout(wait).SetTLSConfig(cfg).
		SetDefaultPublishHandler(func(_ mqtt3.Client, m mqtt3.Message) { msgs <- m })
	c := mqtt3.NewClient(o)
	if tok := c.Connect(); !tok.WaitTimeout(wait) || tok.Error() != nil {
		t.Fatalf("connect %s: %v", url, tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(100) })
	return c
}

func expect3(t testing.TB, msgs chan mqtt3.Message, topic, payload string) {
	t.Helper()
	select {
	case m := <-msgs:
		if m.Topic() != topic || string(m.Payload()) != payload {
			t.Fatalf("got %s %q", m.Topic(), m.Payload())
		}
	case <-time.After(wait):
		t.Fatalf("no message on %s", topic)
	}
}

func TestPahoOverWebSocket(t *testing.T) {
	e := newEnv(t, Options{})
	msgs := make(chan mqtt3.Message, 10)
	url := "ws" + strings.TrimPrefix(e.web.URL, "http") + "/mqtt"
	c := pahoWS(t, url, nil, "ws-client", msgs)
	if tok := c.Subscribe("ws/#", 1, nil); !tok.WaitTimeout(wait) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	tcp := dialTCP(t, e.srv, "tcp-peer")
	tcp.subscribe(t, "back", 0)
	tcp.publish(t, "ws/in", "to the browser", 1, false)
	expect3(t, msgs, "ws/in", "to the browser")
	big := strings.Repeat("z", 200_000) // several frames and pump reads
	c.Publish("back", 0, false, big).WaitTimeout(wait)
	tcp.expect(t, "back", big)

	var ci broker.ClientInfo
	for _, x := range e.srv.Clients() {
		if x.ID == "ws-client" {
			ci = x
		}
	}
	if ci.Transport != "ws" || !strings.HasPrefix(ci.Remote, "127.0.0.1:") || ci.Remote == e.web.Listener.Addr().String() {
		t.Fatalf("ws client info %+v", ci)
	}
	c.Disconnect(100)
	waitFor(t, "ws connection closed", func() bool {
		for _, cc := range e.srv.ConnectionCounts() {
			if cc.Transport == "ws" && cc.Open != 0 {
				return false
			}
		}
		return true
	})
}

// rawWS dials /mqtt with gobwas's client side.
func rawWS(t testing.TB, e *env, protocols ...string) net.Conn {
	t.Helper()
	d := ws.Dialer{Protocols: protocols, Timeout: wait}
	conn, br, _, err := d.Dial(context.Background(), "ws"+strings.TrimPrefix(e.web.URL, "http")+"/mqtt")
	if err != nil {
		t.Fatal(err)
	}
	if br != nil {
		t.Fatal("server sent data before the client spoke")
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func encode(t testing.TB, pk *packets.Packet) []byte {
	t.Helper()
	b, err := mqtt.Append(nil, pk)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// writeFrames sends data as one message cut into frames at the given offsets.
func writeFrames(t testing.TB, conn net.Conn, data []byte, cuts ...int) {
	t.Helper()
	prev := 0
	for i, cut := range append(cuts, len(data)) {
		op := ws.OpContinuation
		if i == 0 {
			op = ws.OpBinary
		}
		f := ws.NewFrame(op, cut == len(data), data[prev:cut])
		if err := ws.WriteFrame(conn, ws.MaskFrame(f)); err != nil {
			t.Fatal(err)
		}
		prev = cut
	}
}

// readPackets reads server messages until n MQTT packets arrived.
func readPackets(t testing.TB, conn net.Conn, n int) []*packets.Packet {
	t.Helper()
	_ = conn.SetReadDeadline(time.Now().Add(wait))
	var buf []byte
	var out []*packets.Packet
	for len(out) < n {
		b, op, err := wsutil.ReadServerData(conn)
		if err != nil {
			t.Fatalf("read: %v (have %d packets)", err, len(out))
		}
		if op != ws.OpBinary {
			t.Fatalf("opcode %v", op)
		}
		buf = append(buf, b...)
		for {
			_, hl, rem, err := mqtt.Header(buf)
			if err != nil || len(buf) < hl+rem {
				break
			}
			pk := new(packets.Packet)
			if _, err := mqtt.Decode(buf[:hl+rem], pk, 5, 0); err != nil {
				t.Fatal(err)
			}
			out = append(out, pk)
			buf = buf[hl+rem:]
		}
	}
	return out
}

// Packets may span frames and frames may hold several packets [MQTT-6.0.0-2].
func TestWebSocketFraming(t *testing.T) {
	e := newEnv(t, Options{})
	conn := rawWS(t, e, "mqtt")
	connect := encode(t, &packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connect}, ProtocolVersion: 5,
		Connect: packets.ConnectParams{ProtocolName: []byte("MQTT"), ClientIdentifier: "frames", Clean: true, Keepalive: 30}})
	writeFrames(t, conn, connect, 1, 3, 7) // one CONNECT over four frames
	if pk := readPackets(t, conn, 1)[0]; pk.FixedHeader.Type != packets.Connack || pk.ReasonCode != 0 {
		t.Fatalf("CONNACK %+v", pk)
	}
	sub := encode(t, &packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Subscribe, Qos: 1}, ProtocolVersion: 5, PacketID: 1,
		Filters: packets.Subscriptions{{Filter: "f/#", Qos: 1}}})
	pub := encode(t, &packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1}, ProtocolVersion: 5, PacketID: 2,
		TopicName: "f/x", Payload: []byte("both in one frame")})
	writeFrames(t, conn, append(sub, pub...)) // two packets in one frame
	got := readPackets(t, conn, 3)
	types := []byte{got[0].FixedHeader.Type, got[1].FixedHeader.Type, got[2].FixedHeader.Type}
	has := func(typ byte) bool { return bytes.IndexByte(types, typ) >= 0 }
	if !has(packets.Suback) || !has(packets.Puback) || !has(packets.Publish) {
		t.Fatalf("packets %v, want SUBACK, PUBACK, PUBLISH", types)
	}
	// A ping is answered with a pong, between the MQTT bytes.
	if err := wsutil.WriteClientMessage(conn, ws.OpPing, []byte("hi")); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(wait))
	h, err := ws.ReadHeader(conn)
	if err != nil || h.OpCode != ws.OpPong {
		t.Fatalf("pong: %+v %v", h, err)
	}
	io.CopyN(io.Discard, conn, h.Length)
	// Kick: DISCONNECT 0x98 in a binary message, then a close frame.
	if err := e.srv.Kick(broker.ProtocolMQTT, "frames"); err != nil {
		t.Fatal(err)
	}
	if pk := readPackets(t, conn, 1)[0]; pk.FixedHeader.Type != packets.Disconnect || pk.ReasonCode != 0x98 {
		t.Fatalf("after kick %+v", pk)
	}
	h, err = ws.ReadHeader(conn)
	if err != nil || h.OpCode != ws.OpClose {
		t.Fatalf("close frame: %+v %v", h, err)
	}
}

func TestWebSocketRefusals(t *testing.T) {
	e := newEnv(t, Options{})
	code, _, body := e.do("GET", "/mqtt", "", "")
	wantError(t, code, body, 400, "bad_request")
	req, _ := http.NewRequest("GET", e.web.URL+"/mqtt", nil)
	for k, v := range map[string]string{"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13",
		"Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Protocol": "chat"} {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	wantError(t, resp.StatusCode, string(b), 400, "bad_subprotocol")

	// Text frames are refused with close 1003 [MQTT-6.0.0-1].
	conn := rawWS(t, e, "mqtt")
	if err := wsutil.WriteClientMessage(conn, ws.OpText, []byte("hello")); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(wait))
	f, err := ws.ReadFrame(conn)
	if err != nil || f.Header.OpCode != ws.OpClose || binary.BigEndian.Uint16(f.Payload) != uint16(ws.StatusUnsupportedData) {
		t.Fatalf("frame %+v %v, want close 1003", f.Header, err)
	}
	// An unmasked client frame: close 1002.
	conn2 := rawWS(t, e, "mqtt")
	ws.WriteFrame(conn2, ws.NewBinaryFrame([]byte{0x10}))
	_ = conn2.SetReadDeadline(time.Now().Add(wait))
	f, err = ws.ReadFrame(conn2)
	if err != nil || f.Header.OpCode != ws.OpClose || binary.BigEndian.Uint16(f.Payload) != uint16(ws.StatusProtocolError) {
		t.Fatalf("frame %+v %v, want close 1002", f.Header, err)
	}
}

func TestWSSWithClientCertificate(t *testing.T) {
	p := newPKI(t)
	cert, key := p.files("srv", p.issue("srv", true))
	m, err := ReadTLS(TLSFiles{CertFile: cert, KeyFile: key, ClientCAFile: p.caFile, ClientAuth: "optional"})
	if err != nil {
		t.Fatal(err)
	}
	certs := NewCerts(m)
	e := newEnv(t, Options{WebSocketIdentityAsUser: true})
	wss := httptest.NewUnstartedServer(e.api.Handler())
	wss.TLS = certs.Config("http/1.1")
	wss.StartTLS()
	defer wss.Close()
	url := "wss" + strings.TrimPrefix(wss.URL, "https") + "/mqtt"
	msgs := make(chan mqtt3.Message, 10)
	c := pahoWS(t, url, p.client(p.issue("browser-7", false)), "wss-client", msgs)
	c.Subscribe("secure", 0, nil).WaitTimeout(wait)
	dialTCP(t, e.srv, "p").publish(t, "secure", "over wss", 0, false)
	expect3(t, msgs, "secure", "over wss")
	for _, ci := range e.srv.Clients() {
		if ci.ID == "wss-client" && (ci.Transport != "wss" || ci.User != "browser-7" || ci.Identity != "browser-7") {
			t.Fatalf("wss client %+v", ci)
		}
	}
}

// pipeWS is a wsConn of framing on one end of a pipe; the test is the
// client on the other.
func pipeWS(framing Framing) (*wsConn, net.Conn) {
	a, b := net.Pipe()
	return &wsConn{Conn: a, src: a, framing: framing}, b
}

func TestUvarintFraming(t *testing.T) {
	srv, cli := pipeWS(FramingUvarint)
	defer cli.Close()
	go func() {
		writeFrames(t, cli, []byte("hello"))
		writeFrames(t, cli, []byte("abcdef"), 2, 4) // one message in three frames
		writeFrames(t, cli, nil)                    // an empty message
		wsutil.WriteClientMessage(cli, ws.OpPing, nil)
	}()
	var got []byte
	buf := make([]byte, 3) // small reads: the prefix and payload come in pieces
	want := append(append(append([]byte{5}, "hello"...), append([]byte{6}, "abcdef"...)...), 0)
	for len(got) < len(want) {
		n, err := srv.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, buf[:n]...)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("stream % x, want % x", got, want)
	}
	// The pong for the ping comes while Read waits for more.
	go srv.Read(buf)
	if f, err := ws.ReadFrame(cli); err != nil || f.Header.OpCode != ws.OpPong || len(f.Payload) != 0 {
		t.Fatalf("pong %+v %v", f.Header, err)
	}

	// Out: frames written in pieces come out one message each, prefix removed.
	stream := append(binary.AppendUvarint(nil, 300), bytes.Repeat([]byte("m"), 300)...)
	stream = append(stream, 2, 'o', 'k')
	wrote := make(chan struct{})
	go func() {
		defer close(wrote)
		srv.Write(stream[:1]) // half a prefix
		srv.Write(stream[1:200])
		srv.Write(stream[200:])
	}()
	for _, want := range []string{strings.Repeat("m", 300), "ok"} {
		b, op, err := wsutil.ReadServerData(cli)
		if err != nil || op != ws.OpBinary || string(b) != want {
			t.Fatalf("message %q (%v, %v), want %d bytes", b, op, err, len(want))
		}
	}
	<-wrote
	if srv.out != nil {
		t.Fatal("an idle connection kept its outbound buffer")
	}
	// Too large a frame is refused both ways.
	if _, err := srv.Write(binary.AppendUvarint(nil, maxWSMessage+1)); err == nil {
		t.Fatal("oversize outbound frame accepted")
	}
}

func TestUvarintFramingTooLarge(t *testing.T) {
	srv, cli := pipeWS(FramingUvarint)
	defer cli.Close()
	go func() {
		h := ws.Header{Fin: true, OpCode: ws.OpBinary, Masked: true, Length: maxWSMessage + 1}
		ws.WriteHeader(cli, h)
		f, _ := ws.ReadFrame(cli)
		cli.Close()
		if f.Header.OpCode != ws.OpClose || binary.BigEndian.Uint16(f.Payload) != uint16(ws.StatusMessageTooBig) {
			t.Errorf("frame %+v, want close 1009", f.Header)
		}
	}()
	if _, err := srv.Read(make([]byte, 10)); err == nil {
		t.Fatal("oversize message accepted")
	}
}

// FuzzWSRead feeds arbitrary client bytes, in chunks, to both framings:
// no panic, no hang, and never more output than input plus prefixes.
func FuzzWSRead(f *testing.F) {
	var seed bytes.Buffer
	wsutil.WriteClientMessage(&seed, ws.OpBinary, []byte{0x10, 0x0c, 0, 4, 'M', 'Q', 'T', 'T', 4, 2, 0, 30, 0, 0})
	wsutil.WriteClientMessage(&seed, ws.OpPing, []byte("p"))
	f.Add(seed.Bytes(), uint8(3))
	frag := bytes.Buffer{}
	ws.WriteFrame(&frag, ws.MaskFrame(ws.NewFrame(ws.OpBinary, false, []byte("ab"))))
	ws.WriteFrame(&frag, ws.MaskFrame(ws.NewFrame(ws.OpContinuation, true, []byte("cd"))))
	f.Add(frag.Bytes(), uint8(1))
	f.Fuzz(func(t *testing.T, in []byte, chunk uint8) {
		for _, fr := range []Framing{FramingStream, FramingUvarint} {
			c := &wsConn{Conn: discardConn{}, src: &chunked{b: in, n: int(chunk%16) + 1}, framing: fr}
			out := 0
			buf := make([]byte, 7)
			for {
				n, err := c.Read(buf)
				out += n
				if err != nil {
					break
				}
				if out > len(in)+64 {
					t.Fatalf("%d bytes out of %d in", out, len(in))
				}
			}
		}
	})
}

// chunked reads b n bytes at a time.
type chunked struct {
	b []byte
	n int
}

func (c *chunked) Read(p []byte) (int, error) {
	if len(c.b) == 0 {
		return 0, io.EOF
	}
	k := min(len(p), c.n, len(c.b))
	copy(p, c.b[:k])
	c.b = c.b[k:]
	return k, nil
}

// discardConn swallows what wsConn writes (pongs, close frames).
type discardConn struct{ net.Conn }

func (discardConn) Write(p []byte) (int, error) { return len(p), nil }

// Behind trusted proxies a WebSocket client is known by the rightmost
// X-Forwarded-For hop they did not add; from anywhere else the header is
// ignored (a client could name any address).
func TestWebSocketForwardedFor(t *testing.T) {
	for _, tc := range []struct {
		name    string
		trusted []netip.Prefix
		xff     []string
		want    string // remote IP, "" for the TCP peer's
	}{
		{"trusted proxy", []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, []string{"198.51.100.9, 203.0.113.7"}, "203.0.113.7"},
		{"two trusted hops", []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32"), netip.MustParsePrefix("10.0.0.0/8")},
			[]string{"203.0.113.7", "10.1.2.3"}, "203.0.113.7"},
		{"garbled hop", []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, []string{"203.0.113.7, not-an-ip"}, ""},
		{"no trusted proxies", nil, []string{"203.0.113.7"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, Options{TrustedProxies: tc.trusted})
			h := http.Header{}
			for _, v := range tc.xff {
				h.Add("X-Forwarded-For", v)
			}
			d := ws.Dialer{Protocols: []string{"mqtt"}, Timeout: wait, Header: ws.HandshakeHeaderHTTP(h)}
			conn, _, _, err := d.Dial(context.Background(), "ws"+strings.TrimPrefix(e.web.URL, "http")+"/mqtt")
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			writeFrames(t, conn, encode(t, &packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connect}, ProtocolVersion: 4,
				Connect: packets.ConnectParams{ProtocolName: []byte("MQTT"), ClientIdentifier: "proxied", Clean: true, Keepalive: 30}}))
			readPackets(t, conn, 1)
			var remote string
			for _, c := range e.srv.Clients() {
				if c.ID == "proxied" {
					remote = c.Remote
				}
			}
			host, _, _ := net.SplitHostPort(remote)
			want := tc.want
			if want == "" {
				want = "127.0.0.1"
			}
			if host != want {
				t.Fatalf("remote %q, want %s", remote, want)
			}
		})
	}
}
