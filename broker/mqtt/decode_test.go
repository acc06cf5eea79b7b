package mqtt

import (
	"errors"
	"testing"

	"github.com/mochi-mqtt/server/v2/packets"
)

// Every golden packet fed one byte at a time: each proper prefix is
// incomplete and consumes nothing; the whole packet decodes at once.
func TestDecodeByteByByte(t *testing.T) {
	for _, tc := range goldenDecode {
		t.Run(tc.name, func(t *testing.T) {
			var pk packets.Packet
			for i := range len(tc.raw) {
				n, err := Decode(tc.raw[:i], &pk, tc.version, 0)
				if !errors.Is(err, ErrIncomplete) || n != 0 {
					t.Fatalf("Decode of %d/%d bytes = %d, %v; want 0, ErrIncomplete", i, len(tc.raw), n, err)
				}
			}
			n, err := Decode(tc.raw, &pk, tc.version, 0)
			if err != nil || n != len(tc.raw) {
				t.Fatalf("Decode of all %d bytes = %d, %v", len(tc.raw), n, err)
			}
		})
	}
}

// A buffer holding several packets yields them one by one, each Decode
// consuming exactly one packet, then reports the partial tail incomplete.
func TestDecodeStream(t *testing.T) {
	for _, version := range []byte{4, 5} {
		var buf []byte
		var want []golden
		for _, tc := range goldenDecode {
			if tc.version == version {
				buf = append(buf, tc.raw...)
				want = append(want, tc)
			}
		}
		tail := want[0].raw[:len(want[0].raw)-1]
		buf = append(buf, tail...)
		used := 0
		for _, tc := range want {
			var pk packets.Packet
			n, err := Decode(buf[used:], &pk, version, 0)
			if err != nil || n != len(tc.raw) {
				t.Fatalf("v%d %s: Decode = %d, %v; want %d, nil", version, tc.name, n, err, len(tc.raw))
			}
			if d := diffPackets(pk, tc.want); d != "" {
				t.Fatalf("v%d %s: %s", version, tc.name, d)
			}
			used += n
		}
		var pk packets.Packet
		if n, err := Decode(buf[used:], &pk, version, 0); !errors.Is(err, ErrIncomplete) || n != 0 {
			t.Fatalf("v%d tail: Decode = %d, %v; want 0, ErrIncomplete", version, n, err)
		}
	}
}

func TestDecodeMaxSize(t *testing.T) {
	pub := goldenDecode[4].raw // publish/v4 qos0, 9 bytes
	if len(pub) != 9 {
		t.Fatalf("table moved: %d bytes", len(pub))
	}
	var pk packets.Packet
	if n, err := Decode(pub, &pk, 4, 9); err != nil || n != 9 {
		t.Fatalf("packet of exactly maxSize: %d, %v", n, err)
	}
	if _, err := Decode(pub, &pk, 4, 8); !errors.Is(err, packets.ErrPacketTooLarge) {
		t.Fatalf("packet one over maxSize: %v", err)
	}

	// Only the header of a 16 KiB publish has arrived: refused now, not
	// after buffering the body.
	hdr := []byte{
		packets.Publish << 4, 0x80, 0x80, 0x01, // fixed header, remaining 16384
	}
	if n, err := Decode(hdr, &pk, 4, 1024); !errors.Is(err, packets.ErrPacketTooLarge) || n != 0 {
		t.Fatalf("oversize header: %d, %v; want 0, ErrPacketTooLarge", n, err)
	}
	if _, err := Decode(hdr, &pk, 4, 0); !errors.Is(err, ErrIncomplete) {
		t.Fatalf("same header without a limit: %v; want ErrIncomplete", err)
	}
	// Before CONNECT too.
	if _, err := Decode([]byte{packets.Connect << 4, 0xff, 0x7f}, &pk, 0, 1024); !errors.Is(err, packets.ErrPacketTooLarge) {
		t.Fatalf("oversize CONNECT header: %v", err)
	}
}

