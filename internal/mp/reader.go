package mp

import (
	"encoding/binary"
	"unsafe"
)

// Reader reads msgpack forms from B at I, with no decoder state. It reads
// what vmihailenco/msgpack writes and accepts: any integer width, nil for
// a zero value, str and bin alike. Strings and byte slices alias B, which
// must not change while they are in use.
//
// A read past the end or of a wrong form sets Bad and returns a zero
// value; the caller checks Bad once, at the end.
type Reader struct {
	B   []byte
	I   int
	Bad bool
}

func (r *Reader) code() byte {
	if r.I >= len(r.B) {
		r.Bad = true
		return 0xc1 // never used by msgpack: every reader fails on it
	}
	c := r.B[r.I]
	r.I++
	return c
}

// be reads an n-byte big-endian integer.
func (r *Reader) be(n int) uint64 {
	if len(r.B)-r.I < n {
		r.Bad = true
		return 0
	}
	p := r.B[r.I : r.I+n]
	r.I += n
	switch n {
	case 1:
		return uint64(p[0])
	case 2:
		return uint64(binary.BigEndian.Uint16(p))
	case 4:
		return uint64(binary.BigEndian.Uint32(p))
	}
	return binary.BigEndian.Uint64(p)
}

// ArrayLen reads an array header (nil: 0).
func (r *Reader) ArrayLen() int {
	switch c := r.code(); {
	case c&0xf0 == 0x90:
		return int(c & 0x0f)
	case c == 0xdc:
		return int(r.be(2))
	case c == 0xdd:
		return int(r.be(4))
	case c == 0xc0:
		return 0
	}
	r.Bad = true
	return 0
}

// Int reads any integer form (or nil, 0) as an int64.
func (r *Reader) Int() int64 {
	c := r.code()
	switch {
	case c <= 0x7f:
		return int64(c)
	case c >= 0xe0:
		return int64(int8(c))
	case c == 0xc0:
		return 0
	case c >= 0xcc && c <= 0xcf:
		v := r.be(1 << (c - 0xcc))
		if c == 0xcf && v > 1<<63-1 {
			r.Bad = true
		}
		return int64(v)
	case c >= 0xd0 && c <= 0xd3:
		n := 1 << (c - 0xd0)
		v := r.be(n)
		shift := 64 - 8*n
		return int64(v<<shift) >> shift // sign-extend
	}
	r.Bad = true
	return 0
}

// Uint reads an unsigned integer: any integer form with a value ≥ 0.
func (r *Reader) Uint() uint64 {
	if r.I < len(r.B) {
		if c := r.B[r.I]; c <= 0x7f { // the common case, inline
			r.I++
			return uint64(c)
		}
		if r.B[r.I] == 0xcf {
			r.I++
			return r.be(8)
		}
	}
	v := r.Int()
	if v < 0 {
		r.Bad = true
		return 0
	}
	return uint64(v)
}

// Bool reads a bool (nil: false).
func (r *Reader) Bool() bool {
	switch r.code() {
	case 0xc3:
		return true
	case 0xc2, 0xc0:
		return false
	}
	r.Bad = true
	return false
}

// Raw reads a str or bin: nil for nil or empty, else a slice of B.
func (r *Reader) Raw() []byte {
	var n int
	switch c := r.code(); {
	case c&0xe0 == 0xa0:
		n = int(c & 0x1f)
	case c == 0xc0:
		return nil
	case c == 0xc4 || c == 0xd9:
		n = int(r.be(1))
	case c == 0xc5 || c == 0xda:
		n = int(r.be(2))
	case c == 0xc6 || c == 0xdb:
		n = int(r.be(4))
	default:
		r.Bad = true
		return nil
	}
	if n > len(r.B)-r.I {
		r.Bad = true
		return nil
	}
	if n == 0 {
		return nil
	}
	p := r.B[r.I : r.I+n : r.I+n]
	r.I += n
	return p
}

// Str is Raw as a string, aliasing B.
func (r *Reader) Str() string {
	p := r.Raw()
	return unsafe.String(unsafe.SliceData(p), len(p))
}

// Strs reads an array of str (nil or empty: nil), aliasing B.
func (r *Reader) Strs() []string {
	n := r.ArrayLen()
	if n > len(r.B)-r.I { // each takes at least a byte
		r.Bad = true
		return nil
	}
	if n == 0 {
		return nil
	}
	out := make([]string, n)
	for i := range out {
		out[i] = r.Str()
	}
	return out
}

// SkipStrs passes over an array of str and returns its bytes (nil if
// Bad).
func (r *Reader) SkipStrs() []byte {
	start := r.I
	n := r.ArrayLen()
	if n > len(r.B)-r.I {
		r.Bad = true
		return nil
	}
	for range n {
		r.Raw()
	}
	if r.Bad {
		return nil
	}
	return r.B[start:r.I:r.I]
}
