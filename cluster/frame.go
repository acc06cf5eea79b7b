package cluster

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"strings"

	"github.com/vmihailenco/msgpack/v5"
)

// Peer-link frames. Each is a uvarint length followed by a msgpack array
// whose first element is the frame type:
//
//	+----------------+--------------------------------------------+
//	| uvarint length | msgpack array [type, fields...]            |
//	+----------------+--------------------------------------------+
//
//	1 hello      [1, version, cluster, node, incarnation, nonce]                 dialer -> acceptor
//	2 helloAck   [2, version, cluster, node, incarnation, nonce, mac, delivered] acceptor -> dialer
//	3 auth       [3, mac, delivered]                                             dialer -> acceptor
//	4 ping       [4]
//	5 publish    [5, seq, topic, payload, qos, retain, props, sender, id, created, expiry, origin]
//	6 ack        [6, seq]           every QoS>0 publish with seq <= this was handed over
//	7 request    [7, id, body]
//	8 response   [8, id, body, failed, error text]
//
// seq is 0 for QoS 0 publishes, else the sender's per-link sequence number
// (1, 2, 3... within one sender incarnation). "delivered" in the hello is
// the last seq the receiver handed over from the other side's incarnation,
// so the sender drops what was delivered but not acknowledged before the
// connection broke. Arrays may grow in later versions; decoders skip
// trailing elements they do not know.
type frameType uint8

const (
	frameHello    frameType = 1
	frameHelloAck frameType = 2
	frameAuth     frameType = 3
	framePing     frameType = 4
	framePublish  frameType = 5
	frameAck      frameType = 6
	frameRequest  frameType = 7
	frameResponse frameType = 8
)

// linkVersion is the peer-link protocol version in the hello.
const linkVersion = 1

type frame struct {
	typ frameType
	// hello, helloAck, auth
	version     uint64
	cluster     string
	node        string
	incarnation uint64
	nonce, mac  []byte
	delivered   uint64
	// publish, ack
	seq uint64
	pub *Publish
	// request, response
	id     uint64
	body   []byte
	failed bool
	errMsg string
}

// fieldCount is the minimum array length of each type.
var fieldCount = [...]int{frameHello: 6, frameHelloAck: 8, frameAuth: 3, framePing: 1,
	framePublish: 12, frameAck: 2, frameRequest: 3, frameResponse: 5}

// frameEncoder appends frames to a buffer.
type frameEncoder struct {
	self string // the Origin of publishes that name none
	body bytes.Buffer
	enc  *msgpack.Encoder
}

func newFrameEncoder(self string) *frameEncoder {
	e := &frameEncoder{self: self}
	e.enc = msgpack.NewEncoder(&e.body)
	return e
}

// append encodes f after dst.
func (fe *frameEncoder) append(dst []byte, f *frame) []byte {
	fe.body.Reset()
	e := fe.enc
	_ = e.EncodeArrayLen(fieldCount[f.typ])
	_ = e.EncodeUint(uint64(f.typ))
	switch f.typ {
	case frameHello, frameHelloAck:
		_ = e.EncodeUint(f.version)
		_ = e.EncodeString(f.cluster)
		_ = e.EncodeString(f.node)
		_ = e.EncodeUint(f.incarnation)
		_ = e.EncodeBytes(f.nonce)
		if f.typ == frameHelloAck {
			_ = e.EncodeBytes(f.mac)
			_ = e.EncodeUint(f.delivered)
		}
	case frameAuth:
		_ = e.EncodeBytes(f.mac)
		_ = e.EncodeUint(f.delivered)
	case framePing:
	case framePublish:
		p := f.pub
		_ = e.EncodeUint(f.seq)
		_ = e.EncodeString(p.Topic)
		_ = e.EncodeBytes(p.Payload)
		_ = e.EncodeUint(uint64(p.QoS))
		_ = e.EncodeBool(p.Retain)
		_ = e.EncodeBytes(p.Props)
		_ = e.EncodeString(p.Sender)
		_ = e.EncodeUint(p.ID)
		_ = e.EncodeInt(p.Created)
		_ = e.EncodeInt(p.Expiry)
		origin := p.Origin
		if origin == "" {
			origin = fe.self
		}
		_ = e.EncodeString(origin)
	case frameAck:
		_ = e.EncodeUint(f.seq)
	case frameRequest:
		_ = e.EncodeUint(f.id)
		_ = e.EncodeBytes(f.body)
	case frameResponse:
		_ = e.EncodeUint(f.id)
		_ = e.EncodeBytes(f.body)
		_ = e.EncodeBool(f.failed)
		_ = e.EncodeString(f.errMsg)
	}
	dst = binary.AppendUvarint(dst, uint64(fe.body.Len()))
	return append(dst, fe.body.Bytes()...)
}