func TestHeaderVBI(t *testing.T) {
	for _, tc := range []struct {
		name      string
		in        []byte
		hdrLen    int
		remaining int
		err       error
	}{
		{"empty", nil, 0, 0, ErrIncomplete},
		{"first byte only", []byte{0x30}, 0, 0, ErrIncomplete},
		{"one byte 0", []byte{0x30, 0x00}, 2, 0, nil},
		{"one byte 127", []byte{0x30, 0x7f}, 2, 127, nil},
		{"two bytes 128", []byte{0x30, 0x80, 0x01}, 3, 128, nil},
		{"two bytes 16383", []byte{0x30, 0xff, 0x7f}, 3, 16383, nil},
		{"three bytes 16384", []byte{0x30, 0x80, 0x80, 0x01}, 4, 16384, nil},
		{"four bytes max", []byte{0x30, 0xff, 0xff, 0xff, 0x7f}, 5, maxRemaining, nil},
		{"continuation pending", []byte{0x30, 0x80}, 0, 0, ErrIncomplete},
		{"three continuations pending", []byte{0x30, 0x80, 0x80, 0x80}, 0, 0, ErrIncomplete},
		{"five-byte VBI", []byte{0x30, 0x80, 0x80, 0x80, 0x80, 0x01}, 0, 0, packets.ErrMalformedVariableByteInteger},
		{"fourth byte continues", []byte{0x30, 0xff, 0xff, 0xff, 0xff}, 0, 0, packets.ErrMalformedVariableByteInteger},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, hl, rem, err := Header(tc.in)
			if !errors.Is(err, tc.err) || hl != tc.hdrLen || rem != tc.remaining {
				t.Fatalf("Header = %d, %d, %v; want %d, %d, %v", hl, rem, err, tc.hdrLen, tc.remaining, tc.err)
			}
			if tc.err != nil {
				var pk packets.Packet
				if n, err := Decode(tc.in, &pk, 4, 0); !errors.Is(err, tc.err) || n != 0 {
					t.Fatalf("Decode = %d, %v; want 0, %v", n, err, tc.err)
				}
			}
		})
	}
}

func TestAppendVBI(t *testing.T) {
	for _, v := range []int{0, 1, 127, 128, 16383, 16384, 2097151, 2097152, maxRemaining} {
		b := AppendVBI(nil, v)
		if len(b) != vbiLen(v) {
			t.Fatalf("AppendVBI(%d) is %d bytes, vbiLen says %d", v, len(b), vbiLen(v))
		}
		got, n, ok := readVBI(b)
		if !ok || n != len(b) || got != v {
			t.Fatalf("readVBI(AppendVBI(%d)) = %d, %d, %v", v, got, n, ok)
		}
	}
}

// Before CONNECT only CONNECT is accepted [MQTT-3.1.0-1].
func TestDecodeFirstPacketMustBeConnect(t *testing.T) {
	for _, tc := range goldenDecode {
		if tc.want.FixedHeader.Type == packets.Connect {
			continue
		}
		var pk packets.Packet
		n, err := Decode(tc.raw, &pk, 0, 0)
		if !errors.Is(err, packets.ErrProtocolViolationRequireFirstConnect) || n != len(tc.raw) {
			t.Errorf("%s before CONNECT: %d, %v; want %d, ErrProtocolViolationRequireFirstConnect", tc.name, n, err, len(tc.raw))
		}
	}
}

