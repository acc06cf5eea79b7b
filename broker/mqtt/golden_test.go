package mqtt

import (
	"bytes"
	"errors"
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

// An encoding: the bytes an encoder must produce, and for AppendPublish the
// offset of the packet id it must report.
type goldenEnc struct {
	name  string
	got   func() ([]byte, int)
	want  []byte
	pidAt int // AppendPublish only

	// decodeAs, if set, is the version to decode the result with, from
	// offset prefix (what dst held before).
	decodeAs byte
	prefix   int
}

func appendPublish(dst []byte, version byte, topic, payload string, props, props2 []byte, qos byte, retain, dup bool, pid uint16) func() ([]byte, int) {
	return func() ([]byte, int) {
		return AppendPublish(dst, version, topic, []byte(payload), props, props2, qos, retain, dup, pid)
	}
}

func noPid(b []byte) func() ([]byte, int) { return func() ([]byte, int) { return b, -1 } }

func mustAppend(pk packets.Packet) []byte {
	b, err := Append(nil, &pk)
	if err != nil {
		panic(err)
	}
	return b
}

var goldenEncode = []goldenEnc{
	{
		name: "AppendPublish/v4 qos0",
		got:  appendPublish(nil, 4, "a/b", "hi", nil, nil, 0, false, false, 0),
		want: cat([]byte{
			packets.Publish << 4, 7, // fixed header: qos 0, remaining 7
		}, topicAB, []byte{
			'h', 'i', // payload
		}),
		pidAt:    -1,
		decodeAs: 4,
	},
	{
		name: "AppendPublish/v4 qos1 retain",
		got:  appendPublish(nil, 4, "a/b", "hi", nil, nil, 1, true, false, 0x0102),
		want: cat([]byte{
			packets.Publish<<4 | 1<<1 | 1, 9, // fixed header: qos 1, retain, remaining 9
		}, topicAB, []byte{
			1, 2, // packet id 0x0102
			'h', 'i', // payload
		}),
		pidAt:    7,
		decodeAs: 4,
	},
	{
		name: "AppendPublish/v4 qos2 dup props ignored",
		got:  appendPublish(nil, 4, "a/b", "", []byte{0x01, 1}, []byte{0x0b, 1}, 2, false, true, 9),
		want: cat([]byte{
			packets.Publish<<4 | 1<<3 | 2<<1, 7, // fixed header: dup, qos 2, remaining 7
		}, topicAB, []byte{
			0, 9, // packet id 9; no properties below v5, empty payload
		}),
		pidAt:    7,
		decodeAs: 4,
	},
	{
		name: "AppendPublish/v4 after prefix",
		got:  appendPublish([]byte{0xaa, 0xbb, 0xcc}, 4, "a/b", "hi", nil, nil, 1, false, false, 5),
		want: cat([]byte{
			0xaa, 0xbb, 0xcc, // what dst held
			packets.Publish<<4 | 1<<1, 9, // fixed header: qos 1, remaining 9
		}, topicAB, []byte{
			0, 5, // packet id 5
			'h', 'i', // payload
		}),
		pidAt:    10,
		decodeAs: 4,
		prefix:   3,
	},
	{
		name: "AppendPublish/v4 two-byte length",
		got:  appendPublish(nil, 4, "a/b", string(make([]byte, 200)), nil, nil, 0, false, false, 0),
		want: cat([]byte{
			packets.Publish << 4, 0xcd, 0x01, // fixed header: qos 0, remaining 205 = 0x4d + 1<<7
		}, topicAB, make([]byte, 200)), // 200 zero bytes of payload
		pidAt:    -1,
		decodeAs: 4,
	},
	{
		name: "AppendPublish/v5 three-byte length",
		got:  appendPublish(nil, 5, "a/b", string(make([]byte, 16380)), nil, nil, 0, false, false, 0),
		want: cat([]byte{
			packets.Publish << 4, 0x82, 0x80, 0x01, // fixed header: qos 0, remaining 16386 = 2 + 0<<7 + 1<<14
		}, topicAB, []byte{
			0, // property length 0
		}, make([]byte, 16380)), // 16380 zero bytes of payload
		pidAt:    -1,
		decodeAs: 5,
	},
	{
		name: "AppendPublish/v5 qos0 no props",
		got:  appendPublish(nil, 5, "a/b", "hi", nil, nil, 0, false, false, 0),
		want: cat([]byte{
			packets.Publish << 4, 8, // fixed header: qos 0, remaining 8
		}, topicAB, []byte{
			0,        // property length 0
			'h', 'i', // payload
		}),
		pidAt:    -1,
		decodeAs: 5,
	},
	{
		name: "AppendPublish/v5 qos1 props props2",
		got:  appendPublish(nil, 5, "a/b", "hi", []byte{0x01, 1}, []byte{0x0b, 5}, 1, false, false, 0x0a0b),
		want: cat([]byte{
			packets.Publish<<4 | 1<<1, 14, // fixed header: qos 1, remaining 14
		}, topicAB, []byte{
			0x0a, 0x0b, // packet id 0x0a0b
			4,       // property length 2+2
			0x01, 1, // props: payload format indicator UTF-8
			0x0b, 5, // props2: subscription identifier 5
			'h', 'i', // payload
		}),
		pidAt:    7,
		decodeAs: 5,
	},
	{
		name: "AppendPublish/v5 qos2 retain props2 only",
		got:  appendPublish(nil, 5, "a/b", "x", nil, []byte{0x23, 0, 3}, 2, true, false, 1),
		want: cat([]byte{
			packets.Publish<<4 | 2<<1 | 1, 12, // fixed header: qos 2, retain, remaining 12
		}, topicAB, []byte{
			0, 1, // packet id 1
			3,          // property length
			0x23, 0, 3, // props2: topic alias 3
			'x', // payload
		}),
		pidAt:    7,
		decodeAs: 5,
	},
	{
		name: "AppendAck/v4 puback",
		got:  noPid(AppendAck(nil, 4, packets.Puback, 0x0102, 0x10)),
		want: []byte{
			packets.Puback << 4, 2, // fixed header, remaining 2
			1, 2, // packet id; no reason code below v5
		},
		decodeAs: 4,
	},
	{
		name: "AppendAck/v4 pubrel",
		got:  noPid(AppendAck(nil, 4, packets.Pubrel, 7, 0)),
		want: []byte{
			packets.Pubrel<<4 | 1<<1, 2, // fixed header: reserved flags 0010, remaining 2
			0, 7, // packet id 7
		},
		decodeAs: 4,
	},
	{
		name: "AppendAck/v5 pubrec success",
		got:  noPid(AppendAck(nil, 5, packets.Pubrec, 7, 0)),
		want: []byte{
			packets.Pubrec << 4, 2, // fixed header, remaining 2
			0, 7, // packet id 7; success is implied
		},
		decodeAs: 5,
	},
	{
		name: "AppendAck/v5 puback reason",
		got:  noPid(AppendAck(nil, 5, packets.Puback, 7, 0x10)),
		want: []byte{
			packets.Puback << 4, 3, // fixed header, remaining 3
			0, 7, // packet id 7
			0x10, // reason: no matching subscribers; no property length
		},
		decodeAs: 5,
	},
	{
		name: "AppendAck/v5 pubrel reason",
		got:  noPid(AppendAck(nil, 5, packets.Pubrel, 7, 0x92)),
		want: []byte{
			packets.Pubrel<<4 | 1<<1, 3, // fixed header: reserved flags 0010, remaining 3
			0, 7, // packet id 7
			0x92, // reason: packet identifier not found
		},
		decodeAs: 5,
	},
	{
		name: "AppendAck/v5 pubcomp",
		got:  noPid(AppendAck([]byte{0xee}, 5, packets.Pubcomp, 0xffff, 0)),
		want: []byte{
			0xee,                    // what dst held
			packets.Pubcomp << 4, 2, // fixed header, remaining 2
			0xff, 0xff, // packet id 65535
		},
		decodeAs: 5,
		prefix:   1,
	},
	{
		name: "Append/connack v4",
		got: noPid(mustAppend(packets.Packet{
			FixedHeader:     packets.FixedHeader{Type: packets.Connack},
			ProtocolVersion: 4, SessionPresent: true,
		})),
		want: []byte{
			packets.Connack << 4, 2, // fixed header, remaining 2
			1, // session present
			0, // return code: accepted
		},
	},
	{
		name: "Append/connack v5 properties",
		got: noPid(mustAppend(packets.Packet{
			FixedHeader:     packets.FixedHeader{Type: packets.Connack},
			ProtocolVersion: 5,
			Properties: packets.Properties{
				AssignedClientID:    "id",
				ServerKeepAlive:     30,
				ServerKeepAliveFlag: true,
				ReceiveMaximum:      100,
				TopicAliasMaximum:   8,
			},
		})),
		want: []byte{
			packets.Connack << 4, 17, // fixed header, remaining 17
			0,                    // session present: no
			0,                    // reason: success
			14,                   // property length
			0x12, 0, 2, 'i', 'd', // assigned client identifier "id"
			0x13, 0, 30, // server keep alive 30 s
			0x21, 0, 100, // receive maximum 100
			0x22, 0, 8, // topic alias maximum 8
		},
	},
	{
		name: "Append/connack v5 refused",
		got: noPid(mustAppend(packets.Packet{
			FixedHeader:     packets.FixedHeader{Type: packets.Connack},
			ProtocolVersion: 5, ReasonCode: 0x87,
		})),
		want: []byte{
			packets.Connack << 4, 3, // fixed header, remaining 3
			0,    // session present: no
			0x87, // reason: not authorized
			0,    // property length 0
		},
	},
	{
		name: "Append/suback v4",
		got: noPid(mustAppend(packets.Packet{
			FixedHeader:     packets.FixedHeader{Type: packets.Suback},
			ProtocolVersion: 4, PacketID: 10, ReasonCodes: []byte{1, 0x80},
		})),
		want: []byte{
			packets.Suback << 4, 4, // fixed header, remaining 4
			0, 10, // packet id 10
			1,    // granted qos 1
			0x80, // failure
		},
	},
	{
		name: "Append/suback v5",
		got: noPid(mustAppend(packets.Packet{
			FixedHeader:     packets.FixedHeader{Type: packets.Suback},
			ProtocolVersion: 5, PacketID: 11, ReasonCodes: []byte{2, 0xa2},
		})),
		want: []byte{
			packets.Suback << 4, 5, // fixed header, remaining 5
			0, 11, // packet id 11
			0,    // property length 0
			2,    // granted qos 2
			0xa2, // wildcard subscriptions not supported
		},
	},
	{
		name: "Append/unsuback v4",
		got: noPid(mustAppend(packets.Packet{
			FixedHeader:     packets.FixedHeader{Type: packets.Unsuback},
			ProtocolVersion: 4, PacketID: 12, ReasonCodes: []byte{0},
		})),
		want: []byte{
			packets.Unsuback << 4, 2, // fixed header, remaining 2
			0, 12, // packet id 12; v3.1.1 carries no reason codes
		},
	},
	{
		name: "Append/unsuback v5",
		got: noPid(mustAppend(packets.Packet{
			FixedHeader:     packets.FixedHeader{Type: packets.Unsuback},
			ProtocolVersion: 5, PacketID: 13, ReasonCodes: []byte{0, 0x11},
		})),
		want: []byte{
			packets.Unsuback << 4, 5, // fixed header, remaining 5
			0, 13, // packet id 13
			0,    // property length 0
			0,    // success
			0x11, // no subscription existed
		},
	},
	{
		name: "Append/pingresp",
		got:  noPid(mustAppend(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pingresp}})),
		want: []byte{
			packets.Pingresp << 4, 0, // fixed header, remaining 0
		},
	},
	{
		name: "Append/disconnect v5 reason",
		got: noPid(mustAppend(packets.Packet{
			FixedHeader:     packets.FixedHeader{Type: packets.Disconnect},
			ProtocolVersion: 5, ReasonCode: 0x8e,
			Properties: packets.Properties{ReasonString: "x"},
		})),
		want: []byte{
			packets.Disconnect << 4, 6, // fixed header, remaining 6
			0x8e,            // reason: session taken over
			4,               // property length
			0x1f, 0, 1, 'x', // reason string "x"
		},
	},
	{
		name: "Append/publish v5 properties",
		got: noPid(mustAppend(packets.Packet{
			FixedHeader:     packets.FixedHeader{Type: packets.Publish, Qos: 1},
			ProtocolVersion: 5, PacketID: 3, TopicName: "a/b", Payload: []byte("hi"),
			Properties: packets.Properties{
				ContentType: "json",
				User:        []packets.UserProperty{{Key: "k", Val: "v"}},
			},
		})),
		want: cat([]byte{
			packets.Publish<<4 | 1<<1, 24, // fixed header: qos 1, remaining 24
		}, topicAB, []byte{
			0, 3, // packet id 3
			14,                             // property length
			0x03, 0, 4, 'j', 's', 'o', 'n', // content type "json"
			0x26, 0, 1, 'k', 0, 1, 'v', // user property k=v
			'h', 'i', // payload
		}),
	},
}

