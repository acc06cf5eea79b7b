package storage

import (
	"bytes"
	"math"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"

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
	}
}

func randSession(r *rand.Rand) *Session {
	s := &Session{
		ClientID: randStr(r), Protocol: byte(r.IntN(3)), Version: byte(pick(r, testUint)),
		ExpiryInterval: uint32(pick(r, testUint)), DisconnectedAt: pick(r, testInt), Node: randStr(r),
		NextSeq: pick(r, testUint),
	}
	for range pick(r, []int{0, 1, 2, 15, 16, 17}) {
		s.Subs = append(s.Subs, Sub{Filter: randStr(r), QoS: byte(r.IntN(3)), NoLocal: r.IntN(2) == 1,
			RetainAsPublished: r.IntN(2) == 1, RetainHandling: byte(r.IntN(3)), ID: uint32(pick(r, testUint))})
	}
	return s
}

// TestEncodersMatchTags: what the hand-written encoders produce decodes,
// with the msgpack library and the struct tags, to the record encoded; and
// it is no larger than the library's own (compact) encoding.
func TestEncodersMatchTags(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	lib := func(v any) []byte {
		var buf bytes.Buffer
		enc := msgpack.NewEncoder(&buf)
		enc.UseCompactInts(true)
		if err := enc.Encode(v); err != nil {
			t.Fatal(err)
		}
		return buf.Bytes()
	}
	check := func(name string, in any, ours []byte, out any) {
		t.Helper()
		if err := msgpack.Unmarshal(ours, out); err != nil {
			t.Fatalf("%s: decode: %v", name, err)
		}
		if !reflect.DeepEqual(in, out) {
			t.Fatalf("%s round trip:\n in %+v\nout %+v", name, in, out)
		}
		if theirs := lib(in); len(ours) > len(theirs) {
			t.Fatalf("%s: %d bytes, library %d", name, len(ours), len(theirs))
		}
	}
	for range 150 {
		m := randMessage(r)
		check("Message", m, appendMessage(nil, m), new(Message))
		s := randSession(r)
		if len(s.Subs) == 0 {
			s.Subs = nil
		}
		check("Session", s, appendSession(nil, s), new(Session))
	}
	check("zero Message", &Message{}, appendMessage(nil, &Message{}), new(Message))
	check("zero Session", &Session{}, appendSession(nil, &Session{}), new(Session))
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
