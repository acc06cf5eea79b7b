package broker

import (
	"bytes"
	"testing"
	"time"

	"github.com/cimgo/cim/broker/wire"
	"github.com/vmihailenco/msgpack/v5"
)

// A native deliver frame leaves out what the receiver can derive (wire's
// "Keys derived when absent"): the time, which is its id's, and the
// receiver of a private message, for the receiver itself. Another native
// receiver of the same inbox topic gets the receiver, from its own shared
// encoding.
func TestNativeDeliverLeavesOutDerivedKeys(t *testing.T) {
	g := idGen{node: nodeBits("n1")}
	now := time.Now()
	decode := func(b []byte) wire.Deliver {
		t.Helper()
		var f wire.Frame
		if n, err := wire.Decode(b, &f, 0); err != nil || n != len(b) || f.Type != wire.TypeDeliver {
			t.Fatalf("decode % x: %d, %v, %v", b, n, err, f.Type)
		}
		return f.Deliver
	}
	has := func(b []byte, key string) bool { // whether the frame's map has key
		t.Helper()
		_, pl, _ := wire.ReadLength(b)
		var fields map[string]any
		if err := msgpack.Unmarshal(b[pl+1:], &fields); err != nil {
			t.Fatal(err)
		}
		_, ok := fields[key]
		return ok
	}

	m := &Message{ID: g.next(now), Topic: "cim/u/7", Payload: []byte("hi"), Sender: 3, SenderName: "carol", Created: now.Unix()}
	var e encodeOnce
	e.reset(m, now.Unix())
	self, err := e.nativeGet(1, false, 7)
	if err != nil {
		t.Fatal(err)
	}
	other, _ := e.nativeGet(1, false, 8)
	again, _ := e.nativeGet(1, false, 7)
	if len(e.entries) != 2 || !bytes.Equal(again, self) {
		t.Errorf("%d shared encodings, the receiver's again % x, want 2 and % x", len(e.entries), again, self)
	}
	if has(self, "ts") || has(self, "u") || has(other, "ts") || !has(other, "u") {
		t.Errorf("keys: receiver's % x, another's % x", self, other)
	}
	want := wire.Deliver{MsgID: m.ID, From: 3, FromName: "carol", Target: wire.Target{Kind: wire.KindUser}, Body: []byte("hi"),
		Time: idTime(m.ID).UnixMilli(), QoS: 1}
	if d := decode(self); d.MsgID != want.MsgID || d.Target != want.Target || d.Time != want.Time || d.Time/1000 != now.Unix() && d.Time/1000 != now.Unix()+1 {
		t.Errorf("receiver's: %+v, want %+v", d, want)
	}
	if d := decode(other); d.Target != wire.ToUser(7) || d.Time != want.Time {
		t.Errorf("another's: %+v", d)
	}

	// A topic: nothing per receiver. A message without an id (none of
	// the server's paths) keeps its time.
	for _, c := range []struct {
		m      Message
		target wire.Target
		ts     bool
	}{
		{Message{ID: g.next(now), Topic: "bench/fanin", Payload: []byte("x"), From: "mqtt-1", Created: now.Unix()}, wire.ToTopic("bench/fanin"), false},
		{Message{Topic: "cim/g/ops", Payload: []byte("x"), Created: 1750000000}, wire.ToGroup("ops"), true},
	} {
		b, err := appendNativeDeliver(nil, &c.m, 0, false, 7)
		if err != nil {
			t.Fatal(err)
		}
		d := decode(b)
		at := c.m.Created * 1000
		if c.m.ID != 0 {
			at = idTime(c.m.ID).UnixMilli()
		}
		if has(b, "ts") != c.ts || d.Target != c.target || d.Time != at {
			t.Errorf("%s: % x: %+v", c.m.Topic, b, d)
		}
	}
}
