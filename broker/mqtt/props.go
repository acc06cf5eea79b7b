package mqtt

import (
	"bytes"

	"github.com/mochi-mqtt/server/v2/packets"
)

// A v5 property block is a variable byte integer length followed by that
// many bytes of properties, each an identifier byte and a value whose form
// the identifier fixes (v5 §2.2.2):
//
//	+------------+----+-------+----+-------+-----
//	| length VBI | id | value | id | value | ...
//	+------------+----+-------+----+-------+-----
//	             |<-------- length bytes -------->|
//
// The codec reads properties from an unbounded buffer, trusts the length
// only to stop, and keeps the last of duplicates, so checkProps walks the
// block first: every value must end inside the block, every identifier must
// be allowed in the packet, single-use properties must appear once, and the
// few values the spec restricts must be in range.

// kindWill names the will properties of a CONNECT in the rule table; the
// other kinds are packet types (1-15). Packet type 0 is reserved, so its bit
// is free.
const kindWill = 0

// propForm is the wire form of a property's value (v5 §1.5).
type propForm uint8

const (
	formByte   propForm = iota + 1 // one byte
	formU16                        // two-byte integer
	formU32                        // four-byte integer
	formVBI                        // variable byte integer
	formString                     // UTF-8 string
	formBinary                     // binary data
	formPair                       // UTF-8 string pair
)

// Value rules, each from the property's own section of v5 §3.
const (
	ruleNone    = iota
	ruleBool    // 0 or 1 only
	ruleNonZero // 0 is a protocol error
)

type propRule struct {
	form propForm
	in   uint16 // kinds the property is allowed in: bit 1<<packet type, 1<<kindWill
	many uint16 // kinds it may appear more than once in
	rule uint8
}

func kinds(ks ...byte) uint16 {
	var m uint16
	for _, k := range ks {
		m |= 1 << k
	}
	return m
}

// allKinds is every block that has properties: will properties and every
// packet type but PINGREQ and PINGRESP (which have no variable header).
const allKinds = 0xfffe&^(1<<packets.Pingreq|1<<packets.Pingresp) | 1<<kindWill

// propRules is the property table of v5 §2.2.2.2, indexed by identifier.
// An identifier with no entry (form 0) is unknown: malformed.
var propRules = [packets.PropSharedSubAvailable + 1]propRule{
	packets.PropPayloadFormat:          {form: formByte, in: kinds(packets.Publish, kindWill), rule: ruleBool},
	packets.PropMessageExpiryInterval:  {form: formU32, in: kinds(packets.Publish, kindWill)},
	packets.PropContentType:            {form: formString, in: kinds(packets.Publish, kindWill)},
	packets.PropResponseTopic:          {form: formString, in: kinds(packets.Publish, kindWill)},
	packets.PropCorrelationData:        {form: formBinary, in: kinds(packets.Publish, kindWill)},
	packets.PropSubscriptionIdentifier: {form: formVBI, in: kinds(packets.Publish, packets.Subscribe), many: kinds(packets.Publish), rule: ruleNonZero},
	packets.PropSessionExpiryInterval:  {form: formU32, in: kinds(packets.Connect, packets.Connack, packets.Disconnect)},
	packets.PropAssignedClientID:       {form: formString, in: kinds(packets.Connack)},
	packets.PropServerKeepAlive:        {form: formU16, in: kinds(packets.Connack)},
	packets.PropAuthenticationMethod:   {form: formString, in: kinds(packets.Connect, packets.Connack, packets.Auth)},
	packets.PropAuthenticationData:     {form: formBinary, in: kinds(packets.Connect, packets.Connack, packets.Auth)},
	packets.PropRequestProblemInfo:     {form: formByte, in: kinds(packets.Connect), rule: ruleBool},
	packets.PropWillDelayInterval:      {form: formU32, in: kinds(kindWill)},
	packets.PropRequestResponseInfo:    {form: formByte, in: kinds(packets.Connect), rule: ruleBool},
	packets.PropResponseInfo:           {form: formString, in: kinds(packets.Connack)},
	packets.PropServerReference:        {form: formString, in: kinds(packets.Connack, packets.Disconnect)},
	packets.PropReasonString: {form: formString, in: kinds(packets.Connack, packets.Puback, packets.Pubrec, packets.Pubrel,
		packets.Pubcomp, packets.Suback, packets.Unsuback, packets.Disconnect, packets.Auth)},
	packets.PropReceiveMaximum:       {form: formU16, in: kinds(packets.Connect, packets.Connack), rule: ruleNonZero},
	packets.PropTopicAliasMaximum:    {form: formU16, in: kinds(packets.Connect, packets.Connack)},
	packets.PropTopicAlias:           {form: formU16, in: kinds(packets.Publish)}, // 0 is the receiver's call: DISCONNECT 0x94 [MQTT-3.3.2-8]
	packets.PropMaximumQos:           {form: formByte, in: kinds(packets.Connack), rule: ruleBool},
	packets.PropRetainAvailable:      {form: formByte, in: kinds(packets.Connack), rule: ruleBool},
	packets.PropUser:                 {form: formPair, in: allKinds, many: allKinds},
	packets.PropMaximumPacketSize:    {form: formU32, in: kinds(packets.Connect, packets.Connack), rule: ruleNonZero},
	packets.PropWildcardSubAvailable: {form: formByte, in: kinds(packets.Connack), rule: ruleBool},
	packets.PropSubIDAvailable:       {form: formByte, in: kinds(packets.Connack), rule: ruleBool},
	packets.PropSharedSubAvailable:   {form: formByte, in: kinds(packets.Connack), rule: ruleBool},
}

