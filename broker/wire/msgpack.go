package wire

import (
	"encoding/binary"
	"errors"
	"math"
	"unicode/utf8"
	"unsafe"
)

// The msgpack primitives of the hand-written codecs (hot.go) and the
// validating scanner every frame body passes before the msgpack library
// sees it. Readers take the buffer and a position and return the new
// position; they never read past the buffer and never allocate.

// maxDepth bounds how deeply arrays and maps may nest in a frame body, so a
// hostile frame cannot exhaust the stack of the scanner or the library.
const maxDepth = 16

var (
	errShort    = errors.New("value runs past the end of the frame")
	errType     = errors.New("value of the wrong type")
	errUTF8     = errors.New("string is not valid UTF-8")
	errDepth    = errors.New("values nested too deeply")
	errKey      = errors.New("map key is not a string")
	errNotMap   = errors.New("frame body is not a map")
	errTrailing = errors.New("bytes after the frame body's value")
	errReserved = errors.New("reserved msgpack code 0xc1")
	errNegative = errors.New("negative number for an unsigned field")
)

// scan validates the one msgpack value at b[p:] and returns the position
// after it: every length fits in b, strings are UTF-8, map keys are
// strings, nesting stays under maxDepth.
func scan(b []byte, p, depth int) (int, error) {
	if p >= len(b) {
		return p, errShort
	}
	c := b[p]
	p++
	var n, elems int // n: bytes of payload to skip; elems: values that follow
	str, isMap := false, false
	switch {
	case c <= 0x7f || c >= 0xe0: // positive / negative fixint
		return p, nil
	case c <= 0x8f:
		elems, isMap = int(c&0x0f), true
	case c <= 0x9f:
		elems = int(c & 0x0f)
	case c <= 0xbf:
		n, str = int(c&0x1f), true
	default:
		switch c {
		case 0xc0, 0xc2, 0xc3: // nil, false, true
			return p, nil
		case 0xc1:
			return p, errReserved
		case 0xc4, 0xd9: // bin 8, str 8
			if p+1 > len(b) {
				return p, errShort
			}
			n, str, p = int(b[p]), c == 0xd9, p+1
		case 0xc5, 0xda:
			if p+2 > len(b) {
				return p, errShort
			}
			n, str, p = int(binary.BigEndian.Uint16(b[p:])), c == 0xda, p+2
		case 0xc6, 0xdb:
			if p+4 > len(b) {
				return p, errShort
			}
			n, str, p = int(binary.BigEndian.Uint32(b[p:])), c == 0xdb, p+4
		case 0xc7, 0xc8, 0xc9: // ext 8/16/32: length, type byte, data
			w := 1 << (c - 0xc7)
			if p+w > len(b) {
				return p, errShort
			}
			switch w {
			case 1:
				n = int(b[p])
			case 2:
				n = int(binary.BigEndian.Uint16(b[p:]))
			default:
				n = int(binary.BigEndian.Uint32(b[p:]))
			}
			p += w
			n++ // the ext type byte
		case 0xca, 0xce, 0xd2: // float 32, uint 32, int 32
			n = 4
		case 0xcb, 0xcf, 0xd3:
			n = 8
		case 0xcc, 0xd0:
			n = 1
		case 0xcd, 0xd1:
			n = 2
		case 0xd4, 0xd5, 0xd6, 0xd7, 0xd8: // fixext 1..16 plus the type byte
			n = 1<<(c-0xd4) + 1
		case 0xdc, 0xde: // array 16, map 16
			if p+2 > len(b) {
				return p, errShort
			}
			elems, isMap, p = int(binary.BigEndian.Uint16(b[p:])), c == 0xde, p+2
		case 0xdd, 0xdf:
			if p+4 > len(b) {
				return p, errShort
			}
			elems, isMap, p = int(binary.BigEndian.Uint32(b[p:])), c == 0xdf, p+4
		}
	}
	if n > 0 || str {
		if n > len(b)-p {
			return p, errShort
		}
		if str && !utf8.Valid(b[p:p+n]) {
			return p, errUTF8
		}
		return p + n, nil
	}
	if elems == 0 {
		return p, nil
	}
	if depth >= maxDepth {
		return p, errDepth
	}
	// Every element takes at least one byte: refuse a count the buffer
	// cannot hold before looping over it.
	if isMap && elems > (len(b)-p)/2 || elems > len(b)-p {
		return p, errShort
	}
	var err error
	for i := 0; i < elems; i++ {
		if isMap {
			if p >= len(b) {
				return p, errShort
			}
			if k := b[p]; !(k >= 0xa0 && k <= 0xbf || k >= 0xd9 && k <= 0xdb) {
				return p, errKey
			}
			if p, err = scan(b, p, depth+1); err != nil {
				return p, err
			}
		}
		if p, err = scan(b, p, depth+1); err != nil {
			return p, err
		}
	}
	return p, nil
}

