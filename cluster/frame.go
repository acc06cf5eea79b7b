package cluster

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"unsafe"

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
	br  bytes.Reader
	d   *msgpack.Decoder
	// reuse: a publish frame's Publish is this one, valid until the next
	// Decode (the link's reader: PublishDelegate keeps only the slices),
	// not an allocation per message (BenchmarkClusterForwardQoS0).
	reuse bool
	pub   Publish
}

func newFrameDecoder(max int) *frameDecoder {
	fd := &frameDecoder{max: max}
	fd.d = msgpack.NewDecoder(&fd.br)
	return fd
}

// Decode decodes the frame at the start of buf and returns it with the
// number of bytes it took. With less than a whole frame in buf it returns
// ErrIncomplete and 0. Publish, request and response frames own their
// bytes (one copy of the frame); the others alias buf.
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
	body := buf[k:n]
	if t := fd.peekType(body); t == framePublish || t == frameRequest || t == frameResponse {
		body = bytes.Clone(body) // handed to delegates, who own it
	}
	if err := fd.decodeBody(body, &f); err != nil {
		return frame{}, 0, err
	}
	return f, n, nil
}

// peekType returns the type of a frame body (0 if unreadable).
func (fd *frameDecoder) peekType(body []byte) frameType {
	fd.br.Reset(body)
	fd.d.Reset(&fd.br)
	if _, err := fd.d.DecodeArrayLen(); err != nil {
		return 0
	}
	t, err := fd.d.DecodeUint64()
	if err != nil || t > 255 {
		return 0
	}
	return frameType(t)
}

func (fd *frameDecoder) decodeBody(body []byte, f *frame) (err error) {
	fd.br.Reset(body)
	fd.d.Reset(&fd.br)
	d := fd.d
	fail := func(what string, err error) error {
		if err == nil {
			return fmt.Errorf("%w: frame %s", ErrMalformed, what)
		}
		return fmt.Errorf("%w: frame %s: %v", ErrMalformed, what, err)
	}
	cnt, err := d.DecodeArrayLen()
	if err != nil || cnt < 1 {
		return fail("header", err)
	}
	t, err := d.DecodeUint64()
	if err != nil {
		return fail("type", err)
	}
	if t < uint64(frameHello) || t > uint64(frameResponse) {
		return fail(fmt.Sprintf("type %d", t), nil)
	}
	f.typ = frameType(t)
	if cnt < fieldCount[f.typ] {
		return fail(fmt.Sprintf("type %d with %d fields", t, cnt), nil)
	}
	raw := func() ([]byte, error) { return fd.raw(body) }
	str := func() (string, error) {
		b, err := raw()
		return unsafe.String(unsafe.SliceData(b), len(b)), err
	}
	u := d.DecodeUint64
	switch f.typ {
	case frameHello, frameHelloAck:
		if f.version, err = u(); err != nil {
			return fail("version", err)
		}
		if f.cluster, err = d.DecodeString(); err != nil {
			return fail("cluster", err)
		}
		if f.node, err = d.DecodeString(); err != nil {
			return fail("node", err)
		}
		if f.incarnation, err = u(); err != nil {
			return fail("incarnation", err)
		}
		if f.nonce, err = raw(); err != nil {
			return fail("nonce", err)
		}
		if f.typ == frameHelloAck {
			if f.mac, err = raw(); err != nil {
				return fail("mac", err)
			}
			if f.delivered, err = u(); err != nil {
				return fail("delivered", err)
			}
		}
	case frameAuth:
		if f.mac, err = raw(); err != nil {
			return fail("mac", err)
		}
		if f.delivered, err = u(); err != nil {
			return fail("delivered", err)
		}
	case framePing:
	case framePublish:
		var p *Publish
		if fd.reuse {
			p = &fd.pub
			*p = Publish{}
		} else {
			p = new(Publish)
		}
		f.pub = p
		if f.seq, err = u(); err != nil {
			return fail("seq", err)
		}
		if p.Topic, err = str(); err != nil {
			return fail("topic", err)
		}
		if p.Payload, err = raw(); err != nil {
			return fail("payload", err)
		}
		q, err := u()
		if err != nil || q > 2 {
			return fail("qos", err)
		}
		p.QoS = byte(q)
		if p.Retain, err = d.DecodeBool(); err != nil {
			return fail("retain", err)
		}
		if p.Props, err = raw(); err != nil {
			return fail("props", err)
		}
		if p.Sender, err = str(); err != nil {
			return fail("sender", err)
		}
		if p.ID, err = u(); err != nil {
			return fail("id", err)
		}
		if p.Created, err = d.DecodeInt64(); err != nil {
			return fail("created", err)
		}
		if p.Expiry, err = d.DecodeInt64(); err != nil {
			return fail("expiry", err)
		}
		if p.Origin, err = str(); err != nil {
			return fail("origin", err)
		}
		if (q == 0) != (f.seq == 0) {
			return fail("seq for qos", nil)
		}
	case frameAck:
		if f.seq, err = u(); err != nil {
			return fail("seq", err)
		}
	case frameRequest, frameResponse:
		if f.id, err = u(); err != nil {
			return fail("id", err)
		}
		if f.body, err = raw(); err != nil {
			return fail("body", err)
		}
		if f.typ == frameResponse {
			if f.failed, err = d.DecodeBool(); err != nil {
				return fail("failed", err)
			}
			if f.errMsg, err = d.DecodeString(); err != nil {
				return fail("error", err)
			}
		}
	}
	for i := fieldCount[f.typ]; i < cnt; i++ {
		if err := d.Skip(); err != nil {
			return fail("extra field", err)
		}
	}
	if fd.br.Len() != 0 {
		return fail("trailing bytes", nil)
	}
	return nil
}

// raw returns the next str/bin element as a slice of body (nil for nil or
// empty), without copying.
func (fd *frameDecoder) raw(body []byte) ([]byte, error) {
	n, err := fd.d.DecodeBytesLen()
	if err != nil {
		return nil, err
	}
	if n <= 0 {
		return nil, nil
	}
	if n > fd.br.Len() {
		return nil, io.ErrUnexpectedEOF
	}
	pos := len(body) - fd.br.Len()
	if _, err := fd.br.Seek(int64(n), io.SeekCurrent); err != nil {
		return nil, err
	}
	return body[pos : pos+n : pos+n], nil
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
