package wire

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"unsafe"

	"github.com/vmihailenco/msgpack/v5"
)

// frame builds a frame from a type and a msgpack body.
func frame(t Type, body ...byte) []byte {
	return append(appendPrefix(nil, len(body)+1), append([]byte{byte(t)}, body...)...)
}

func TestDecodeIncompleteConsumesNothing(t *testing.T) {
	for _, g := range goldens {
		for i := 0; i < len(g.raw); i++ {
			var f Frame
			n, err := Decode(g.raw[:i], &f, 0)
			if !errors.Is(err, ErrIncomplete) || n != 0 {
				t.Fatalf("%s: %d of %d bytes: Decode = %d, %v; want 0, ErrIncomplete", g.name, i, len(g.raw), n, err)
			}
		}
	}
}

func TestDecodeStream(t *testing.T) {
	var stream []byte
	for _, g := range goldens {
		stream = append(stream, g.raw...)
	}
	var f Frame
	for i, g := range goldens {
		n, err := Decode(stream, &f, 0)
		if err != nil || n != len(g.raw) || !sameBody(f.Body(), g.body) {
			t.Fatalf("frame %d (%s): Decode = %d, %v, %#v", i, g.name, n, err, f.Body())
		}
		stream = stream[n:]
	}
	if len(stream) != 0 {
		t.Fatalf("%d bytes left", len(stream))
	}
}

