package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/cimgo/cim/broker/wire"
)

// frameReader decodes the frames a fake server reads from a client.
type frameReader struct {
	t   *testing.T
	br  *bufio.Reader
	buf []byte
	f   wire.Frame
}

func newFrameReader(t *testing.T, c net.Conn) *frameReader {
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	return &frameReader{t: t, br: bufio.NewReader(c)}
}

// next reads one frame (detached: it stays valid).
func (r *frameReader) next() *wire.Frame {
	r.t.Helper()
	for {
		n, err := wire.Decode(r.buf, &r.f, 0)
		if err == nil {
			r.f.Detach()
			r.buf = r.buf[n:]
			return &r.f
		}
		if !errors.Is(err, wire.ErrIncomplete) {
			r.t.Fatalf("client sent a bad frame: %v", err)
		}
		b, err := r.br.ReadByte()
		if err != nil {
			r.t.Fatalf("reading from the client: %v", err)
		}
		r.buf = append(r.buf, b)
	}
}

func writeFrames(t *testing.T, c net.Conn, bodies ...wire.Body) {
	t.Helper()
	var b []byte
	for _, body := range bodies {
		var err error
		if b, err = wire.Append(b, body); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.Write(b); err != nil {
		t.Fatal(err)
	}
}

// recHandler records errors; the client's reader calls OnError while the
// test reads them.
type recHandler struct {
	nopHandler
	mu   sync.Mutex
	errs []error
}

func (h *recHandler) OnError(err error) { h.mu.Lock(); h.errs = append(h.errs, err); h.mu.Unlock() }

func (h *recHandler) errCount() int { h.mu.Lock(); defer h.mu.Unlock(); return len(h.errs) }

// TestNativeLoginAndWindow checks the login frame, the keepalive the
// server grants, the in-flight window and the send-ack that opens it.
func TestNativeLoginAndWindow(t *testing.T) {
	addr, conns := fakeBroker(t)
	type dialed struct {
		c   Client
		err error
	}
	done := make(chan dialed, 1)
	h := &recHandler{}
	run := &nativeRun{ids: map[string]uint64{"bob": 7}}
	go func() {
		c, err := nativeProto{run: run}.Dial(context.Background(), &ClientConfig{
			Addr: addr, ClientID: "alice", Password: "pw", Clean: true,
			KeepAlive: 30 * time.Second, ConnectTimeout: 2 * time.Second, Inflight: 2,
			ReadBuffer: 256, WriteBuffer: 256,
		}, h)
		done <- dialed{c, err}
	}()
	srv := <-conns
	defer srv.Close()
	fr := newFrameReader(t, srv)
	f := fr.next()
	if f.Type != wire.TypeLogin || f.Login != (wire.Login{Name: "alice", Password: "pw", Version: nativeVersion, Keepalive: 30}) {
		t.Fatalf("login frame %v %+v", f.Type, f.Login)
	}
	writeFrames(t, srv, &wire.LoginAck{Code: wire.CodeOK, User: 42, Name: "alice", Keepalive: 9})
	d := <-done
	if d.err != nil {
		t.Fatal(d.err)
	}
	defer d.c.Close()
	nc := d.c.(*nativeClient)
	if nc.user != 42 || nc.inbox != "cim/u/42" || nc.keepAlive != int64(9*time.Second) {
		t.Fatalf("after login: user %d inbox %q keepalive %v", nc.user, nc.inbox, time.Duration(nc.keepAlive))
	}
	payload := make([]byte, HeaderSize)
	for i := 0; i < 2; i++ {
		if _, err := d.c.Publish(context.Background(), "cim/u/bob", payload, 1); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err := d.c.Publish(ctx, "cim/u/bob", payload, 1); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("third publish with a window of 2: err %v, want it to wait", err)
	}
	var ids []uint64
	for i := 0; i < 2; i++ {
		f := fr.next()
		if f.Type != wire.TypeSend || f.Send.Target != wire.ToUser(7) || f.Send.QoS != 1 || len(f.Send.Body) != HeaderSize || f.Send.ID == 0 {
			t.Fatalf("send %d: %v %+v", i, f.Type, f.Send)
		}
		if at := int64(binary.BigEndian.Uint64(f.Send.Body)); time.Since(time.Unix(0, at)) > time.Minute || at <= 0 {
			t.Fatalf("send %d not stamped with its write time: %d", i, at)
		}
		ids = append(ids, f.Send.ID)
	}
	if ids[1] != ids[0]+1 {
		t.Fatalf("ids %v, want consecutive", ids)
	}
	// A stored-offline ack (7000) completes the send; an ack for an id not
	// in flight is an error, not a second completion.
	writeFrames(t, srv, &wire.SendAck{ID: ids[1], MsgID: 100, Code: wire.CodeOffline}, &wire.SendAck{ID: ids[1], Code: wire.CodeOK})
	ctx2, cancel2 := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel2()
	if _, err := d.c.Publish(ctx2, "bench/x", payload, 1); err != nil {
		t.Fatalf("publish after a send-ack: %v", err)
	}
	if err := d.c.Flush(); err != nil {
		t.Fatal(err)
	}
	f = fr.next()
	if f.Type != wire.TypeSend || f.Send.Target != wire.ToTopic("bench/x") || f.Send.ID <= ids[1] {
		t.Fatalf("third send: %+v", f.Send)
	}
	waitFor(t, "the stray ack's error", func() bool { d.c.Flush(); return h.errCount() > 0 })
	// A QoS 1 deliver is acknowledged; a ping is answered.
	writeFrames(t, srv, &wire.Deliver{MsgID: 555, Body: payload, QoS: 1}, &wire.Ping{})
	if f := fr.next(); f.Type != wire.TypeDeliverAck || f.DeliverAck.MsgID != 555 {
		t.Fatalf("after a QoS 1 deliver: %v %+v", f.Type, f.DeliverAck)
	}
	if f := fr.next(); f.Type != wire.TypePong {
		t.Fatalf("after a ping: %v", f.Type)
	}
}

// TestNativeLoginRefused: each answer to a login other than an OK ack is a
// dial error of the right kind.
func TestNativeLoginRefused(t *testing.T) {
	for name, tc := range map[string]struct {
		answer wire.Body
		want   error
	}{
		"wrong account": {&wire.LoginAck{Code: wire.CodeAccountMismatch, Text: "no such account"}, ErrAuth},
		"expired token": {&wire.LoginAck{Code: wire.CodeTokenExpired}, ErrAuth},
		"no server":     {&wire.LoginAck{Code: wire.CodeNoServer}, ErrRefused},
		"error frame":   {&wire.Error{Code: wire.CodeLoginTimeout}, ErrRefused},
		"no user id":    {&wire.LoginAck{Code: wire.CodeOK}, ErrProtocol},
		"deliver":       {&wire.Deliver{MsgID: 1, Body: []byte("x")}, ErrProtocol},
	} {
		addr, conns := fakeBroker(t)
		done := make(chan error, 1)
		go func() {
			_, err := nativeProto{run: &nativeRun{}}.Dial(context.Background(), &ClientConfig{
				Addr: addr, ClientID: "alice", KeepAlive: time.Minute, ConnectTimeout: 2 * time.Second}, &nopHandler{})
			done <- err
		}()
		srv := <-conns
		newFrameReader(t, srv).next()
		writeFrames(t, srv, tc.answer)
		err := <-done
		srv.Close()
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: err %v, want %v", name, err, tc.want)
		}
	}
}