// frameDecoder decodes frames incrementally from a byte stream.
type frameDecoder struct {
	max int
	// reuse: a publish frame's Publish is this one, valid until the next
	// Decode (the link's reader: PublishDelegate keeps only the slices),
	// not an allocation per message (BenchmarkClusterForwardQoS0).
	reuse bool
	pub   Publish
}

func newFrameDecoder(max int) *frameDecoder { return &frameDecoder{max: max} }

// Decode decodes the frame at the start of buf and returns it with the
// number of bytes it took. With less than a whole frame in buf it returns
// ErrIncomplete and 0. A request's or response's body is a copy (its
// delegate owns it); everything else aliases buf, publishes too (their
// delegate copies what it keeps: PublishDelegate).
func (fd *frameDecoder) Decode(buf []byte) (frame, int, error) {
	var f frame
	l, k := binary.Uvarint(buf)
	if k == 0 {
		if len(buf) >= binary.MaxVarintLen64 {
			return f, 0, fmt.Errorf("%w: frame length", ErrMalformed)
		}
		return f, 0, ErrIncomplete
	}
	if k < 0 {
		return f, 0, fmt.Errorf("%w: frame length overflows", ErrMalformed)
	}
	if l > uint64(fd.max) {
		return f, 0, fmt.Errorf("%w: %d bytes, limit %d", ErrFrameTooLarge, l, fd.max)
	}
	if l == 0 {
		return f, 0, fmt.Errorf("%w: empty frame", ErrMalformed)
	}
	if uint64(len(buf)-k) < l {
		return f, 0, ErrIncomplete
	}
	n := k + int(l)
	if err := fd.decodeBody(buf[k:n], &f); err != nil {
		return frame{}, 0, err
	}
	if f.typ == frameRequest || f.typ == frameResponse {
		f.body = bytes.Clone(f.body) // handed to delegates, who own it
	}
	return f, n, nil
}

func (fd *frameDecoder) decodeBody(body []byte, f *frame) error {
	r := mpReader{b: body}
	fail := func(what string) error { return fmt.Errorf("%w: frame %s", ErrMalformed, what) }
	cnt := r.arrayLen()
	if r.bad || cnt < 1 {
		return fail("header")
	}
	t := r.uint()
	if r.bad || t < uint64(frameHello) || t > uint64(frameResponse) {
		return fail(fmt.Sprintf("type %d", t))
	}
	f.typ = frameType(t)
	if cnt < fieldCount[f.typ] {
		return fail(fmt.Sprintf("type %d with %d fields", t, cnt))
	}
	switch f.typ {
	case frameHello, frameHelloAck:
		// Handshake frames alias a buffer read again: strings are copied.
		f.version = r.uint()
		f.cluster = strings.Clone(r.str())
		f.node = strings.Clone(r.str())
		f.incarnation = r.uint()
		f.nonce = r.raw()
		if f.typ == frameHelloAck {
			f.mac = r.raw()
			f.delivered = r.uint()
		}
	case frameAuth:
		f.mac = r.raw()
		f.delivered = r.uint()
	case framePing:
	case framePublish:
		var p *Publish
		if fd.reuse {
			p = &fd.pub
		} else {
			p = new(Publish)
		}
		f.seq = r.uint()
		*p = Publish{Topic: r.str(), Payload: r.raw()}
		q := r.uint()
		if q > 2 {
			return fail("qos")
		}
		p.QoS = byte(q)
		p.Retain = r.bool()
		p.Props = r.raw()
		p.Sender = r.str()
		p.ID = r.uint()
		p.Created = r.int()
		p.Expiry = r.int()
		p.Origin = r.str()
		f.pub = p
		if !r.bad && (q == 0) != (f.seq == 0) {
			return fail("seq for qos")
		}
	case frameAck:
		f.seq = r.uint()
	case frameRequest, frameResponse:
		f.id = r.uint()
		f.body = r.raw()
		if f.typ == frameResponse {
			f.failed = r.bool()
			f.errMsg = strings.Clone(r.str())
		}
	}
	if r.bad {
		return fail(fmt.Sprintf("type %d: a field", t))
	}
	if cnt > fieldCount[f.typ] {
		// A later version's fields (rare): skipped with the library.
		br := bytes.NewReader(body[r.i:])
		d := msgpack.NewDecoder(br)
		for i := fieldCount[f.typ]; i < cnt; i++ {
			if err := d.Skip(); err != nil {
				return fmt.Errorf("%w: frame extra field: %v", ErrMalformed, err)
			}
		}
		r.i = len(body) - br.Len()
	}
	if r.i != len(body) {
		return fail("trailing bytes")
	}
	return nil
}