func TestEncodeGolden(t *testing.T) {
	for _, tc := range goldenEncode {
		t.Run(tc.name, func(t *testing.T) {
			got, pidAt := tc.got()
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("encoded\n got % x\nwant % x", got, tc.want)
			}
			if strings.HasPrefix(tc.name, "AppendPublish/") && pidAt != tc.pidAt {
				t.Fatalf("packet id offset %d, want %d", pidAt, tc.pidAt)
			}
			if tc.decodeAs == 0 {
				return
			}
			var pk packets.Packet
			n, err := Decode(got[tc.prefix:], &pk, tc.decodeAs, 0)
			if err != nil || n != len(got)-tc.prefix {
				t.Fatalf("Decode = %d, %v; want %d, nil", n, err, len(got)-tc.prefix)
			}
			if pidAt >= 0 {
				if id := uint16(got[pidAt])<<8 | uint16(got[pidAt+1]); id != pk.PacketID {
					t.Fatalf("bytes at %d hold %#04x, decoded id %#04x", pidAt, id, pk.PacketID)
				}
			}
		})
	}
}

// PutPacketID patches the id where AppendPublish said it sits, and nothing
// else: the fan-out path copies one encoding and patches each copy.
func TestPutPacketID(t *testing.T) {
	for _, tc := range goldenEncode {
		if !strings.HasPrefix(tc.name, "AppendPublish/") || tc.pidAt < 0 {
			continue
		}
		t.Run(tc.name, func(t *testing.T) {
			enc, at := tc.got()
			var pk packets.Packet
			if _, err := Decode(enc[tc.prefix:], &pk, tc.decodeAs, 0); err != nil {
				t.Fatalf("Decode: %v", err)
			}
			cp := append([]byte(nil), enc...)
			PutPacketID(cp, at, 0xbeef)
			var pk2 packets.Packet
			if _, err := Decode(cp[tc.prefix:], &pk2, tc.decodeAs, 0); err != nil {
				t.Fatalf("Decode patched: %v", err)
			}
			if pk2.PacketID != 0xbeef {
				t.Fatalf("patched id %#04x, want 0xbeef", pk2.PacketID)
			}
			pk2.PacketID = pk.PacketID
			if d := diffPackets(pk, pk2); d != "" {
				t.Fatalf("patching the id changed more: %s", d)
			}
			if !bytes.Equal(enc[:at], cp[:at]) || !bytes.Equal(enc[at+2:], cp[at+2:]) {
				t.Fatalf("PutPacketID wrote outside [%d,%d)", at, at+2)
			}
		})
	}
}

