package mqtt

import (
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/mochi-mqtt/server/v2/packets"
)

// A golden packet: its bytes on the wire, the protocol version the
// connection speaks when it arrives (0 before CONNECT) and what Decode must
// make of it. Each byte carries a comment, as in mochi's tpackets.go.
type golden struct {
	name    string
	version byte
	raw     []byte
	want    packets.Packet
}

// Frequently used fragments.
var (
	topicAB = []byte{0, 3, 'a', '/', 'b'} // topic "a/b"
)

func cat(parts ...[]byte) []byte {
	var b []byte
	for _, p := range parts {
		b = append(b, p...)
	}
	return b
}

var goldenDecode = []golden{
	{
		name:    "connect/v3.1.1 will user pass",
		version: 0,
		raw: []byte{
			packets.Connect << 4, 36, // fixed header, remaining 36
			0, 4, 'M', 'Q', 'T', 'T', // protocol name
			4,                                       // protocol version 3.1.1
			1<<7 | 1<<6 | 1<<5 | 1<<3 | 1<<2 | 1<<1, // flags: user, pass, will retain, will qos 1, will, clean
			0, 60,                                   // keepalive 60 s
			0, 3, 'd', 'e', 'v', // client id "dev"
			0, 3, 'l', 'w', 't', // will topic "lwt"
			0, 4, 'g', 'o', 'n', 'e', // will payload "gone"
			0, 4, 'u', 's', 'e', 'r', // user name "user"
			0, 2, 'p', 'w', // password "pw"
		},
		want: packets.Packet{
			FixedHeader:     packets.FixedHeader{Type: packets.Connect, Remaining: 36},
			ProtocolVersion: 4,
			Connect: packets.ConnectParams{
				ProtocolName:     []byte("MQTT"),
				Clean:            true,
				Keepalive:        60,
				ClientIdentifier: "dev",
				WillFlag:         true,
				WillQos:          1,
				WillRetain:       true,
				WillTopic:        "lwt",
				WillPayload:      []byte("gone"),
				UsernameFlag:     true,
				Username:         []byte("user"),
				PasswordFlag:     true,
				Password:         []byte("pw"),
			},
		},
	},
	{
		name:    "connect/v3.1 MQIsdp",
		version: 0,
		raw: []byte{
			packets.Connect << 4, 17, // fixed header, remaining 17
			0, 6, 'M', 'Q', 'I', 's', 'd', 'p', // protocol name
			3,      // protocol version 3.1
			1 << 1, // flags: clean
			0, 30,  // keepalive 30 s
			0, 3, 'o', 'l', 'd', // client id "old"
		},
		want: packets.Packet{
			FixedHeader:     packets.FixedHeader{Type: packets.Connect, Remaining: 17},
			ProtocolVersion: 3,
			Connect: packets.ConnectParams{
				ProtocolName:     []byte("MQIsdp"),
				Clean:            true,
				Keepalive:        30,
				ClientIdentifier: "old",
			},
		},
	},
	{
		name:    "connect/v3.1.1 bridge bit",
		version: 0,
		raw: []byte{
			packets.Connect << 4, 13, // fixed header, remaining 13
			0, 4, 'M', 'Q', 'T', 'T', // protocol name
			0x80 | 4, // protocol version 3.1.1 with the bridge bit
			0,        // flags: none
			0, 10,    // keepalive 10 s
			0, 1, 'b', // client id "b"
		},
		want: packets.Packet{
			FixedHeader:     packets.FixedHeader{Type: packets.Connect, Remaining: 13},
			ProtocolVersion: 4,
			Connect: packets.ConnectParams{
				ProtocolName:     []byte("MQTT"),
				Keepalive:        10,
				ClientIdentifier: "b",
			},
		},
	},
	{
		name:    "connect/v5 will user pass properties",
		version: 0,
		raw: []byte{
			packets.Connect << 4, 80, // fixed header, remaining 80
			0, 4, 'M', 'Q', 'T', 'T', // protocol name
			5,                                       // protocol version 5
			1<<7 | 1<<6 | 1<<5 | 2<<3 | 1<<2 | 1<<1, // flags: user, pass, will retain, will qos 2, will, clean start
			0, 30,                                   // keepalive 30 s
			23,                     // property length
			0x11, 0, 0, 0x0e, 0x10, // session expiry interval 3600
			0x21, 0, 20, // receive maximum 20
			0x22, 0, 10, // topic alias maximum 10
			0x27, 0, 0, 0x40, 0, // maximum packet size 16384
			0x26, 0, 1, 'k', 0, 1, 'v', // user property k=v
			0, 3, 'v', '5', 'c', // client id "v5c"
			20,               // will property length
			0x18, 0, 0, 0, 5, // will delay interval 5
			0x01, 1, // payload format indicator: UTF-8
			0x03, 0, 10, 't', 'e', 'x', 't', '/', 'p', 'l', 'a', 'i', 'n', // content type "text/plain"
			0, 3, 'l', 'w', 't', // will topic "lwt"
			0, 3, 'b', 'y', 'e', // will payload "bye"
			0, 4, 'u', 's', 'e', 'r', // user name "user"
			0, 2, 'p', 'w', // password "pw"
		},
		want: packets.Packet{
			FixedHeader:     packets.FixedHeader{Type: packets.Connect, Remaining: 80},
			ProtocolVersion: 5,
			Properties: packets.Properties{
				SessionExpiryInterval:     3600,
				SessionExpiryIntervalFlag: true,
				ReceiveMaximum:            20,
				TopicAliasMaximum:         10,
				MaximumPacketSize:         16384,
				User:                      []packets.UserProperty{{Key: "k", Val: "v"}},
			},
			Connect: packets.ConnectParams{
				ProtocolName:     []byte("MQTT"),
				Clean:            true,
				Keepalive:        30,
				ClientIdentifier: "v5c",
				WillFlag:         true,
				WillQos:          2,
				WillRetain:       true,
				WillTopic:        "lwt",
				WillPayload:      []byte("bye"),
				WillProperties: packets.Properties{
					WillDelayInterval: 5,
					PayloadFormat:     1,
					PayloadFormatFlag: true,
					ContentType:       "text/plain",
				},
				UsernameFlag: true,
				Username:     []byte("user"),
				PasswordFlag: true,
				Password:     []byte("pw"),
			},
		},
	},
	{
		name:    "publish/v4 qos0",
		version: 4,
		raw: cat([]byte{
			packets.Publish << 4, 7, // fixed header: qos 0, remaining 7
		}, topicAB, []byte{
			'h', 'i', // payload "hi"
		}),
		want: packets.Packet{
			FixedHeader:     packets.FixedHeader{Type: packets.Publish, Remaining: 7},
			ProtocolVersion: 4,
			TopicName:       "a/b",
			Payload:         []byte("hi"),
		},
	},
	{
		name:    "publish/v4 qos0 retain empty",
		version: 4,
		raw: cat([]byte{
			packets.Publish<<4 | 1, 5, // fixed header: qos 0, retain, remaining 5
		}, topicAB), // no payload: clears the retained message
		want: packets.Packet{
			FixedHeader:     packets.FixedHeader{Type: packets.Publish, Retain: true, Remaining: 5},
			ProtocolVersion: 4,
			TopicName:       "a/b",
		},
	},
	{
		name:    "publish/v4 qos1 retain",
		version: 4,
		raw: cat([]byte{
			packets.Publish<<4 | 1<<1 | 1, 12, // fixed header: qos 1, retain, remaining 12
		}, topicAB, []byte{
			0, 7, // packet id 7
			'h', 'e', 'l', 'l', 'o', // payload "hello"
		}),
		want: packets.Packet{
			FixedHeader:     packets.FixedHeader{Type: packets.Publish, Qos: 1, Retain: true, Remaining: 12},
			ProtocolVersion: 4,
			TopicName:       "a/b",
			PacketID:        7,
			Payload:         []byte("hello"),
		},
	},
	{
		name:    "publish/v4 qos2 dup",
		version: 4,
		raw: cat([]byte{
			packets.Publish<<4 | 1<<3 | 2<<1, 8, // fixed header: dup, qos 2, remaining 8
		}, topicAB, []byte{
			0x12, 0x34, // packet id 0x1234
			'x', // payload "x"
		}),
		want: packets.Packet{
			FixedHeader:     packets.FixedHeader{Type: packets.Publish, Qos: 2, Dup: true, Remaining: 8},
			ProtocolVersion: 4,
			TopicName:       "a/b",
			PacketID:        0x1234,
			Payload:         []byte("x"),
		},
	},
	{
		name:    "publish/v3 qos1",
		version: 3,
		raw: cat([]byte{
			packets.Publish<<4 | 1<<1, 7, // fixed header: qos 1, remaining 7
		}, topicAB, []byte{
			0, 1, // packet id 1
			// empty payload
		}),
		want: packets.Packet{
			FixedHeader:     packets.FixedHeader{Type: packets.Publish, Qos: 1, Remaining: 7},
			ProtocolVersion: 3,
			TopicName:       "a/b",
			PacketID:        1,
		},
	},
	{
		name:    "publish/v5 qos0",
		version: 5,
		raw: cat([]byte{
			packets.Publish << 4, 8, // fixed header: qos 0, remaining 8
		}, topicAB, []byte{
			0,        // property length 0
			'h', 'i', // payload "hi"
		}),
		want: packets.Packet{
			FixedHeader:     packets.FixedHeader{Type: packets.Publish, Remaining: 8},
			ProtocolVersion: 5,
			TopicName:       "a/b",
			Payload:         []byte("hi"),
		},
	},
	{
		name:    "publish/v5 qos1 properties",
		version: 5,
		raw: cat([]byte{
			packets.Publish<<4 | 1<<1, 47, // fixed header: qos 1, remaining 47
		}, topicAB, []byte{
			0, 1, // packet id 1
			37,      // property length
			0x01, 1, // payload format indicator: UTF-8
			0x02, 0, 0, 0, 60, // message expiry interval 60 s
			0x23, 0, 1, // topic alias 1
			0x08, 0, 5, 'r', 'e', 'p', 'l', 'y', // response topic "reply"
			0x09, 0, 2, 0xca, 0xfe, // correlation data ca fe
			0x26, 0, 1, 'k', 0, 1, 'v', // user property k=v
			0x03, 0, 4, 'j', 's', 'o', 'n', // content type "json"
			'{', '}', // payload "{}"
		}),
		want: packets.Packet{
			FixedHeader:     packets.FixedHeader{Type: packets.Publish, Qos: 1, Remaining: 47},
			ProtocolVersion: 5,
			TopicName:       "a/b",
			PacketID:        1,
			Payload:         []byte("{}"),
			Properties: packets.Properties{
				PayloadFormat:         1,
				PayloadFormatFlag:     true,
				MessageExpiryInterval: 60,
				TopicAlias:            1,
				TopicAliasFlag:        true,
				ResponseTopic:         "reply",
				CorrelationData:       []byte{0xca, 0xfe},
				User:                  []packets.UserProperty{{Key: "k", Val: "v"}},
				ContentType:           "json",
			},
		},
	},
	{
		name:    "publish/v5 qos2 retain",
		version: 5,
		raw: cat([]byte{
			packets.Publish<<4 | 2<<1 | 1, 10, // fixed header: qos 2, retain, remaining 10
		}, topicAB, []byte{
			0xff, 0xff, // packet id 65535
			0,        // property length 0
			'q', '2', // payload "q2"
		}),
		want: packets.Packet{
			FixedHeader:     packets.FixedHeader{Type: packets.Publish, Qos: 2, Retain: true, Remaining: 10},
			ProtocolVersion: 5,
			TopicName:       "a/b",
			PacketID:        0xffff,
			Payload:         []byte("q2"),
		},
	},
	{
		name:    "publish/v5 topic alias only",
		version: 5,
		raw: []byte{
			packets.Publish << 4, 7, // fixed header: qos 0, remaining 7
			0, 0, // topic "" (the alias names it)
			3,          // property length
			0x23, 0, 2, // topic alias 2
			'z', // payload "z"
		},
		want: packets.Packet{
			FixedHeader:     packets.FixedHeader{Type: packets.Publish, Remaining: 7},
			ProtocolVersion: 5,
			Payload:         []byte("z"),
			Properties:      packets.Properties{TopicAlias: 2, TopicAliasFlag: true},
		},
	},
	{
		name:    "puback/v4",
		version: 4,
		raw: []byte{
			packets.Puback << 4, 2, // fixed header, remaining 2
			0, 7, // packet id 7
		},
		want: packets.Packet{
			FixedHeader:     packets.FixedHeader{Type: packets.Puback, Remaining: 2},
			ProtocolVersion: 4,
			PacketID:        7,
		},
	},
	{
		name:    "puback/v5 success short",
		version: 5,
		raw: []byte{
			packets.Puback << 4, 2, // fixed header, remaining 2
			0, 7, // packet id 7; reason 0x00 and no properties implied
		},
		want: packets.Packet{
			FixedHeader:     packets.FixedHeader{Type: packets.Puback, Remaining: 2},
			ProtocolVersion: 5,
			PacketID:        7,
		},
	},
	{
		name:    "puback/v5 reason only",
		version: 5,
		raw: []byte{
			packets.Puback << 4, 3, // fixed header, remaining 3
			0, 7, // packet id 7
			0x80, // reason: unspecified error; no property length
		},
		want: packets.Packet{
			FixedHeader:     packets.FixedHeader{Type: packets.Puback, Remaining: 3},
			ProtocolVersion: 5,
			PacketID:        7,
			ReasonCode:      0x80,
		},
	},
	{
		name:    "puback/v5 reason properties",
		version: 5,
		raw: []byte{
			packets.Puback << 4, 9, // fixed header, remaining 9
			0, 7, // packet id 7
			0x10,                 // reason: no matching subscribers
			5,                    // property length
			0x1f, 0, 2, 'n', 'o', // reason string "no"
		},
		want: packets.Packet{
			FixedHeader:     packets.FixedHeader{Type: packets.Puback, Remaining: 9},
			ProtocolVersion: 5,
			PacketID:        7,
			ReasonCode:      0x10,
			Properties:      packets.Properties{ReasonString: "no"},
		},
	},
	{
		name:    "pubrec/v4",
		version: 4,
		raw: []byte{
			packets.Pubrec << 4, 2, // fixed header, remaining 2
			0, 8, // packet id 8
		},
		want: packets.Packet{
			FixedHeader:     packets.FixedHeader{Type: packets.Pubrec, Remaining: 2},
			ProtocolVersion: 4,
			PacketID:        8,
		},
	},
	{
		name:    "pubrec/v5 reason",
		version: 5,
		raw: []byte{
			packets.Pubrec << 4, 4, // fixed header, remaining 4
			0, 8, // packet id 8
			0x97, // reason: quota exceeded
			0,    // property length 0
		},
		want: packets.Packet{
			FixedHeader:     packets.FixedHeader{Type: packets.Pubrec, Remaining: 4},
			ProtocolVersion: 5,
			PacketID:        8,
			ReasonCode:      0x97,
		},
	},
	{
		name:    "pubrel/v4",
		version: 4,
		raw: []byte{
			packets.Pubrel<<4 | 1<<1, 2, // fixed header: reserved flags 0010, remaining 2
			0, 9, // packet id 9
		},
		want: packets.Packet{
			FixedHeader:     packets.FixedHeader{Type: packets.Pubrel, Qos: 1, Remaining: 2},
			ProtocolVersion: 4,
			PacketID:        9,
		},
	},
	{
		name:    "pubrel/v5 reason",
		version: 5,
		raw: []byte{
			packets.Pubrel<<4 | 1<<1, 3, // fixed header: reserved flags 0010, remaining 3
			0, 9, // packet id 9
			0x92, // reason: packet identifier not found
		},
		want: packets.Packet{
			FixedHeader:     packets.FixedHeader{Type: packets.Pubrel, Qos: 1, Remaining: 3},
			ProtocolVersion: 5,
			PacketID:        9,
			ReasonCode:      0x92,
		},
	},
	{
		name:    "pubcomp/v4",
		version: 4,
		raw: []byte{
			packets.Pubcomp << 4, 2, // fixed header, remaining 2
			0, 9, // packet id 9
		},
		want: packets.Packet{
			FixedHeader:     packets.FixedHeader{Type: packets.Pubcomp, Remaining: 2},
			ProtocolVersion: 4,
			PacketID:        9,
		},
	},
	{
		name:    "pubcomp/v5",
		version: 5,
		raw: []byte{
			packets.Pubcomp << 4, 2, // fixed header, remaining 2
			0, 9, // packet id 9
		},
		want: packets.Packet{
			FixedHeader:     packets.FixedHeader{Type: packets.Pubcomp, Remaining: 2},
			ProtocolVersion: 5,
			PacketID:        9,
		},
	},
	{
		name:    "subscribe/v4",
		version: 4,
		raw: []byte{
			packets.Subscribe<<4 | 1<<1, 12, // fixed header: reserved flags 0010, remaining 12
			0, 10, // packet id 10
			0, 3, 'a', '/', '+', // filter "a/+"
			1,         // requested qos 1
			0, 1, '#', // filter "#"
			2, // requested qos 2
		},
		want: packets.Packet{
			FixedHeader:     packets.FixedHeader{Type: packets.Subscribe, Qos: 1, Remaining: 12},
			ProtocolVersion: 4,
			PacketID:        10,
			Filters: packets.Subscriptions{
				{Filter: "a/+", Qos: 1},
				{Filter: "#", Qos: 2},
			},
		},
	},
	{
		name:    "subscribe/v5 options",
		version: 5,
		raw: []byte{
			packets.Subscribe<<4 | 1<<1, 32, // fixed header: reserved flags 0010, remaining 32
			0, 11, // packet id 11
			10,               // property length
			0x0b, 0x81, 0x01, // subscription identifier 129 (VBI)
			0x26, 0, 1, 'k', 0, 1, 'v', // user property k=v
			0, 3, 'a', '/', 'b', // filter "a/b"
			2<<4 | 1<<3 | 1<<2 | 2,                                  // options: retain handling 2, retain as published, no local, qos 2
			0, 10, '$', 's', 'h', 'a', 'r', 'e', '/', 'g', '/', 'x', // filter "$share/g/x"
			1<<4 | 1, // options: retain handling 1, qos 1
		},
		want: packets.Packet{
			FixedHeader:     packets.FixedHeader{Type: packets.Subscribe, Qos: 1, Remaining: 32},
			ProtocolVersion: 5,
			PacketID:        11,
			Properties: packets.Properties{
				SubscriptionIdentifier: []int{129},
				User:                   []packets.UserProperty{{Key: "k", Val: "v"}},
			},
			Filters: packets.Subscriptions{
				{Filter: "a/b", Qos: 2, NoLocal: true, RetainAsPublished: true, RetainHandling: 2, Identifier: 129},
				{Filter: "$share/g/x", Qos: 1, RetainHandling: 1, Identifier: 129},
			},
		},
	},
	{
		name:    "unsubscribe/v4",
		version: 4,
		raw: []byte{
			packets.Unsubscribe<<4 | 1<<1, 10, // fixed header: reserved flags 0010, remaining 10
			0, 12, // packet id 12
			0, 3, 'a', '/', '+', // filter "a/+"
			0, 1, '#', // filter "#"
		},
		want: packets.Packet{
			FixedHeader:     packets.FixedHeader{Type: packets.Unsubscribe, Qos: 1, Remaining: 10},
			ProtocolVersion: 4,
			PacketID:        12,
			Filters:         packets.Subscriptions{{Filter: "a/+"}, {Filter: "#"}},
		},
	},
	{
		name:    "unsubscribe/v5",
		version: 5,
		raw: cat([]byte{
			packets.Unsubscribe<<4 | 1<<1, 8, // fixed header: reserved flags 0010, remaining 8
			0, 13, // packet id 13
			0, // property length 0
		}, topicAB), // filter "a/b"
		want: packets.Packet{
			FixedHeader:     packets.FixedHeader{Type: packets.Unsubscribe, Qos: 1, Remaining: 8},
			ProtocolVersion: 5,
			PacketID:        13,
			Filters:         packets.Subscriptions{{Filter: "a/b"}},
		},
	},
	{
		name:    "pingreq/v4",
		version: 4,
		raw: []byte{
			packets.Pingreq << 4, 0, // fixed header, remaining 0
		},
		want: packets.Packet{
			FixedHeader:     packets.FixedHeader{Type: packets.Pingreq},
			ProtocolVersion: 4,
		},
	},
	{
		name:    "pingreq/v5",
		version: 5,
		raw: []byte{
			packets.Pingreq << 4, 0, // fixed header, remaining 0
		},
		want: packets.Packet{
			FixedHeader:     packets.FixedHeader{Type: packets.Pingreq},
			ProtocolVersion: 5,
		},
	},
	{
		name:    "disconnect/v4",
		version: 4,
		raw: []byte{
			packets.Disconnect << 4, 0, // fixed header, remaining 0
		},
		want: packets.Packet{
			FixedHeader:     packets.FixedHeader{Type: packets.Disconnect},
			ProtocolVersion: 4,
		},
	},
	{
		name:    "disconnect/v5 normal short",
		version: 5,
		raw: []byte{
			packets.Disconnect << 4, 0, // fixed header, remaining 0: reason 0x00 implied
		},
		want: packets.Packet{
			FixedHeader:     packets.FixedHeader{Type: packets.Disconnect},
			ProtocolVersion: 5,
		},
	},
	{
		name:    "disconnect/v5 reason only",
		version: 5,
		raw: []byte{
			packets.Disconnect << 4, 1, // fixed header, remaining 1 (what mosquitto sends)
			0x04, // reason: disconnect with will message; no property length
		},
		want: packets.Packet{
			FixedHeader:     packets.FixedHeader{Type: packets.Disconnect, Remaining: 1},
			ProtocolVersion: 5,
			ReasonCode:      0x04,
		},
	},
	{
		name:    "disconnect/v5 reason properties",
		version: 5,
		raw: []byte{
			packets.Disconnect << 4, 13, // fixed header, remaining 13
			0x04,             // reason: disconnect with will message
			11,               // property length
			0x11, 0, 0, 0, 0, // session expiry interval 0
			0x1f, 0, 3, 'b', 'y', 'e', // reason string "bye"
		},
		want: packets.Packet{
			FixedHeader:     packets.FixedHeader{Type: packets.Disconnect, Remaining: 13},
			ProtocolVersion: 5,
			ReasonCode:      0x04,
			Properties: packets.Properties{
				SessionExpiryIntervalFlag: true,
				ReasonString:              "bye",
			},
		},
	},
	{
		name:    "auth/v5 short",
		version: 5,
		raw: []byte{
			packets.Auth << 4, 0, // fixed header, remaining 0: reason 0x00 implied
		},
		want: packets.Packet{
			FixedHeader:     packets.FixedHeader{Type: packets.Auth},
			ProtocolVersion: 5,
		},
	},
	// Edge cases the spec allows (and the codec's ConnectValidate refuses,
	// or a stricter check could wrongly catch).
	{
		name:    "connect/v3.1.1 empty will payload",
		version: 0,
		raw: cat([]byte{packets.Connect << 4, 18}, connect4, []byte{ // fixed header, remaining 18; name, level
			1<<2 | 1<<1, // flags: will, clean
			0, 60,       // keepalive 60 s
		}, idC, []byte{
			0, 1, 'w', // will topic "w"
			0, 0, // will payload, empty: valid (3.1.1 §3.1.3.3)
		}),
		want: packets.Packet{
			FixedHeader:     packets.FixedHeader{Type: packets.Connect, Remaining: 18},
			ProtocolVersion: 4,
			Connect: packets.ConnectParams{
				ProtocolName:     []byte("MQTT"),
				Clean:            true,
				Keepalive:        60,
				ClientIdentifier: "c",
				WillFlag:         true,
				WillTopic:        "w",
			},
		},
	},
	{
		name:    "connect/v5 empty will payload, empty password without user name",
		version: 0,
		raw: cat([]byte{packets.Connect << 4, 22}, connect5, []byte{ // fixed header, remaining 22; name, level
			1<<6 | 1<<2 | 1<<1, // flags: password, will, clean start; no user name (allowed in v5)
			0, 60,              // keepalive 60 s
			0, // property length 0
		}, idC, []byte{
			0,         // will property length 0
			0, 1, 'w', // will topic "w"
			0, 0, // will payload, empty: valid (v5 §3.1.3.4)
			0, 0, // password, empty: valid (v5 §3.1.3.6)
		}),
		want: packets.Packet{
			FixedHeader:     packets.FixedHeader{Type: packets.Connect, Remaining: 22},
			ProtocolVersion: 5,
			Connect: packets.ConnectParams{
				ProtocolName:     []byte("MQTT"),
				Clean:            true,
				Keepalive:        60,
				ClientIdentifier: "c",
				WillFlag:         true,
				WillTopic:        "w",
				PasswordFlag:     true,
			},
		},
	},
	{
		name:    "connect/v3.1.1 empty password",
		version: 0,
		raw: cat([]byte{packets.Connect << 4, 18}, connect4, []byte{ // fixed header, remaining 18; name, level
			1<<7 | 1<<6 | 1<<1, // flags: user name, password, clean
			0, 60,              // keepalive 60 s
		}, idC, []byte{
			0, 1, 'u', // user name "u"
			0, 0, // password, empty: valid binary data
		}),
		want: packets.Packet{
			FixedHeader:     packets.FixedHeader{Type: packets.Connect, Remaining: 18},
			ProtocolVersion: 4,
			Connect: packets.ConnectParams{
				ProtocolName:     []byte("MQTT"),
				Clean:            true,
				Keepalive:        60,
				ClientIdentifier: "c",
				UsernameFlag:     true,
				Username:         []byte("u"),
				PasswordFlag:     true,
			},
		},
	},
	{
		name:    "connect/level 6 left to the caller",
		version: 0,
		raw: []byte{
			packets.Connect << 4, 13, // fixed header, remaining 13
			0, 4, 'M', 'Q', 'T', 'T', // protocol name
			6,      // protocol level 6: unknown, so the rest is not read
			1 << 1, // flags
			0, 60,  // keepalive 60 s
			0, 1, 'c', // client id "c"
		},
		want: packets.Packet{
			FixedHeader:     packets.FixedHeader{Type: packets.Connect, Remaining: 13},
			ProtocolVersion: 6, // the caller answers "unsupported protocol version" [MQTT-3.1.2-2]
		},
	},
	{
		name:    "publish/v5 two subscription identifiers",
		version: 5,
		raw: cat([]byte{
			packets.Publish << 4, 26, // fixed header: qos 0, remaining 26 (server to client)
		}, topicAB, []byte{
			19,      // property length
			0x0b, 1, // subscription identifier 1
			0x0b, 0x80, 0x01, // subscription identifier 128: a PUBLISH may carry several
			0x26, 0, 1, 'a', 0, 1, 'b', // user property a=b
			0x26, 0, 1, 'a', 0, 1, 'c', // user property a=c: may repeat
			'x', // payload "x"
		}),
		want: packets.Packet{
			FixedHeader:     packets.FixedHeader{Type: packets.Publish, Remaining: 26},
			ProtocolVersion: 5,
			TopicName:       "a/b",
			Payload:         []byte("x"),
			Properties: packets.Properties{
				SubscriptionIdentifier: []int{1, 128},
				User:                   []packets.UserProperty{{Key: "a", Val: "b"}, {Key: "a", Val: "c"}},
			},
		},
	},
	{
		name:    "auth/v5 method and data",
		version: 5,
		raw: []byte{
			packets.Auth << 4, 15, // fixed header, remaining 15
			0x18,                                // reason: continue authentication
			13,                                  // property length
			0x15, 0, 5, 'S', 'C', 'R', 'A', 'M', // authentication method "SCRAM"
			0x16, 0, 2, 1, 2, // authentication data 01 02
		},
		want: packets.Packet{
			FixedHeader:     packets.FixedHeader{Type: packets.Auth, Remaining: 15},
			ProtocolVersion: 5,
			ReasonCode:      0x18,
			Properties:      packets.Properties{AuthenticationMethod: "SCRAM", AuthenticationData: []byte{1, 2}},
		},
	},
	{
		name:    "connack/v5 properties",
		version: 5,
		raw: []byte{
			packets.Connack << 4, 12, // fixed header, remaining 12
			1,               // acknowledge flags: session present
			0,               // reason: success
			9,               // property length
			0x12, 0, 1, 'x', // assigned client identifier "x"
			0x21, 0, 10, // receive maximum 10
			0x24, 1, // maximum qos 1
		},
		want: packets.Packet{
			FixedHeader:     packets.FixedHeader{Type: packets.Connack, Remaining: 12},
			ProtocolVersion: 5,
			SessionPresent:  true,
			Properties:      packets.Properties{ReceiveMaximum: 10, MaximumQos: 1, MaximumQosFlag: true, AssignedClientID: "x"},
		},
	},
	{
		name:    "connack/v5 in the v3 form",
		version: 5,
		raw: []byte{
			packets.Connack << 4, 2, // fixed header, remaining 2: no property length
			0,    // acknowledge flags
			0x84, // reason: unsupported protocol version
		},
		want: packets.Packet{
			FixedHeader:     packets.FixedHeader{Type: packets.Connack, Remaining: 2},
			ProtocolVersion: 5,
			ReasonCode:      0x84,
		},
	},
	{
		name:    "suback/v4",
		version: 4,
		raw: []byte{
			packets.Suback << 4, 4, // fixed header, remaining 4
			0, 5, // packet id 5
			1,    // granted qos 1
			0x80, // failure
		},
		want: packets.Packet{
			FixedHeader:     packets.FixedHeader{Type: packets.Suback, Remaining: 4},
			ProtocolVersion: 4,
			PacketID:        5,
			ReasonCodes:     []byte{1, 0x80},
		},
	},
	{
		name:    "unsuback/v5",
		version: 5,
		raw: []byte{
			packets.Unsuback << 4, 5, // fixed header, remaining 5
			0, 6, // packet id 6
			0,    // property length 0
			0x00, // success
			0x11, // no subscription existed
		},
		want: packets.Packet{
			FixedHeader:     packets.FixedHeader{Type: packets.Unsuback, Remaining: 5},
			ProtocolVersion: 5,
			PacketID:        6,
			ReasonCodes:     []byte{0x00, 0x11},
		},
	},
	{
		name:    "pingresp/v4",
		version: 4,
		raw: []byte{
			packets.Pingresp << 4, 0, // fixed header, remaining 0
		},
		want: packets.Packet{
			FixedHeader:     packets.FixedHeader{Type: packets.Pingresp},
			ProtocolVersion: 4,
		},
	},
}

