package mqtt

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/mochi-mqtt/server/v2/packets"
)

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
		"connect/level 6 left to the caller":   "an unknown level is not decoded past its fixed fields",
		"connack/v5 in the v3 form":            "a v5 CONNACK always carries a property length",
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

// AppendUserProperty writes what the codec writes for the same pairs.
func TestAppendUserProperty(t *testing.T) {
	pairs := []packets.UserProperty{{Key: "cim-sender-id", Val: "18446744073709551615"}, {Key: "cim-sender", Val: "张三"}, {Key: "", Val: ""}}
	want := AppendProperties([]byte{0xee}, &packets.Properties{User: pairs}, packets.Publish)
	got := []byte{0xee}
	for i, p := range pairs {
		if i%2 == 0 {
			got = AppendUserProperty(got, p.Key, p.Val)
		} else {
			got = AppendUserProperty(got, p.Key, []byte(p.Val))
		}
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("AppendUserProperty\n got % x\nwant % x", got, want)
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