// Append re-encodes a decoded golden byte for byte, except where the codec
// picks an equally valid encoding.
func TestAppendReencodesGolden(t *testing.T) {
	differs := map[string]string{
		"connect/v3.1.1 bridge bit":            "the bridge bit is not written back",
		"connect/v5 will user pass properties": "the codec orders properties its own way",
		"publish/v5 qos1 properties":           "the codec orders properties its own way",
		"pubrec/v5 reason":                     "an empty property length is omitted",
		"disconnect/v5 normal short":           "v5 DISCONNECT always carries a reason and property length",
		"disconnect/v5 reason only":            "v5 DISCONNECT always carries a property length",
		"auth/v5 short":                        "AUTH always carries a reason and property length",
	}
	for _, tc := range goldenDecode {
		t.Run(tc.name, func(t *testing.T) {
			var pk packets.Packet
			if _, err := Decode(tc.raw, &pk, tc.version, 0); err != nil {
				t.Fatalf("Decode: %v", err)
			}
			got, err := Append(nil, &pk)
			if err != nil {
				t.Fatalf("Append: %v", err)
			}
			if why, ok := differs[tc.name]; ok {
				// Still a packet that decodes to the same thing.
				var pk2 packets.Packet
				if _, err := Decode(got, &pk2, pk.ProtocolVersion, 0); err != nil {
					t.Fatalf("re-encoding (%s) does not decode: %v", why, err)
				}
				pk.FixedHeader.Remaining, pk2.FixedHeader.Remaining = 0, 0
				pk.Mods = packets.Mods{} // Append sets AllowResponseInfo
				if d := diffPackets(pk, pk2); d != "" {
					t.Fatalf("re-encoding (%s) decodes differently: %s", why, d)
				}
				return
			}
			if !bytes.Equal(got, tc.raw) {
				t.Fatalf("re-encoded\n got % x\nwant % x", got, tc.raw)
			}
		})
	}
}

