package cluster

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"strings"

	"github.com/cimgo/cim/internal/mp"
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
	r := mp.Reader{B: body}
	fail := func(what string) error { return fmt.Errorf("%w: frame %s", ErrMalformed, what) }
	cnt := r.ArrayLen()
	if r.Bad || cnt < 1 {
		return fail("header")
	}
	t := r.Uint()
	if r.Bad || t < uint64(frameHello) || t > uint64(frameResponse) {
		return fail(fmt.Sprintf("type %d", t))
	}
	f.typ = frameType(t)
	if cnt < fieldCount[f.typ] {
		return fail(fmt.Sprintf("type %d with %d fields", t, cnt))
	}
	switch f.typ {
	case frameHello, frameHelloAck:
		// Handshake frames alias a buffer read again: strings are copied.
		f.version = r.Uint()
		f.cluster = strings.Clone(r.Str())
		f.node = strings.Clone(r.Str())
		f.incarnation = r.Uint()
		f.nonce = r.Raw()
		if f.typ == frameHelloAck {
			f.mac = r.Raw()
			f.delivered = r.Uint()
		}
	case frameAuth:
		f.mac = r.Raw()
		f.delivered = r.Uint()
	case framePing:
	case framePublish:
		var p *Publish
		if fd.reuse {
			p = &fd.pub
		} else {
			p = new(Publish)
		}
		f.seq = r.Uint()
		*p = Publish{Topic: r.Str(), Payload: r.Raw()}
		q := r.Uint()
		if q > 2 {
			return fail("qos")
		}
		p.QoS = byte(q)
		p.Retain = r.Bool()
		p.Props = r.Raw()
		p.Sender = r.Str()
		p.ID = r.Uint()
		p.Created = r.Int()
		p.Expiry = r.Int()
		p.Origin = r.Str()
		f.pub = p
		if !r.Bad && (q == 0) != (f.seq == 0) {
			return fail("seq for qos")
		}
	case frameAck:
		f.seq = r.Uint()
	case frameRequest, frameResponse:
		f.id = r.Uint()
		f.body = r.Raw()
		if f.typ == frameResponse {
			f.failed = r.Bool()
			f.errMsg = strings.Clone(r.Str())
		}
	}
	if r.Bad {
		return fail(fmt.Sprintf("type %d: a field", t))
	}
	if cnt > fieldCount[f.typ] {
		// A later version's fields (rare): skipped with the library.
		br := bytes.NewReader(body[r.I:])
		d := msgpack.NewDecoder(br)
		for i := fieldCount[f.typ]; i < cnt; i++ {
			if err := d.Skip(); err != nil {
				return fmt.Errorf("%w: frame extra field: %v", ErrMalformed, err)
			}
		}
		r.I = len(body) - br.Len()
	}
	if r.I != len(body) {
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
	n := 1 + mp.UintLen(uint64(framePublish)) + mp.UintLen(seq) + mp.StrLen(len(p.Topic)) + mp.BinLen(p.Payload) +
		mp.UintLen(uint64(p.QoS)) + 1 + mp.BinLen(p.Props) + mp.StrLen(len(p.Sender)) + mp.UintLen(p.ID) +
		mp.IntLen(p.Created) + mp.IntLen(p.Expiry) + mp.StrLen(len(origin))
	dst = binary.AppendUvarint(dst, uint64(n))
	dst = append(dst, 0x90|byte(fieldCount[framePublish]))
	dst = mp.AppendUint(dst, uint64(framePublish))
	dst = mp.AppendUint(dst, seq)
	dst = mp.AppendStr(dst, p.Topic)
	dst = mp.AppendBin(dst, p.Payload)
	dst = mp.AppendUint(dst, uint64(p.QoS))
	dst = mp.AppendBool(dst, p.Retain)
	dst = mp.AppendBin(dst, p.Props)
	dst = mp.AppendStr(dst, p.Sender)
	dst = mp.AppendUint(dst, p.ID)
	dst = mp.AppendInt(dst, p.Created)
	dst = mp.AppendInt(dst, p.Expiry)
	return mp.AppendStr(dst, origin)
}
