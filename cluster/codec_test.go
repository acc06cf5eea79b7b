package cluster

import (
	"bytes"
	"encoding/binary"
	"errors"
	"reflect"
	"testing"

	"github.com/vmihailenco/msgpack/v5"
)

func samplePublish() *Publish {
	return &Publish{Topic: "a/b/c", Payload: []byte("hello"), QoS: 1, Retain: true, Props: []byte{1, 2, 3},
		Sender: "client-1", ID: 42, Created: 1700000000, Expiry: -1, Origin: "n1"}
}

func sampleFrames() []frame {
	return []frame{
		{typ: frameHello, version: 1, cluster: "c", node: "n1", incarnation: 7, nonce: bytes.Repeat([]byte{9}, 16)},
		{typ: frameHelloAck, version: 1, cluster: "c", node: "n2", incarnation: 8, nonce: bytes.Repeat([]byte{8}, 16), mac: []byte{1, 2}, delivered: 99},
		{typ: frameAuth, mac: []byte{3, 4}, delivered: 5},
		{typ: framePing},
		{typ: framePublish, seq: 12, pub: samplePublish()},
		{typ: framePublish, pub: &Publish{Topic: "t", Origin: "n1"}},
		{typ: frameAck, seq: 1 << 40},
		{typ: frameRequest, id: 3, body: []byte("give me session x")},
		{typ: frameResponse, id: 3, body: []byte("snapshot")},
		{typ: frameResponse, id: 4, failed: true, errMsg: "no such session"},
	}
}

func encodeAll(fs []frame) []byte {
	enc := newFrameEncoder("n1")
	var out []byte
	for i := range fs {
		out = enc.append(out, &fs[i])
	}
	return out
}

func TestFrameRoundTrip(t *testing.T) {
	fs := sampleFrames()
	buf := encodeAll(fs)
	dec := newFrameDecoder(1 << 20)
	for i, want := range fs {
		got, n, err := dec.Decode(buf)
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		buf = buf[n:]
		if !reflect.DeepEqual(got, want) {
			t.Errorf("frame %d:\n got %+v\nwant %+v", i, got, want)
			if got.pub != nil {
				t.Errorf("pub %+v", *got.pub)
			}
		}
	}
	if len(buf) != 0 {
		t.Fatalf("%d bytes left", len(buf))
	}
}

func TestFrameEmptyOriginIsSender(t *testing.T) {
	p := samplePublish()
	p.Origin = ""
	buf := newFrameEncoder("me").append(nil, &frame{typ: framePublish, seq: 1, pub: p})
	f, _, err := newFrameDecoder(1 << 20).Decode(buf)
	if err != nil || f.pub.Origin != "me" {
		t.Fatalf("origin %q, %v", f.pub.Origin, err)
	}
	if p.Origin != "" {
		t.Fatal("encoder modified the caller's publish")
	}
}

// A decoded publish aliases the read buffer; its Clone does not.
func TestPublishCloneOwnsBytes(t *testing.T) {
	buf := encodeAll([]frame{{typ: framePublish, seq: 1, pub: samplePublish()}})
	f, _, err := newFrameDecoder(1 << 20).Decode(buf)
	if err != nil {
		t.Fatal(err)
	}
	c := f.pub.Clone()
	clear(buf)
	if want := *samplePublish(); !reflect.DeepEqual(c, want) {
		t.Fatalf("clone after the buffer was cleared:\n got %+v\nwant %+v", c, want)
	}
	if f.pub.Topic == "a/b/c" {
		t.Fatal("the decoded publish does not alias the frame (a copy per message)")
	}
	if e := (&Publish{Topic: "t"}).Clone(); e.Payload != nil || e.Props != nil || e.Sender != "" {
		t.Fatalf("empty fields: %+v", e)
	}
}

func TestFrameDecodeErrors(t *testing.T) {
	dec := newFrameDecoder(64)
	full := encodeAll([]frame{{typ: frameRequest, id: 1, body: []byte("x")}})
	for i := 0; i < len(full); i++ {
		if _, n, err := dec.Decode(full[:i]); !errors.Is(err, ErrIncomplete) || n != 0 {
			t.Fatalf("prefix %d: %v %d", i, err, n)
		}
	}
	cases := map[string][]byte{
		"too large":     {0x80, 0x01},
		"zero length":   {0x00},
		"overflow":      bytes.Repeat([]byte{0xff}, 11),
		"not an array":  {0x01, 0x05},
		"bad type":      {0x02, 0x91, 0x63},
		"few fields":    {0x02, 0x91, 0x05},
		"trailing":      append([]byte{0x03}, 0x91, 0x04, 0x00),
		"qos 3":         encodeAll([]frame{{typ: framePublish, seq: 1, pub: &Publish{QoS: 3}}}),
		"qos0 with seq": encodeAll([]frame{{typ: framePublish, seq: 1, pub: &Publish{QoS: 0}}}),
	}
	for name, b := range cases {
		_, _, err := newFrameDecoder(64).Decode(b)
		if err == nil || errors.Is(err, ErrIncomplete) {
			t.Errorf("%s: got %v", name, err)
		}
	}
	if _, _, err := dec.Decode([]byte{0x80, 0x01}); !errors.Is(err, ErrFrameTooLarge) {
		t.Errorf("too large: %v", err)
	}
}

