package mqtt

import (
	"bytes"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/mochi-mqtt/server/v2/packets"
)

// validString is utf8.Valid without U+0000, at every length and position
// the word-at-a-time loop can meet a bad byte.
func TestValidString(t *testing.T) {
	ref := func(b []byte) bool { return utf8.Valid(b) && bytes.IndexByte(b, 0) < 0 }
	bad := [][]byte{{0}, {0xff}, {0xc3, 0x28}, {0xed, 0xa0, 0x80}, {0xed, 0xbf, 0xbf}, {0xf4, 0x90, 0x80, 0x80}, {0xc0, 0x80}}
	good := [][]byte{{'a'}, []byte("é"), []byte("日本"), []byte("\U0001F600"), {0x7f}, {0xef, 0xbb, 0xbf}}
	for n := range 20 {
		for at := 0; at <= n; at++ {
			for _, ins := range append(bad, good...) {
				b := []byte(strings.Repeat("x", at) + string(ins) + strings.Repeat("y", n-at))
				if got, want := validString(b), ref(b); got != want {
					t.Fatalf("validString(% x) = %v, want %v", b, got, want)
				}
			}
		}
	}
	for _, b := range bad[:5] {
		if validString(b) {
			t.Errorf("validString(% x): surrogates, U+0000 and ill-formed UTF-8 must be refused", b)
		}
	}
}

func FuzzValidString(f *testing.F) {
	f.Add([]byte("sensors/42/temp"))
	f.Add([]byte("a/\xed\xa0\x80/b"))
	f.Add([]byte("12345678\x00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if got, want := validString(b), utf8.Valid(b) && bytes.IndexByte(b, 0) < 0; got != want {
			t.Fatalf("validString(% x) = %v, want %v", b, got, want)
		}
	})
}

// The property table agrees with the codec's on which property may appear
// in which packet (both follow v5 §2.2.2.2): a block holding one property
// with a valid value is accepted by checkProps exactly when the codec
// accepts it.
func TestPropRulesMatchCodec(t *testing.T) {
	value := map[propForm][]byte{
		formByte: {1}, formU16: {0, 1}, formU32: {0, 0, 0, 1}, formVBI: {1},
		formString: {0, 1, 'a'}, formBinary: {0, 1, 'a'}, formPair: {0, 1, 'a', 0, 1, 'b'},
	}
	kinds := []byte{kindWill}
	for k := byte(1); k <= 15; k++ {
		kinds = append(kinds, k)
	}
	checked := 0
	for id := range 256 {
		if id >= len(propRules) || propRules[id].form == 0 {
			continue
		}
		var block []byte
		if id == int(packets.PropAuthenticationData) {
			block = append(block, packets.PropAuthenticationMethod, 0, 1, 'm') // data needs a method
		}
		block = append(append(block, byte(id)), value[propRules[id].form]...)
		raw := append([]byte{byte(len(block))}, block...)
		for _, k := range kinds {
			codecKind := k
			if k == kindWill {
				codecKind = packets.WillProperties
			}
			var p packets.Properties
			_, codecErr := p.Decode(codecKind, bytes.NewBuffer(raw))
			_, ourErr := checkProps(raw, k)
			if (codecErr == nil) != (ourErr == nil) {
				t.Errorf("property %#x in kind %d: codec %v, checkProps %v", id, k, codecErr, ourErr)
			}
			checked++
		}
	}
	if checked < 27*16 {
		t.Fatalf("checked %d combinations", checked)
	}
}

// Every identifier without a rule is refused in every kind.
func TestUnknownPropertiesRefused(t *testing.T) {
	for id := range 256 {
		if id < len(propRules) && propRules[id].form != 0 {
			continue
		}
		for k := byte(0); k <= 15; k++ {
			raw := []byte{2, byte(id), 0}
			if _, err := checkProps(raw, k); err != ErrPropertyNotAllowed {
				t.Fatalf("identifier %#x in kind %d: %v", id, k, err)
			}
		}
	}
}
