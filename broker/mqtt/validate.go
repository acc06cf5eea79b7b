package mqtt

import (
	"bytes"
	"encoding/binary"
	"unicode/utf8"

	"github.com/mochi-mqtt/server/v2/packets"
)

// The validation layer: before the codec decodes a body, check walks it as
// the spec draws it and refuses what the codec would let through (a
// property past its block, a duplicate, a field its flags say is absent,
// bytes after the last field, a packet id of 0, reserved option bits). Once
// check has passed, the codec reads exactly the fields check walked, so it
// cannot run past the body. check never allocates on success.
//
// The decoder serves both directions (the broker reads client packets, test
// and bench clients read server packets), so each packet type is checked by
// its own rules whoever sent it; what depends on a connection's state (topic
// alias maximum, receive maximum, the session) is left to the caller.

// validString reports whether b is an MQTT UTF-8 string: well-formed UTF-8
// and no U+0000 [MQTT-1.5.4-1] [MQTT-1.5.4-2] (3.1.1: [MQTT-1.5.3-1]
// [MQTT-1.5.3-2]). Go's decoder treats the UTF-16 surrogates U+D800-U+DFFF
// as ill-formed, as the spec wants.
//
// Topics and property strings are short and nearly always ASCII: eight
// bytes at a time are checked for a high bit or a zero byte, and only a
// string with a non-ASCII byte goes through the UTF-8 decoder.
func validString(b []byte) bool {
	i := 0
	for ; i+8 <= len(b); i += 8 {
		w := binary.LittleEndian.Uint64(b[i:])
		const lo, hi = 0x0101010101010101, 0x8080808080808080
		if w&hi != 0 || (w-lo)&^w&hi != 0 {
			break // a non-ASCII or a zero byte in these eight
		}
	}
	for ; i < len(b); i++ {
		switch c := b[i]; {
		case c == 0:
			return false
		case c >= utf8.RuneSelf:
			rest := b[i:] // i is at a rune boundary: all before it is ASCII
			return utf8.Valid(rest) && bytes.IndexByte(rest, 0) < 0
		}
	}
	return true
}

// field reads the two-byte-length-prefixed field at b[off:] (a string or
// binary data): the field and the offset after it, or ok=false if b ends
// first.
func field(b []byte, off int) (f []byte, next int, ok bool) {
	if off+2 > len(b) {
		return nil, off, false
	}
	l := int(b[off])<<8 | int(b[off+1])
	off += 2
	if off+l > len(b) {
		return nil, off, false
	}
	return b[off : off+l], off + l, true
}

// packetID reads the packet id at b[off:], which must be there and not 0:
// ids are assigned non-zero [MQTT-2.2.1-3] [MQTT-2.2.1-4] (3.1.1:
// [MQTT-2.3.1-1]), so an id of 0 names no packet.
func packetID(b []byte, off int) (int, error) {
	if off+2 > len(b) {
		return 0, packets.ErrMalformedPacketID
	}
	if b[off] == 0 && b[off+1] == 0 {
		return 0, packets.ErrProtocolViolationNoPacketID
	}
	return off + 2, nil
}

// check validates the body of a packet whose fixed header pk holds, for a
// connection speaking pk.ProtocolVersion. CONNECT also sets the version.
func check(pk *packets.Packet, body []byte) error {
	v := pk.ProtocolVersion
	switch t := pk.FixedHeader.Type; t {
	case packets.Connect:
		return checkConnect(pk, body)
	case packets.Publish:
		return checkPublish5(body, pk.FixedHeader.Qos) // v3 PUBLISH has its own decoder
	case packets.Puback, packets.Pubrec, packets.Pubrel, packets.Pubcomp:
		return checkAck(body, t, v)
	case packets.Subscribe:
		return checkSubscribe(body, v)
	case packets.Unsubscribe:
		return checkUnsubscribe(body, v)
	case packets.Pingreq, packets.Pingresp:
		if len(body) != 0 {
			return ErrRemainingLength // v5 §3.12.1, §3.13.1; 3.1.1 §3.12.1, §3.13.1
		}
	case packets.Disconnect:
		return checkDisconnect(body, v)
	case packets.Auth:
		if v < 5 {
			return packets.ErrProtocolViolation // type 15 is reserved in 3.1.1 (§2.2.1)
		}
		return checkReasonProps(body, t, 0)
	case packets.Connack:
		return checkConnack(body, v)
	case packets.Suback, packets.Unsuback:
		return checkSubackUnsuback(body, t, v)
	}
	return nil
}

