package wire

import (
	"errors"
	"fmt"

	"github.com/vmihailenco/msgpack/v5"
)

// ErrIncomplete reports that the buffer does not yet hold a whole frame.
var ErrIncomplete = errors.New("wire: incomplete frame")

const (
	// MaxFrameSize is the largest frame the format can carry: a 4-byte
	// length prefix and a body of up to 2^28-1 bytes.
	MaxFrameSize = 4 + 1<<28 - 1
	// DefaultMaxFrameSize is a sensible limit for an endpoint that has no
	// better idea: 1 MiB.
	DefaultMaxFrameSize = 1 << 20
)

// ReadLength reads the length prefix at the front of buf: the body length
// and the prefix's own length. It returns ErrIncomplete while the prefix is
// not all there, or a CodeMalformed error for a prefix longer than 4 bytes
// or not in its shortest form.
func ReadLength(buf []byte) (bodyLen, prefixLen int, err error) {
	var v int
	for i := 0; i < 4; i++ {
		if i >= len(buf) {
			return 0, 0, ErrIncomplete
		}
		c := buf[i]
		v |= int(c&0x7f) << (7 * i)
		if c&0x80 == 0 {
			if c == 0 && i > 0 {
				return 0, 0, fmt.Errorf("wire: length prefix not in its shortest form: %w", CodeMalformed)
			}
			return v, i + 1, nil
		}
	}
	return 0, 0, fmt.Errorf("wire: length prefix longer than 4 bytes: %w", CodeMalformed)
}

// minLength is the smallest body length a prefix that starts with buf (all
// bytes with the continuation bit) can still announce.
func minLength(buf []byte) int {
	v := 0
	for i, c := range buf {
		v |= int(c&0x7f) << (7 * i)
	}
	return v + 1<<(7*len(buf))
}

// Decode decodes the frame at the front of buf into f and returns how many
// bytes it took.
//
//   - ErrIncomplete: buf holds only part of a frame; n is 0. Call again
//     with more bytes.
//   - A frame larger than maxSize (length prefix included; maxSize <= 0 or
//     over MaxFrameSize means MaxFrameSize) fails with a CodeFrameTooLarge
//     error as soon as its prefix shows it, without waiting for the body;
//     n is 0. The stream cannot continue.
//   - A bad prefix, an empty body, invalid msgpack, a body that is not a
//     map or a field of the wrong type fail with a CodeMalformed error; n
//     is the frame's length when the prefix was good. The stream should
//     not continue: the peer is broken.
//   - An unknown frame type fails with a CodeUnknownFrame error and n is
//     the frame's length: framing is intact, so the frame may be skipped.
//
// On success f.Type names the member that holds the frame (it is reset
// first; unknown keys, a newer peer's fields, are skipped). On error the
// content of f is undefined. Strings and byte slices in f may alias buf:
// they are valid only while buf's bytes are; call f.Detach to keep them.
func Decode(buf []byte, f *Frame, maxSize int) (n int, err error) {
	if maxSize <= 0 || maxSize > MaxFrameSize {
		maxSize = MaxFrameSize
	}
	// Refuse an oversized frame as soon as the bytes of its prefix seen so
	// far show it, the same way whether or not the rest has arrived.
	for i := 0; i < len(buf) && i < 3 && buf[i]&0x80 != 0; i++ {
		if minLength(buf[:i+1])+i+2 > maxSize {
			return 0, fmt.Errorf("wire: frame over the maximum of %d bytes: %w", maxSize, CodeFrameTooLarge)
		}
	}
	size, hl, err := ReadLength(buf)
	if err != nil {
		return 0, err
	}
	total := hl + size
	if total > maxSize {
		return 0, fmt.Errorf("wire: frame of %d bytes over the maximum of %d: %w", total, maxSize, CodeFrameTooLarge)
	}
	if len(buf) < total {
		return 0, ErrIncomplete
	}
	if size == 0 {
		return total, fmt.Errorf("wire: empty frame: %w", CodeMalformed)
	}
	t := Type(buf[hl])
	body := buf[hl+1 : total]
	f.Type = t
	switch t {
	case TypeSend:
		err = decodeSend(body, &f.Send)
	case TypeDeliver:
		err = decodeDeliver(body, &f.Deliver)
	case TypeSendAck:
		err = decodeSendAck(body, &f.SendAck)
	case TypeDeliverAck:
		err = decodeDeliverAck(body, &f.DeliverAck)
	case TypePing, TypePong:
		err = decodeEmpty(body)
	case TypeLogin:
		f.Login = Login{}
		err = decodeReflect(body, &f.Login)
	case TypeLoginAck:
		f.LoginAck = LoginAck{}
		err = decodeReflect(body, &f.LoginAck)
	case TypeSubscribe:
		f.Subscribe = Subscribe{}
		err = decodeReflect(body, &f.Subscribe)
	case TypeSubAck:
		f.SubAck = SubAck{}
		err = decodeReflect(body, &f.SubAck)
	case TypeUnsubscribe:
		f.Unsubscribe = Unsubscribe{}
		err = decodeReflect(body, &f.Unsubscribe)
	case TypeUnsubAck:
		f.UnsubAck = UnsubAck{}
		err = decodeReflect(body, &f.UnsubAck)
	case TypeRequest:
		f.Request = Request{}
		err = decodeReflect(body, &f.Request)
	case TypeResponse:
		f.Response = Response{}
		err = decodeReflect(body, &f.Response)
	case TypeKick:
		f.Kick = Kick{}
		err = decodeReflect(body, &f.Kick)
	case TypeError:
		f.Error = Error{}
		err = decodeReflect(body, &f.Error)
	default:
		return total, fmt.Errorf("wire: %v: %w", t, CodeUnknownFrame)
	}
	if err != nil {
		return total, fmt.Errorf("wire: %v frame: %v: %w", t, err, CodeMalformed)
	}
	return total, nil
}