// appendPublishFrame appends a whole publish frame (length prefix
// included) for p with seq, byte for byte what frameEncoder.append makes
// (TestPublishFrameMatchesEncoder), without an encoder: Forward encodes on
// the caller's goroutine, straight into the link's queue, so the caller
// keeps p and nothing is copied or allocated per QoS 0 message
// (BenchmarkClusterForwardQoS0 in broker/).
func appendPublishFrame(dst []byte, seq uint64, p *Publish, self string) []byte {
	origin := p.Origin
	if origin == "" {
		origin = self
	}
	n := 1 + mpUintLen(uint64(framePublish)) + mpUintLen(seq) + mpStrLen(len(p.Topic)) + mpBinLen(p.Payload) +
		mpUintLen(uint64(p.QoS)) + 1 + mpBinLen(p.Props) + mpStrLen(len(p.Sender)) + mpUintLen(p.ID) +
		mpIntLen(p.Created) + mpIntLen(p.Expiry) + mpStrLen(len(origin))
	dst = binary.AppendUvarint(dst, uint64(n))
	dst = append(dst, 0x90|byte(fieldCount[framePublish]))
	dst = mpAppendUint(dst, uint64(framePublish))
	dst = mpAppendUint(dst, seq)
	dst = mpAppendStr(dst, p.Topic)
	dst = mpAppendBin(dst, p.Payload)
	dst = mpAppendUint(dst, uint64(p.QoS))
	if p.Retain {
		dst = append(dst, 0xc3)
	} else {
		dst = append(dst, 0xc2)
	}
	dst = mpAppendBin(dst, p.Props)
	dst = mpAppendStr(dst, p.Sender)
	dst = mpAppendUint(dst, p.ID)
	dst = mpAppendInt(dst, p.Created)
	dst = mpAppendInt(dst, p.Expiry)
	return mpAppendStr(dst, origin)
}

// msgpack's compact forms, as vmihailenco/msgpack's EncodeUint, EncodeInt,
// EncodeString and EncodeBytes write them.

func mpUintLen(v uint64) int {
	switch {
	case v <= 0x7f:
		return 1
	case v <= 0xff:
		return 2
	case v <= 0xffff:
		return 3
	case v <= 0xffffffff:
		return 5
	}
	return 9
}

func mpAppendUint(b []byte, v uint64) []byte {
	switch {
	case v <= 0x7f:
		return append(b, byte(v))
	case v <= 0xff:
		return append(b, 0xcc, byte(v))
	case v <= 0xffff:
		return binary.BigEndian.AppendUint16(append(b, 0xcd), uint16(v))
	case v <= 0xffffffff:
		return binary.BigEndian.AppendUint32(append(b, 0xce), uint32(v))
	}
	return binary.BigEndian.AppendUint64(append(b, 0xcf), v)
}

func mpIntLen(v int64) int {
	if v >= 0 {
		return mpUintLen(uint64(v))
	}
	switch {
	case v >= -32:
		return 1
	case v >= -128:
		return 2
	case v >= -32768:
		return 3
	case v >= -2147483648:
		return 5
	}
	return 9
}

func mpAppendInt(b []byte, v int64) []byte {
	if v >= 0 {
		return mpAppendUint(b, uint64(v))
	}
	switch {
	case v >= -32:
		return append(b, byte(v))
	case v >= -128:
		return append(b, 0xd0, byte(v))
	case v >= -32768:
		return binary.BigEndian.AppendUint16(append(b, 0xd1), uint16(v))
	case v >= -2147483648:
		return binary.BigEndian.AppendUint32(append(b, 0xd2), uint32(v))
	}
	return binary.BigEndian.AppendUint64(append(b, 0xd3), uint64(v))
}

func mpStrLen(n int) int {
	switch {
	case n <= 31:
		return 1 + n
	case n <= 0xff:
		return 2 + n
	case n <= 0xffff:
		return 3 + n
	}
	return 5 + n
}

func mpAppendStr(b []byte, s string) []byte {
	switch n := len(s); {
	case n <= 31:
		b = append(b, 0xa0|byte(n))
	case n <= 0xff:
		b = append(b, 0xd9, byte(n))
	case n <= 0xffff:
		b = binary.BigEndian.AppendUint16(append(b, 0xda), uint16(n))
	default:
		b = binary.BigEndian.AppendUint32(append(b, 0xdb), uint32(n))
	}
	return append(b, s...)
}

// mpBinLen and mpAppendBin: nil is msgpack nil, as EncodeBytes writes it.
func mpBinLen(p []byte) int {
	switch n := len(p); {
	case p == nil:
		return 1
	case n <= 0xff:
		return 2 + n
	case n <= 0xffff:
		return 3 + n
	default:
		return 5 + n
	}
}

func mpAppendBin(b []byte, p []byte) []byte {
	switch n := len(p); {
	case p == nil:
		return append(b, 0xc0)
	case n <= 0xff:
		b = append(b, 0xc4, byte(n))
	case n <= 0xffff:
		b = binary.BigEndian.AppendUint16(append(b, 0xc5), uint16(n))
	default:
		b = binary.BigEndian.AppendUint32(append(b, 0xc6), uint32(n))
	}
	return append(b, p...)
}
