package wire

import (
	"bytes"
	"reflect"
	"testing"
)

// Golden frames: every frame type byte by byte, with a comment on each
// field. Append must produce exactly these bytes and Decode must give back
// the struct. ts is 1700000000000 ms (2023-11-14T22:13:20Z), which needs a
// uint 64: cf 00 00 01 8b cf e5 68 00.

var ts = []byte{0xcf, 0x00, 0x00, 0x01, 0x8b, 0xcf, 0xe5, 0x68, 0x00}

// goldenID is a server message id made at 1750000000000 ms (its bits 63-23,
// MsgIDTime), on node 0x2a, the second of its millisecond.
const goldenID = (1750000000000-MsgIDEpoch)<<MsgIDTimeShift | 0x2a<<13 | 1

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

type golden struct {
	name string
	body Body
	raw  []byte
}

var goldens = []golden{
	{"login by name with password", &Login{Name: "alice", Password: "pw", Version: "go/1", Keepalive: 30}, []byte{
		0x19,                                     // length 25
		0x01,                                     // type login
		0x84,                                     // map of 4
		0xa1, 'n', 0xa5, 'a', 'l', 'i', 'c', 'e', // n: name "alice"
		0xa1, 'p', 0xa2, 'p', 'w', // p: password "pw"
		0xa1, 'v', 0xa4, 'g', 'o', '/', '1', // v: version "go/1"
		0xa1, 'k', 0x1e, // k: keepalive 30 s
	}},
	{"login by id with token", &Login{User: 300, Token: "tk"}, []byte{
		0x0c,                        // length 12
		0x01,                        // type login
		0x82,                        // map of 2
		0xa1, 'u', 0xcd, 0x01, 0x2c, // u: user 300 (uint 16)
		0xa1, 't', 0xa2, 't', 'k', // t: token "tk"
	}},
	{"login ack ok", &LoginAck{Code: CodeOK, User: 42, Name: "al", Token: "T", TokenExpires: 1, Node: "n1", Keepalive: 30, MaxFrame: 65536}, cat([]byte{
		0x25,                        // length 37
		0x02,                        // type login-ack
		0x88,                        // map of 8
		0xa1, 'c', 0xcd, 0x23, 0x28, // c: code 9000
		0xa1, 'u', 0x2a, // u: user 42
		0xa1, 'n', 0xa2, 'a', 'l', // n: name "al"
		0xa1, 't', 0xa1, 'T', // t: token "T"
		0xa1, 'e', 0x01, // e: token expires (unix ms)
		0xa1, 'o', 0xa2, 'n', '1', // o: node "n1"
		0xa1, 'k', 0x1e, // k: keepalive 30 s
		0xa1, 'x', 0xce, 0x00, 0x01, 0x00, 0x00, // x: max frame 65536 (uint 32)
	})},
	{"login ack refused", &LoginAck{Code: CodeAccountMismatch, Text: "bad password", Time: 1700000000000}, cat([]byte{
		0x22,                        // length 34
		0x02,                        // type login-ack
		0x83,                        // map of 3
		0xa1, 'c', 0xcd, 0x23, 0x8c, // c: code 9100
		0xa1, 'm', 0xac, 'b', 'a', 'd', ' ', 'p', 'a', 's', 's', 'w', 'o', 'r', 'd', // m: text
		0xa2, 't', 's', // ts: server time
	}, ts)},
	{"ping", &Ping{}, []byte{
		0x02, // length 2
		0x03, // type ping
		0x80, // empty map
	}},
	{"pong", &Pong{}, []byte{
		0x02, // length 2
		0x04, // type pong
		0x80, // empty map
	}},
	{"send private QoS 1", &Send{ID: 7, Target: ToUser(42), QoS: 1, Body: []byte("hi")}, []byte{
		0x14,            // length 20
		0x05,            // type send
		0x85,            // map of 5
		0xa1, 'i', 0x07, // i: client message id 7
		0xa1, 'k', 0x01, // k: kind user
		0xa1, 'u', 0x2a, // u: user 42
		0xa1, 'q', 0x01, // q: QoS 1
		0xa1, 'b', 0xc4, 0x02, 'h', 'i', // b: body "hi" (bin 8)
	}},
	{"send to everyone, QoS 0, no ack", &Send{Target: ToAll(), Body: []byte("yo")}, []byte{
		0x0b,            // length 11
		0x05,            // type send
		0x82,            // map of 2
		0xa1, 'k', 0x04, // k: kind all
		0xa1, 'b', 0xc4, 0x02, 'y', 'o', // b: body
	}},
	{"send delayed to a topic", &Send{ID: 8, Target: ToTopic("s/1"), Delay: 5000, Body: []byte{0}}, []byte{
		0x18,            // length 24
		0x05,            // type send
		0x85,            // map of 5
		0xa1, 'i', 0x08, // i: client message id 8
		0xa1, 'k', 0x03, // k: kind topic
		0xa1, 't', 0xa3, 's', '/', '1', // t: topic "s/1"
		0xa1, 'd', 0xcd, 0x13, 0x88, // d: delay 5000 ms
		0xa1, 'b', 0xc4, 0x01, 0x00, // b: body 00
	}},
	{"send batch to a group", &Send{ID: 10, Target: ToGroup("g"), QoS: 1, Batch: [][]byte{[]byte("a"), []byte("bc")}}, []byte{
		0x19,            // length 25
		0x05,            // type send
		0x85,            // map of 5
		0xa1, 'i', 0x0a, // i: client message ids 10 and 11
		0xa1, 'k', 0x02, // k: kind group
		0xa1, 't', 0xa1, 'g', // t: group "g"
		0xa1, 'q', 0x01, // q: QoS 1
		0xa1, 'a', 0x92, // a: batch, array of 2
		0xc4, 0x01, 'a', // "a"
		0xc4, 0x02, 'b', 'c', // "bc"
	}},
	{"send ack stored offline", &SendAck{ID: 7, MsgID: 1 << 33, Code: CodeOffline, Time: 1700000000000}, cat([]byte{
		0x21,            // length 33
		0x06,            // type send-ack
		0x84,            // map of 4
		0xa1, 'i', 0x07, // i: client message id 7
		0xa1, 's', 0xcf, 0, 0, 0, 0x02, 0, 0, 0, 0, // s: server message id 2^33
		0xa1, 'c', 0xcd, 0x1b, 0x58, // c: code 7000
		0xa2, 't', 's', // ts: accepted at
	}, ts)},
	{"send ack refused", &SendAck{ID: 9, Code: CodeUnknownReceiver, Text: "user 5"}, []byte{
		0x13,            // length 19
		0x06,            // type send-ack
		0x83,            // map of 3
		0xa1, 'i', 0x09, // i: client message id 9
		0xa1, 'c', 0xcd, 0x0b, 0xbd, // c: code 3005
		0xa1, 'm', 0xa6, 'u', 's', 'e', 'r', ' ', '5', // m: text
	}},
	{"deliver group message (ts in its id)", &Deliver{MsgID: goldenID, From: 1, FromName: "bob", Target: ToGroup("ops"), Body: []byte("hello"), Time: 1750000000000, QoS: 1}, []byte{
		0x2b,                                                            // length 43
		0x07,                                                            // type deliver
		0x87,                                                            // map of 7
		0xa1, 'i', 0xcf, 0x01, 0xaa, 0x7b, 0xb0, 0x00, 0x05, 0x40, 0x01, // i: server message id, made at 1750000000000 ms
		0xa1, 'f', 0x01, // f: from user 1
		0xa1, 'n', 0xa3, 'b', 'o', 'b', // n: from name "bob"
		0xa1, 'k', 0x02, // k: kind group
		0xa1, 't', 0xa3, 'o', 'p', 's', // t: group "ops"
		0xa1, 'b', 0xc4, 0x05, 'h', 'e', 'l', 'l', 'o', // b: body
		// no ts: it is the id's time
		0xa1, 'q', 0x01, // q: QoS 1: answer with deliver-ack
	}},
	{"deliver offline private message (u: the receiver)", &Deliver{MsgID: 5, From: 2, Target: Target{Kind: KindUser}, Body: []byte("x"), Time: 1700000000000, Offline: true}, cat([]byte{
		0x1f,            // length 31
		0x07,            // type deliver
		0x86,            // map of 6
		0xa1, 'i', 0x05, // i: server message id 5
		0xa1, 'f', 0x02, // f: from user 2
		0xa1, 'k', 0x01, // k: kind user; no u: to the user logged in
		0xa1, 'b', 0xc4, 0x01, 'x', // b: body
		0xa2, 't', 's', // ts: sent at, not id 5's time
	}, ts, []byte{
		0xa1, 'o', 0xc3, // o: offline true
	})},
	{"deliver private message to another user, time 0", &Deliver{MsgID: 5, Target: ToUser(42), Body: []byte("x")}, []byte{
		0x14,            // length 20
		0x07,            // type deliver
		0x85,            // map of 5
		0xa1, 'i', 0x05, // i: server message id 5
		0xa1, 'k', 0x01, // k: kind user
		0xa1, 'u', 0x2a, // u: to user 42 (a subscriber of cim/u/42 reads it)
		0xa1, 'b', 0xc4, 0x01, 'x', // b: body
		0xa2, 't', 's', 0x00, // ts: 0, written: absent would be id 5's time
	}},
	{"deliver ack", &DeliverAck{MsgID: 99}, []byte{
		0x05,            // length 5
		0x08,            // type deliver-ack
		0x81,            // map of 1
		0xa1, 'i', 0x63, // i: server message id 99
	}},
	{"subscribe", &Subscribe{ID: 1, Filters: []string{"a/#", "b"}, QoS: 1}, []byte{
		0x11,            // length 17
		0x09,            // type subscribe
		0x83,            // map of 3
		0xa1, 'i', 0x01, // i: request id 1
		0xa1, 'f', 0x92, // f: filters, array of 2
		0xa3, 'a', '/', '#', // "a/#"
		0xa1, 'b', // "b"
		0xa1, 'q', 0x01, // q: QoS 1
	}},
	{"sub ack", &SubAck{ID: 1, Codes: []Code{CodeOK, CodeDenied}}, []byte{
		0x0e,            // length 14
		0x0a,            // type sub-ack
		0x82,            // map of 2
		0xa1, 'i', 0x01, // i: request id 1
		0xa1, 'c', 0x92, // c: codes, array of 2
		0xcd, 0x23, 0x28, // 9000
		0xcd, 0x0b, 0xc2, // 3010
	}},
	{"unsubscribe", &Unsubscribe{ID: 2, Filters: []string{"b"}}, []byte{
		0x0a,            // length 10
		0x0b,            // type unsubscribe
		0x82,            // map of 2
		0xa1, 'i', 0x02, // i: request id 2
		0xa1, 'f', 0x91, // f: filters, array of 1
		0xa1, 'b', // "b"
	}},
	{"unsub ack", &UnsubAck{ID: 2, Codes: []Code{CodeOK}}, []byte{
		0x0b,            // length 11
		0x0c,            // type unsub-ack
		0x82,            // map of 2
		0xa1, 'i', 0x02, // i: request id 2
		0xa1, 'c', 0x91, // c: codes, array of 1
		0xcd, 0x23, 0x28, // 9000
	}},
	{"request online users", &Request{ID: 3, Method: MethodOnline, Args: Raw{0x81, 0xa1, 'p', 0xa1, 'a'}}, []byte{
		0x15,            // length 21
		0x0d,            // type request
		0x83,            // map of 3
		0xa1, 'i', 0x03, // i: request id 3
		0xa1, 'm', 0xa6, 'o', 'n', 'l', 'i', 'n', 'e', // m: method "online"
		0xa1, 'a', 0x81, 0xa1, 'p', 0xa1, 'a', // a: args {p: prefix "a"}
	}},
	{"response", &Response{ID: 3, Code: CodeOK, Result: Raw{0x81, 0xa1, 'u', 0x91, 0x82, 0xa1, 'i', 0x2a, 0xa1, 'n', 0xa2, 'a', 'l'}}, []byte{
		0x19,            // length 25
		0x0e,            // type response
		0x83,            // map of 3
		0xa1, 'i', 0x03, // i: request id 3
		0xa1, 'c', 0xcd, 0x23, 0x28, // c: code 9000
		0xa1, 'r', // r: result
		0x81, 0xa1, 'u', 0x91, // {u: users, array of 1
		0x82, 0xa1, 'i', 0x2a, 0xa1, 'n', 0xa2, 'a', 'l', // {i: 42, n: "al"}}
	}},
	{"response refused", &Response{ID: 4, Code: CodeUnknownMethod, Text: "x"}, []byte{
		0x0e,            // length 14
		0x0e,            // type response
		0x83,            // map of 3
		0xa1, 'i', 0x04, // i: request id 4
		0xa1, 'c', 0xcd, 0x0b, 0xc1, // c: code 3009
		0xa1, 'm', 0xa1, 'x', // m: text
	}},
	{"kick", &Kick{Code: CodeTakenOver, Text: "new login"}, []byte{
		0x13,                        // length 19
		0x0f,                        // type kick
		0x82,                        // map of 2
		0xa1, 'c', 0xcd, 0x13, 0x8b, // c: code 5003
		0xa1, 'm', 0xa9, 'n', 'e', 'w', ' ', 'l', 'o', 'g', 'i', 'n', // m: text
	}},
	{"error", &Error{Code: CodeNotLoggedIn}, []byte{
		0x07,                        // length 7
		0x10,                        // type error
		0x81,                        // map of 1
		0xa1, 'c', 0xcd, 0x0b, 0xbc, // c: code 3004
	}},
}