func TestDecodeErrors(t *testing.T) {
	big := append(appendPrefix(nil, 2000), byte(TypeSend))
	cases := []struct {
		name    string
		in      []byte
		max     int
		code    Code
		consume bool // n is the frame's length
	}{
		{"length prefix of 5 bytes", []byte{0x80, 0x80, 0x80, 0x80, 0x01}, 0, CodeMalformed, false},
		{"length prefix not shortest", []byte{0x81, 0x00, 0x03}, 0, CodeMalformed, false},
		{"empty frame", []byte{0x00}, 0, CodeMalformed, true},
		{"too large, refused at the prefix", big, 1000, CodeFrameTooLarge, false},
		{"too large, refused at a partial prefix", []byte{0xff, 0xff}, 1000, CodeFrameTooLarge, false},
		{"too large counts the prefix", frame(TypePing, 0x80), 2, CodeFrameTooLarge, false},
		{"unknown frame type", frame(0x33, 0x80), 0, CodeUnknownFrame, true},
		{"frame type 0", frame(0, 0x80), 0, CodeUnknownFrame, true},
		{"peer-link type unknown here", frame(0x40, 0x80), 0, CodeUnknownFrame, true},
		{"no body after the type", frame(TypePing), 0, CodeMalformed, true},
		{"body is not a map (hot)", frame(TypeSend, 0x91, 0x01), 0, CodeMalformed, true},
		{"body is not a map (cold)", frame(TypeLogin, 0x91, 0x01), 0, CodeMalformed, true},
		{"body is an integer", frame(TypeError, 0x01), 0, CodeMalformed, true},
		{"trailing bytes (hot)", frame(TypeDeliverAck, 0x80, 0x80), 0, CodeMalformed, true},
		{"trailing bytes (cold)", frame(TypeKick, 0x80, 0x01), 0, CodeMalformed, true},
		{"map longer than the frame (hot)", frame(TypeDeliver, 0x8f, 0xa1, 'i', 0x01), 0, CodeMalformed, true},
		{"map longer than the frame (cold)", frame(TypeLogin, 0x8f, 0xa1, 'u', 0x01), 0, CodeMalformed, true},
		{"map32 claiming 2^32-1 entries", frame(TypeLogin, 0xdf, 0xff, 0xff, 0xff, 0xff), 0, CodeMalformed, true},
		{"array32 claiming 2^32-1 elements", frame(TypeSubscribe, 0x81, 0xa1, 'f', 0xdd, 0xff, 0xff, 0xff, 0xff), 0, CodeMalformed, true},
		{"batch array32 claiming 2^32-1", frame(TypeSend, 0x81, 0xa1, 'a', 0xdd, 0xff, 0xff, 0xff, 0xff), 0, CodeMalformed, true},
		{"str longer than the frame", frame(TypeLogin, 0x81, 0xa1, 'n', 0xdb, 0x7f, 0xff, 0xff, 0xff), 0, CodeMalformed, true},
		{"key is not a string (hot)", frame(TypeSend, 0x81, 0x01, 0x01), 0, CodeMalformed, true},
		{"key is not a string (cold)", frame(TypeLogin, 0x81, 0x01, 0x01), 0, CodeMalformed, true},
		{"reserved code 0xc1", frame(TypeSend, 0x81, 0xa1, 'x', 0xc1), 0, CodeMalformed, true},
		{"string field holds an integer (hot)", frame(TypeDeliver, 0x81, 0xa1, 'n', 0x01), 0, CodeMalformed, true},
		{"string field holds an integer (cold)", frame(TypeLogin, 0x81, 0xa1, 'n', 0x01), 0, CodeMalformed, true},
		{"integer field holds a string (hot)", frame(TypeSend, 0x81, 0xa1, 'i', 0xa1, 'x'), 0, CodeMalformed, true},
		{"integer field holds a string (cold)", frame(TypeLogin, 0x81, 0xa1, 'u', 0xa1, 'x'), 0, CodeMalformed, true},
		{"negative id", frame(TypeSend, 0x81, 0xa1, 'i', 0xff), 0, CodeMalformed, true},
		{"negative id as int 8", frame(TypeDeliverAck, 0x81, 0xa1, 'i', 0xd0, 0x80), 0, CodeMalformed, true},
		{"QoS over 255", frame(TypeSend, 0x81, 0xa1, 'q', 0xcd, 0x01, 0x00), 0, CodeMalformed, true},
		{"code over 65535", frame(TypeSendAck, 0x81, 0xa1, 'c', 0xce, 0x00, 0x01, 0x00, 0x00), 0, CodeMalformed, true},
		{"bool field holds an integer", frame(TypeDeliver, 0x81, 0xa1, 'o', 0x01), 0, CodeMalformed, true},
		{"invalid UTF-8 in a name (hot)", frame(TypeDeliver, 0x81, 0xa1, 'n', 0xa2, 0xc3, 0x28), 0, CodeMalformed, true},
		{"invalid UTF-8 in a name (cold)", frame(TypeLogin, 0x81, 0xa1, 'n', 0xa2, 0xc3, 0x28), 0, CodeMalformed, true},
		{"invalid UTF-8 in an unknown field", frame(TypePing, 0x81, 0xa1, 'z', 0xa1, 0xff), 0, CodeMalformed, true},
		{"nested too deeply", frame(TypePing, append([]byte{0x81, 0xa1, 'z'}, bytes.Repeat([]byte{0x91}, 20)...)...), 0, CodeMalformed, true},
		{"truncated uint 64", frame(TypeSendAck, 0x81, 0xa1, 's', 0xcf, 0x00), 0, CodeMalformed, true},
		{"truncated float in an unknown field", frame(TypePong, 0x81, 0xa1, 'z', 0xcb, 0x00), 0, CodeMalformed, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var f Frame
			n, err := Decode(c.in, &f, c.max)
			if err == nil || errors.Is(err, ErrIncomplete) {
				t.Fatalf("Decode = %d, %v; want code %d", n, err, c.code)
			}
			if got := CodeOf(err); got != c.code {
				t.Fatalf("error %q has code %d, want %d", err, got, c.code)
			}
			if !strings.HasPrefix(err.Error(), "wire: ") {
				t.Errorf("error %q lacks the package prefix", err)
			}
			want := 0
			if c.consume {
				l, hl, _ := ReadLength(c.in)
				want = l + hl
			}
			if n != want {
				t.Errorf("consumed %d, want %d", n, want)
			}
		})
	}
}