// decodeReflect decodes a body with the msgpack library after scan has
// checked it is one well-formed map (or nil) and nothing else, so the
// library never sees a length it could over-allocate for.
func decodeReflect(body []byte, v any) error {
	if len(body) == 0 {
		return errShort
	}
	if c := body[0]; !(c >= 0x80 && c <= 0x8f || c == 0xde || c == 0xdf || c == 0xc0) {
		return errNotMap
	}
	p, err := scan(body, 0, 0)
	if err != nil {
		return err
	}
	if p != len(body) {
		return errTrailing
	}
	return msgpack.Unmarshal(body, v)
}

// Detach makes the strings and byte slices of the member named by f.Type
// independent of the buffer it was decoded from, with one allocation.
func (f *Frame) Detach() {
	switch f.Type {
	case TypeSend:
		s := &f.Send
		n := len(s.Name) + len(s.Body)
		for _, m := range s.Batch {
			n += len(m)
		}
		own := make([]byte, 0, n)
		s.Name, own = ownString(own, s.Name)
		s.Body, own = ownBytes(own, s.Body)
		if len(s.Batch) > 0 {
			batch := make([][]byte, len(s.Batch))
			for i, m := range s.Batch {
				batch[i], own = ownBytes(own, m)
			}
			s.Batch = batch
		}
	case TypeDeliver:
		d := &f.Deliver
		own := make([]byte, 0, len(d.FromName)+len(d.Name)+len(d.Body))
		d.FromName, own = ownString(own, d.FromName)
		d.Name, own = ownString(own, d.Name)
		d.Body, _ = ownBytes(own, d.Body)
	case TypeSendAck:
		f.SendAck.Text = string([]byte(f.SendAck.Text))
	}
	// The other members are decoded by the msgpack library, which copies.
}

func ownString(own []byte, s string) (string, []byte) {
	if s == "" {
		return "", own
	}
	at := len(own)
	own = append(own, s...)
	return bytesToString(own[at:len(own):len(own)]), own
}

func ownBytes(own, b []byte) ([]byte, []byte) {
	if b == nil {
		return nil, own
	}
	at := len(own)
	own = append(own, b...)
	return own[at:len(own):len(own)], own
}
