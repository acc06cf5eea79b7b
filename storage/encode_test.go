package storage

import (
	"bytes"
	"math"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

// Lengths and values at every msgpack size class boundary.
var (
	testLens = []int{0, 1, 31, 32, 255, 256, 65535, 65536}
	testUint = []uint64{0, 1, 127, 128, 255, 256, 65535, 65536, math.MaxUint32, math.MaxUint32 + 1, math.MaxUint64}
	testInt  = []int64{0, 1, -1, -32, -33, -128, -129, -32768, -32769, math.MinInt32, math.MinInt32 - 1, math.MinInt64, math.MaxInt64, 1700000000000}
)

func pick[T any](r *rand.Rand, s []T) T { return s[r.IntN(len(s))] }

func randStr(r *rand.Rand) string { return strings.Repeat("é", pick(r, testLens)/2) + "x"[:r.IntN(2)] }

func randBytes(r *rand.Rand) []byte {
	n := pick(r, testLens)
	if n == 0 {
		return nil // omitted when empty, so it decodes as nil
	}
	return bytes.Repeat([]byte{byte(n)}, n)
}

func randMessage(r *rand.Rand) *Message {
	return &Message{
		ID: pick(r, testUint), Topic: randStr(r), Payload: randBytes(r), QoS: byte(r.IntN(3)),
		Retain: r.IntN(2) == 1, From: randStr(r), Created: pick(r, testInt), Expiry: pick(r, testInt),
		Props: randBytes(r), PacketID: uint16(pick(r, testUint)), Sent: r.IntN(2) == 1,
		SenderID: pick(r, testUint), SenderName: randStr(r), ClientMsgID: randStr(r), SubIDs: randSubIDs(r),
	}
}

func randSubIDs(r *rand.Rand) []uint32 {
	var ids []uint32
	for range pick(r, []int{0, 1, 15, 16}) {
		ids = append(ids, uint32(pick(r, testUint)))
	}
	return ids
}

func randSession(r *rand.Rand) *Session {
	s := &Session{
		ClientID: randStr(r), Protocol: byte(r.IntN(3)), Version: byte(pick(r, testUint)),
		ExpiryInterval: uint32(pick(r, testUint)), DisconnectedAt: pick(r, testInt), Node: randStr(r),
		NextSeq: pick(r, testUint),
	}
	for range pick(r, []int{0, 1, 2, 16}) {
		s.Rx = append(s.Rx, uint16(r.IntN(65536)))
	}
	for range pick(r, []int{0, 1, 2, 15, 16, 17}) {
		s.Subs = append(s.Subs, Sub{Filter: randStr(r), QoS: byte(r.IntN(3)), NoLocal: r.IntN(2) == 1,
			RetainAsPublished: r.IntN(2) == 1, RetainHandling: byte(r.IntN(3)), ID: uint32(pick(r, testUint))})
	}
	return s
}

// TestCodecsMatchTags: the hand-written encoders and decoders agree with
// the msgpack library reading and writing the struct tags, both ways, and
// our encoding is no larger than the library's compact one.
func TestCodecsMatchTags(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	lib := func(v any, compact, omitAll bool) []byte {
		var buf bytes.Buffer
		enc := msgpack.NewEncoder(&buf)
		enc.UseCompactInts(compact)
		enc.SetOmitEmpty(omitAll)
		if err := enc.Encode(v); err != nil {
			t.Fatal(err)
		}
		return buf.Bytes()
	}
	check := func(name string, in any, ours []byte, libOut any, ourDecode func([]byte) (any, error)) {
		t.Helper()
		if err := msgpack.Unmarshal(ours, libOut); err != nil {
			t.Fatalf("%s: library decode: %v", name, err)
		}
		if !reflect.DeepEqual(in, libOut) {
			t.Fatalf("%s: ours -> library:\n in %+v\nout %+v", name, in, libOut)
		}
		for _, enc := range [][]byte{ours, lib(in, true, false), lib(in, false, false), lib(in, true, true)} {
			out, err := ourDecode(enc)
			if err != nil || !reflect.DeepEqual(in, out) {
				t.Fatalf("%s: -> ours (%x...):\n in %+v\nout %+v\nerr %v", name, enc[:min(len(enc), 16)], in, out, err)
			}
		}
		if theirs := lib(in, true, false); len(ours) > len(theirs) {
			t.Fatalf("%s: %d bytes, library %d", name, len(ours), len(theirs))
		}
	}
	decM := func(b []byte) (any, error) { m := new(Message); return m, decodeMessage(b, m) }
	decS := func(b []byte) (any, error) { s := new(Session); return s, decodeSession(b, s) }
	for _, n := range testLens { // every size class at least once
		m := &Message{Topic: strings.Repeat("t", n), From: "f"}
		if n > 0 {
			m.Payload = bytes.Repeat([]byte{1}, n)
		}
		check("Message", m, appendMessage(nil, m), new(Message), decM)
	}
	for range 40 {
		m := randMessage(r)
		check("Message", m, appendMessage(nil, m), new(Message), decM)
		c, e, err := decodeMsgTimes(appendMessage(nil, m))
		if err != nil || c != m.Created || e != m.Expiry {
			t.Fatalf("decodeMsgTimes = %d %d %v, want %d %d", c, e, err, m.Created, m.Expiry)
		}
		s := randSession(r)
		check("Session", s, appendSession(nil, s), new(Session), decS)
	}
	check("zero Message", &Message{}, appendMessage(nil, &Message{}), new(Message), decM)
	check("zero Session", &Session{}, appendSession(nil, &Session{}), new(Session), decS)
}

// TestDecodeSkipsUnknownFields: a record from a newer version, with fields
// of every msgpack type this one does not know, still reads.
func TestDecodeSkipsUnknownFields(t *testing.T) {
	type future struct {
		Message
		F   float64           `msgpack:"zf"`
		F32 float32           `msgpack:"zg"`
		M   map[string][]int  `msgpack:"zm"`
		A   []string          `msgpack:"za"`
		N   *int              `msgpack:"zn"`
		T   time.Time         `msgpack:"zt"` // an ext type
		I   int64             `msgpack:"zi"`
		B   map[string][]byte `msgpack:"zb"`
	}
	in := future{Message: *fullMessage(), F: 1.5, F32: 2.5, M: map[string][]int{"a": {1, -300, 70000}},
		A: []string{"x", strings.Repeat("y", 300)}, T: time.Unix(1700000000, 5), I: -1 << 40,
		B: map[string][]byte{"k": make([]byte, 70000)}}
	raw, err := msgpack.Marshal(&in)
	if err != nil {
		t.Fatal(err)
	}
	var m Message
	if err := decodeMessage(raw, &m); err != nil || !reflect.DeepEqual(&m, fullMessage()) {
		t.Fatalf("decode = %+v, %v", m, err)
	}
}

func TestDecodeRejectsGarbage(t *testing.T) {
	good := appendMessage(nil, fullMessage())
	for name, b := range map[string][]byte{
		"empty":     {},
		"not a map": {0xa1, 'x'},
		"truncated": good[:len(good)-1],
		"trailing":  append(append([]byte(nil), good...), 0),
		"bad code":  {0x81, 0xa1, 'q', 0xc1},
		"qos range": {0x81, 0xa1, 'q', 0xcd, 1, 0},
		"huge len":  {0x81, 0xa1, 'p', 0xc6, 0xff, 0xff, 0xff, 0xff},
	} {
		if err := decodeMessage(b, new(Message)); err == nil {
			t.Errorf("%s: decoded without error", name)
		}
	}
	if err := decodeSession([]byte{0x81, 0xa1, 's', 0xdd, 0xff, 0xff, 0xff, 0xff}, new(Session)); err == nil {
		t.Error("session with a 4G-sub array decoded")
	}
}

// FuzzDecode: the decoders never panic, and what they accept re-encodes to
// something that decodes the same.
func FuzzDecode(f *testing.F) {
	f.Add(appendMessage(nil, fullMessage()))
	f.Add(appendSession(nil, fullSession()))
	f.Add(appendMessage(nil, &Message{Topic: "t", Payload: make([]byte, 64), QoS: 1, Created: 1}))
	f.Add(appendDedup(nil, 1<<40, 1700000000000))
	f.Fuzz(func(t *testing.T, b []byte) {
		var m Message
		if decodeMessage(b, &m) == nil {
			var m2 Message
			if err := decodeMessage(appendMessage(nil, &m), &m2); err != nil || !reflect.DeepEqual(m, m2) {
				t.Fatalf("message re-encode: %+v -> %+v, %v", m, m2, err)
			}
			// What search reads agrees with the full decoder.
			if p, err := messagePayload(b); err != nil || !bytes.Equal(p, m.Payload) {
				t.Fatalf("messagePayload = %q, %v; decodeMessage %q", p, err, m.Payload)
			}
		}
		messagePayload(b)
		if id, created, err := decodeDedup(b); err == nil {
			if id2, c2, err := decodeDedup(appendDedup(nil, id, created)); err != nil || id2 != id || c2 != created {
				t.Fatalf("dedup re-encode: %d %d -> %d %d, %v", id, created, id2, c2, err)
			}
		}
		decodeMsgTimes(b)
		var s Session
		if decodeSession(b, &s) == nil {
			var s2 Session
			if err := decodeSession(appendSession(nil, &s), &s2); err != nil || !reflect.DeepEqual(s, s2) {
				t.Fatalf("session re-encode: %+v -> %+v, %v", s, s2, err)
			}
		}
	})
}

func BenchmarkEncodeMessage(b *testing.B) {
	m := &Message{ID: 1, Topic: "cim/u/alice", Payload: make([]byte, 64), QoS: 1, From: "bob", Created: 1700000000000}
	b.Run("hand", func(b *testing.B) {
		b.ReportAllocs()
		var buf []byte
		for b.Loop() {
			buf = appendMessage(buf[:0], m)
		}
	})
	b.Run("library", func(b *testing.B) {
		b.ReportAllocs()
		var buf bytes.Buffer
		enc := msgpack.NewEncoder(&buf)
		enc.UseCompactInts(true)
		for b.Loop() {
			buf.Reset()
			enc.Encode(m)
		}
	})
}
