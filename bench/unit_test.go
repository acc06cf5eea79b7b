package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
	cmqtt "github.com/cimgo/cim/broker/mqtt"
)

func TestSeqTrack(t *testing.T) {
	tr := newSeqTrack(seqWindow)
	steps := []struct {
		seq  uint32
		want verdict
	}{
		{0, inOrder}, {1, inOrder}, {3, inOrder}, // 2 missing so far
		{2, reordered}, // late
		{2, duplicate},
		{3, duplicate},
		{4, inOrder},
		{4 + seqWindow + 10, inOrder}, // a big jump clears the window
		{4 + 20, reordered},           // inside the new window, never seen
		{1, reordered},                // too old to tell: counted as late
	}
	for i, s := range steps {
		if got := tr.observe(s.seq); got != s.want {
			t.Fatalf("step %d: observe(%d) = %d, want %d", i, s.seq, got, s.want)
		}
		if s.want != duplicate {
			tr.count(s.seq)
		}
	}
	// Seen: 0..4, 24, 1038, and 1 again (late, counted) = 8 counts over
	// the range 0..1038.
	if got, want := tr.gaps(), int64(1039-8); got != want {
		t.Fatalf("gaps %d, want %d", got, want)
	}
}

func TestTrackerCachesLastPublisher(t *testing.T) {
	var tr tracker
	a, b := tr.get(1), tr.get(2)
	if a == b || tr.get(1) != a || tr.get(2) != b {
		t.Fatal("tracker does not keep one seqTrack per publisher")
	}
}

// Golden bytes, commented per field as the spec draws them.
func TestAppendPublish(t *testing.T) {
	payload := []byte{0xAA, 0xBB}
	got := appendPublish(nil, 4, "a/b", payload, 0, 0)
	want := []byte{
		0x30,                      // PUBLISH, QoS 0
		0x07,                      // remaining length: 2+3 topic, 2 payload
		0x00, 0x03, 'a', '/', 'b', // topic name
		0xAA, 0xBB, // payload
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("v4 QoS 0:\n got % x\nwant % x", got, want)
	}
	got = appendPublish(nil, 5, "t", payload, 1, 0x0102)
	want = []byte{
		0x32,            // PUBLISH, QoS 1
		0x08,            // remaining length: 3 topic, 2 id, 1 props, 2 payload
		0x00, 0x01, 't', // topic name
		0x01, 0x02, // packet id
		0x00,       // property length 0 [MQTT-3.3.2.3]
		0xAA, 0xBB, // payload
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("v5 QoS 1:\n got % x\nwant % x", got, want)
	}
}

func TestVBI(t *testing.T) {
	for _, v := range []int{0, 1, 127, 128, 16383, 16384, 2097151, 2097152, 268435455} {
		b := cmqtt.AppendVBI(nil, v)
		if len(b) != vbiLen(v) {
			t.Fatalf("%d: %d bytes, vbiLen says %d", v, len(b), vbiLen(v))
		}
		got, n, ok := readVBI(b)
		if !ok || got != v || n != len(b) {
			t.Fatalf("%d: read back %d (%d bytes, ok %v)", v, got, n, ok)
		}
	}
	if _, _, ok := readVBI([]byte{0x80, 0x80, 0x80, 0x80, 0x01}); ok {
		t.Fatal("5-byte VBI accepted")
	}
}

func TestWalkProps(t *testing.T) {
	props := []byte{
		0,          // property length, set below
		0x21, 0, 7, // Receive Maximum 7
		0x1F, 0, 2, 'h', 'i', // Reason String "hi"
		0x26, 0, 1, 'k', 0, 1, 'v', // User Property k=v
	}
	props[0] = byte(len(props) - 1)
	got := map[byte]string{}
	if err := walkProps(props, func(id byte, v []byte) { got[id] = string(v) }); err != nil {
		t.Fatal(err)
	}
	if got[0x21] != "\x00\x07" || got[0x1F] != "hi" {
		t.Fatalf("props %q", got)
	}
	if err := walkProps([]byte{3, 0x21, 0}, func(byte, []byte) {}); err == nil {
		t.Fatal("truncated property accepted")
	}
}

func TestHistogramMerge(t *testing.T) {
	a, b := newHist(), newHist()
	for i := int64(1); i <= 1000; i++ {
		_ = a.RecordValue(i)
		_ = b.RecordValue(i + 1000)
	}
	merged := newHist()
	for _, h := range []*hdrhistogram.Histogram{a, b} {
		back, err := decodeHist(encodeHist(h))
		if err != nil {
			t.Fatal(err)
		}
		merged.Merge(back)
	}
	l := summarize(merged)
	if l.Count != 2000 || l.Min != 1 || l.Max < 1999 || l.Max > 2001 {
		t.Fatalf("merged %+v", l)
	}
	if l.P50 < 995 || l.P50 > 1005 {
		t.Fatalf("p50 %d, want about 1000", l.P50)
	}
	empty, err := decodeHist(nil)
	if err != nil || empty.TotalCount() != 0 {
		t.Fatalf("empty: %v %v", empty, err)
	}
}