// readMapLen reads a map header (nil counts as an empty map).
func readMapLen(b []byte, p int) (int, int, error) {
	if p >= len(b) {
		return 0, p, errShort
	}
	c := b[p]
	switch {
	case c >= 0x80 && c <= 0x8f:
		return int(c & 0x0f), p + 1, nil
	case c == 0xc0:
		return 0, p + 1, nil
	case c == 0xde:
		if p+3 > len(b) {
			return 0, p, errShort
		}
		return int(binary.BigEndian.Uint16(b[p+1:])), p + 3, nil
	case c == 0xdf:
		if p+5 > len(b) {
			return 0, p, errShort
		}
		n := binary.BigEndian.Uint32(b[p+1:])
		if uint64(n) > uint64(len(b)) {
			return 0, p, errShort
		}
		return int(n), p + 5, nil
	}
	return 0, p, errNotMap
}

// readArrayLen reads an array header (nil counts as an empty array).
func readArrayLen(b []byte, p int) (int, int, error) {
	if p >= len(b) {
		return 0, p, errShort
	}
	c := b[p]
	switch {
	case c >= 0x90 && c <= 0x9f:
		return int(c & 0x0f), p + 1, nil
	case c == 0xc0:
		return 0, p + 1, nil
	case c == 0xdc:
		if p+3 > len(b) {
			return 0, p, errShort
		}
		return int(binary.BigEndian.Uint16(b[p+1:])), p + 3, nil
	case c == 0xdd:
		if p+5 > len(b) {
			return 0, p, errShort
		}
		n := binary.BigEndian.Uint32(b[p+1:])
		if uint64(n) > uint64(len(b)) {
			return 0, p, errShort
		}
		return int(n), p + 5, nil
	}
	return 0, p, errType
}

// readBytes reads a str or bin (nil: empty) and returns it aliasing b.
func readBytes(b []byte, p int) ([]byte, int, bool, error) {
	if p >= len(b) {
		return nil, p, false, errShort
	}
	c := b[p]
	p++
	var n int
	str := false
	switch {
	case c >= 0xa0 && c <= 0xbf:
		n, str = int(c&0x1f), true
	case c == 0xc0:
		return nil, p, false, nil
	case c == 0xc4 || c == 0xd9:
		if p+1 > len(b) {
			return nil, p, false, errShort
		}
		n, str, p = int(b[p]), c == 0xd9, p+1
	case c == 0xc5 || c == 0xda:
		if p+2 > len(b) {
			return nil, p, false, errShort
		}
		n, str, p = int(binary.BigEndian.Uint16(b[p:])), c == 0xda, p+2
	case c == 0xc6 || c == 0xdb:
		if p+4 > len(b) {
			return nil, p, false, errShort
		}
		n, str, p = int(binary.BigEndian.Uint32(b[p:])), c == 0xdb, p+4
	default:
		return nil, p - 1, false, errType
	}
	if n > len(b)-p {
		return nil, p, false, errShort
	}
	return b[p : p+n : p+n], p + n, str, nil
}

