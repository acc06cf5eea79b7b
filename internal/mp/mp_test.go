package mp

import (
	"bytes"
	"math"
	"testing"

	"github.com/vmihailenco/msgpack/v5"
)

var (
	uints = []uint64{0, 1, 0x7f, 0x80, 0xff, 0x100, 0xffff, 0x10000, 0xffffffff, 0x100000000, math.MaxInt64, math.MaxUint64}
	ints  = []int64{0, 1, -1, -32, -33, -128, -129, -32768, -32769, math.MinInt32, math.MinInt32 - 1, math.MinInt64, math.MaxInt64}
	lens  = []int{0, 1, 31, 32, 0xff, 0x100, 0xffff, 0x10000}
)

// library writes what enc does with vmihailenco/msgpack's encoder.
func library(t *testing.T, enc func(*msgpack.Encoder) error) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := enc(msgpack.NewEncoder(&buf)); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// Every form is byte for byte the library's, and its Len is its size.
func TestAppendMatchesLibrary(t *testing.T) {
	for _, v := range uints {
		want := library(t, func(e *msgpack.Encoder) error { return e.EncodeUint(v) })
		if got := AppendUint(nil, v); !bytes.Equal(got, want) || UintLen(v) != len(want) {
			t.Errorf("uint %d: % x (len %d), want % x", v, got, UintLen(v), want)
		}
	}
	for _, v := range ints {
		want := library(t, func(e *msgpack.Encoder) error { return e.EncodeInt(v) })
		if got := AppendInt(nil, v); !bytes.Equal(got, want) || IntLen(v) != len(want) {
			t.Errorf("int %d: % x (len %d), want % x", v, got, IntLen(v), want)
		}
	}
	for _, n := range lens {
		s := string(bytes.Repeat([]byte{'s'}, n))
		want := library(t, func(e *msgpack.Encoder) error { return e.EncodeString(s) })
		if got := AppendStr(nil, s); !bytes.Equal(got, want) || StrLen(n) != len(want) {
			t.Errorf("str of %d: % x… (len %d), want % x…", n, got[:min(len(got), 5)], StrLen(n), want[:min(len(want), 5)])
		}
		p := make([]byte, n)
		want = library(t, func(e *msgpack.Encoder) error { return e.EncodeBytes(p) })
		if got := AppendBin(nil, p); !bytes.Equal(got, want) || BinLen(p) != len(want) {
			t.Errorf("bin of %d: % x… (len %d), want % x…", n, got[:min(len(got), 5)], BinLen(p), want[:min(len(want), 5)])
		}
	}
	if got := AppendBin(nil, nil); !bytes.Equal(got, []byte{0xc0}) || BinLen(nil) != 1 {
		t.Errorf("nil bin: % x", got)
	}
	for _, ss := range [][]string{nil, {}, {"a"}, make([]string, 16), make([]string, 0x10000)} {
		want := library(t, func(e *msgpack.Encoder) error { return e.Encode(ss) })
		if got := AppendStrs(nil, ss); !bytes.Equal(got, want) {
			t.Errorf("strs of %d: % x…, want % x…", len(ss), got[:min(len(got), 5)], want[:min(len(want), 5)])
		}
	}
	for _, v := range []bool{false, true} {
		want := library(t, func(e *msgpack.Encoder) error { return e.EncodeBool(v) })
		if got := AppendBool(nil, v); !bytes.Equal(got, want) {
			t.Errorf("bool %v: % x, want % x", v, got, want)
		}
	}
}