// readVBIStrict reads a variable byte integer at the front of b. It fails
// with more=true if b ends before the integer does, with a malformed code if
// it is longer than four bytes or not in its shortest form [MQTT-1.5.5-1].
func readVBIStrict(b []byte) (v, n int, more bool, err error) {
	v, n, ok := readVBI(b)
	switch {
	case !ok && n < 4:
		return 0, n, true, nil
	case !ok:
		return 0, n, false, packets.ErrMalformedVariableByteInteger
	case n > 1 && b[n-1] == 0:
		// Only a last byte of 0 after a continuation adds nothing.
		return 0, n, false, ErrNonMinimalVBI // [MQTT-1.5.5-1]
	}
	return v, n, false, nil
}

// checkProps checks the property block at the front of b (its length
// included) for kind k and returns the block's size. It does not allocate.
func checkProps(b []byte, k byte) (int, error) {
	size, n, more, err := readVBIStrict(b)
	if err != nil {
		return 0, err
	}
	if more || n+size > len(b) {
		return 0, ErrPropertyLength
	}
	end := n + size
	var seen uint64 // bit per identifier (all are below 64)
	for i := n; i < end; {
		id := b[i]
		i++
		if int(id) >= len(propRules) || propRules[id].in&(1<<k) == 0 {
			return 0, ErrPropertyNotAllowed // v5 §2.2.2.2
		}
		r := &propRules[id]
		if seen&(1<<id) != 0 && r.many&(1<<k) == 0 {
			return 0, ErrDuplicateProperty // v5 §2.2.2.2
		}
		seen |= 1 << id
		var v int
		switch r.form {
		case formByte:
			if i+1 > end {
				return 0, ErrPropertyTruncated
			}
			v = int(b[i])
			i++
		case formU16:
			if i+2 > end {
				return 0, ErrPropertyTruncated
			}
			v = int(b[i])<<8 | int(b[i+1])
			i += 2
		case formU32:
			if i+4 > end {
				return 0, ErrPropertyTruncated
			}
			v = int(b[i])<<24 | int(b[i+1])<<16 | int(b[i+2])<<8 | int(b[i+3])
			i += 4
		case formVBI:
			x, m, more, err := readVBIStrict(b[i:end])
			if err != nil {
				return 0, err
			}
			if more {
				return 0, ErrPropertyTruncated
			}
			v = x
			i += m
		default: // string, binary, pair: one or two length-prefixed fields
			fields := 1
			if r.form == formPair {
				fields = 2
			}
			for range fields {
				f, next, ok := field(b[:end], i)
				if !ok {
					return 0, ErrPropertyTruncated
				}
				if r.form != formBinary && !validString(f) {
					return 0, ErrPropertyUTF8 // [MQTT-1.5.4-1] [MQTT-1.5.4-2]
				}
				if id == packets.PropResponseTopic && bytes.ContainsAny(f, "+#") {
					return 0, ErrResponseTopicWildcard // [MQTT-3.3.2-14]
				}
				i = next
			}
			continue
		}
		switch {
		case r.rule == ruleBool && v > 1, r.rule == ruleNonZero && v == 0:
			return 0, ErrPropertyValue
		}
	}
	if seen&(1<<packets.PropAuthenticationData) != 0 && seen&(1<<packets.PropAuthenticationMethod) == 0 {
		return 0, ErrAuthDataWithoutMethod // v5 §3.1.2.11.10
	}
	return end, nil
}