// readBin reads a bin or str as bytes aliasing b (a str is not checked for
// UTF-8: a body is opaque).
func readBin(b []byte, p int) ([]byte, int, error) {
	v, p, _, err := readBytes(b, p)
	return v, p, err
}

// readStr reads a str (or bin) that must be UTF-8, aliasing b.
func readStr(b []byte, p int) (string, int, error) {
	v, p, _, err := readBytes(b, p)
	if err != nil {
		return "", p, err
	}
	if !utf8.Valid(v) {
		return "", p, errUTF8
	}
	return bytesToString(v), p, nil
}

// readUint reads any msgpack integer that is not negative (nil: 0). The
// small one is read inline (BenchmarkDecode/Deliver).
func readUint(b []byte, p int) (uint64, int, error) {
	if p < len(b) && b[p] <= 0x7f {
		return uint64(b[p]), p + 1, nil
	}
	return readUintAny(b, p)
}

func readUintAny(b []byte, p int) (uint64, int, error) {
	if p >= len(b) {
		return 0, p, errShort
	}
	c := b[p]
	if c <= 0x7f {
		return uint64(c), p + 1, nil
	}
	if c == 0xc0 {
		return 0, p + 1, nil
	}
	if c >= 0xe0 {
		return 0, p, errNegative
	}
	var w int
	signed := false
	switch c {
	case 0xcc:
		w = 1
	case 0xcd:
		w = 2
	case 0xce:
		w = 4
	case 0xcf:
		w = 8
	case 0xd0:
		w, signed = 1, true
	case 0xd1:
		w, signed = 2, true
	case 0xd2:
		w, signed = 4, true
	case 0xd3:
		w, signed = 8, true
	default:
		return 0, p, errType
	}
	if p+1+w > len(b) {
		return 0, p, errShort
	}
	var v uint64
	switch w {
	case 1:
		v = uint64(b[p+1])
		if signed {
			v = uint64(int64(int8(b[p+1])))
		}
	case 2:
		v = uint64(binary.BigEndian.Uint16(b[p+1:]))
		if signed {
			v = uint64(int64(int16(v)))
		}
	case 4:
		v = uint64(binary.BigEndian.Uint32(b[p+1:]))
		if signed {
			v = uint64(int64(int32(v)))
		}
	default:
		v = binary.BigEndian.Uint64(b[p+1:])
	}
	if signed && int64(v) < 0 {
		return 0, p, errNegative
	}
	return v, p + 1 + w, nil
}

// readInt reads any msgpack integer that fits an int64 (nil: 0).
func readInt(b []byte, p int) (int64, int, error) {
	if p < len(b) {
		switch c := b[p]; {
		case c >= 0xe0:
			return int64(int8(c)), p + 1, nil
		case c == 0xd0 && p+2 <= len(b):
			return int64(int8(b[p+1])), p + 2, nil
		case c == 0xd1 && p+3 <= len(b):
			return int64(int16(binary.BigEndian.Uint16(b[p+1:]))), p + 3, nil
		case c == 0xd2 && p+5 <= len(b):
			return int64(int32(binary.BigEndian.Uint32(b[p+1:]))), p + 5, nil
		case c == 0xd3 && p+9 <= len(b):
			return int64(binary.BigEndian.Uint64(b[p+1:])), p + 9, nil
		}
	}
	v, q, err := readUint(b, p)
	if err == nil && v > math.MaxInt64 {
		return 0, p, errType
	}
	return int64(v), q, err
}

// readUintMax reads an unsigned integer no larger than max.
func readUintMax(b []byte, p int, max uint64) (uint64, int, error) {
	v, q, err := readUint(b, p)
	if err == nil && v > max {
		return 0, p, errType
	}
	return v, q, err
}