// normalize makes empty slices nil so that a decoded packet (whose slices
// alias a non-nil buffer) compares equal to a literal.
func normalize(pk packets.Packet) packets.Packet {
	normProps := func(p *packets.Properties) {
		if len(p.CorrelationData) == 0 {
			p.CorrelationData = nil
		}
		if len(p.AuthenticationData) == 0 {
			p.AuthenticationData = nil
		}
		if len(p.User) == 0 {
			p.User = nil
		}
		if len(p.SubscriptionIdentifier) == 0 {
			p.SubscriptionIdentifier = nil
		}
	}
	normProps(&pk.Properties)
	normProps(&pk.Connect.WillProperties)
	for _, b := range []*[]byte{&pk.Payload, &pk.ReasonCodes, &pk.Connect.Password,
		&pk.Connect.Username, &pk.Connect.ProtocolName, &pk.Connect.WillPayload} {
		if len(*b) == 0 {
			*b = nil
		}
	}
	if len(pk.Filters) == 0 {
		pk.Filters = nil
	}
	return pk
}

// diffPackets lists the fields where a and b differ (after normalize), or
// returns "" if they are equal.
func diffPackets(a, b packets.Packet) string {
	var diffs []string
	var walk func(path string, x, y reflect.Value)
	walk = func(path string, x, y reflect.Value) {
		if x.Kind() == reflect.Struct {
			for i := range x.NumField() {
				walk(path+"."+x.Type().Field(i).Name, x.Field(i), y.Field(i))
			}
			return
		}
		if !reflect.DeepEqual(x.Interface(), y.Interface()) {
			diffs = append(diffs, fmt.Sprintf("%s: %#v != %#v", path[1:], x.Interface(), y.Interface()))
		}
	}
	walk("", reflect.ValueOf(normalize(a)), reflect.ValueOf(normalize(b)))
	return strings.Join(diffs, "; ")
}

func TestDecodeGolden(t *testing.T) {
	for _, tc := range goldenDecode {
		t.Run(tc.name, func(t *testing.T) {
			var pk packets.Packet
			n, err := Decode(tc.raw, &pk, tc.version, 0)
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if n != len(tc.raw) {
				t.Fatalf("Decode consumed %d of %d bytes", n, len(tc.raw))
			}
			if _, hl, rem, _ := Header(tc.raw); hl+rem != len(tc.raw) {
				t.Fatalf("table error: header says %d+%d bytes, table has %d", hl, rem, len(tc.raw))
			}
			if d := diffPackets(pk, tc.want); d != "" {
				t.Fatalf("decoded packet differs (got, want): %s", d)
			}
		})
	}
}