func TestNativeTargets(t *testing.T) {
	run := &nativeRun{ids: map[string]uint64{"bob": 7}, groups: map[string]bool{"club": true}}
	for topic, want := range map[string]wire.Target{
		"cim/all":     wire.ToAll(),
		"cim/u/12":    wire.ToUser(12),
		"cim/u/bob":   wire.ToUser(7),
		"cim/g/club":  wire.ToGroup("club"),
		"cim/g/other": wire.ToGroup("other"),
		"cim/u/12/x":  wire.ToTopic("cim/u/12/x"),
		"cim/g/":      wire.ToTopic("cim/g/"),
		"bench/fanin": wire.ToTopic("bench/fanin"),
	} {
		got, err := run.target(topic)
		if err != nil || got != want {
			t.Errorf("target(%q) = %+v, %v; want %+v", topic, got, err, want)
		}
	}
	for _, bad := range []string{"cim/u/carol", "cim/u/0", "cim/u/99999999999999999999999"} {
		if _, err := run.target(bad); !errors.Is(err, ErrUsage) {
			t.Errorf("target(%q): err %v, want ErrUsage", bad, err)
		}
	}
	for filter, want := range map[string]struct {
		f          string
		subscribed bool
	}{
		"cim/u/bob":   {"cim/u/7", false},
		"cim/u/+":     {"cim/u/+", false},
		"cim/g/club":  {"cim/g/club", true},
		"cim/g/other": {"cim/g/other", false},
		"bench/#":     {"bench/#", false},
	} {
		f, sub, err := run.filter(filter)
		if err != nil || f != want.f || sub != want.subscribed {
			t.Errorf("filter(%q) = %q %v %v, want %q %v", filter, f, sub, err, want.f, want.subscribed)
		}
	}
	if _, _, err := run.filter("cim/u/carol"); !errors.Is(err, ErrSubscribe) {
		t.Errorf("filter of an unknown name: %v", err)
	}
	if inboxName("cim/u/x%rand") != "" || inboxName("cim/u/17") != "" || inboxName("cim/u/bob") != "bob" || groupName("cim/g/a/b") != "" {
		t.Error("inboxName / groupName")
	}
}