func TestDecodeMaxSize(t *testing.T) {
	raw := goldens[0].raw
	var f Frame
	if n, err := Decode(raw, &f, len(raw)); err != nil || n != len(raw) {
		t.Fatalf("frame of exactly maxSize: %d, %v", n, err)
	}
	if _, err := Decode(raw, &f, len(raw)-1); CodeOf(err) != CodeFrameTooLarge {
		t.Fatalf("frame one byte over maxSize: %v", err)
	}
	// A big frame with the default limit: a 2-byte prefix.
	s := &Send{ID: 1, Target: ToUser(2), Body: bytes.Repeat([]byte{7}, 100000)}
	out, err := Append(nil, s)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := Decode(out, &f, 0); err != nil || n != len(out) || !bytes.Equal(f.Send.Body, s.Body) {
		t.Fatalf("100 KB send: %d, %v", n, err)
	}
	if _, err := Decode(out, &f, DefaultMaxFrameSize/16); CodeOf(err) != CodeFrameTooLarge {
		t.Fatalf("100 KB send over a 64 KiB limit: %v", err)
	}
}

// Peers may encode the same frame differently from Append: other integer
// widths, nil for absent values, str for bodies, other key orders, fields
// this version does not know. All of it decodes.
func TestDecodeOtherEncodings(t *testing.T) {
	cases := []struct {
		name string
		in   []byte
		want Body
	}{
		{"ints in wide forms, nil body", frame(TypeSend,
			0x84, 0xa1, 'i', 0xcf, 0, 0, 0, 0, 0, 0, 0, 7, 0xa1, 'k', 0xd0, 0x01, 0xa1, 'u', 0xd3, 0, 0, 0, 0, 0, 0, 0, 42, 0xa1, 'b', 0xc0),
			&Send{ID: 7, Target: ToUser(42)}},
		{"str body, keys in another order, map 16", frame(TypeDeliver,
			0xde, 0x00, 0x03, 0xa1, 'b', 0xa2, 'h', 'i', 0xa1, 'o', 0xc2, 0xa1, 'i', 0x05),
			&Deliver{MsgID: 5, Body: []byte("hi"), Time: MsgIDTime(5)}},
		{"deliver without ts: the id's time", frame(TypeDeliver, 0x81, 0xa1, 'i', 0xcf, 0x01, 0xaa, 0x7b, 0xb0, 0x00, 0x05, 0x40, 0x01),
			&Deliver{MsgID: goldenID, Time: 1750000000000}},
		{"deliver with a nil ts: as absent", frame(TypeDeliver, 0x82, 0xa2, 't', 's', 0xc0, 0xa1, 'i', 0xcf, 0x01, 0xaa, 0x7b, 0xb0, 0x00, 0x05, 0x40, 0x01),
			&Deliver{MsgID: goldenID, Time: 1750000000000}},
		{"deliver with ts 0 and an id", frame(TypeDeliver, 0x82, 0xa1, 'i', 0x05, 0xa2, 't', 's', 0x00), &Deliver{MsgID: 5}},
		{"deliver without id or ts: time 0", frame(TypeDeliver, 0x81, 0xa1, 'k', 0x04), &Deliver{Target: ToAll()}},
		{"private deliver without u: Target.User 0", frame(TypeDeliver, 0x82, 0xa1, 'k', 0x01, 0xa1, 'i', 0x00),
			&Deliver{Target: Target{Kind: KindUser}}},
		{"unknown fields of every shape are skipped", frame(TypeDeliverAck,
			0x86,
			0xa2, 'z', 'a', 0x92, 0x81, 0xa1, 'q', 0xc3, 0xcb, 0, 0, 0, 0, 0, 0, 0, 0, // array of map and float 64
			0xa1, 'i', 0x63,
			0xa2, 'z', 'b', 0xd6, 0xff, 0, 0, 0, 1, // timestamp ext
			0xa2, 'z', 'c', 0xc7, 0x02, 0x05, 0xaa, 0xbb, // ext 8
			0xa2, 'z', 'd', 0xc5, 0x00, 0x01, 0x00, // bin 16
			0xd9, 0x02, 'z', 'e', 0xe0), // str 8 key, negative fixint
			&DeliverAck{MsgID: 99}},
		{"unknown fields in a cold frame", frame(TypeKick,
			0x83, 0xa1, 'z', 0x93, 0x01, 0x02, 0x03, 0xa1, 'c', 0xcd, 0x13, 0x8b, 0xa1, 'y', 0x80),
			&Kick{Code: CodeTakenOver}},
		{"nil body map", frame(TypeLogin, 0xc0), &Login{}},
		{"nil body map (hot)", frame(TypePing, 0xc0), &Ping{}},
		{"ping with a newer peer's field", frame(TypePing, 0x81, 0xa2, 't', 's', 0x05), &Ping{}},
		{"batch of nils and bins", frame(TypeSend, 0x81, 0xa1, 'a', 0x93, 0xc0, 0xc4, 0x01, 'x', 0xa1, 'y'),
			&Send{Batch: [][]byte{nil, []byte("x"), []byte("y")}}},
		{"repeated key: the last wins", frame(TypeDeliverAck, 0x82, 0xa1, 'i', 0x01, 0xa1, 'i', 0x02), &DeliverAck{MsgID: 2}},
		{"negative time", frame(TypeSendAck, 0x81, 0xa2, 't', 's', 0xd1, 0xff, 0x00), &SendAck{Time: -256}},
	}
	for _, c := range cases {
		var f Frame
		n, err := Decode(c.in, &f, 0)
		if err != nil || n != len(c.in) {
			t.Errorf("%s: Decode = %d, %v", c.name, n, err)
			continue
		}
		if !sameBody(f.Body(), c.want) {
			t.Errorf("%s:\n got %#v\nwant %#v", c.name, f.Body(), c.want)
		}
	}
}

