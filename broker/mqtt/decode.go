package mqtt

import (
	"errors"
	"fmt"
	"sync/atomic"
	"unicode/utf8"

	"github.com/mochi-mqtt/server/v2/packets"
)

// ErrIncomplete reports that the buffer does not yet hold a whole packet.
var ErrIncomplete = errors.New("mqtt: incomplete packet")

// maxRemaining is the largest remaining length a 4-byte VBI can carry.
const maxRemaining = 268435455

// Header reads the fixed header at the front of buf. It returns the packet's
// first byte, the header length and the remaining length, ErrIncomplete if
// the length is not all there yet, or a malformed-packet code.
func Header(buf []byte) (first byte, hdrLen, remaining int, err error) {
	if len(buf) < 2 {
		return 0, 0, 0, ErrIncomplete
	}
	// readVBIStrict's checks, spelled out so that they inline here.
	v, n, ok := readVBI(buf[1:])
	switch {
	case !ok && n == 4:
		return 0, 0, 0, packets.ErrMalformedVariableByteInteger // [MQTT-1.5.5-1]
	case !ok:
		return 0, 0, 0, ErrIncomplete
	case n > 1 && buf[n] == 0:
		return 0, 0, 0, ErrNonMinimalVBI // [MQTT-1.5.5-1]
	}
	return buf[0], 1 + n, v, nil
}

// readVBI reads a variable byte integer at the front of b. ok is false if b
// ends first (n < 4) or the integer is longer than four bytes (n == 4).
func readVBI(b []byte) (v, n int, ok bool) {
	var shift uint
	for n < 4 {
		if n >= len(b) {
			return 0, n, false
		}
		c := b[n]
		n++
		v |= int(c&0x7f) << shift
		if c&0x80 == 0 {
			return v, n, true
		}
		shift += 7
	}
	return 0, 4, false
}

// Decode decodes the packet at the front of buf into pk (which is reset) for a
// client speaking protocol version (0 before CONNECT: only CONNECT is
// accepted then). maxSize bounds the whole packet (0 = the protocol maximum).
// It returns the number of bytes consumed. On ErrIncomplete nothing is
// consumed. A packet larger than maxSize fails with packets.ErrPacketTooLarge
// as soon as its header is read, without waiting for its body.
//
// Errors are packets.Code values (reason codes) or ErrIncomplete.
func Decode(buf []byte, pk *packets.Packet, version byte, maxSize uint32) (n int, err error) {
	first, hl, rem, err := Header(buf)
	if err != nil {
		return 0, err
	}
	total := hl + rem
	if maxSize > 0 && uint64(total) > uint64(maxSize) {
		return 0, packets.ErrPacketTooLarge
	}
	if len(buf) < total {
		return 0, ErrIncomplete
	}
	*pk = packets.Packet{ProtocolVersion: version}
	if err := pk.FixedHeader.Decode(first); err != nil {
		// The codec's flag checks [MQTT-2.2.2-1] [MQTT-2.2.2-2]: PUBREL,
		// SUBSCRIBE and UNSUBSCRIBE carry 0010, every other type but
		// PUBLISH 0000; all are malformed. PUBLISH with both QoS bits set
		// is malformed too (v5 §3.3.1.2), not the protocol error the codec
		// names it [MQTT-3.3.1-4].
		if errors.Is(err, packets.ErrProtocolViolationQosOutOfRange) {
			err = packets.ErrMalformedQos
		}
		return total, asCode(err)
	}
	pk.FixedHeader.Remaining = rem
	body := buf[hl:total]
	if version == 0 && pk.FixedHeader.Type != packets.Connect {
		return total, packets.ErrProtocolViolationRequireFirstConnect // [MQTT-3.1.0-1]
	}
	if pk.FixedHeader.Type == packets.Publish && version < 5 {
		// The hot path: no codec, no deferred recover.
		if err := decodePublish3(pk, body); err != nil {
			return total, asCode(err)
		}
		return total, nil
	}
	// The validation layer first (validate.go): once it has passed, the
	// codec reads only the fields it walked.
	if err := check(pk, body); err != nil {
		return total, err
	}
	if err := decodeBody(pk, body); err != nil {
		return total, asCode(err)
	}
	return total, nil
}

// codecPanics counts panics of the codec turned into malformed-packet codes.
// Behind the validation layer there should be none; the tests and the
// fuzzer hold it at zero.
var codecPanics atomic.Int64