// badInput holds packets Decode must refuse, with the reason code it must
// give. They also seed FuzzDecode.
var badInput = []struct {
	name    string
	version byte
	raw     []byte
	want    packets.Code // compared by value: code and reason
}{
	{
		name:    "connect truncated protocol name",
		version: 0,
		raw: []byte{
			packets.Connect << 4, 4, // fixed header, remaining 4
			0, 4, 'M', 'Q', // protocol name says 4 bytes, has 2
		},
		want: packets.ErrMalformedProtocolName,
	},
	{
		name:    "connect no client id",
		version: 0,
		raw: []byte{
			packets.Connect << 4, 10, // fixed header, remaining 10
			0, 4, 'M', 'Q', 'T', 'T', // protocol name
			4,     // protocol version 3.1.1
			0,     // flags
			0, 60, // keepalive; client id missing
		},
		want: ErrMalformedClientID, // [MQTT-3.1.3-3]: 0x81
	},
	{
		name:    "connect v5 bridge bit",
		version: 0,
		raw: []byte{
			packets.Connect << 4, 14, // fixed header, remaining 14
			0, 4, 'M', 'Q', 'T', 'T', // protocol name
			0x80 | 5, // protocol version 5 with the bridge bit
			0,        // flags
			0, 60,    // keepalive
			0,         // property length 0
			0, 1, 'b', // client id "b"
		},
		want: packets.ErrUnsupportedProtocolVersion,
	},
	{
		name:    "connect reserved flags",
		version: 0,
		raw: []byte{
			packets.Connect<<4 | 1, 2, // fixed header: flags must be 0000
			0, 0, // body (not reached)
		},
		want: packets.ErrMalformedFlags,
	},
	{
		name:    "publish qos 3",
		version: 4,
		raw: cat([]byte{
			packets.Publish<<4 | 3<<1, 7, // fixed header: qos 3 (reserved), remaining 7
		}, topicAB, []byte{0, 1}), // topic "a/b", packet id 1
		want: packets.ErrMalformedQos, // [MQTT-3.3.1-4]: malformed (v5 §3.3.1.2), 0x81
	},
	{
		name:    "publish dup qos 0",
		version: 4,
		raw: cat([]byte{
			packets.Publish<<4 | 1<<3, 5, // fixed header: dup with qos 0
		}, topicAB),
		want: packets.ErrProtocolViolationDupNoQos, // [MQTT-3.3.1-2]
	},
	{
		name:    "publish v4 topic past end",
		version: 4,
		raw: []byte{
			packets.Publish << 4, 3, // fixed header, remaining 3
			0, 9, 'a', // topic length 9, one byte present
		},
		want: packets.ErrMalformedTopic,
	},
	{
		name:    "publish v4 qos1 no packet id",
		version: 4,
		raw: cat([]byte{
			packets.Publish<<4 | 1<<1, 6, // fixed header: qos 1, remaining 6
		}, topicAB, []byte{0}), // one byte of packet id
		want: packets.ErrMalformedPacketID,
	},
	{
		name:    "publish v4 invalid UTF-8 topic",
		version: 4,
		raw: []byte{
			packets.Publish << 4, 5, // fixed header, remaining 5
			0, 3, 'a', 0xc3, 0x28, // topic: 0xc3 0x28 is not UTF-8
		},
		want: packets.ErrMalformedInvalidUTF8, // [MQTT-1.5.4-1]
	},
	{
		name:    "publish v4 topic with U+0000",
		version: 4,
		raw: []byte{
			packets.Publish << 4, 5, // fixed header, remaining 5
			0, 3, 'a', 0, 'b', // topic "a\x00b"
		},
		want: packets.ErrMalformedInvalidUTF8, // [MQTT-1.5.4-2]
	},
	{
		name:    "publish v5 invalid UTF-8 topic",
		version: 5,
		raw: []byte{
			packets.Publish << 4, 6, // fixed header, remaining 6
			0, 3, 'a', 0xff, 'b', // topic: 0xff is never UTF-8
			0, // property length 0
		},
		want: packets.ErrMalformedTopic,
	},
	{
		name:    "publish v5 topic with U+0000",
		version: 5,
		raw: []byte{
			packets.Publish << 4, 6, // fixed header, remaining 6
			0, 3, 'a', 0, 'b', // topic "a\x00b"
			0, // property length 0
		},
		want: packets.ErrMalformedTopic,
	},
	{
		name:    "publish v5 payload format UTF-8 with invalid payload",
		version: 5,
		raw: cat([]byte{
			packets.Publish << 4, 11, // fixed header, remaining 11
		}, topicAB, []byte{
			2,       // property length
			0x01, 1, // payload format indicator: UTF-8
			'o', 'k', 0xc0, // payload: 0xc0 is not UTF-8
		}),
		want: packets.ErrPayloadFormatInvalid, // 0x99 [MQTT-3.3.2-4]
	},
	{
		name:    "publish v5 property not allowed",
		version: 5,
		raw: cat([]byte{
			packets.Publish << 4, 11, // fixed header, remaining 11
		}, topicAB, []byte{
			5,                // property length
			0x11, 0, 0, 0, 1, // session expiry interval: not a PUBLISH property
		}),
		want: ErrPropertyNotAllowed, // v5 §2.2.2.2: 0x81
	},
	{
		name:    "publish v5 property length past end",
		version: 5,
		raw: cat([]byte{
			packets.Publish << 4, 8, // fixed header, remaining 8
		}, topicAB, []byte{
			9,       // property length 9, two bytes follow
			0x01, 0, // payload format indicator
		}),
		want: ErrPropertyLength, // 0x81
	},
	{
		name:    "subscribe flags 0000",
		version: 4,
		raw: []byte{
			packets.Subscribe << 4, 6, // fixed header: flags must be 0010
			0, 1, // packet id 1
			0, 1, '#', // filter "#"
			0, // qos 0
		},
		want: packets.ErrMalformedFlags, // [MQTT-3.8.1-1]
	},
	{
		name:    "subscribe flags 0011",
		version: 5,
		raw: []byte{
			packets.Subscribe<<4 | 3, 7, // fixed header: flags must be 0010
			0, 1, // packet id 1
			0,         // property length 0
			0, 1, '#', // filter "#"
			0, // options
		},
		want: packets.ErrMalformedFlags,
	},
	{
		name:    "subscribe v5 truncated after filter",
		version: 5,
		raw: []byte{
			packets.Subscribe<<4 | 1<<1, 6, // fixed header, remaining 6
			0, 1, // packet id 1
			0,         // property length 0
			0, 1, '#', // filter "#"; options byte missing
		},
		// The codec would index past the end here; the validation layer
		// refuses it first.
		want: packets.ErrMalformedQos,
	},
	{
		name:    "subscribe v4 truncated after filter",
		version: 4,
		raw: []byte{
			packets.Subscribe<<4 | 1<<1, 5, // fixed header, remaining 5
			0, 1, // packet id 1
			0, 1, '#', // filter "#"; qos byte missing
		},
		want: packets.ErrMalformedQos,
	},
	{
		name:    "subscribe v4 qos 3",
		version: 4,
		raw: []byte{
			packets.Subscribe<<4 | 1<<1, 6, // fixed header, remaining 6
			0, 1, // packet id 1
			0, 1, '#', // filter "#"
			3, // qos 3
		},
		want: packets.ErrMalformedQos, // [MQTT-3-8.3-4] (3.1.1): malformed
	},
	{
		name:    "subscribe invalid UTF-8 filter",
		version: 4,
		raw: []byte{
			packets.Subscribe<<4 | 1<<1, 7, // fixed header, remaining 7
			0, 1, // packet id 1
			0, 2, 0xed, 0xa0, // filter: a UTF-16 surrogate, not UTF-8 (truncated)
			0, // qos 0
		},
		want: packets.ErrMalformedTopic,
	},
	{
		name:    "unsubscribe flags 0000",
		version: 4,
		raw: []byte{
			packets.Unsubscribe << 4, 5, // fixed header: flags must be 0010
			0, 1, // packet id 1
			0, 1, '#', // filter "#"
		},
		want: packets.ErrMalformedFlags, // [MQTT-3.10.1-1]
	},
	{
		name:    "pubrel flags 0000",
		version: 4,
		raw: []byte{
			packets.Pubrel << 4, 2, // fixed header: flags must be 0010
			0, 1, // packet id 1
		},
		want: packets.ErrMalformedFlags, // [MQTT-3.6.1-1]
	},
	{
		name:    "puback short",
		version: 4,
		raw: []byte{
			packets.Puback << 4, 1, // fixed header, remaining 1
			0, // half a packet id
		},
		want: packets.ErrMalformedPacketID,
	},
	{
		name:    "pingreq flags",
		version: 4,
		raw: []byte{
			packets.Pingreq<<4 | 1, 0, // fixed header: flags must be 0000
		},
		want: packets.ErrMalformedFlags,
	},
	{
		name:    "reserved type 0",
		version: 4,
		raw: []byte{
			0, 0, // fixed header: type 0 is reserved
		},
		want: packets.ErrProtocolViolation,
	},
	{
		name:    "disconnect v5 bad properties",
		version: 5,
		raw: []byte{
			packets.Disconnect << 4, 4, // fixed header, remaining 4
			0x00,    // reason: normal
			2,       // property length
			0x01, 1, // payload format indicator: not a DISCONNECT property
		},
		want: ErrPropertyNotAllowed, // v5 §2.2.2.2: 0x81
	},
}