// newTestNativeClient is a logged-in client over conn with a window, for
// the reader's fuzz target and the benchmarks.
func newTestNativeClient(conn net.Conn, h Handler, r io.Reader, inflight int) *nativeClient {
	c := newNativeClient(conn, h, &nativeRun{ids: map[string]uint64{}}, &ClientConfig{Inflight: inflight, ReadBuffer: 64, WriteBuffer: 64})
	c.user, c.inbox = 1, "cim/u/1"
	if r != nil {
		c.cr.r = r
		c.br.Reset(&c.cr)
	}
	return c
}

// FuzzNativeClientRead feeds arbitrary server output to the native
// client's reader: it must fail cleanly, never panic or hang.
func FuzzNativeClientRead(f *testing.F) {
	payload := make([]byte, HeaderSize)
	seed := func(bodies ...wire.Body) []byte {
		var b []byte
		for _, body := range bodies {
			b, _ = wire.Append(b, body)
		}
		return b
	}
	f.Add(seed(&wire.Deliver{MsgID: 1, From: 2, FromName: "x", Target: wire.ToTopic("a/b"), Body: payload, QoS: 1}))
	f.Add(seed(&wire.SendAck{ID: 1, MsgID: 9, Code: wire.CodeOK}, &wire.SendAck{ID: 77, Code: wire.CodeOffline}))
	f.Add(seed(&wire.SubAck{ID: 1, Codes: []wire.Code{wire.CodeOK}}, &wire.Ping{}, &wire.Pong{}))
	f.Add(seed(&wire.Kick{Code: wire.CodeTakenOver, Text: "elsewhere"}))
	f.Add(seed(&wire.Error{Code: wire.CodeUnknownFrame}, &wire.Error{Code: wire.CodeMalformed}))
	f.Add([]byte{0x02, 0x7f, 0x80, 0x02, 0x03, 0x80})                     // unknown type, then a ping
	f.Add([]byte{0xff, 0xff, 0xff, 0x7f, 0x07})                           // the largest length, no body
	f.Add([]byte{0x80, 0x00})                                             // not the shortest form
	f.Add(append([]byte{0x90, 0x01, 0x07, 0xde, 0xff, 0xff}, payload...)) // a map too long for its bytes
	f.Fuzz(func(t *testing.T, data []byte) {
		a, b := net.Pipe()
		defer b.Close()
		go io.Copy(io.Discard, b)
		c := newTestNativeClient(a, &nopHandler{}, bytes.NewReader(data), 4)
		c.base = 1 // ids 1.. may be "in flight"
		for k := uint64(0); k < 2; k++ {
			c.ring[k].id.Store(1 + k)
			<-c.window
		}
		c.pending.Store(1)
		c.readLoop() // returns at the end of data or on the first error
	})
}

