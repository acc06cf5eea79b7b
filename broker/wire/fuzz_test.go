package wire

import (
	"bytes"
	"errors"
	"testing"
)

// fuzzMax is the frame limit of the fuzz target: small, so oversized frames
// are common.
const fuzzMax = 4096

// decodeAll decodes a stream as a server would: frame by frame, skipping
// unknown frame types, stopping at the first other error. It returns each
// frame re-encoded (or the error's code) and checks the invariants every
// Decode call must keep, and that SkimDeliver reads a deliver as Decode.
func decodeAll(t *testing.T, stream []byte) []string {
	t.Helper()
	var out []string
	var f Frame
	for len(stream) > 0 {
		r, n, stop := decodeOne(t, stream, &f)
		if r == "" { // incomplete
			return append(out, "incomplete")
		}
		out = append(out, r)
		if stop {
			return out
		}
		stream = stream[n:]
	}
	return out
}

func decodeOne(t *testing.T, buf []byte, f *Frame) (result string, n int, stop bool) {
	t.Helper()
	n, err := Decode(buf, f, fuzzMax)
	if n < 0 || n > len(buf) || n > fuzzMax {
		t.Fatalf("Decode consumed %d of %d bytes", n, len(buf))
	}
	switch {
	case errors.Is(err, ErrIncomplete):
		if n != 0 {
			t.Fatalf("incomplete but consumed %d", n)
		}
		return "", 0, true
	case err != nil:
		c := CodeOf(err)
		switch c {
		case CodeUnknownFrame:
			if n == 0 {
				t.Fatalf("unknown frame type consumed nothing")
			}
			return "unknown", n, false
		case CodeMalformed, CodeFrameTooLarge:
			if c == CodeFrameTooLarge && n != 0 {
				t.Fatalf("frame too large consumed %d", n)
			}
			return c.String(), n, true
		}
		t.Fatalf("error %v carries code %d", err, c)
	}
	if n < 2 {
		t.Fatalf("decoded a frame from %d bytes", n)
	}
	if id, qos, body, ok := SkimDeliver(buf[:n]); ok != (f.Type == TypeDeliver) ||
		ok && (id != f.Deliver.MsgID || qos != f.Deliver.QoS || !bytes.Equal(body, f.Deliver.Body)) {
		t.Fatalf("SkimDeliver = %d, %d, %x, %v; Decode: %v %+v", id, qos, body, ok, f.Type, f.Body())
	}
	// What decoded encodes, and that encoding decodes to the same thing.
	enc, err := Append(nil, f.Body())
	if err != nil {
		t.Fatalf("re-encoding a decoded %v: %v", f.Type, err)
	}
	var g Frame
	if m, err := Decode(enc, &g, 0); err != nil || m != len(enc) {
		t.Fatalf("decoding a re-encoded %v: %d, %v", f.Type, m, err)
	}
	again, _ := Append(nil, g.Body())
	if !bytes.Equal(again, enc) {
		t.Fatalf("%v does not survive a round trip:\n% x\n% x", f.Type, enc, again)
	}
	return string(enc), n, false
}

// FuzzDecode feeds a stream whole and in chunks (sizes from the seed) and
// requires the same frames from both, like a socket that delivers a frame
// in pieces.
func FuzzDecode(f *testing.F) {
	var all []byte
	for _, g := range goldens {
		f.Add(g.raw, uint64(0))
		f.Add(g.raw, uint64(0x0102030405060708))
		all = append(all, g.raw...)
	}
	f.Add(all, uint64(0x1f1e1d1c1b1a1918))
	f.Add(append(frame(0x33, 0x80), goldens[5].raw...), uint64(3))
	f.Add([]byte{0xff, 0xff, 0xff}, uint64(1))
	f.Add(frame(TypeSend, 0x81, 0xa1, 'a', 0xdd, 0xff, 0xff, 0xff, 0xff), uint64(7))
	f.Fuzz(func(t *testing.T, stream []byte, chunks uint64) {
		want := decodeAll(t, stream)

		var got []string
		var buf []byte
		var fr Frame
		rest := stream
		done := false
		for !done && len(rest) > 0 {
			size := int(chunks&0x0f) + 1
			chunks = chunks>>4 | chunks<<60
			if size > len(rest) {
				size = len(rest)
			}
			buf = append(buf, rest[:size]...)
			rest = rest[size:]
			for len(buf) > 0 {
				r, n, stop := decodeOne(t, buf, &fr)
				if r == "" {
					break
				}
				got = append(got, r)
				if stop {
					done = true
					break
				}
				buf = buf[n:]
			}
		}
		if !done && len(buf) > 0 {
			got = append(got, "incomplete")
		}
		if len(got) != len(want) {
			t.Fatalf("chunked: %d results, whole: %d", len(got), len(want))
		}
		for i := range got {
			if got[i] != want[i] {
				t.Fatalf("result %d differs: chunked %q, whole %q", i, got[i], want[i])
			}
		}
	})
}