func TestDecodeBadInput(t *testing.T) {
	for _, tc := range badInput {
		t.Run(tc.name, func(t *testing.T) {
			if _, hl, rem, err := Header(tc.raw); err != nil || hl+rem != len(tc.raw) {
				t.Fatalf("table error: header says %d+%d bytes (%v), table has %d", hl, rem, err, len(tc.raw))
			}
			var pk packets.Packet
			n, err := Decode(tc.raw, &pk, tc.version, 0)
			if err == nil {
				t.Fatalf("Decode succeeded: %+v", pk)
			}
			if got := CodeOf(err); got != tc.want {
				t.Fatalf("Decode error %v (code %#x %q); want %#x %q", err, got.Code, got.Reason, tc.want.Code, tc.want.Reason)
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("errors.Is(%v, %v) is false", err, tc.want)
			}
			if n != len(tc.raw) {
				t.Fatalf("Decode consumed %d of %d bytes", n, len(tc.raw))
			}
		})
	}
}

// The codec frames a CONNECT with any protocol name; the broker refuses it
// with ConnectValidate [MQTT-3.1.2-1]. This pins that split.
func TestDecodeWrongProtocolName(t *testing.T) {
	raw := []byte{
		packets.Connect << 4, 13, // fixed header, remaining 13
		0, 4, 'M', 'Q', 'T', 'X', // protocol name "MQTX"
		4,     // protocol version 3.1.1
		2,     // flags: clean
		0, 60, // keepalive 60 s
		0, 1, 'c', // client id "c"
	}
	var pk packets.Packet
	if n, err := Decode(raw, &pk, 0, 0); err != nil || n != len(raw) {
		t.Fatalf("Decode = %d, %v", n, err)
	}
	if string(pk.Connect.ProtocolName) != "MQTX" {
		t.Fatalf("protocol name %q", pk.Connect.ProtocolName)
	}
	if code := pk.ConnectValidate(); code != packets.ErrProtocolViolationProtocolName {
		t.Fatalf("ConnectValidate = %v; want ErrProtocolViolationProtocolName", code)
	}
}

func TestCodeOf(t *testing.T) {
	if c := CodeOf(packets.ErrPacketTooLarge); c != packets.ErrPacketTooLarge {
		t.Fatalf("CodeOf(code) = %v", c)
	}
	if c := CodeOf(errors.New("x")); c != packets.ErrUnspecifiedError {
		t.Fatalf("CodeOf(plain error) = %v", c)
	}
	if c := CodeOf(asCode(errors.New("x"))); c != packets.ErrMalformedPacket {
		t.Fatalf("CodeOf(asCode(plain error)) = %v", c)
	}
}

// Decoded strings and payloads alias the buffer (package doc): a caller that
// reuses the buffer sees them change. This pins the documented contract.
func TestDecodeAliasesBuffer(t *testing.T) {
	raw := append([]byte(nil), goldenDecode[4].raw...) // publish/v4 qos0 "a/b" "hi"
	var pk packets.Packet
	if _, err := Decode(raw, &pk, 4, 0); err != nil {
		t.Fatal(err)
	}
	raw[4], raw[7] = 'z', 'H'
	if pk.TopicName != "z/b" || string(pk.Payload) != "Hi" {
		t.Fatalf("topic %q payload %q: not aliasing the buffer", pk.TopicName, pk.Payload)
	}
}