// FuzzFrameDecode feeds arbitrary bytes in chunks: the decoder must never
// panic, and whatever it decodes must re-encode to the same bytes.
func FuzzFrameDecode(f *testing.F) {
	f.Add(encodeAll(sampleFrames()), uint8(7))
	f.Add([]byte{0x80, 0x80, 0x01}, uint8(1))
	f.Fuzz(func(t *testing.T, data []byte, chunk uint8) {
		step := int(chunk%32) + 1
		dec := newFrameDecoder(1 << 16)
		enc := newFrameEncoder("")
		var buf []byte
		for off := 0; off < len(data); {
			end := min(off+step, len(data))
			buf = append(buf, data[off:end]...)
			off = end
			for {
				fr, n, err := dec.Decode(buf)
				if errors.Is(err, ErrIncomplete) {
					break
				}
				if err != nil {
					return
				}
				re := enc.append(nil, &fr)
				if again, _, err := newFrameDecoder(1 << 16).Decode(re); err != nil || !reflect.DeepEqual(normal(again), normal(fr)) {
					t.Fatalf("re-encode mismatch: %v\n%+v\n%+v", err, again, fr)
				}
				buf = buf[n:]
			}
		}
	})
}

// normal makes nil and empty slices compare equal.
func normal(f frame) frame {
	z := func(b []byte) []byte {
		if len(b) == 0 {
			return nil
		}
		return b
	}
	f.nonce, f.mac, f.body = z(f.nonce), z(f.mac), z(f.body)
	if f.pub != nil {
		p := *f.pub
		p.Payload, p.Props = z(p.Payload), z(p.Props)
		f.pub = &p
	}
	return f
}

func TestBatchRoundTrip(t *testing.T) {
	b := newBatch(msgOwnership, "n1", 200)
	var sealed [][]byte
	var want []gossipEntry
	for i := range 20 {
		e := gossipEntry{s: "m/client-" + string(rune('a'+i)), epoch: Epoch(1000 + i*3), flag: uint8(i % 2)}
		want = append(want, e)
		if m := b.add(e.s, e.epoch, e.flag); m != nil {
			sealed = append(sealed, m)
		}
	}
	sealed = append(sealed, b.seal())
	var got []gossipEntry
	for _, m := range sealed {
		if len(m) > 200 {
			t.Fatalf("batch of %d bytes over its limit", len(m))
		}
		kind, node, es, err := decodeBatch(m)
		if err != nil || kind != msgOwnership || node != "n1" {
			t.Fatalf("decode: %v %c %q", err, kind, node)
		}
		got = append(got, es...)
	}
	if len(sealed) < 2 || !reflect.DeepEqual(got, want) {
		t.Fatalf("%d batches\n got %+v\nwant %+v", len(sealed), got, want)
	}
	if b.fits(300) {
		t.Fatal("an entry larger than a packet fits")
	}
}

func TestStateRoundTrip(t *testing.T) {
	s := &nodeState{node: "n1", hwm: 1 << 40, ver: 77,
		entries:   []ownEntry{{"a", 5}, {"b", 9}, {"c", 1 << 39}},
		interests: []string{"x/#", "y/+/z"}}
	got, err := decodeState(encodeState(s))
	if err != nil || !reflect.DeepEqual(got, s) {
		t.Fatalf("%v\n got %+v\nwant %+v", err, got, s)
	}
	if _, err := decodeState([]byte("S\x01")); !errors.Is(err, ErrMalformed) {
		t.Fatalf("truncated: %v", err)
	}
	if _, err := decodeState([]byte{msgState, 0x02}); !errors.Is(err, ErrMalformed) {
		t.Fatalf("future format: %v", err)
	}
}

