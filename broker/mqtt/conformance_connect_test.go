package mqtt

import (
	"testing"

	"github.com/mochi-mqtt/server/v2/packets"
)

// CONNECT fragments: the fixed fields up to the keepalive, for 3.1.1 and 5.
var (
	connect4 = []byte{0, 4, 'M', 'Q', 'T', 'T', 4} // protocol name "MQTT", level 4
	connect5 = []byte{0, 4, 'M', 'Q', 'T', 'T', 5} // protocol name "MQTT", level 5
	idC      = []byte{0, 1, 'c'}                   // client id "c"
)

// CONNECT refusals: a v5 client is answered CONNACK with the code, a v3
// client is disconnected.
var connectRefusals = []refusal{
	{
		name: "connect/v5 reserved flag", spec: "[MQTT-3.1.2-3]",
		raw: cat([]byte{packets.Connect << 4, 14}, connect5, []byte{ // fixed header, remaining 14; name, level
			1<<1 | 1, // flags: clean start, reserved bit 0 set
			0, 60,    // keepalive 60 s
			0, // property length 0
		}, idC),
		want: ErrConnectFlags,
	},
	{
		name: "connect/v4 will qos without will", spec: "[MQTT-3.1.2-11]",
		raw: cat([]byte{packets.Connect << 4, 13}, connect4, []byte{ // fixed header, remaining 13; name, level
			1<<3 | 1<<1, // flags: will qos 1, clean; will flag clear
			0, 60,       // keepalive 60 s
		}, idC),
		want: ErrConnectFlags,
	},
	{
		name: "connect/v5 will retain without will", spec: "[MQTT-3.1.2-13]",
		raw: cat([]byte{packets.Connect << 4, 14}, connect5, []byte{ // fixed header, remaining 14; name, level
			1<<5 | 1<<1, // flags: will retain, clean start; will flag clear
			0, 60,       // keepalive 60 s
			0, // property length 0
		}, idC),
		want: ErrConnectFlags,
	},
	{
		name: "connect/v4 will qos 3", spec: "[MQTT-3.1.2-12]",
		raw: cat([]byte{packets.Connect << 4, 19}, connect4, []byte{ // fixed header, remaining 19; name, level
			3<<3 | 1<<2 | 1<<1, // flags: will qos 3, will, clean
			0, 60,              // keepalive 60 s
		}, idC, []byte{
			0, 1, 'w', // will topic "w"
			0, 1, 'x', // will payload "x"
		}),
		want: ErrConnectFlags,
	},
	{
		name: "connect/v4 password without user name", spec: "[MQTT-3.1.2-22]",
		raw: cat([]byte{packets.Connect << 4, 16}, connect4, []byte{ // fixed header, remaining 16; name, level
			1<<6 | 1<<1, // flags: password, clean; no user name
			0, 60,       // keepalive 60 s
		}, idC, []byte{
			0, 1, 'p', // password "p"
		}),
		want: ErrConnectFlags,
	},
	{
		name: "connect/v4 user name without its flag", spec: "[MQTT-3.1.2-16]",
		raw: cat([]byte{packets.Connect << 4, 16}, connect4, []byte{ // fixed header, remaining 16; name, level
			1 << 1, // flags: clean; no user name
			0, 60,  // keepalive 60 s
		}, idC, []byte{
			0, 1, 'u', // a user name anyway
		}),
		want: ErrTrailingBytes,
	},
	{
		name: "connect/v5 password without its flag", spec: "[MQTT-3.1.2-18]",
		raw: cat([]byte{packets.Connect << 4, 20}, connect5, []byte{ // fixed header, remaining 20; name, level
			1<<7 | 1<<1, // flags: user name, clean start; no password
			0, 60,       // keepalive 60 s
			0, // property length 0
		}, idC, []byte{
			0, 1, 'u', // user name "u"
			0, 1, 'p', // a password anyway
		}),
		want: ErrTrailingBytes,
	},
	{
		name: "connect/v4 user name flag without the field", spec: "[MQTT-3.1.2-17]",
		raw: cat([]byte{packets.Connect << 4, 13}, connect4, []byte{ // fixed header, remaining 13; name, level
			1<<7 | 1<<1, // flags: user name, clean
			0, 60,       // keepalive 60 s
		}, idC), // no user name follows
		want: packets.ErrMalformedUsername,
	},
	{
		name: "connect/v5 password flag without the field", spec: "[MQTT-3.1.2-19]",
		raw: cat([]byte{packets.Connect << 4, 17}, connect5, []byte{ // fixed header, remaining 17; name, level
			1<<7 | 1<<6 | 1<<1, // flags: user name, password, clean start
			0, 60,              // keepalive 60 s
			0, // property length 0
		}, idC, []byte{
			0, 1, 'u', // user name "u"; no password follows
		}),
		want: packets.ErrMalformedPassword,
	},
	{
		name: "connect/v4 bytes after the password", spec: "[MQTT-3.1.4-1]",
		raw: cat([]byte{packets.Connect << 4, 20}, connect4, []byte{ // fixed header, remaining 20; name, level
			1<<7 | 1<<6 | 1<<1, // flags: user name, password, clean
			0, 60,              // keepalive 60 s
		}, idC, []byte{
			0, 1, 'u', // user name "u"
			0, 1, 'p', // password "p"
			'z', // a byte after the last field
		}),
		want: ErrTrailingBytes,
	},
	{
		name: "connect/v4 client id with U+0000", spec: "[MQTT-1.5.3-2]",
		raw: cat([]byte{packets.Connect << 4, 15}, connect4, []byte{ // fixed header, remaining 15; name, level
			1 << 1, // flags: clean
			0, 60,  // keepalive 60 s
			0, 3, 'a', 0, 'b', // client id "a\x00b"
		}),
		want: ErrMalformedClientID,
	},
	{
		name: "connect/v5 client id with a surrogate", spec: "[MQTT-1.5.4-1]",
		raw: cat([]byte{packets.Connect << 4, 16}, connect5, []byte{ // fixed header, remaining 16; name, level
			1 << 1, // flags: clean start
			0, 60,  // keepalive 60 s
			0,                      // property length 0
			0, 3, 0xed, 0xa0, 0x80, // client id: U+D800 encoded
		}),
		want: ErrMalformedClientID,
	},
	{
		name: "connect/v5 client id with U+0000", spec: "[MQTT-1.5.4-2]",
		raw: cat([]byte{packets.Connect << 4, 15}, connect5, []byte{ // fixed header, remaining 15; name, level
			1 << 1, // flags: clean start
			0, 60,  // keepalive 60 s
			0,            // property length 0
			0, 2, 'a', 0, // client id "a\x00"
		}),
		want: ErrMalformedClientID,
	},
	{
		name: "connect/v4 client id past the packet", spec: "[MQTT-3.1.3-3]",
		raw: cat([]byte{packets.Connect << 4, 14}, connect4, []byte{ // fixed header, remaining 14; name, level
			1 << 1, // flags: clean
			0, 60,  // keepalive 60 s
			0, 5, 'a', 'b', // client id of 5 bytes, two present
		}),
		want: ErrMalformedClientID,
	},
	{
		name: "connect/v5 user name with U+0000", spec: "[MQTT-3.1.3-11]",
		raw: cat([]byte{packets.Connect << 4, 19}, connect5, []byte{ // fixed header, remaining 19; name, level
			1<<7 | 1<<1, // flags: user name, clean start
			0, 60,       // keepalive 60 s
			0, // property length 0
		}, idC, []byte{
			0, 3, 'u', 0, 'x', // user name "u\x00x"
		}),
		want: packets.ErrMalformedUsername,
	},
	{
		name: "connect/v4 user name with a surrogate", spec: "[MQTT-1.5.3-1]",
		raw: cat([]byte{packets.Connect << 4, 18}, connect4, []byte{ // fixed header, remaining 18; name, level
			1<<7 | 1<<1, // flags: user name, clean
			0, 60,       // keepalive 60 s
		}, idC, []byte{
			0, 3, 0xed, 0xbf, 0xbf, // user name: U+DFFF encoded
		}),
		want: packets.ErrMalformedUsername,
	},
	{
		name: "connect/v5 will topic with a surrogate", spec: "[MQTT-3.1.3-10]",
		raw: cat([]byte{packets.Connect << 4, 22}, connect5, []byte{ // fixed header, remaining 22; name, level
			1<<2 | 1<<1, // flags: will, clean start
			0, 60,       // keepalive 60 s
			0, // property length 0
		}, idC, []byte{
			0,                      // will property length 0
			0, 3, 0xed, 0xa0, 0x80, // will topic: U+D800 encoded
			0, 0, // will payload, empty
		}),
		want: packets.ErrMalformedWillTopic,
	},
	{
		name: "connect/v4 will payload past the packet", spec: "3.1.1 §3.1.3.3",
		raw: cat([]byte{packets.Connect << 4, 19}, connect4, []byte{ // fixed header, remaining 19; name, level
			1<<2 | 1<<1, // flags: will, clean
			0, 60,       // keepalive 60 s
		}, idC, []byte{
			0, 1, 'w', // will topic "w"
			0, 4, 'x', // will payload of 4 bytes, one present
		}),
		want: packets.ErrMalformedWillPayload,
	},
	{
		name: "connect/v5 property past its block", spec: "v5 §2.2.2",
		raw: cat([]byte{packets.Connect << 4, 17}, connect5, []byte{ // fixed header, remaining 17; name, level
			1 << 1, // flags: clean start
			0, 60,  // keepalive 60 s
			3,       // property length 3
			0x11, 0, // session expiry interval: needs 4 bytes, the block has 2
			0, // (the block ends here)
		}, idC),
		want: ErrPropertyTruncated,
	},
	{
		name: "connect/v5 receive maximum twice", spec: "v5 §3.1.2.11.3",
		raw: cat([]byte{packets.Connect << 4, 20}, connect5, []byte{ // fixed header, remaining 20; name, level
			1 << 1, // flags: clean start
			0, 60,  // keepalive 60 s
			6,          // property length
			0x21, 0, 5, // receive maximum 5
			0x21, 0, 6, // receive maximum again
		}, idC),
		want: ErrDuplicateProperty,
	},
	{
		name: "connect/v5 receive maximum 0", spec: "v5 §3.1.2.11.3",
		raw: cat([]byte{packets.Connect << 4, 17}, connect5, []byte{ // fixed header, remaining 17; name, level
			1 << 1, // flags: clean start
			0, 60,  // keepalive 60 s
			3,          // property length
			0x21, 0, 0, // receive maximum 0
		}, idC),
		want: ErrPropertyValue,
	},
	{
		name: "connect/v5 maximum packet size 0", spec: "v5 §3.1.2.11.4",
		raw: cat([]byte{packets.Connect << 4, 19}, connect5, []byte{ // fixed header, remaining 19; name, level
			1 << 1, // flags: clean start
			0, 60,  // keepalive 60 s
			5,                // property length
			0x27, 0, 0, 0, 0, // maximum packet size 0
		}, idC),
		want: ErrPropertyValue,
	},
	{
		name: "connect/v5 request problem information 2", spec: "v5 §3.1.2.11.7",
		raw: cat([]byte{packets.Connect << 4, 16}, connect5, []byte{ // fixed header, remaining 16; name, level
			1 << 1, // flags: clean start
			0, 60,  // keepalive 60 s
			2,       // property length
			0x17, 2, // request problem information 2: only 0 and 1 exist
		}, idC),
		want: ErrPropertyValue,
	},
	{
		name: "connect/v5 authentication data without a method", spec: "v5 §3.1.2.11.10",
		raw: cat([]byte{packets.Connect << 4, 18}, connect5, []byte{ // fixed header, remaining 18; name, level
			1 << 1, // flags: clean start
			0, 60,  // keepalive 60 s
			4,               // property length
			0x16, 0, 1, 'x', // authentication data "x", no method
		}, idC),
		want: ErrAuthDataWithoutMethod,
	},
	{
		name: "connect/v5 topic alias", spec: "v5 §2.2.2.2",
		raw: cat([]byte{packets.Connect << 4, 17}, connect5, []byte{ // fixed header, remaining 17; name, level
			1 << 1, // flags: clean start
			0, 60,  // keepalive 60 s
			3,          // property length
			0x23, 0, 1, // topic alias: a PUBLISH property only
		}, idC),
		want: ErrPropertyNotAllowed,
	},
	{
		name: "connect/v5 property length not minimal", spec: "[MQTT-1.5.5-1]",
		raw: cat([]byte{packets.Connect << 4, 15}, connect5, []byte{ // fixed header, remaining 15; name, level
			1 << 1, // flags: clean start
			0, 60,  // keepalive 60 s
			0x80, 0x00, // property length 0 in two bytes
		}, idC),
		want: ErrNonMinimalVBI,
	},
	{
		name: "connect/v5 user property with U+0000", spec: "[MQTT-1.5.4-2]",
		raw: cat([]byte{packets.Connect << 4, 21}, connect5, []byte{ // fixed header, remaining 21; name, level
			1 << 1, // flags: clean start
			0, 60,  // keepalive 60 s
			7,             // property length
			0x26, 0, 1, 0, // user property key "\x00"
			0, 1, 'v', // and value "v"
		}, idC),
		want: ErrPropertyUTF8,
	},
	{
		name: "connect/v5 will delay twice", spec: "v5 §3.1.3.2.2",
		raw: cat([]byte{packets.Connect << 4, 30}, connect5, []byte{ // fixed header, remaining 30; name, level
			1<<2 | 1<<1, // flags: will, clean start
			0, 60,       // keepalive 60 s
			0, // property length 0
		}, idC, []byte{
			10,               // will property length
			0x18, 0, 0, 0, 1, // will delay interval 1
			0x18, 0, 0, 0, 2, // will delay interval again
			0, 1, 'w', // will topic "w"
			0, 0, // will payload, empty
		}),
		want: ErrDuplicateProperty,
	},
	{
		name: "connect/v5 session expiry in will properties", spec: "v5 §3.1.3.2",
		raw: cat([]byte{packets.Connect << 4, 25}, connect5, []byte{ // fixed header, remaining 25; name, level
			1<<2 | 1<<1, // flags: will, clean start
			0, 60,       // keepalive 60 s
			0, // property length 0
		}, idC, []byte{
			5,                // will property length
			0x11, 0, 0, 0, 1, // session expiry interval: a CONNECT property, not a will one
			0, 1, 'w', // will topic "w"
			0, 0, // will payload, empty
		}),
		want: ErrPropertyNotAllowed,
	},
	{
		name: "connect/v5 will payload not the UTF-8 its format says", spec: "v5 §3.1.3.2.3",
		raw: cat([]byte{packets.Connect << 4, 23}, connect5, []byte{ // fixed header, remaining 23; name, level
			1<<2 | 1<<1, // flags: will, clean start
			0, 60,       // keepalive 60 s
			0, // property length 0
		}, idC, []byte{
			2,       // will property length
			0x01, 1, // payload format indicator: UTF-8
			0, 1, 'w', // will topic "w"
			0, 1, 0xff, // will payload: 0xff is never UTF-8
		}),
		want: packets.ErrPayloadFormatInvalid, // 0x99
	},
	{
		name: "connect/v5 will response topic with a wildcard", spec: "[MQTT-3.3.2-14]",
		raw: cat([]byte{packets.Connect << 4, 26}, connect5, []byte{ // fixed header, remaining 26; name, level
			1<<2 | 1<<1, // flags: will, clean start
			0, 60,       // keepalive 60 s
			0, // property length 0
		}, idC, []byte{
			6,                         // will property length
			0x08, 0, 3, 'r', '/', '#', // response topic "r/#"
			0, 1, 'w', // will topic "w"
			0, 0, // will payload, empty
		}),
		want: ErrResponseTopicWildcard,
	},
	{
		name: "connect/v5 will properties past the packet", spec: "v5 §3.1.3.2",
		raw: cat([]byte{packets.Connect << 4, 20}, connect5, []byte{ // fixed header, remaining 20; name, level
			1<<2 | 1<<1, // flags: will, clean start
			0, 60,       // keepalive 60 s
			0, // property length 0
		}, idC, []byte{
			0x7f,      // will property length 127: five bytes follow
			0, 1, 'w', // will topic "w"
			0, 0, // will payload, empty
		}),
		want: ErrPropertyLength,
	},
}