// checkPublish5 checks a v5 PUBLISH up to its payload: topic (the codec
// checks its UTF-8), packet id, properties.
func checkPublish5(b []byte, qos byte) error {
	_, off, ok := field(b, 0)
	if !ok {
		return packets.ErrMalformedTopic
	}
	if qos > 0 {
		var err error
		if off, err = packetID(b, off); err != nil {
			return err
		}
	}
	_, err := checkProps(b[off:], packets.Publish) // v5 §3.3.2.3
	return err
}

// Reason codes each v5 packet may carry (v5 §3.4.2.1, §3.5.2.1, §3.6.2.1,
// §3.7.2.1, §3.14.2.1, §3.15.2.1): a bit per code.
type codeSet [4]uint64

func codesOf(cs ...byte) codeSet {
	var s codeSet
	for _, c := range cs {
		s[c>>6] |= 1 << (c & 63)
	}
	return s
}

func (s *codeSet) has(c byte) bool { return s[c>>6]&(1<<(c&63)) != 0 }

var reasonCodes = [16]codeSet{
	packets.Puback:  codesOf(0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99),
	packets.Pubrec:  codesOf(0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99),
	packets.Pubrel:  codesOf(0x00, 0x92),
	packets.Pubcomp: codesOf(0x00, 0x92),
	// Either direction: the server's codes and the client's.
	packets.Disconnect: codesOf(0x00, 0x04, 0x80, 0x81, 0x82, 0x83, 0x87, 0x89, 0x8B, 0x8D, 0x8E, 0x8F, 0x90,
		0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9E, 0x9F, 0xA0, 0xA1, 0xA2),
	packets.Auth: codesOf(0x00, 0x18, 0x19),
}

// checkReasonProps checks what follows the fixed part of an ack,
// DISCONNECT or AUTH in v5: nothing, a reason code, or a reason code and a
// property block that ends the packet.
func checkReasonProps(b []byte, t byte, off int) error {
	if off == len(b) {
		return nil // reason 0x00, no properties
	}
	if !reasonCodes[t].has(b[off]) {
		return packets.ErrProtocolViolationInvalidReason // [MQTT-3.4.2-1] and the like
	}
	off++
	if off == len(b) {
		if t == packets.Auth {
			// Only a success AUTH may be shortened, to nothing (v5 §3.15.2.1).
			return ErrRemainingLength
		}
		return nil // no property length: none (v5 §3.4.2.2.1, §3.14.2.2.1)
	}
	n, err := checkProps(b[off:], t)
	if err != nil {
		return err
	}
	if off+n != len(b) {
		return ErrTrailingBytes
	}
	return nil
}

// checkAck checks PUBACK, PUBREC, PUBREL and PUBCOMP.
func checkAck(b []byte, t, v byte) error {
	off, err := packetID(b, 0)
	if err != nil {
		return err
	}
	if v < 5 {
		if len(b) != 2 {
			return ErrRemainingLength // 3.1.1 §3.4.1: remaining length 2
		}
		return nil
	}
	return checkReasonProps(b, t, off) // v5 §3.4.2.2.2: one Reason String at most
}

// checkDisconnect checks DISCONNECT: empty before v5 (3.1.1 §3.14.1).
func checkDisconnect(b []byte, v byte) error {
	if v < 5 {
		if len(b) != 0 {
			return ErrRemainingLength
		}
		return nil
	}
	return checkReasonProps(b, packets.Disconnect, 0)
}

