package mqtt

import (
	"github.com/mochi-mqtt/server/v2/packets"
)

// A CONNECT body, v5 (3.1 and 3.1.1 have no property blocks):
//
//	protocol name | level | flags | keepalive | properties
//	client id | [will properties | will topic | will payload] | [user name] | [password]
//
// The flags byte says which bracketed fields are present:
//
//	bit 7 user name, 6 password, 5 will retain, 4-3 will QoS, 2 will,
//	1 clean start, 0 reserved (0)
//
// Present fields must be there and absent ones must not: anything after
// the last present field is malformed [MQTT-3.1.2-16..19] [MQTT-3.1.4-1].

const (
	flagReserved = 1 << 0
	flagWill     = 1 << 2
	flagWillQoS  = 3 << 3
	flagRetain   = 1 << 5
	flagPassword = 1 << 6
	flagUsername = 1 << 7
)

// checkConnect checks a CONNECT body and sets pk.ProtocolVersion to its
// protocol level (bridge bit cleared), so that a refusal can be answered in
// the client's version. A level other than 3, 4 and 5 is checked no further:
// the caller refuses it with "unsupported protocol version" [MQTT-3.1.2-2].
func checkConnect(pk *packets.Packet, b []byte) error {
	_, off, ok := field(b, 0)
	if !ok {
		return packets.ErrMalformedProtocolName
	}
	if off+4 > len(b) {
		switch {
		case off == len(b):
			return packets.ErrMalformedProtocolVersion
		case off+1 == len(b):
			return packets.ErrMalformedFlags
		}
		return packets.ErrMalformedKeepalive
	}
	level, flags := b[off], b[off+1]
	off += 4
	pk.ProtocolVersion = level &^ 0x80 // the bridge bit of mosquitto's bridges
	v := pk.ProtocolVersion
	if level == 0x80|5 {
		// The codec reads v5 properties only for a level of exactly 5, so a
		// v5 bridge CONNECT would be misread: refuse it (a bridge retries
		// without the bit).
		return packets.ErrUnsupportedProtocolVersion
	}
	if v < 3 || v > 5 {
		return nil
	}

	will := flags&flagWill != 0
	switch {
	case flags&flagReserved != 0:
		return ErrConnectFlags // [MQTT-3.1.2-3]
	case !will && flags&(flagWillQoS|flagRetain) != 0:
		return ErrConnectFlags // [MQTT-3.1.2-11] [MQTT-3.1.2-13]
	case flags&flagWillQoS == flagWillQoS:
		return ErrConnectFlags // [MQTT-3.1.2-12]
	case v < 5 && flags&flagPassword != 0 && flags&flagUsername == 0:
		return ErrConnectFlags // [MQTT-3.1.2-22] (3.1.1; v5 allows a password alone)
	}
	if v == 5 {
		n, err := checkProps(b[off:], packets.Connect) // v5 §3.1.2.11
		if err != nil {
			return err
		}
		off += n
	}
	id, off, ok := field(b, off)
	if !ok || !validString(id) {
		return ErrMalformedClientID // [MQTT-3.1.3-3] [MQTT-3.1.3-4] [MQTT-1.5.4-1] [MQTT-1.5.4-2]
	}
	if will {
		if v == 5 {
			n, err := checkProps(b[off:], kindWill) // v5 §3.1.3.2
			if err != nil {
				return err
			}
			off += n
		}
		var topic []byte
		if topic, off, ok = field(b, off); !ok || !validString(topic) {
			return packets.ErrMalformedWillTopic // [MQTT-3.1.3-10] [MQTT-1.5.4-1]
		}
		// The will payload is binary data: zero length is valid (3.1.1
		// §3.1.3.3, v5 §3.1.3.4).
		if _, off, ok = field(b, off); !ok {
			return packets.ErrMalformedWillPayload
		}
	}
	if flags&flagUsername != 0 {
		var user []byte
		if user, off, ok = field(b, off); !ok || !validString(user) {
			return packets.ErrMalformedUsername // [MQTT-3.1.2-17] [MQTT-3.1.3-11] [MQTT-1.5.4-1] [MQTT-1.5.4-2]
		}
	}
	if flags&flagPassword != 0 {
		// Binary data, zero length allowed.
		if _, off, ok = field(b, off); !ok {
			return packets.ErrMalformedPassword // [MQTT-3.1.2-19]
		}
	}
	if off != len(b) {
		return ErrTrailingBytes // [MQTT-3.1.2-16] [MQTT-3.1.2-18] [MQTT-3.1.4-1]
	}
	return nil
}

// ValidateConnect checks what a CONNECT that Decode accepted asks for:
// the protocol name and level, and the client identifier rule of MQTT 3.1.
// Decode has already checked the packet's form (flags, fields, strings,
// properties), so this replaces the codec's ConnectValidate, which refuses
// an empty will payload and an empty password, both valid (3.1.1
// §3.1.3.3, v5 §3.1.3.4, §3.1.3.6). It returns packets.CodeSuccess or the
// code to refuse the CONNECT with (v5 reason code; the caller maps it to a
// v3 return code). It does not look at options (client id length limits,
// authentication), which are the broker's.
//
// Call it on the loop that decoded pk, before anything aliasing the read
// buffer is released; it does not block and keeps nothing.
func ValidateConnect(pk *packets.Packet) packets.Code {
	name := string(pk.Connect.ProtocolName) // no allocation: compared only
	v := pk.ProtocolVersion
	switch {
	case name == "MQTT" && (v == 4 || v == 5), name == "MQIsdp" && v == 3:
	case name != "MQTT" && name != "MQIsdp":
		return packets.ErrProtocolViolationProtocolName // [MQTT-3.1.2-1]
	default:
		// "MQTT" at level 3, "MQIsdp" at 4 or 5: a level this name does
		// not have [MQTT-3.1.2-2] (3.1.1: CONNACK 0x01).
		return packets.ErrUnsupportedProtocolVersion
	}
	if v == 3 && pk.Connect.ClientIdentifier == "" {
		// MQTT 3.1 §3.1 requires 1 to 23 characters; 3.1.1 allows an empty
		// one. The 23-character ceiling is not enforced (Mosquitto does not
		// either: 3.1 clients send longer ids).
		return packets.ErrClientIdentifierNotValid
	}
	return packets.CodeSuccess
}