// A newer peer's structs, with fields this version lacks, decode into this
// version's structs: the new fields are ignored.
func TestForwardCompatible(t *testing.T) {
	type newerLogin struct {
		Login
		Device string   `msgpack:"dv"`
		Caps   []string `msgpack:"cp"`
	}
	type newerDeliver struct {
		Deliver
		Reply   uint64            `msgpack:"rp"`
		Headers map[string]string `msgpack:"h"`
	}
	for _, c := range []struct {
		t     Type
		newer any
		want  Body
	}{
		{TypeLogin, newerLogin{Login: Login{User: 1, Token: "t"}, Device: "phone", Caps: []string{"e2e"}}, &Login{User: 1, Token: "t"}},
		{TypeDeliver, newerDeliver{Deliver: Deliver{MsgID: 3, Target: ToAll(), Body: []byte("b")}, Reply: 2, Headers: map[string]string{"a": "b"}},
			&Deliver{MsgID: 3, Target: ToAll(), Body: []byte("b"), Time: MsgIDTime(3)}},
	} {
		body, err := marshal(nil, c.newer)
		if err != nil {
			t.Fatal(err)
		}
		var f Frame
		in := frame(c.t, body...)
		if n, err := Decode(in, &f, 0); err != nil || n != len(in) || !sameBody(f.Body(), c.want) {
			t.Errorf("%v: Decode = %d, %v, %#v", c.t, n, err, f.Body())
		}
	}
}