// checkSubscribe checks SUBSCRIBE: packet id, properties (one
// Subscription Identifier at most, not 0), then one or more filter and
// options pairs.
func checkSubscribe(b []byte, v byte) error {
	off, err := packetID(b, 0)
	if err != nil {
		return err
	}
	if v >= 5 {
		n, err := checkProps(b[off:], packets.Subscribe) // v5 §3.8.2.1.2
		if err != nil {
			return err
		}
		off += n
	}
	if off == len(b) {
		return packets.ErrProtocolViolationNoFilters // [MQTT-3.8.3-2] (3.1.1: [MQTT-3.8.3-3])
	}
	for off < len(b) {
		if off, err = checkFilter(b, off); err != nil {
			return err
		}
		if off == len(b) {
			return packets.ErrMalformedQos // the options byte is missing
		}
		o := b[off]
		off++
		switch {
		case v < 5 && o&^3 != 0:
			return ErrSubscriptionOptions // [MQTT-3-8.3-4] (3.1.1)
		case v < 5 && o == 3:
			return packets.ErrMalformedQos // [MQTT-3-8.3-4] (3.1.1)
		case o&0xc0 != 0:
			return ErrSubscriptionOptions // [MQTT-3.8.3-5]
		case o&3 == 3:
			return packets.ErrProtocolViolationQosOutOfRange // v5 §3.8.3.1
		case o>>4&3 == 3:
			return ErrRetainHandling // v5 §3.8.3.1
		}
	}
	return nil
}

// checkFilter checks the topic filter at b[off:]: there, not empty, a
// valid UTF-8 string. Whether it is a well-formed filter (wildcards) is
// answered per filter in SUBACK by the caller.
func checkFilter(b []byte, off int) (int, error) {
	f, next, ok := field(b, off)
	switch {
	case !ok:
		return 0, packets.ErrMalformedTopic
	case len(f) == 0:
		return 0, ErrEmptyTopicFilter // [MQTT-4.7.3-1]
	case !validString(f):
		return 0, packets.ErrMalformedTopic // [MQTT-1.5.4-1] [MQTT-1.5.4-2]
	}
	return next, nil
}

// checkUnsubscribe checks UNSUBSCRIBE: packet id, properties (user
// properties only), then one or more filters.
func checkUnsubscribe(b []byte, v byte) error {
	off, err := packetID(b, 0)
	if err != nil {
		return err
	}
	if v >= 5 {
		n, err := checkProps(b[off:], packets.Unsubscribe)
		if err != nil {
			return err
		}
		off += n
	}
	if off == len(b) {
		return packets.ErrProtocolViolationNoFilters // [MQTT-3.10.3-2]
	}
	for off < len(b) {
		if off, err = checkFilter(b, off); err != nil {
			return err
		}
	}
	return nil
}

// checkConnack checks a CONNACK (read by clients): flags with reserved
// bits clear [MQTT-3.2.2-1], a return code, v5 properties ending the
// packet. A v3-format CONNACK (no properties) is accepted at v5, as a
// server refusing the protocol level sends one.
func checkConnack(b []byte, v byte) error {
	if len(b) < 2 {
		return ErrRemainingLength
	}
	if b[0]&^1 != 0 {
		return packets.ErrMalformedSessionPresent // [MQTT-3.2.2-1]
	}
	if v < 5 || len(b) == 2 {
		if len(b) != 2 {
			return ErrRemainingLength
		}
		return nil
	}
	n, err := checkProps(b[2:], packets.Connack)
	if err != nil {
		return err
	}
	if 2+n != len(b) {
		return ErrTrailingBytes
	}
	return nil
}

// checkSubackUnsuback checks SUBACK and UNSUBACK (read by clients): packet
// id, v5 properties, then the reason codes (none in a v3 UNSUBACK).
func checkSubackUnsuback(b []byte, t, v byte) error {
	if len(b) < 2 {
		return packets.ErrMalformedPacketID
	}
	off := 2
	if v >= 5 {
		n, err := checkProps(b[off:], t)
		if err != nil {
			return err
		}
		off += n
	}
	if t == packets.Unsuback && v < 5 && off != len(b) {
		return ErrRemainingLength // 3.1.1 §3.11.1: remaining length 2
	}
	return nil
}