// decodeBody runs the codec's decoder for pk's type. The codec indexes its
// input without bounds checks in a few places, so a panic on hostile input
// is turned into a malformed-packet code instead of taking the loop down.
func decodeBody(pk *packets.Packet, body []byte) (err error) {
	defer func() {
		if r := recover(); r != nil {
			codecPanics.Add(1)
			err = fmt.Errorf("decode %s: %v: %w", packets.PacketNames[pk.FixedHeader.Type], r, packets.ErrMalformedPacket)
		}
	}()
	switch pk.FixedHeader.Type {
	case packets.Connect:
		v := pk.ProtocolVersion // set by checkConnect
		if v < 3 || v > 5 {
			return nil // an unknown level is the caller's to refuse [MQTT-3.1.2-2]
		}
		err := pk.ConnectDecode(body)
		pk.ProtocolVersion &= 0x7f // bridge bit (v3/v4)
		if err != nil {
			return err
		}
		wp := &pk.Connect.WillProperties
		if pk.Connect.WillFlag && wp.PayloadFormatFlag && wp.PayloadFormat == 1 && !utf8.Valid(pk.Connect.WillPayload) {
			return packets.ErrPayloadFormatInvalid // v5 §3.1.3.2.3: CONNACK 0x99
		}
		return nil
	case packets.Publish:
		if err := pk.PublishDecode(body); err != nil {
			return err
		}
		if pk.Properties.PayloadFormatFlag && pk.Properties.PayloadFormat == 1 && !utf8.Valid(pk.Payload) {
			return packets.ErrPayloadFormatInvalid // [MQTT-3.3.2-4]
		}
		return nil
	case packets.Puback:
		return pk.PubackDecode(body)
	case packets.Pubrec:
		return pk.PubrecDecode(body)
	case packets.Pubrel:
		return pk.PubrelDecode(body)
	case packets.Pubcomp:
		return pk.PubcompDecode(body)
	case packets.Subscribe:
		return pk.SubscribeDecode(body)
	case packets.Unsubscribe:
		return pk.UnsubscribeDecode(body)
	case packets.Pingreq, packets.Pingresp:
		return nil
	case packets.Disconnect:
		if pk.ProtocolVersion >= 5 && len(body) == 1 {
			// The codec skips a reason code that comes without a property
			// length (it wants Remaining > 1); mosquitto sends e0 01 04.
			pk.ReasonCode = body[0] // spec 3.14.2.1
			return nil
		}
		return pk.DisconnectDecode(body)
	case packets.Auth:
		if len(body) == 0 {
			return nil // reason 0x00, no properties (spec 3.15.2.1)
		}
		return pk.AuthDecode(body)
	// Server-to-client packets; the client package decodes them too.
	case packets.Connack:
		if len(body) == 2 {
			// A v3-format CONNACK at v5 (check allows it): the codec
			// would want a property length.
			pk.SessionPresent, pk.ReasonCode = body[0]&1 != 0, body[1]
			return nil
		}
		return pk.ConnackDecode(body)
	case packets.Suback:
		return pk.SubackDecode(body)
	case packets.Unsuback:
		return pk.UnsubackDecode(body)
	}
	return packets.ErrProtocolViolation
}

// decodePublish3 decodes a v3.1.1 (or 3.1) PUBLISH without the codec's
// allocations: the common case on the hot path.
func decodePublish3(pk *packets.Packet, b []byte) error {
	topic, off, ok := field(b, 0)
	if !ok {
		return packets.ErrMalformedTopic
	}
	if !validString(topic) {
		return packets.ErrMalformedInvalidUTF8 // [MQTT-1.5.3-1] [MQTT-1.5.3-2]
	}
	pk.TopicName = bytesToString(topic)
	if pk.FixedHeader.Qos > 0 {
		next, err := packetID(b, off) // [MQTT-2.3.1-1]
		if err != nil {
			return err
		}
		pk.PacketID = uint16(b[off])<<8 | uint16(b[off+1])
		off = next
	}
	pk.Payload = b[off:]
	return nil
}

// asCode returns err as a reason code if it wraps one, else as malformed.
func asCode(err error) error {
	var c packets.Code
	if errors.As(err, &c) {
		return c
	}
	return fmt.Errorf("%v: %w", err, packets.ErrMalformedPacket)
}

// CodeOf extracts the reason code carried by err (0x80 if none).
func CodeOf(err error) packets.Code {
	var c packets.Code
	if errors.As(err, &c) {
		return c
	}
	return packets.ErrUnspecifiedError
}