func TestDecodeReusesFrame(t *testing.T) {
	var f Frame
	a, _ := Append(nil, &Send{ID: 1, Target: ToGroup("g"), QoS: 1, Delay: 9, Batch: [][]byte{{1}, {2}, {3}}})
	b, _ := Append(nil, &Send{ID: 2, Target: ToUser(3), Body: []byte("x")})
	if _, err := Decode(a, &f, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := Decode(b, &f, 0); err != nil {
		t.Fatal(err)
	}
	want := &Send{ID: 2, Target: ToUser(3), Body: []byte("x")}
	if !sameBody(&f.Send, want) {
		t.Fatalf("fields of the earlier frame leaked: %#v", f.Send)
	}
	c, _ := Append(nil, &Login{User: 5, Name: "n", Token: "t"})
	d, _ := Append(nil, &Login{User: 6})
	Decode(c, &f, 0)
	Decode(d, &f, 0)
	if f.Login != (Login{User: 6}) {
		t.Fatalf("login fields of the earlier frame leaked: %#v", f.Login)
	}
}

func TestDetach(t *testing.T) {
	for _, body := range []Body{
		&Send{ID: 1, Target: ToGroup("grp"), Body: []byte("body")},
		&Send{ID: 1, Target: ToTopic("a/b"), Batch: [][]byte{[]byte("one"), []byte("two")}},
		&Deliver{MsgID: 1, FromName: "bob", Target: ToGroup("grp"), Body: []byte("body")},
		&SendAck{ID: 1, Code: CodeFailure, Text: "disk"},
		&Login{Name: "alice", Password: "pw"},
		&Subscribe{ID: 1, Filters: []string{"x/y"}},
		&Request{ID: 1, Method: MethodOnline, Args: Raw{0x80}},
	} {
		buf, _ := Append(nil, body)
		var f Frame
		if _, err := Decode(buf, &f, 0); err != nil {
			t.Fatal(err)
		}
		f.Detach()
		for i := range buf {
			buf[i] = 0xee
		}
		if !sameBody(f.Body(), body) {
			t.Errorf("%v after the buffer was overwritten:\n got %#v\nwant %#v", body.Type(), f.Body(), body)
		}
	}
}

// Without Detach, hot frames alias the buffer (the documented contract).
func TestHotFramesAlias(t *testing.T) {
	buf, _ := Append(nil, &Deliver{MsgID: 1, Body: []byte("body")})
	var f Frame
	Decode(buf, &f, 0)
	i := bytes.Index(buf, []byte("body"))
	buf[i] = 'B'
	if string(f.Deliver.Body) != "Body" {
		t.Fatalf("Deliver.Body does not alias the buffer: %q", f.Deliver.Body)
	}
}

// randomBody fills a hot frame with random values of random sizes.
func randomBody(r *rand.Rand, ty Type) Body {
	u := func() uint64 {
		if r.IntN(4) == 0 {
			return 0
		}
		return r.Uint64() >> r.IntN(64)
	}
	i := func() int64 { return int64(u()) - int64(u()) }
	s := func() string {
		if r.IntN(3) == 0 {
			return ""
		}
		return strings.Repeat("é", r.IntN(300))
	}
	b := func() []byte {
		if r.IntN(4) == 0 {
			return nil
		}
		return bytes.Repeat([]byte{byte(r.Uint32())}, r.IntN(70000)>>(2+r.IntN(12)))
	}
	tg := func() Target { return Target{Kind: Kind(u()), User: u(), Name: s()} }
	switch ty {
	case TypeSend:
		sd := &Send{ID: u(), Target: tg(), QoS: uint8(u()), Delay: u(), Body: b()}
		for n := r.IntN(20) - 15; n > 0; n-- {
			sd.Batch = append(sd.Batch, b())
		}
		return sd
	case TypeSendAck:
		return &SendAck{ID: u(), MsgID: u(), Code: Code(u()), Time: i(), Text: s()}
	case TypeDeliver:
		d := &Deliver{MsgID: u(), From: u(), FromName: s(), Target: tg(), Body: b(), Time: i(), QoS: uint8(u()), Offline: r.IntN(2) == 0}
		switch r.IntN(3) {
		case 0:
			d.Time = MsgIDTime(d.MsgID) // a server's: left out
		case 1:
			d.Time = 0 // written when there is an id
		}
		return d
	case TypeDeliverAck:
		return &DeliverAck{MsgID: u()}
	case TypePing:
		return &Ping{}
	}
	return &Pong{}
}

// libraryDeliver is Deliver for the msgpack library with the rule for ts
// (doc.go, "Keys derived when absent") in its tags: Time is written when
// it is not nil, which libraryForm makes it when it is not the id's time.
type libraryDeliver struct {
	MsgID    uint64 `msgpack:"i,omitempty"`
	From     uint64 `msgpack:"f,omitempty"`
	FromName string `msgpack:"n,omitempty"`
	Target
	Body    []byte `msgpack:"b,omitempty"`
	Time    *int64 `msgpack:"ts,omitempty"`
	QoS     uint8  `msgpack:"q,omitempty"`
	Offline bool   `msgpack:"o,omitempty"`
}

func (*libraryDeliver) Type() Type { return TypeDeliver }
func (*libraryDeliver) body()      {}

// libraryForm is what the library is given to encode body as Append does,
// and to decode Append's output into (fromLibrary takes it back).
func libraryForm(body Body) Body {
	d, ok := body.(*Deliver)
	if !ok {
		return body
	}
	l := &libraryDeliver{MsgID: d.MsgID, From: d.From, FromName: d.FromName, Target: d.Target, Body: d.Body, QoS: d.QoS, Offline: d.Offline}
	if d.Time != MsgIDTime(d.MsgID) {
		l.Time = &d.Time
	}
	return l
}

func fromLibrary(body Body) Body {
	l, ok := body.(*libraryDeliver)
	if !ok {
		return body
	}
	d := &Deliver{MsgID: l.MsgID, From: l.From, FromName: l.FromName, Target: l.Target, Body: l.Body, QoS: l.QoS, Offline: l.Offline,
		Time: MsgIDTime(l.MsgID)}
	if l.Time != nil {
		d.Time = *l.Time
	}
	return d
}

// The hand-written codecs are the msgpack struct tags, byte for byte: what
// Append writes by hand is what the library writes (for a Deliver, under
// the rule for ts: libraryForm), and each side decodes the other's output
// to the same struct.
func TestHotMatchesLibrary(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	big := bytes.Repeat([]byte{9}, 70000) // bin 32, str 16
	fixed := []Body{
		&Deliver{MsgID: 1 << 40, FromName: string(big[:300]), Target: ToTopic(string(big[:40])), Body: big, Time: -1 << 40},
		&Send{ID: 1, Target: ToGroup("g"), Batch: [][]byte{big, nil, {}, big[:256]}},
	}
	for n := 0; n < 1200+len(fixed); n++ {
		ty := []Type{TypeSend, TypeSendAck, TypeDeliver, TypeDeliverAck, TypePing, TypePong}[n%6]
		var body Body
		if n < len(fixed) {
			body, ty = fixed[n], fixed[n].Type()
		} else {
			body = randomBody(r, ty)
		}
		hand, err := Append(nil, body)
		if err != nil {
			t.Fatal(err)
		}
		lib, err := appendReflect(nil, libraryForm(body))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(hand, lib) {
			at := 0
			for at < min(len(hand), len(lib)) && hand[at] == lib[at] {
				at++
			}
			t.Fatalf("%v of %d/%d bytes differs at byte %d:\nhand % x\n lib % x", ty, len(hand), len(lib), at,
				hand[at:min(len(hand), at+32)], lib[at:min(len(lib), at+32)])
		}
		var f Frame
		if k, err := Decode(hand, &f, 0); err != nil || k != len(hand) || !sameBody(f.Body(), body) {
			t.Fatalf("%v: hand decode = %d, %v", ty, k, err)
		}
		_, hl, _ := ReadLength(hand)
		back := reflect.New(reflect.TypeOf(libraryForm(body)).Elem()).Interface()
		if err := msgpack.Unmarshal(hand[hl+1:], back); err != nil || !sameBody(fromLibrary(back.(Body)), body) {
			t.Fatalf("%v: library decode differs: %v", ty, err)
		}
	}
}

// Cold frames go through the library both ways; a round trip of each
// golden frame gives it back.
func TestRoundTripAllTypes(t *testing.T) {
	for _, g := range goldens {
		out, err := Append(nil, g.body)
		if err != nil {
			t.Fatal(err)
		}
		var f Frame
		if _, err := Decode(out, &f, 0); err != nil {
			t.Fatal(err)
		}
		again, err := Append(nil, f.Body())
		if err != nil || !bytes.Equal(again, out) {
			t.Fatalf("%s: re-encoded % x, want % x (%v)", g.name, again, out, err)
		}
	}
}

func TestAppendErrors(t *testing.T) {
	if _, err := Append(nil, nil); !errors.Is(err, ErrNilBody) {
		t.Errorf("nil body: %v", err)
	}
	if _, err := Append(nil, (*Send)(nil)); !errors.Is(err, ErrNilBody) {
		t.Errorf("nil *Send: %v", err)
	}
	dst := []byte("keep")
	out, err := Append(dst, &Request{ID: 1, Method: "x", Args: Raw{0x92, 0x01}})
	if CodeOf(err) != CodeMalformed || string(out) != "keep" {
		t.Errorf("request with truncated args: %v, % x", err, out)
	}
	out, err = Append(dst, &Response{ID: 1, Result: Raw{0x01, 0x02}})
	if CodeOf(err) != CodeMalformed || string(out) != "keep" {
		t.Errorf("response with two values: %v, % x", err, out)
	}
	huge := make([]byte, MaxFrameSize)
	out, err = Append(dst, &Send{Body: huge})
	if CodeOf(err) != CodeFrameTooLarge || string(out) != "keep" {
		t.Errorf("send over MaxFrameSize: %v", err)
	}
	out, err = Append(dst, &Deliver{Body: huge})
	if CodeOf(err) != CodeFrameTooLarge || string(out) != "keep" {
		t.Errorf("deliver over MaxFrameSize: %v", err)
	}
	// The same bytes as a string, without copying 256 MiB.
	out, err = Append(dst, &Response{Text: unsafe.String(&huge[0], len(huge))})
	if CodeOf(err) != CodeFrameTooLarge || string(out) != "keep" {
		t.Errorf("response over MaxFrameSize: %v", err)
	}
}

// Cold frames of every prefix width: the one-byte placeholder is widened.
func TestAppendReflectPrefixWidths(t *testing.T) {
	for _, n := range []int{0, 100, 126, 127, 128, 300, 16383, 16384, 70000, 2100000} {
		k := &Kick{Code: CodeKicked, Text: strings.Repeat("k", n)}
		out, err := Append([]byte{0xaa}, k)
		if err != nil {
			t.Fatal(err)
		}
		var f Frame
		if m, err := Decode(out[1:], &f, 0); err != nil || m != len(out)-1 || f.Kick != *k {
			t.Fatalf("text of %d: Decode = %d of %d, %v", n, m, len(out)-1, err)
		}
	}
}

func TestRaw(t *testing.T) {
	args := OnlineArgs{Prefix: "ali", Limit: 10}
	raw, err := MarshalRaw(&args)
	if err != nil {
		t.Fatal(err)
	}
	out, err := Append(nil, &Request{ID: 1, Method: MethodOnline, Args: raw})
	if err != nil {
		t.Fatal(err)
	}
	var f Frame
	if _, err := Decode(out, &f, 0); err != nil {
		t.Fatal(err)
	}
	var got OnlineArgs
	if err := f.Request.Args.Unmarshal(&got); err != nil || got != args {
		t.Fatalf("args = %+v, %v", got, err)
	}
	res := HistoryResult{Messages: []Deliver{{MsgID: 1, From: 2, FromName: "b", Target: ToUser(3), Body: []byte("x"), Time: 5}}, Next: []byte{1}}
	raw, _ = MarshalRaw(&res)
	var back HistoryResult
	if err := raw.Unmarshal(&back); err != nil || !reflect.DeepEqual(back, res) {
		t.Fatalf("history result = %+v, %v", back, err)
	}
	if err := (Raw{0xa1, 'x'}).Unmarshal(&back); CodeOf(err) != CodeMalformed {
		t.Fatalf("a string into a struct: %v", err)
	}
	if err := (Raw{0x92}).Unmarshal(&back); CodeOf(err) != CodeMalformed {
		t.Fatalf("truncated raw: %v", err)
	}
	if err := Raw(nil).Unmarshal(&back); err != nil {
		t.Fatalf("empty raw: %v", err)
	}
}