func TestErrKind(t *testing.T) {
	for err, want := range map[error]string{
		&connackError{4, 5}:                            KindAuth,
		&connackError{5, 0x86}:                         KindAuth,
		&connackError{4, 3}:                            KindRefused,
		errors.Join(ErrDial, context.DeadlineExceeded): KindTimeout,
		errors.Join(ErrDial, io.EOF):                   KindClosed,
		errors.Join(ErrDial, errors.New("x")):          KindUnreachable,
		io.EOF:                                         KindClosed,
		errors.Join(ErrDisconnect, errors.New("x")):    KindDisconnect,
		errors.Join(ErrSubscribe, errors.New("x")):     KindSubscribe,
	} {
		if got := errKind(err); got != want {
			t.Errorf("errKind(%v) = %q, want %q", err, got, want)
		}
	}
}

// fakeBroker accepts one connection and hands it to the test.
func fakeBroker(t *testing.T) (addr string, conns <-chan net.Conn) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ch := make(chan net.Conn, 1)
	go func() {
		c, err := l.Accept()
		if err == nil {
			ch <- c
		}
		close(ch)
	}()
	t.Cleanup(func() { l.Close() })
	return l.Addr().String(), ch
}

type nopHandler struct{ msgs, acks, errs, closes int }

func (h *nopHandler) OnMessage([]byte, int64) { h.msgs++ }
func (h *nopHandler) OnAck(time.Duration)     { h.acks++ }
func (h *nopHandler) OnError(error)           { h.errs++ }
func (h *nopHandler) OnClose(error)           { h.closes++ }
func (h *nopHandler) OnSent(int, int64)       {}

