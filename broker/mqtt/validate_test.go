package mqtt

import (
	"bytes"
	"strings"
	"testing"
	"unicode/utf8"
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