func FuzzGossipDecode(f *testing.F) {
	b := newBatch(msgInterest, "n2", 1000)
	b.add("a/#", 5, 1)
	b.add("b", 3, 0)
	f.Add(b.seal())
	f.Add(encodeState(&nodeState{node: "n1", hwm: 9, entries: []ownEntry{{"k", 3}}, interests: []string{"f"}}))
	f.Fuzz(func(t *testing.T, data []byte) {
		decodeBatch(data)
		decodeState(data)
		decodeMeta(data)
	})
}

func TestMetaRoundTrip(t *testing.T) {
	m := Meta{Version: MetaVersion, MQTT: "10.0.0.1:1883", Native: "10.0.0.1:9000", HTTP: "10.0.0.1:8083", Peer: "10.0.0.1:7947"}
	b, err := m.encode()
	if err != nil {
		t.Fatal(err)
	}
	got, err := decodeMeta(b)
	if err != nil || got != m {
		t.Fatalf("%v %+v", err, got)
	}
	big := Meta{MQTT: string(bytes.Repeat([]byte("x"), 600))}
	if _, err := big.encode(); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("oversize meta: %v", err)
	}
}

// A frame as a later version or another encoder may write it: integers in
// wide forms, str for bin, nil for zero values and fields appended after
// the known ones. The decoder must read it as the frame we write.
func TestFrameDecodeOtherForms(t *testing.T) {
	var body bytes.Buffer
	e := msgpack.NewEncoder(&body)
	_ = e.EncodeArrayLen(fieldCount[framePublish] + 2)
	_ = e.EncodeUint64(uint64(framePublish)) // 0xcf, 8 bytes
	_ = e.EncodeInt64(12)                    // 0xd3: a signed form of a uint field
	_ = e.EncodeBytes([]byte("a/b/c"))       // bin for a str
	_ = e.EncodeString("hello")              // str for a bin
	_ = e.EncodeUint16(1)
	_ = e.EncodeBool(true)
	_ = e.EncodeBytes([]byte{1, 2, 3})
	_ = e.EncodeString("client-1")
	_ = e.EncodeUint32(42)
	_ = e.EncodeInt64(1700000000)
	_ = e.EncodeInt8(-1)
	_ = e.EncodeString("n1")
	_ = e.Encode(map[string]any{"later": []any{1, "two", 3.5}}) // unknown: skipped
	_ = e.EncodeNil()
	buf := binary.AppendUvarint(nil, uint64(body.Len()))
	buf = append(buf, body.Bytes()...)
	got, n, err := newFrameDecoder(1 << 20).Decode(buf)
	if err != nil || n != len(buf) {
		t.Fatalf("decode: %v (%d of %d bytes)", err, n, len(buf))
	}
	want := frame{typ: framePublish, seq: 12, pub: samplePublish()}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v %+v\nwant %+v %+v", got, *got.pub, want, *want.pub)
	}
	// A broken unknown field is still an error.
	bad := append([]byte(nil), buf...)
	bad[len(bad)-1] = 0xc1 // never used by msgpack
	if _, _, err := newFrameDecoder(1 << 20).Decode(bad); !errors.Is(err, ErrMalformed) {
		t.Fatalf("broken extra field: %v", err)
	}
	// nil for every zero value of an ack.
	if f, _, err := newFrameDecoder(64).Decode([]byte{0x03, 0x92, 0x06, 0xc0}); err != nil || f.typ != frameAck || f.seq != 0 {
		t.Fatalf("ack with nil seq: %+v %v", f, err)
	}
}

// A handshake frame's strings outlive the buffer it was read from (the
// acceptor reads the auth frame into the hello's buffer).
func TestFrameHelloOwnsStrings(t *testing.T) {
	buf := encodeAll(sampleFrames()[:1])
	f, _, err := newFrameDecoder(1 << 20).Decode(buf)
	if err != nil {
		t.Fatal(err)
	}
	clear(buf)
	if f.cluster != "c" || f.node != "n1" {
		t.Fatalf("hello aliases its buffer: cluster %q node %q", f.cluster, f.node)
	}
}

// A request's body outlives the read buffer, whatever array form the
// frame's header takes (here array 16, which no encoder of ours writes).
func TestFrameRequestOwnsBody(t *testing.T) {
	body := []byte{0xdc, 0x00, 0x03, byte(frameRequest), 0x05, 0xc4, 0x03, 'a', 'b', 'c'}
	buf := append([]byte{byte(len(body))}, body...)
	f, n, err := newFrameDecoder(64).Decode(buf)
	if err != nil || n != len(buf) || f.typ != frameRequest || f.id != 5 {
		t.Fatalf("decode: %+v %d %v", f, n, err)
	}
	clear(buf)
	if string(f.body) != "abc" {
		t.Fatalf("request body aliases the read buffer: %q", f.body)
	}
}