func TestGoldenAppend(t *testing.T) {
	seen := map[Type]bool{}
	for _, g := range goldens {
		seen[g.body.Type()] = true
		got, err := Append([]byte("prefix"), g.body)
		if err != nil {
			t.Errorf("%s: Append: %v", g.name, err)
			continue
		}
		if !bytes.Equal(got[6:], g.raw) || string(got[:6]) != "prefix" {
			t.Errorf("%s:\n got % x\nwant % x", g.name, got[6:], g.raw)
		}
	}
	for ty := Type(1); ty <= maxType; ty++ {
		if !seen[ty] {
			t.Errorf("no golden frame for %v", ty)
		}
	}
}

func TestGoldenDecode(t *testing.T) {
	var f Frame // reused across frames, as a server does
	for _, g := range goldens {
		stream := append(append([]byte{}, g.raw...), 0x02, 0x03) // the next frame's first bytes
		n, err := Decode(stream, &f, 0)
		if err != nil || n != len(g.raw) {
			t.Errorf("%s: Decode = %d, %v; want %d, nil", g.name, n, err, len(g.raw))
			continue
		}
		if f.Type != g.body.Type() {
			t.Errorf("%s: type %v, want %v", g.name, f.Type, g.body.Type())
		}
		if !sameBody(f.Body(), g.body) {
			t.Errorf("%s:\n got %#v\nwant %#v", g.name, f.Body(), g.body)
		}
	}
}

// sameBody compares bodies treating nil and empty slices alike.
func sameBody(a, b Body) bool {
	return reflect.DeepEqual(normalize(a), normalize(b))
}

func normalize(b Body) any {
	v := reflect.New(reflect.TypeOf(b).Elem())
	v.Elem().Set(reflect.ValueOf(b).Elem())
	normValue(v.Elem())
	return v.Interface()
}

func normValue(v reflect.Value) {
	switch v.Kind() {
	case reflect.Struct:
		for i := 0; i < v.NumField(); i++ {
			normValue(v.Field(i))
		}
	case reflect.Slice:
		if v.Len() == 0 {
			v.Set(reflect.Zero(v.Type()))
			return
		}
		for i := 0; i < v.Len(); i++ {
			normValue(v.Index(i))
		}
	}
}
