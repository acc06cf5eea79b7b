package broker

import (
	"reflect"
	"strings"
	"testing"

	"github.com/vmihailenco/msgpack/v5"
)

func envelopeCases() []fwdEnvelope {
	long := strings.Repeat("x", 300)
	return []fwdEnvelope{
		{Version: 1},
		{Version: 1, Props: []byte{1, 2, 3}, SenderID: 1 << 40, SenderName: "ann", Plain: true},
		{Version: 1, Shares: []string{"$share/g/a/#"}, Relay: []string{"\x01x"}, To: []string{"n1", "n2"}},
		{Version: 1, Props: make([]byte, 70000), SenderName: long, To: make([]string, 20), SenderID: 200},
	}
}

// The hand-written envelope codec writes what the msgpack library reads
// and reads what it writes.
func TestEnvelopeCodec(t *testing.T) {
	for i, e := range envelopeCases() {
		b := appendEnvelope(nil, &e)
		var lib fwdEnvelope
		if err := msgpack.Unmarshal(b, &lib); err != nil {
			t.Fatalf("%d: the library cannot read it: %v", i, err)
		}
		var got fwdEnvelope
		if err := decodeEnvelope(b, &got); err != nil {
			t.Fatalf("%d: %v", i, err)
		}
		libB, _ := msgpack.Marshal(&e)
		var fromLib fwdEnvelope
		if err := decodeEnvelope(libB, &fromLib); err != nil {
			t.Fatalf("%d: cannot read the library's: %v", i, err)
		}
		for _, x := range []*fwdEnvelope{&lib, &got, &fromLib} {
			norm(x)
		}
		want := e
		norm(&want)
		if !reflect.DeepEqual(got, want) || !reflect.DeepEqual(lib, want) || !reflect.DeepEqual(fromLib, want) {
			t.Fatalf("%d: round trip\n got %+v\n lib %+v\nwant %+v", i, got, lib, want)
		}
		for cut := 0; cut < len(b); cut++ { // every truncation is an error, never a panic
			var x fwdEnvelope
			if err := decodeEnvelope(b[:cut], &x); err == nil && cut < len(b) {
				t.Fatalf("%d: truncated at %d of %d decoded", i, cut, len(b))
			}
		}
	}
}

// norm makes empty and nil slices equal.
func norm(e *fwdEnvelope) {
	e.toList()
	e.toRaw = nil
	if len(e.Props) == 0 {
		e.Props = nil
	}
	for _, p := range []*[]string{&e.Shares, &e.Relay, &e.To} {
		if len(*p) == 0 {
			*p = nil
		}
	}
}

func FuzzEnvelope(f *testing.F) {
	for _, e := range envelopeCases() {
		f.Add(appendEnvelope(nil, &e))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var e fwdEnvelope
		if decodeEnvelope(b, &e) != nil {
			return
		}
		again := appendEnvelope(nil, &e)
		var e2 fwdEnvelope
		if err := decodeEnvelope(again, &e2); err != nil {
			t.Fatalf("re-encoded envelope does not decode: %v", err)
		}
		norm(&e)
		norm(&e2)
		if !reflect.DeepEqual(e, e2) {
			t.Fatalf("round trip: %+v != %+v", e, e2)
		}
	})
}

func BenchmarkEnvelope(b *testing.B) {
	e := fwdEnvelope{Version: 1, Props: []byte("props"), SenderName: "ann", To: []string{"n2", "n3"}, Plain: true}
	buf := make([]byte, 0, 128)
	b.ReportAllocs()
	for b.Loop() {
		buf = appendEnvelope(buf[:0], &e)
		var d fwdEnvelope
		if err := decodeEnvelope(buf, &d); err != nil {
			b.Fatal(err)
		}
	}
}