func TestAppendProperties(t *testing.T) {
	got := AppendProperties([]byte{0xee}, &packets.Properties{
		PayloadFormat:         1,
		PayloadFormatFlag:     true,
		MessageExpiryInterval: 30,
		ContentType:           "json",
		ResponseTopic:         "r",
		CorrelationData:       []byte{7},
		User:                  []packets.UserProperty{{Key: "k", Val: "v"}},
		SessionExpiryInterval: 5, // not a PUBLISH property: left out
	}, packets.Publish)
	want := []byte{
		0xee,    // what dst held; no length prefix follows
		0x01, 1, // payload format indicator: UTF-8
		0x02, 0, 0, 0, 30, // message expiry interval 30 s
		0x03, 0, 4, 'j', 's', 'o', 'n', // content type "json"
		0x08, 0, 1, 'r', // response topic "r" (always forwarded)
		0x09, 0, 1, 7, // correlation data 07 (always forwarded)
		0x26, 0, 1, 'k', 0, 1, 'v', // user property k=v
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("AppendProperties\n got % x\nwant % x", got, want)
	}
	if got := AppendProperties(nil, &packets.Properties{}, packets.Publish); len(got) != 0 {
		t.Fatalf("no properties: % x", got)
	}
}

func TestAppendErrors(t *testing.T) {
	dst := []byte{1, 2}
	for _, tc := range []struct {
		name string
		pk   packets.Packet
		want error
	}{
		{"publish qos 1 without id", packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1}, TopicName: "a"}, packets.ErrProtocolViolationNoPacketID},
		{"subscribe without id", packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Subscribe}}, packets.ErrProtocolViolationNoPacketID},
		{"reserved type 0", packets.Packet{}, packets.ErrNoValidPacketAvailable},
	} {
		got, err := Append(dst, &tc.pk)
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: err %v, want %v", tc.name, err, tc.want)
		}
		if !bytes.Equal(got, dst) {
			t.Errorf("%s: dst changed to % x", tc.name, got)
		}
	}
}