// The reader takes every width the library may write, not only the
// compact ones, and nil as zero.
func TestReaderReadsLibraryForms(t *testing.T) {
	for _, v := range uints {
		for _, enc := range []func(*msgpack.Encoder) error{
			func(e *msgpack.Encoder) error { return e.EncodeUint(v) },
			func(e *msgpack.Encoder) error { return e.EncodeUint64(v) },
		} {
			b := library(t, enc)
			r := Reader{B: b}
			if got := r.Uint(); got != v || r.Bad || r.I != len(b) {
				t.Errorf("Uint of % x: %d bad=%v at %d", b, got, r.Bad, r.I)
			}
		}
	}
	for _, v := range ints {
		for _, enc := range []func(*msgpack.Encoder) error{
			func(e *msgpack.Encoder) error { return e.EncodeInt(v) },
			func(e *msgpack.Encoder) error { return e.EncodeInt64(v) },
		} {
			b := library(t, enc)
			r := Reader{B: b}
			if got := r.Int(); got != v || r.Bad || r.I != len(b) {
				t.Errorf("Int of % x: %d bad=%v", b, got, r.Bad)
			}
		}
	}
	for _, n := range lens {
		s := string(bytes.Repeat([]byte{'x'}, n))
		for _, b := range [][]byte{AppendStr(nil, s), AppendBin(nil, []byte(s))} {
			r := Reader{B: b}
			if got := r.Str(); got != s || r.Bad || r.I != len(b) {
				t.Errorf("Str of a %d-byte form % x…: %d bytes, bad=%v", n, b[:min(len(b), 5)], len(got), r.Bad)
			}
		}
	}
	ss := []string{"a", "", "ccc"}
	b := AppendStrs(nil, ss)
	r := Reader{B: b}
	if got := r.Strs(); len(got) != 3 || got[0] != "a" || got[1] != "" || got[2] != "ccc" || r.Bad {
		t.Errorf("Strs: %q bad=%v", got, r.Bad)
	}
	r = Reader{B: b}
	if raw := r.SkipStrs(); !bytes.Equal(raw, b) || r.Bad {
		t.Errorf("SkipStrs: % x, want % x", raw, b)
	}
	r = Reader{B: []byte{0xc0, 0xc0, 0xc0, 0xc0, 0xc0, 0xc0}}
	if r.Uint() != 0 || r.Int() != 0 || r.Bool() || r.Raw() != nil || r.Strs() != nil || r.ArrayLen() != 0 || r.Bad {
		t.Error("nil is not read as zero")
	}
}

// Every cut of a valid form, and every wrong form, sets Bad.
func TestReaderBadInput(t *testing.T) {
	forms := map[string]struct {
		b    []byte
		read func(*Reader)
	}{
		"uint":  {AppendUint(nil, math.MaxUint64), func(r *Reader) { r.Uint() }},
		"int":   {AppendInt(nil, math.MinInt64), func(r *Reader) { r.Int() }},
		"str":   {AppendStr(nil, "hello, world"), func(r *Reader) { r.Str() }},
		"bin":   {AppendBin(nil, make([]byte, 300)), func(r *Reader) { r.Raw() }},
		"strs":  {AppendStrs(nil, []string{"a", "bb"}), func(r *Reader) { r.Strs() }},
		"skip":  {AppendStrs(nil, []string{"a", "bb"}), func(r *Reader) { r.SkipStrs() }},
		"array": {AppendArrayLen(nil, 0x10000), func(r *Reader) { r.ArrayLen() }},
		"bool":  {AppendBool(nil, true), func(r *Reader) { r.Bool() }},
	}
	for name, f := range forms {
		for cut := range len(f.b) {
			r := Reader{B: f.b[:cut]}
			f.read(&r)
			if !r.Bad {
				t.Errorf("%s cut to %d of %d bytes: not Bad", name, cut, len(f.b))
			}
		}
	}
	wrong := []struct {
		name string
		b    []byte
		read func(*Reader)
	}{
		{"negative as uint", AppendInt(nil, -1), func(r *Reader) { r.Uint() }},
		{"uint64 over int64 as int", AppendUint(nil, math.MaxUint64), func(r *Reader) { r.Int() }},
		{"str as uint", AppendStr(nil, "1"), func(r *Reader) { r.Uint() }},
		{"int as str", AppendUint(nil, 1), func(r *Reader) { r.Raw() }},
		{"int as bool", AppendUint(nil, 1), func(r *Reader) { r.Bool() }},
		{"map as array", []byte{0x80}, func(r *Reader) { r.ArrayLen() }},
		{"array longer than the input", []byte{0xdd, 0xff, 0xff, 0xff, 0xff}, func(r *Reader) { r.Strs() }},
		{"never-used code", []byte{0xc1}, func(r *Reader) { r.Int() }},
	}
	for _, w := range wrong {
		r := Reader{B: w.b}
		w.read(&r)
		if !r.Bad {
			t.Errorf("%s: not Bad", w.name)
		}
	}
}