// ValidateConnect judges the protocol name and level and the MQTT 3.1
// client id; it accepts what the codec's ConnectValidate wrongly refuses.
func TestValidateConnect(t *testing.T) {
	pk := func(name string, v byte, id string) *packets.Packet {
		return &packets.Packet{ProtocolVersion: v, Connect: packets.ConnectParams{ProtocolName: []byte(name), ClientIdentifier: id}}
	}
	for _, tc := range []struct {
		name string
		pk   *packets.Packet
		want packets.Code
	}{
		{"MQTT 3.1.1", pk("MQTT", 4, "c"), packets.CodeSuccess},
		{"MQTT 5", pk("MQTT", 5, ""), packets.CodeSuccess},
		{"MQTT 3.1.1 empty client id", pk("MQTT", 4, ""), packets.CodeSuccess}, // [MQTT-3.1.3-6]
		{"MQIsdp 3.1", pk("MQIsdp", 3, "c"), packets.CodeSuccess},
		{"MQIsdp 3.1 empty client id", pk("MQIsdp", 3, ""), packets.ErrClientIdentifierNotValid}, // 3.1 §3.1: 1-23 characters
		{"MQIsdp 3.1 long client id", pk("MQIsdp", 3, "a-client-id-of-thirty-characters"), packets.CodeSuccess},
		{"MQTT at level 3", pk("MQTT", 3, "c"), packets.ErrUnsupportedProtocolVersion},     // [MQTT-3.1.2-2]
		{"MQIsdp at level 4", pk("MQIsdp", 4, "c"), packets.ErrUnsupportedProtocolVersion}, // [MQTT-3.1.2-2]
		{"MQTX", pk("MQTX", 4, "c"), packets.ErrProtocolViolationProtocolName},             // [MQTT-3.1.2-1]
	} {
		if got := ValidateConnect(tc.pk); got != tc.want {
			t.Errorf("%s: %#x %q; want %#x %q", tc.name, got.Code, got.Reason, tc.want.Code, tc.want.Reason)
		}
	}
}

