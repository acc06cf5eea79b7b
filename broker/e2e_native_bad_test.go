package broker

import (
	"bytes"
	"net"
	"testing"
	"time"

	"github.com/cimgo/cim/broker/wire"
)

// rawNative speaks the native protocol frame by frame.
type rawNative struct {
	t   testing.TB
	c   net.Conn
	buf []byte
}

func dialNative(t testing.TB, s *Server) *rawNative {
	t.Helper()
	c, err := net.DialTimeout("tcp", s.ListenerAddr(ProtocolNative).String(), e2eWait)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &rawNative{t: t, c: c}
}

func (r *rawNative) send(b wire.Body) {
	r.t.Helper()
	out, err := wire.Append(nil, b)
	if err != nil {
		r.t.Fatal(err)
	}
	r.write(out)
}

func (r *rawNative) write(b []byte) {
	r.t.Helper()
	if _, err := r.c.Write(b); err != nil {
		r.t.Fatal(err)
	}
}

// read returns the next frame, or an error (io.EOF once closed).
func (r *rawNative) read(d time.Duration) (*wire.Frame, error) {
	_ = r.c.SetReadDeadline(time.Now().Add(d))
	f := new(wire.Frame)
	for {
		n, err := wire.Decode(r.buf, f, 0)
		if err == nil {
			f.Detach()
			r.buf = r.buf[n:]
			return f, nil
		}
		if err != wire.ErrIncomplete {
			return nil, err
		}
		chunk := make([]byte, 64<<10)
		k, err := r.c.Read(chunk)
		if err != nil {
			return nil, err
		}
		r.buf = append(r.buf, chunk[:k]...)
	}
}

func (r *rawNative) expect(typ wire.Type) *wire.Frame {
	r.t.Helper()
	f, err := r.read(e2eWait)
	if err != nil {
		r.t.Fatalf("want %s: %v", typ, err)
	}
	if f.Type != typ {
		r.t.Fatalf("want %s, got %s %+v", typ, f.Type, f.Body())
	}
	return f
}

// expectClosed reads until the server closes, returning the last frame.
func (r *rawNative) expectClosed() *wire.Frame {
	r.t.Helper()
	var last *wire.Frame
	for {
		f, err := r.read(e2eWait)
		if err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				r.t.Fatal("connection not closed")
			}
			return last
		}
		last = f
	}
}

func (r *rawNative) login(name string) *wire.LoginAck {
	r.t.Helper()
	r.send(&wire.Login{Name: name})
	ack := r.expect(wire.TypeLoginAck).LoginAck
	if ack.Code != wire.CodeOK {
		r.t.Fatalf("login %s: %d %s", name, ack.Code, ack.Text)
	}
	return &ack
}

// Bad input: each gets a clear code; the connection is closed where the
// protocol says so; the server carries on.
func TestNativeBadInput(t *testing.T) {
	s := startIM(t, Options{MaxPacketSize: 4096})
	register(t, s, "bad", "")
	closedWith := func(r *rawNative, code wire.Code) {
		t.Helper()
		last := r.expectClosed()
		if last == nil || (last.Type == wire.TypeError && last.Error.Code != code) || (last.Type == wire.TypeKick && last.Kick.Code != code) ||
			(last.Type != wire.TypeError && last.Type != wire.TypeKick) {
			t.Fatalf("closed after %+v, want code %d", last, code)
		}
	}

	r := dialNative(t, s) // a frame before the login
	r.send(&wire.Send{ID: 1, Target: wire.ToAll(), Body: []byte("x")})
	closedWith(r, wire.CodeNotLoggedIn)

	r = dialNative(t, s) // invalid msgpack
	r.write([]byte{3, byte(wire.TypeLogin), 0xc1, 0xc1})
	closedWith(r, wire.CodeMalformed)

	r = dialNative(t, s) // a huge frame before login, refused from its length prefix
	r.write([]byte{0xff, 0xff, 0x7f})
	closedWith(r, wire.CodeFrameTooLarge)

	r = dialNative(t, s) // over the limit after login
	r.login("bad")
	r.send(&wire.Send{ID: 1, Target: wire.ToAll(), Body: bytes.Repeat([]byte("x"), 5000)})
	closedWith(r, wire.CodeFrameTooLarge)

	r = dialNative(t, s) // an unknown frame type is skipped with an error; the connection stays
	r.login("bad")
	r.write([]byte{2, 0x3f, 0x80})
	if e := r.expect(wire.TypeError).Error; e.Code != wire.CodeUnknownFrame {
		t.Fatalf("unknown frame: %+v", e)
	}
	r.send(&wire.Ping{})
	r.expect(wire.TypePong)
	r.send(&wire.Login{Name: "bad"}) // a second login
	if e := r.expect(wire.TypeError).Error; e.Code != wire.CodeRepeatLogin {
		t.Fatalf("second login: %+v", e)
	}
	r.send(&wire.Request{ID: 5, Method: "no.such"})
	if resp := r.expect(wire.TypeResponse).Response; resp.ID != 5 || resp.Code != wire.CodeUnknownMethod {
		t.Fatalf("unknown method: %+v", resp)
	}
	r.send(&wire.Subscribe{ID: 6, Filters: []string{"ok/#", "bad/#/x"}})
	if sa := r.expect(wire.TypeSubAck).SubAck; sa.ID != 6 || len(sa.Codes) != 2 || sa.Codes[0] != wire.CodeOK || sa.Codes[1] != wire.CodeBadTopic {
		t.Fatalf("suback %+v", sa)
	}

	long := string(bytes.Repeat([]byte("n"), 200))
	if _, _, err := s.Register(t.Context(), long, ""); err == nil {
		t.Fatal("a 200-byte name was registered")
	}
	r.send(&wire.Request{ID: 7, Method: wire.MethodGroupCreate, Args: mustRaw(t, wire.GroupArgs{Name: long})})
	if resp := r.expect(wire.TypeResponse).Response; resp.Code != wire.CodeNameTooLong {
		t.Fatalf("long group name: %+v", resp)
	}

	r = dialNative(t, s) // no login in time
	_ = r
	roundTrip(t, s, "after-native-bad")
}

func mustRaw(t testing.TB, v any) wire.Raw {
	t.Helper()
	r, err := wire.MarshalRaw(v)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// A socket that never logs in is told so (5001) and closed.
func TestNativeLoginTimeout(t *testing.T) {
	s := startIM(t, Options{ConnectTimeout: time.Second})
	r := dialNative(t, s)
	start := time.Now()
	last := r.expectClosed()
	if last == nil || last.Type != wire.TypeError || last.Error.Code != wire.CodeLoginTimeout {
		t.Fatalf("closed after %+v", last)
	}
	within(t, "login timeout", time.Since(start), 900*time.Millisecond, 5*time.Second)
}
