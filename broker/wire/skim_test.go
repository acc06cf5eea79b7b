package wire

import (
	"bytes"
	"testing"
)

// SkimDeliver reads what Decode reads of a deliver frame's id, QoS and
// body, in every encoding Decode takes, and leaves other frames and broken
// ones to Decode.
func TestSkimDeliver(t *testing.T) {
	body := bytes.Repeat([]byte{1}, 300)
	frames := []Body{
		&Deliver{MsgID: 1<<50 + 3, From: 3, FromName: "p0", Target: ToTopic("bench/x"), Body: body[:64], Time: 1700000000123, QoS: 1},
		&Deliver{MsgID: goldenID, From: 3, FromName: "cb0123abcd-p0", Target: ToTopic("bench/fanin"), Body: body[:64], Time: MsgIDTime(goldenID)},
		&Deliver{MsgID: 7, Target: ToUser(9), Body: body, Offline: true, QoS: 1},
		&Deliver{Target: ToGroup("g"), Body: body[:1]},
		&Deliver{MsgID: 300, FromName: "名前", Target: ToAll()},
		&SendAck{ID: 1, MsgID: 2},
	}
	var raws [][]byte
	for _, fb := range frames {
		raw, err := Append(nil, fb)
		if err != nil {
			t.Fatal(err)
		}
		raws = append(raws, raw)
	}
	for _, g := range goldens {
		raws = append(raws, g.raw)
	}
	// Encodings Append does not write: wide ints, map 16, a str body,
	// a key Decode does not know, repeated keys.
	raws = append(raws,
		frame(TypeDeliver, 0xde, 0x00, 0x04, 0xa1, 'i', 0xcf, 0, 0, 0, 0, 0, 0, 0, 9, 0xa1, 'q', 0xd0, 0x01,
			0xa2, 'z', 'z', 0x92, 0x01, 0x02, 0xa1, 'b', 0xa2, 'h', 'i'),
		frame(TypeDeliver, 0x82, 0xa1, 'q', 0x01, 0xa1, 'q', 0x00))
	var f Frame
	for i, raw := range raws {
		id, qos, b, ok := SkimDeliver(raw)
		_, err := Decode(raw, &f, 0)
		isDeliver := err == nil && f.Type == TypeDeliver
		if ok != isDeliver {
			t.Fatalf("frame %d (% x): skimmed %v, Decode: %v %v", i, raw, ok, f.Type, err)
		}
		if ok && (id != f.Deliver.MsgID || qos != f.Deliver.QoS || !bytes.Equal(b, f.Deliver.Body) || (b == nil) != (f.Deliver.Body == nil)) {
			t.Errorf("frame %d: skimmed %d %d %d bytes, Decode %+v", i, id, qos, len(b), f.Deliver)
		}
		for cut := 1; ok && cut < len(raw); cut++ {
			if _, _, _, ok := SkimDeliver(raw[:cut]); ok {
				t.Errorf("frame %d: cut to %d of %d bytes, skimmed", i, cut, len(raw))
			}
		}
		if ok {
			if _, _, _, ok := SkimDeliver(append(raw[:len(raw):len(raw)], 0x02, 0x03, 0x80)); ok {
				t.Errorf("frame %d: skimmed with the next frame after it", i)
			}
		}
	}
	// What it does not check: a name that is not UTF-8 (Decode refuses it).
	bad := frame(TypeDeliver, 0x82, 0xa1, 'n', 0xa2, 0xc3, 0x28, 0xa1, 'i', 0x05)
	if id, _, _, ok := SkimDeliver(bad); !ok || id != 5 {
		t.Errorf("a name that is not UTF-8: %d, %v", id, ok)
	}
	for _, broken := range [][]byte{
		frame(TypeDeliver, 0x81, 0xa1, 'i', 0xa1, 'x'),        // an id that is a str
		frame(TypeDeliver, 0x81, 0xa1, 'q', 0xcd, 0x01, 0x00), // QoS 256
		frame(TypeDeliver, 0x81, 0xa1, 'b', 0x05),             // a body that is an int
		frame(TypeDeliver, 0x82, 0xa1, 'i', 0x05),             // one field of two
		frame(TypeDeliver, 0x81, 0x05, 0x05),                  // a key that is an int
		frame(TypeDeliver, 0x92, 0x01, 0x02),                  // not a map
		frame(TypeDeliver, 0x81, 0xa1, 'i', 0x05, 0xc0),       // a byte after the map
		frame(TypeDeliver, 0x81, 0xa1, 'k', 0xc1),             // reserved code
		frame(TypeDeliver, 0x81, 0xa1, 't', 0xd9, 0x09, 'a'),  // a topic past the end
	} {
		if _, _, _, ok := SkimDeliver(broken); ok {
			t.Errorf("skimmed % x", broken)
		}
	}
}

// BenchmarkSkimDeliver is BenchmarkDecode/Deliver/hand's frame read by
// SkimDeliver, and a frame as the server sends to a bench subscriber.
func BenchmarkSkimDeliver(b *testing.B) {
	for _, c := range []struct {
		name string
		d    *Deliver
	}{{"Deliver", &benchDeliver}, {"Server", &benchServerDeliver}} {
		frame, _ := Append(nil, c.d)
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(frame)))
			for b.Loop() {
				if _, _, _, ok := SkimDeliver(frame); !ok {
					b.Fatal("not skimmed")
				}
			}
		})
	}
}