// The packets the codec's ConnectValidate refuses and the spec allows:
// they decode, ValidateConnect accepts them, ConnectValidate does not
// (pinned so that a codec fix shows up here).
func TestValidateConnectAcceptsWhatTheCodecRefuses(t *testing.T) {
	for _, name := range []string{
		"connect/v3.1.1 empty will payload",
		"connect/v5 empty will payload, empty password without user name",
		"connect/v3.1.1 empty password",
	} {
		tc := goldenByName(t, name)
		var pk packets.Packet
		if _, err := Decode(tc.raw, &pk, 0, 0); err != nil {
			t.Fatalf("%s: Decode: %v", name, err)
		}
		if code := ValidateConnect(&pk); code != packets.CodeSuccess {
			t.Errorf("%s: ValidateConnect = %v", name, code)
		}
		if code := pk.ConnectValidate(); code == packets.CodeSuccess {
			t.Errorf("%s: the codec's ConnectValidate accepts it now; ValidateConnect may no longer be needed", name)
		}
	}
	// MQTT 3.1 with an empty client id decodes and is then refused (CONNACK 0x02).
	raw := []byte{
		packets.Connect << 4, 14, // fixed header, remaining 14
		0, 6, 'M', 'Q', 'I', 's', 'd', 'p', // protocol name
		3,      // protocol version 3.1
		1 << 1, // flags: clean
		0, 30,  // keepalive 30 s
		0, 0, // client id "": 3.1 wants 1 to 23 characters
	}
	var pk packets.Packet
	if _, err := Decode(raw, &pk, 0, 0); err != nil {
		t.Fatalf("3.1 empty client id: Decode: %v", err)
	}
	if code := ValidateConnect(&pk); code != packets.ErrClientIdentifierNotValid {
		t.Fatalf("3.1 empty client id: ValidateConnect = %v", code)
	}
}

func goldenByName(t *testing.T, name string) golden {
	t.Helper()
	for _, tc := range goldenDecode {
		if tc.name == name {
			return tc
		}
	}
	t.Fatalf("no golden packet %q", name)
	return golden{}
}
