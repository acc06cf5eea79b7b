package cluster

import (
	"encoding/binary"
	"unsafe"
)

// mpReader reads the msgpack forms of a frame body by index, with no
// decoder state: the link's reader decodes every forwarded publish with
// it. With vmihailenco/msgpack's Decoder a 64-byte publish frame took
// ~400 ns (BenchmarkFrameDecodePublish64; now ~160) and the receiving
// node's one reader spent half its time there. It reads what
// that library writes and accepts: any integer width, nil for a zero
// value, str and bin alike. Strings and byte slices alias b.
//
// A read past the end or of a wrong form sets bad and returns a zero
// value; the caller checks bad once, at the end.
type mpReader struct {
	b   []byte
	i   int
	bad bool
}

func (r *mpReader) code() byte {
	if r.i >= len(r.b) {
		r.bad = true
		return 0xc1 // never used by msgpack: every reader fails on it
	}
	c := r.b[r.i]
	r.i++
	return c
}

// be reads an n-byte big-endian integer.
func (r *mpReader) be(n int) uint64 {
	if len(r.b)-r.i < n {
		r.bad = true
		return 0
	}
	p := r.b[r.i : r.i+n]
	r.i += n
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

// arrayLen reads an array header.
func (r *mpReader) arrayLen() int {
	switch c := r.code(); {
	case c&0xf0 == 0x90:
		return int(c & 0x0f)
	case c == 0xdc:
		return int(r.be(2))
	case c == 0xdd:
		return int(r.be(4))
	}
	r.bad = true
	return 0
}

// int reads any integer form (or nil, 0) as an int64.
func (r *mpReader) int() int64 {
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
			r.bad = true
		}
		return int64(v)
	case c >= 0xd0 && c <= 0xd3:
		n := 1 << (c - 0xd0)
		v := r.be(n)
		shift := 64 - 8*n
		return int64(v<<shift) >> shift // sign-extend
	}
	r.bad = true
	return 0
}

// uint reads an unsigned integer: any integer form with a value ≥ 0.
func (r *mpReader) uint() uint64 {
	if r.i < len(r.b) {
		if c := r.b[r.i]; c <= 0x7f { // the common case, inline
			r.i++
			return uint64(c)
		}
		if r.b[r.i] == 0xcf {
			r.i++
			return r.be(8)
		}
	}
	v := r.int()
	if v < 0 {
		r.bad = true
		return 0
	}
	return uint64(v)
}

func (r *mpReader) bool() bool {
	switch r.code() {
	case 0xc3:
		return true
	case 0xc2, 0xc0:
		return false
	}
	r.bad = true
	return false
}

// raw reads a str or bin: nil for nil or empty, else a slice of b.
func (r *mpReader) raw() []byte {
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
		r.bad = true
		return nil
	}
	if n > len(r.b)-r.i {
		r.bad = true
		return nil
	}
	if n == 0 {
		return nil
	}
	p := r.b[r.i : r.i+n : r.i+n]
	r.i += n
	return p
}

// str is raw as a string, aliasing b.
func (r *mpReader) str() string {
	p := r.raw()
	return unsafe.String(unsafe.SliceData(p), len(p))
}