// discardConn is a connection that takes every write and reads nothing.
type discardConn struct{}

func (discardConn) Read([]byte) (int, error)         { return 0, io.EOF }
func (discardConn) Write(p []byte) (int, error)      { return len(p), nil }
func (discardConn) Close() error                     { return nil }
func (discardConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (discardConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (discardConn) SetDeadline(time.Time) error      { return nil }
func (discardConn) SetReadDeadline(time.Time) error  { return nil }
func (discardConn) SetWriteDeadline(time.Time) error { return nil }

// deliveryStream is n QoS 1 deliver frames as the server writes them.
func deliveryStream(n int, qos byte) []byte {
	var stream []byte
	payload := make([]byte, 64)
	now := time.Now().UnixNano()
	for i := 0; i < n; i++ {
		putHeader(payload, 0, uint32(i))
		binary.BigEndian.PutUint64(payload, uint64(now))
		id := uint64(now/1e6-wire.MsgIDEpoch)<<wire.MsgIDTimeShift | uint64(i) // a server's id: its time, no ts
		stream, _ = wire.AppendDeliver(stream, &wire.Deliver{MsgID: id, From: 3, FromName: "cb0123abcd-p0",
			Target: wire.ToTopic("bench/fanin"), Body: payload, Time: wire.MsgIDTime(id), QoS: qos})
	}
	return stream
}

// The hot paths allocate nothing per message: a QoS 1 publish and its
// send-ack, and reading, accounting and acknowledging a QoS 1 delivery.
func TestNativeHotPathAllocs(t *testing.T) {
	o := Options{Scenario: ScenarioFanIn, Pubs: 1, Subs: 1, RunStart: 1}
	o.EnsureDefaults()
	r, err := newRunner(&o, 0, 1, 0, func(*event) {})
	if err != nil {
		t.Fatal(err)
	}
	r.measureFrom.Store(0)
	pub := &client{r: r, role: rolePub}
	c := newTestNativeClient(discardConn{}, pub, nil, 8)
	c.flushAt = 1 << 10
	payload := make([]byte, 64)
	ctx := context.Background()
	allocs := testing.AllocsPerRun(1000, func() {
		if _, err := c.Publish(ctx, "bench/fanin", payload, 1); err != nil {
			t.Fatal(err)
		}
		c.Flush()
		c.release(c.base + c.next - 1)
	})
	if allocs != 0 {
		t.Errorf("QoS 1 publish + ack: %.1f allocations, want 0", allocs)
	}
	stream := deliveryStream(100, 1)
	rd := bytes.NewReader(stream)
	sub := &client{r: r, role: roleSub}
	sc := newTestNativeClient(discardConn{}, sub, rd, 0)
	sc.br = bufio.NewReaderSize(&sc.cr, 64<<10)
	sc.now = time.Now().UnixNano()
	readAll := func() {
		rd.Reset(stream)
		sc.br.Reset(&sc.cr)
		for {
			frame, total, err := sc.nextFrame()
			if err != nil {
				break
			}
			if err := sc.handle(frame); err != nil {
				t.Fatal(err)
			}
			sc.discard(total)
			sc.flushAcks()
		}
	}
	readAll() // the per-publisher tracker and latency buffers are made once
	if allocs := testing.AllocsPerRun(20, readAll); allocs != 0 {
		t.Errorf("100 QoS 1 deliveries: %.1f allocations, want 0", allocs)
	}
	if sub.recvAll.Load() < 100 {
		t.Fatalf("deliveries counted: %d", sub.recvAll.Load())
	}
}

func BenchmarkNativePublish(b *testing.B) {
	b.ReportAllocs()
	c := newTestNativeClient(discardConn{}, &nopHandler{}, nil, 100)
	c.flushAt = 8 << 10
	payload := make([]byte, 64)
	ctx := context.Background()
	for b.Loop() {
		_, _ = c.Publish(ctx, "bench/fanin", payload, 0)
	}
}

// BenchmarkNativeReadDeliveries is BenchmarkReadDeliveries (QoS 0) for
// the native client, and QoS 1 with its deliver-acks.
func BenchmarkNativeReadDeliveries(b *testing.B) {
	for _, qos := range []byte{0, 1} {
		b.Run(fmt.Sprintf("qos=%d", qos), func(b *testing.B) {
			b.ReportAllocs()
			o := Options{Scenario: ScenarioFanIn, Pubs: 1, Subs: 1, RunStart: 1}
			o.EnsureDefaults()
			r, err := newRunner(&o, 0, 1, 0, func(*event) {})
			if err != nil {
				b.Fatal(err)
			}
			r.measureFrom.Store(0)
			cl := &client{r: r, role: roleSub}
			stream := deliveryStream(1000, qos)
			rd := bytes.NewReader(stream)
			c := newTestNativeClient(discardConn{}, cl, rd, 0)
			c.br = bufio.NewReaderSize(&c.cr, 64<<10)
			c.now = time.Now().UnixNano()
			for b.Loop() {
				rd.Reset(stream)
				c.br.Reset(&c.cr)
				for {
					frame, total, err := c.nextFrame()
					if err != nil {
						break
					}
					if err := c.handle(frame); err != nil {
						b.Fatal(err)
					}
					c.discard(total)
				}
				c.flushAcks()
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*1000), "ns/msg")
		})
	}
}

func BenchmarkMQTTPublish(b *testing.B) {
	b.ReportAllocs()
	c := &mqttClient{sock: sock{conn: discardConn{}, h: &nopHandler{}, dead: make(chan struct{})}, version: 4, flushAt: 8 << 10, done: make(chan struct{})}
	payload := make([]byte, 64)
	ctx := context.Background()
	for b.Loop() {
		_, _ = c.Publish(ctx, "bench/fanin", payload, 0)
	}
}

// The send template writes exactly what wire.Append writes, whatever the
// shape changes to between sends.
func TestSendTemplate(t *testing.T) {
	var tmpl sendTemplate
	body := bytes.Repeat([]byte{7}, 64)
	sends := []struct {
		topic string
		s     wire.Send
	}{
		{"bench/a", wire.Send{Target: wire.ToTopic("bench/a"), Body: body}},
		{"bench/a", wire.Send{Target: wire.ToTopic("bench/a"), Body: body[:3]}},
		{"bench/a", wire.Send{ID: 1<<62 + 5, Target: wire.ToTopic("bench/a"), QoS: 1, Body: body}},
		{"bench/a", wire.Send{ID: 1<<62 + 6, Target: wire.ToTopic("bench/a"), QoS: 1, Body: body}},
		{"bench/a", wire.Send{ID: 9, Target: wire.ToTopic("bench/a"), QoS: 1, Body: body}}, // a short id
		{"cim/u/7", wire.Send{ID: 1<<40 + 1, Target: wire.ToUser(7), QoS: 1, Body: body}},
		{"cim/u/7", wire.Send{Target: wire.ToUser(7), Body: body}},
		{"cim/u/7", wire.Send{Target: wire.ToUser(7), Body: make([]byte, 300)}},
		{"cim/u/7", wire.Send{Target: wire.ToUser(7)}},
	}
	for i, c := range sends {
		want, err := wire.Append([]byte("x"), &c.s)
		if err != nil {
			t.Fatal(err)
		}
		got, err := tmpl.append([]byte("x"), c.s.Target, c.s.QoS, c.s.ID, c.s.Body, c.topic)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("send %d: got %x, %v\nwant %x", i, got, err, want)
		}
	}
}