// readBool reads true, false or nil (false).
func readBool(b []byte, p int) (bool, int, error) {
	if p >= len(b) {
		return false, p, errShort
	}
	switch b[p] {
	case 0xc3:
		return true, p + 1, nil
	case 0xc2, 0xc0:
		return false, p + 1, nil
	}
	return false, p, errType
}

// bytesToString aliases b as a string without copying.
func bytesToString(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

// Writers. Each sizeX says how many bytes appendX adds, so a frame's length
// prefix can be written before its body.

func sizeUint(v uint64) int {
	switch {
	case v <= 0x7f:
		return 1
	case v <= math.MaxUint8:
		return 2
	case v <= math.MaxUint16:
		return 3
	case v <= math.MaxUint32:
		return 5
	}
	return 9
}

func appendUint(b []byte, v uint64) []byte {
	switch {
	case v <= 0x7f:
		return append(b, byte(v))
	case v <= math.MaxUint8:
		return append(b, 0xcc, byte(v))
	case v <= math.MaxUint16:
		return binary.BigEndian.AppendUint16(append(b, 0xcd), uint16(v))
	case v <= math.MaxUint32:
		return binary.BigEndian.AppendUint32(append(b, 0xce), uint32(v))
	}
	return binary.BigEndian.AppendUint64(append(b, 0xcf), v)
}

func sizeInt(v int64) int {
	switch {
	case v >= 0:
		return sizeUint(uint64(v))
	case v >= -32:
		return 1
	case v >= math.MinInt8:
		return 2
	case v >= math.MinInt16:
		return 3
	case v >= math.MinInt32:
		return 5
	}
	return 9
}

func appendInt(b []byte, v int64) []byte {
	switch {
	case v >= 0:
		return appendUint(b, uint64(v))
	case v >= -32:
		return append(b, byte(v))
	case v >= math.MinInt8:
		return append(b, 0xd0, byte(v))
	case v >= math.MinInt16:
		return binary.BigEndian.AppendUint16(append(b, 0xd1), uint16(v))
	case v >= math.MinInt32:
		return binary.BigEndian.AppendUint32(append(b, 0xd2), uint32(v))
	}
	return binary.BigEndian.AppendUint64(append(b, 0xd3), uint64(v))
}

func sizeStr(n int) int {
	switch {
	case n < 32:
		return 1 + n
	case n <= math.MaxUint8:
		return 2 + n
	case n <= math.MaxUint16:
		return 3 + n
	}
	return 5 + n
}

func appendStr(b []byte, s string) []byte {
	switch n := len(s); {
	case n < 32:
		b = append(b, 0xa0|byte(n))
	case n <= math.MaxUint8:
		b = append(b, 0xd9, byte(n))
	case n <= math.MaxUint16:
		b = binary.BigEndian.AppendUint16(append(b, 0xda), uint16(n))
	default:
		b = binary.BigEndian.AppendUint32(append(b, 0xdb), uint32(n))
	}
	return append(b, s...)
}

func sizeBin(n int) int {
	switch {
	case n <= math.MaxUint8:
		return 2 + n
	case n <= math.MaxUint16:
		return 3 + n
	}
	return 5 + n
}

func appendBin(b []byte, p []byte) []byte {
	switch n := len(p); {
	case n <= math.MaxUint8:
		b = append(b, 0xc4, byte(n))
	case n <= math.MaxUint16:
		b = binary.BigEndian.AppendUint16(append(b, 0xc5), uint16(n))
	default:
		b = binary.BigEndian.AppendUint32(append(b, 0xc6), uint32(n))
	}
	return append(b, p...)
}

func sizeLen(n int) int { // array or map header
	switch {
	case n < 16:
		return 1
	case n <= math.MaxUint16:
		return 3
	}
	return 5
}

func appendMapLen(b []byte, n int) []byte {
	switch {
	case n < 16:
		return append(b, 0x80|byte(n))
	case n <= math.MaxUint16:
		return binary.BigEndian.AppendUint16(append(b, 0xde), uint16(n))
	}
	return binary.BigEndian.AppendUint32(append(b, 0xdf), uint32(n))
}

func appendArrayLen(b []byte, n int) []byte {
	switch {
	case n < 16:
		return append(b, 0x90|byte(n))
	case n <= math.MaxUint16:
		return binary.BigEndian.AppendUint16(append(b, 0xdc), uint16(n))
	}
	return binary.BigEndian.AppendUint32(append(b, 0xdd), uint32(n))
}

// Index writers, for a frame whose size is known before it is written: w
// has room for the value at i (the caller sized it with sizeX), and each
// returns the index after what it wrote. One bounds check per field
// instead of a capacity check per append (BenchmarkAppend/ServerDeliver).

func putUint(w []byte, i int, v uint64) int {
	switch {
	case v <= 0x7f:
		w[i] = byte(v)
		return i + 1
	case v <= math.MaxUint8:
		w[i], w[i+1] = 0xcc, byte(v)
		return i + 2
	case v <= math.MaxUint16:
		w[i] = 0xcd
		binary.BigEndian.PutUint16(w[i+1:], uint16(v))
		return i + 3
	case v <= math.MaxUint32:
		w[i] = 0xce
		binary.BigEndian.PutUint32(w[i+1:], uint32(v))
		return i + 5
	}
	w[i] = 0xcf
	binary.BigEndian.PutUint64(w[i+1:], v)
	return i + 9
}

func putInt(w []byte, i int, v int64) int {
	switch {
	case v >= 0:
		return putUint(w, i, uint64(v))
	case v >= -32:
		w[i] = byte(v)
		return i + 1
	case v >= math.MinInt8:
		w[i], w[i+1] = 0xd0, byte(v)
		return i + 2
	case v >= math.MinInt16:
		w[i] = 0xd1
		binary.BigEndian.PutUint16(w[i+1:], uint16(v))
		return i + 3
	case v >= math.MinInt32:
		w[i] = 0xd2
		binary.BigEndian.PutUint32(w[i+1:], uint32(v))
		return i + 5
	}
	w[i] = 0xd3
	binary.BigEndian.PutUint64(w[i+1:], uint64(v))
	return i + 9
}

func putStr(w []byte, i int, s string) int {
	if n := len(s); n < 32 {
		w[i] = 0xa0 | byte(n)
		i++
	} else {
		i = putHead(w, i, n, 0xd9, 0xda, 0xdb)
	}
	return i + copy(w[i:], s)
}

func putBin(w []byte, i int, p []byte) int {
	i = putHead(w, i, len(p), 0xc4, 0xc5, 0xc6)
	return i + copy(w[i:], p)
}

// putHead writes the header of a str or bin of n bytes in its 8-, 16- or
// 32-bit form.
func putHead(w []byte, i, n int, t8, t16, t32 byte) int {
	switch {
	case n <= math.MaxUint8:
		w[i], w[i+1] = t8, byte(n)
		return i + 2
	case n <= math.MaxUint16:
		w[i] = t16
		binary.BigEndian.PutUint16(w[i+1:], uint16(n))
		return i + 3
	}
	w[i] = t32
	binary.BigEndian.PutUint32(w[i+1:], uint32(n))
	return i + 5
}

// putKey writes a one-byte key (a fixstr).
func putKey(w []byte, i int, k byte) int {
	w[i], w[i+1] = 0xa1, k
	return i + 2
}

// sizePrefix is the length of the length prefix of a body of n bytes.
func sizePrefix(n int) int {
	switch {
	case n < 1<<7:
		return 1
	case n < 1<<14:
		return 2
	case n < 1<<21:
		return 3
	}
	return 4
}

func putPrefix(w []byte, i, n int) int {
	for n >= 0x80 {
		w[i] = byte(n) | 0x80
		n >>= 7
		i++
	}
	w[i] = byte(n)
	return i + 1
}
