package wire

import (
	"errors"
	"fmt"
	"sync"

	"github.com/vmihailenco/msgpack/v5"
)

// ErrNilBody reports an Append of a nil Body.
var ErrNilBody = errors.New("wire: nil frame body")

// Append appends the frame of b (length prefix, type, msgpack body) to dst.
// Fields at their zero value are left out. It fails with a
// CodeFrameTooLarge error for a frame over MaxFrameSize and a CodeMalformed
// error for Request.Args or Response.Result that is not one msgpack value;
// dst is returned unchanged then.
func Append(dst []byte, b Body) ([]byte, error) {
	switch v := b.(type) {
	case *Send:
		if v == nil {
			return dst, ErrNilBody
		}
		return appendSend(dst, v)
	case *Deliver:
		if v == nil {
			return dst, ErrNilBody
		}
		return appendDeliver(dst, v)
	case *SendAck:
		if v == nil {
			return dst, ErrNilBody
		}
		return appendSendAck(dst, v)
	case *DeliverAck:
		if v == nil {
			return dst, ErrNilBody
		}
		return appendDeliverAck(dst, v), nil
	case *Ping:
		return append(dst, 2, byte(TypePing), 0x80), nil
	case *Pong:
		return append(dst, 2, byte(TypePong), 0x80), nil
	case *Request:
		if v == nil {
			return dst, ErrNilBody
		}
		if err := checkRaw(v.Args); err != nil {
			return dst, fmt.Errorf("wire: request args: %v: %w", err, CodeMalformed)
		}
	case *Response:
		if v == nil {
			return dst, ErrNilBody
		}
		if err := checkRaw(v.Result); err != nil {
			return dst, fmt.Errorf("wire: response result: %v: %w", err, CodeMalformed)
		}
	case nil:
		return dst, ErrNilBody
	}
	return appendReflect(dst, b)
}

func checkSize(t Type, bodyLen int) error {
	if bodyLen+4 > MaxFrameSize {
		return tooLarge(t, bodyLen)
	}
	return nil
}

// tooLarge is checkSize's error, out of line so that the check inlines.
//
//go:noinline
func tooLarge(t Type, bodyLen int) error {
	return fmt.Errorf("wire: %v frame of %d bytes: %w", t, bodyLen, CodeFrameTooLarge)
}

func checkRaw(r Raw) error {
	if len(r) == 0 {
		return nil
	}
	p, err := scan(r, 0, 1)
	if err != nil {
		return err
	}
	if p != len(r) {
		return errTrailing
	}
	return nil
}

// appendWriter lets the msgpack encoder write straight into a frame.
type appendWriter struct{ b []byte }

func (w *appendWriter) Write(p []byte) (int, error) {
	w.b = append(w.b, p...)
	return len(p), nil
}

func (w *appendWriter) WriteByte(c byte) error {
	w.b = append(w.b, c)
	return nil
}

type encoder struct {
	enc *msgpack.Encoder
	w   appendWriter
}

var encoders = sync.Pool{New: func() any {
	e := &encoder{}
	e.enc = msgpack.NewEncoder(&e.w)
	return e
}}

// marshal encodes v as the frame bodies are encoded: integers in their
// shortest form.
func marshal(dst []byte, v any) ([]byte, error) {
	e := encoders.Get().(*encoder)
	e.w.b = dst
	e.enc.Reset(&e.w)
	e.enc.UseCompactInts(true)
	err := e.enc.Encode(v)
	out := e.w.b
	e.w.b = nil
	encoders.Put(e)
	return out, err
}

// appendReflect encodes a cold frame with the library: the body goes after
// a one-byte prefix that is widened once the body's length is known.
func appendReflect(dst []byte, b Body) ([]byte, error) {
	start := len(dst)
	out, err := marshal(append(dst, 0, byte(b.Type())), b)
	if err != nil {
		return dst[:start], fmt.Errorf("wire: %v frame: %w", b.Type(), err)
	}
	bodyLen := len(out) - start - 1
	if err := checkSize(b.Type(), bodyLen); err != nil {
		return dst[:start], err
	}
	if bodyLen < 0x80 {
		out[start] = byte(bodyLen)
		return out, nil
	}
	var prefix [4]byte
	pl := len(appendPrefix(prefix[:0], bodyLen))
	out = append(out, prefix[:pl-1]...)
	copy(out[start+pl:], out[start+1:len(out)-(pl-1)])
	copy(out[start:], prefix[:pl])
	return out, nil
}

// Raw is one msgpack value kept encoded: the arguments of a Request and the
// result of a Response, whose types depend on the method (methods.go).
type Raw []byte

// EncodeMsgpack writes r as it is (nil when empty). For the msgpack library.
func (r Raw) EncodeMsgpack(enc *msgpack.Encoder) error {
	if len(r) == 0 {
		return enc.EncodeNil()
	}
	_, err := enc.Writer().Write(r)
	return err
}

// DecodeMsgpack keeps a copy of the next value. For the msgpack library.
func (r *Raw) DecodeMsgpack(dec *msgpack.Decoder) error {
	v, err := dec.DecodeRaw()
	if err != nil {
		return err
	}
	if len(v) == 1 && v[0] == 0xc0 {
		v = nil
	}
	*r = Raw(v)
	return nil
}

// MarshalRaw encodes v (a method's argument or result struct) as a Raw.
func MarshalRaw(v any) (Raw, error) {
	b, err := marshal(nil, v)
	if err != nil {
		return nil, fmt.Errorf("wire: %w", err)
	}
	return Raw(b), nil
}

// Unmarshal decodes r into v (a pointer to a method's argument or result
// struct). An empty Raw leaves v as it is. Unknown keys are skipped; a
// value that does not fit fails with a CodeMalformed error.
func (r Raw) Unmarshal(v any) error {
	if len(r) == 0 {
		return nil
	}
	if err := checkRaw(r); err != nil {
		return fmt.Errorf("wire: %v: %w", err, CodeMalformed)
	}
	if err := msgpack.Unmarshal(r, v); err != nil {
		return fmt.Errorf("wire: %v: %w", err, CodeMalformed)
	}
	return nil
}

// AppendDeliver is Append for a Deliver, without the interface: the hot
// path of a server's deliveries (the value stays on the caller's stack).
func AppendDeliver(dst []byte, d *Deliver) ([]byte, error) { return appendDeliver(dst, d) }

// AppendSendAck is Append for a SendAck, without the interface.
func AppendSendAck(dst []byte, a *SendAck) ([]byte, error) { return appendSendAck(dst, a) }
