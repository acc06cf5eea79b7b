package storage

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// Hand-written msgpack decoders for the records read at recovery, the
// counterpart of encode.go: a restart decodes every queued message once,
// and reflection would make that the slowest part of starting. They accept
// any msgpack encoding of the fields (any int width, str or bin, nil for
// absent) and skip keys they do not know, as the library would, so records
// written by a newer version or by the library still read.

var errShort = errors.New("truncated")

// mpReader reads msgpack values from b. The first error sticks; every read
// after it returns zero values.
type mpReader struct {
	b   []byte
	err error
}

func (r *mpReader) fail(err error) {
	if r.err == nil {
		r.err = err
	}
	r.b = nil
}

func (r *mpReader) take(n int) []byte {
	if n < 0 || len(r.b) < n {
		r.fail(errShort)
		return nil
	}
	p := r.b[:n]
	r.b = r.b[n:]
	return p
}

func (r *mpReader) byte1() byte {
	p := r.take(1)
	if p == nil {
		return 0
	}
	return p[0]
}

func (r *mpReader) uintN(n int) uint64 {
	p := r.take(n)
	switch n {
	case 1:
		if p != nil {
			return uint64(p[0])
		}
	case 2:
		if p != nil {
			return uint64(binary.BigEndian.Uint16(p))
		}
	case 4:
		if p != nil {
			return uint64(binary.BigEndian.Uint32(p))
		}
	case 8:
		if p != nil {
			return binary.BigEndian.Uint64(p)
		}
	}
	return 0
}

// size reads an n-byte big-endian length or count. Every element takes at
// least a byte, so a value above what is left is damage; checking that
// here also keeps a 32-bit int from wrapping negative.
func (r *mpReader) size(n int) int {
	v := r.uintN(n)
	if v > uint64(len(r.b)) {
		r.fail(errShort)
		return 0
	}
	return int(v)
}

// mapLen reads a map header; nil reads as an empty map.
func (r *mpReader) mapLen() int {
	switch c := r.byte1(); {
	case c&0xf0 == 0x80:
		return int(c & 0x0f)
	case c == 0xde:
		return r.size(2)
	case c == 0xdf:
		return r.size(4)
	case c == 0xc0:
		return 0
	default:
		r.fail(fmt.Errorf("want map, got code 0x%02x", c))
		return 0
	}
}

// arrayLen reads an array header; nil reads as empty.
func (r *mpReader) arrayLen() int {
	switch c := r.byte1(); {
	case c&0xf0 == 0x90:
		return int(c & 0x0f)
	case c == 0xdc:
		return r.size(2)
	case c == 0xdd:
		return r.size(4)
	case c == 0xc0:
		return 0
	default:
		r.fail(fmt.Errorf("want array, got code 0x%02x", c))
		return 0
	}
}

// raw reads a str or bin (or nil) and returns its bytes, aliasing the input.
func (r *mpReader) raw() []byte {
	switch c := r.byte1(); {
	case c&0xe0 == 0xa0:
		return r.take(int(c & 0x1f))
	case c == 0xd9, c == 0xc4:
		return r.take(r.size(1))
	case c == 0xda, c == 0xc5:
		return r.take(r.size(2))
	case c == 0xdb, c == 0xc6:
		return r.take(r.size(4))
	case c == 0xc0:
		return nil
	default:
		r.fail(fmt.Errorf("want str or bin, got code 0x%02x", c))
		return nil
	}
}

func (r *mpReader) str() string { return string(r.raw()) }

// bin returns a copy of a str or bin; empty reads as nil, as the encoder
// omits empty fields.
func (r *mpReader) bin() []byte {
	p := r.raw()
	if len(p) == 0 {
		return nil
	}
	return append([]byte(nil), p...)
}

// int reads any msgpack integer (or nil as 0) as int64; uint64 values above
// MaxInt64 wrap, as they would in a Go conversion.
func (r *mpReader) int() int64 {
	switch c := r.byte1(); {
	case c <= 0x7f:
		return int64(c)
	case c >= 0xe0:
		return int64(int8(c))
	case c >= 0xcc && c <= 0xcf:
		return int64(r.uintN(1 << (c - 0xcc)))
	case c == 0xd0:
		return int64(int8(r.uintN(1)))
	case c == 0xd1:
		return int64(int16(r.uintN(2)))
	case c == 0xd2:
		return int64(int32(r.uintN(4)))
	case c == 0xd3:
		return int64(r.uintN(8))
	case c == 0xc0:
		return 0
	default:
		r.fail(fmt.Errorf("want int, got code 0x%02x", c))
		return 0
	}
}

func (r *mpReader) uint() uint64 { return uint64(r.int()) }

// uintMax reads an unsigned integer that must fit in max.
func (r *mpReader) uintMax(max uint64) uint64 {
	v := r.uint()
	if v > max {
		r.fail(fmt.Errorf("integer %d out of range", v))
		return 0
	}
	return v
}

func (r *mpReader) bool() bool {
	switch c := r.byte1(); c {
	case 0xc3:
		return true
	case 0xc2, 0xc0:
		return false
	default:
		r.fail(fmt.Errorf("want bool, got code 0x%02x", c))
		return false
	}
}