// TestMQTTConnectAndWindow checks the CONNECT bytes and that the broker's
// Receive Maximum (v5 CONNACK) bounds the in-flight window.
func TestMQTTConnectAndWindow(t *testing.T) {
	addr, conns := fakeBroker(t)
	type dialed struct {
		c   Client
		err error
	}
	done := make(chan dialed, 1)
	go func() {
		c, err := mqttProto{}.Dial(context.Background(), &ClientConfig{
			Addr: addr, ClientID: "id", Username: "u", Password: "p", Clean: true,
			KeepAlive: 30 * time.Second, ConnectTimeout: 2 * time.Second, Version: 5, Inflight: 10,
			ReadBuffer: 256, WriteBuffer: 256,
		}, &nopHandler{})
		done <- dialed{c, err}
	}()
	srv := <-conns
	defer srv.Close()
	want := []byte{
		0x10, 24, // CONNECT, remaining length
		0, 4, 'M', 'Q', 'T', 'T', 5, // protocol name and level
		0xC2,  // flags: user name, password, clean start
		0, 30, // keepalive
		3, 0x21, 0xFF, 0xFF, // properties: Receive Maximum 65535
		0, 2, 'i', 'd', // client id
		0, 1, 'u', // user name
		0, 1, 'p', // password
	}
	got := make([]byte, len(want))
	_ = srv.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := io.ReadFull(srv, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("CONNECT\n got % x\nwant % x", got, want)
	}
	// CONNACK: success, properties: Receive Maximum 2.
	if _, err := srv.Write([]byte{0x20, 6, 0, 0, 3, 0x21, 0, 2}); err != nil {
		t.Fatal(err)
	}
	d := <-done
	if d.err != nil {
		t.Fatal(d.err)
	}
	defer d.c.Close()
	payload := make([]byte, HeaderSize)
	for i := 0; i < 2; i++ {
		if _, err := d.c.Publish(context.Background(), "t", payload, 1); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err := d.c.Publish(ctx, "t", payload, 1); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("third publish with Receive Maximum 2: err %v, want it to wait", err)
	}
	// One PUBACK opens the window again.
	br := bufio.NewReader(srv)
	for i := 0; i < 2; i++ { // read the two PUBLISH packets
		if _, err := br.Discard(2 + 3 + 2 + 1 + HeaderSize); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := srv.Write([]byte{0x40, 2, 0, 1}); err != nil {
		t.Fatal(err)
	}
	ctx2, cancel2 := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel2()
	if _, err := d.c.Publish(ctx2, "t", payload, 1); err != nil {
		t.Fatalf("publish after PUBACK: %v", err)
	}
}

// FuzzMQTTClientRead feeds arbitrary broker output to the client's reader:
// it must fail cleanly, never panic.
func FuzzMQTTClientRead(f *testing.F) {
	f.Add([]byte{0x30, 0x07, 0, 3, 'a', '/', 'b', 1, 2}, byte(4))
	f.Add([]byte{0x32, 0x08, 0, 1, 't', 0, 1, 0, 1, 2}, byte(5))
	f.Add([]byte{0x40, 2, 0, 1, 0x50, 2, 0, 1, 0x62, 2, 0, 1, 0x70, 2, 0, 1}, byte(4))
	f.Add([]byte{0x90, 4, 0xFF, 0xFF, 0, 1}, byte(5))
	f.Add([]byte{0xE0, 1, 0x8E}, byte(5))
	f.Add([]byte{0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F}, byte(4))
	f.Fuzz(func(t *testing.T, data []byte, version byte) {
		if version != 5 {
			version = 4
		}
		a, b := net.Pipe()
		defer b.Close()
		c := &mqttClient{
			sock:    sock{conn: a, h: &nopHandler{}, dead: make(chan struct{})},
			version: version,
			br:      bufio.NewReaderSize(bytes.NewReader(data), 64),
			flushAt: 64, subAck: make(chan byte, 1),
			done: make(chan struct{}),
			free: make(chan uint16, 4), inflight: make([]atomic.Int64, 5),
		}
		go io.Copy(io.Discard, b)
		c.readLoop() // returns at the end of data or on the first error
	})
}

// The hot paths must not allocate per message: encoding a PUBLISH, and
// reading + accounting a delivery.

func BenchmarkAppendPublish(b *testing.B) {
	b.ReportAllocs()
	buf := make([]byte, 0, 1<<10)
	payload := make([]byte, 64)
	for b.Loop() {
		buf = appendPublish(buf[:0], 4, "bench/fanin", payload, 1, 7)
	}
}

func BenchmarkReadDeliveries(b *testing.B) {
	b.ReportAllocs()
	o := Options{Scenario: ScenarioFanIn, Pubs: 1, Subs: 1, RunStart: 1}
	o.EnsureDefaults()
	r, err := newRunner(&o, 0, 1, 0, func(*event) {})
	if err != nil {
		b.Fatal(err)
	}
	r.measureFrom.Store(0)
	cl := &client{r: r, role: roleSub}
	// 1,000 QoS 0 deliveries per pass through the stream.
	var stream []byte
	payload := make([]byte, 64)
	now := time.Now().UnixNano()
	for i := 0; i < 1000; i++ {
		putHeader(payload, 0, uint32(i))
		binary.BigEndian.PutUint64(payload, uint64(now))
		stream = appendPublish(stream, 4, "bench/fanin", payload, 0, 0)
	}
	rd := bytes.NewReader(stream)
	c := &mqttClient{sock: sock{h: cl}, version: 4}
	c.cr.r = rd
	c.br = bufio.NewReaderSize(&c.cr, 64<<10)
	for b.Loop() {
		rd.Reset(stream)
		c.br.Reset(&c.cr)
		for {
			first, body, total, err := c.next()
			if err != nil {
				break
			}
			if err := c.handle(first, body); err != nil {
				b.Fatal(err)
			}
			c.discard(total)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*1000), "ns/msg")
}

// TestStalledBroker: a broker that accepts and answers CONNACK, then never
// reads again. A --count run must give up after Drain without progress.
func TestStalledBroker(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var conns []net.Conn
	accepted := make(chan struct{})
	go func() {
		defer close(accepted)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c)
			buf := make([]byte, 256)
			_, _ = c.Read(buf)                    // CONNECT (small, one read)
			_, _ = c.Write([]byte{0x20, 2, 0, 0}) // CONNACK accepted; then silence
		}
	}()
	rep, _ := run(t, Options{Scenario: ScenarioPub, Addr: l.Addr().String(), QoS: 1, Pubs: 1, Count: 1000, Inflight: 10, Drain: 300 * time.Millisecond})
	l.Close()
	<-accepted
	for _, c := range conns {
		c.Close()
	}
	if rep.Errors[KindStalled] != 1 || rep.ExitCode != ExitErrors {
		t.Fatalf("errors %v exit %d, want one stall and exit %d", rep.Errors, rep.ExitCode, ExitErrors)
	}
	if rep.Sent != 10 || rep.Acked != 0 {
		t.Fatalf("sent %d acked %d, want the window (10) and no acks", rep.Sent, rep.Acked)
	}
}