// skip skips one value of any type.
func (r *mpReader) skip() {
	c := r.byte1()
	switch {
	case c <= 0x7f, c >= 0xe0, c == 0xc0, c == 0xc2, c == 0xc3:
	case c&0xf0 == 0x80:
		r.skipN(2 * int(c&0x0f))
	case c&0xf0 == 0x90:
		r.skipN(int(c & 0x0f))
	case c&0xe0 == 0xa0:
		r.take(int(c & 0x1f))
	case c == 0xc4, c == 0xd9:
		r.take(r.size(1))
	case c == 0xc5, c == 0xda:
		r.take(r.size(2))
	case c == 0xc6, c == 0xdb:
		r.take(r.size(4))
	case c == 0xc7: // ext8
		r.take(r.size(1) + 1)
	case c == 0xc8:
		r.take(r.size(2) + 1)
	case c == 0xc9:
		r.take(r.size(4) + 1)
	case c == 0xca, c == 0xce, c == 0xd2:
		r.take(4)
	case c == 0xcb, c == 0xcf, c == 0xd3:
		r.take(8)
	case c == 0xcc, c == 0xd0:
		r.take(1)
	case c == 0xcd, c == 0xd1:
		r.take(2)
	case c >= 0xd4 && c <= 0xd8: // fixext 1..16
		r.take(1 + 1<<(c-0xd4))
	case c == 0xdc:
		r.skipN(r.size(2))
	case c == 0xdd:
		r.skipN(r.size(4))
	case c == 0xde:
		r.skipN(2 * r.size(2))
	case c == 0xdf:
		r.skipN(2 * r.size(4))
	default:
		r.fail(fmt.Errorf("bad code 0x%02x", c))
	}
}

func (r *mpReader) skipN(n int) {
	for i := 0; i < n && r.err == nil; i++ {
		r.skip()
	}
}

// end checks that a record was read whole.
func (r *mpReader) end() error {
	if r.err == nil && len(r.b) != 0 {
		r.err = fmt.Errorf("%d bytes after the record", len(r.b))
	}
	return r.err
}

func decodeMessage(b []byte, m *Message) error {
	r := mpReader{b: b}
	for n := r.mapLen(); n > 0 && r.err == nil; n-- {
		switch string(r.raw()) {
		case "i":
			m.ID = r.uint()
		case "t":
			m.Topic = r.str()
		case "p":
			m.Payload = r.bin()
		case "q":
			m.QoS = byte(r.uintMax(math.MaxUint8))
		case "r":
			m.Retain = r.bool()
		case "f":
			m.From = r.str()
		case "c":
			m.Created = r.int()
		case "e":
			m.Expiry = r.int()
		case "x":
			m.Props = r.bin()
		case "k":
			m.PacketID = uint16(r.uintMax(math.MaxUint16))
		case "s":
			m.Sent = r.bool()
		case "u":
			m.SenderID = r.uint()
		case "n":
			m.SenderName = r.str()
		case "m":
			m.ClientMsgID = r.str()
		case "si":
			k := r.arrayLen()
			if k > len(r.b) { // each id takes at least one byte
				r.fail(errShort)
				break
			}
			m.SubIDs = nil
			if k > 0 {
				m.SubIDs = make([]uint32, k)
			}
			for i := range m.SubIDs {
				m.SubIDs[i] = uint32(r.uintMax(math.MaxUint32))
			}
		default:
			r.skip()
		}
	}
	return r.end()
}

// messagePayload returns the payload of an encoded message, aliasing b,
// without decoding (or copying) anything else: what history search reads.
func messagePayload(b []byte) ([]byte, error) {
	r := mpReader{b: b}
	var p []byte
	for n := r.mapLen(); n > 0 && r.err == nil; n-- {
		if string(r.raw()) == "p" {
			p = r.raw()
		} else {
			r.skip()
		}
	}
	return p, r.end()
}

// decodeMsgTimes reads only Created and Expiry, skipping the payload
// without copying it: what the queue index needs at Open.
func decodeMsgTimes(b []byte) (created, expiry int64, err error) {
	r := mpReader{b: b}
	for n := r.mapLen(); n > 0 && r.err == nil; n-- {
		switch string(r.raw()) {
		case "c":
			created = r.int()
		case "e":
			expiry = r.int()
		default:
			r.skip()
		}
	}
	return created, expiry, r.end()
}

func decodeSession(b []byte, s *Session) error {
	r := mpReader{b: b}
	for n := r.mapLen(); n > 0 && r.err == nil; n-- {
		switch string(r.raw()) {
		case "c":
			s.ClientID = r.str()
		case "p":
			s.Protocol = byte(r.uintMax(math.MaxUint8))
		case "v":
			s.Version = byte(r.uintMax(math.MaxUint8))
		case "s":
			k := r.arrayLen()
			if k > len(r.b) { // each sub takes at least one byte: a bad length, not an allocation
				r.fail(errShort)
				break
			}
			s.Subs = make([]Sub, k)
			for i := range s.Subs {
				decodeSub(&r, &s.Subs[i])
			}
			if k == 0 {
				s.Subs = nil
			}
		case "e":
			s.ExpiryInterval = uint32(r.uintMax(math.MaxUint32))
		case "d":
			s.DisconnectedAt = r.int()
		case "n":
			s.Node = r.str()
		case "q":
			s.NextSeq = r.uint()
		case "x":
			k := r.arrayLen()
			if k > len(r.b) {
				r.fail(errShort)
				break
			}
			s.Rx = make([]uint16, k)
			for i := range s.Rx {
				s.Rx[i] = uint16(r.uintMax(math.MaxUint16))
			}
		default:
			r.skip()
		}
	}
	return r.end()
}

func decodeSub(r *mpReader, s *Sub) {
	for n := r.mapLen(); n > 0 && r.err == nil; n-- {
		switch string(r.raw()) {
		case "f":
			s.Filter = r.str()
		case "q":
			s.QoS = byte(r.uintMax(math.MaxUint8))
		case "nl":
			s.NoLocal = r.bool()
		case "rap":
			s.RetainAsPublished = r.bool()
		case "rh":
			s.RetainHandling = byte(r.uintMax(math.MaxUint8))
		case "i":
			s.ID = uint32(r.uintMax(math.MaxUint32))
		default:
			r.skip()
		}
	}
}
