package mqtt

import (
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/mochi-mqtt/server/v2/packets"
)

// A refusal is a packet the validation layer must refuse, with the spec
// point it enforces and the reason code Decode must return (compared by
// value: code and reason string). The code is what a v5 peer is sent:
// 0x81 Malformed Packet, 0x82 Protocol Error, or another (0x99); a v3 peer
// is disconnected. Every byte carries a comment, as in goldenDecode. The
// tables (conformance*_test.go) also seed FuzzDecode, and every spec point
// must appear in docs/mqtt-conformance.md.
type refusal struct {
	name    string
	spec    string // spec ids ([MQTT-x.y.z-n]) or sections (v5 §x.y)
	version byte   // the connection's version (0 before CONNECT)
	raw     []byte
	want    packets.Code
}

// Fixed header, remaining length, and packet types other than CONNECT.
var refusals = []refusal{
	{
		name: "pingreq/v4 remaining length not minimal", spec: "[MQTT-1.5.5-1]", version: 4,
		raw: []byte{
			packets.Pingreq << 4, // fixed header
			0x80, 0x00,           // remaining length 0 in two bytes
		},
		want: ErrNonMinimalVBI,
	},
	{
		name: "publish/v5 remaining length not minimal", spec: "[MQTT-1.5.5-1]", version: 5,
		raw: cat([]byte{
			packets.Publish << 4, // fixed header: qos 0
			0x88, 0x00,           // remaining length 8 in two bytes
		}, topicAB, []byte{
			0,        // property length 0
			'h', 'i', // payload "hi"
		}),
		want: ErrNonMinimalVBI,
	},
	{
		name: "puback/v4 flags 0010", spec: "[MQTT-2.2.2-2]", version: 4,
		raw: []byte{
			packets.Puback<<4 | 1<<1, 2, // fixed header: flags must be 0000
			0, 1, // packet id 1
		},
		want: packets.ErrMalformedFlags,
	},
	{
		name: "pubrel/v5 flags 0011", spec: "[MQTT-2.2.2-1] [MQTT-3.6.1-1]", version: 5,
		raw: []byte{
			packets.Pubrel<<4 | 3, 2, // fixed header: flags must be 0010
			0, 1, // packet id 1
		},
		want: packets.ErrMalformedFlags,
	},
	{
		name: "unsubscribe/v5 flags 0110", spec: "[MQTT-2.2.2-1] [MQTT-3.10.1-1]", version: 5,
		raw: []byte{
			packets.Unsubscribe<<4 | 6, 6, // fixed header: flags must be 0010
			0, 1, // packet id 1
			0,         // property length 0
			0, 1, '#', // filter "#"
		},
		want: packets.ErrMalformedFlags,
	},
	{
		name: "disconnect/v5 flags 0001", spec: "[MQTT-2.2.2-2] [MQTT-3.14.1-1]", version: 5,
		raw: []byte{
			packets.Disconnect<<4 | 1, 0, // fixed header: flags must be 0000
		},
		want: packets.ErrMalformedFlags,
	},
	{
		name: "auth/v5 flags 1000", spec: "[MQTT-2.2.2-2] [MQTT-3.15.1-1]", version: 5,
		raw: []byte{
			packets.Auth<<4 | 8, 0, // fixed header: flags must be 0000
		},
		want: packets.ErrMalformedFlags,
	},
	{
		name: "publish/v5 qos 3", spec: "[MQTT-3.3.1-4]", version: 5,
		raw: cat([]byte{
			packets.Publish<<4 | 3<<1, 8, // fixed header: both qos bits set, remaining 8
		}, topicAB, []byte{
			0, 1, // packet id 1
			0, // property length 0
		}),
		want: packets.ErrMalformedQos, // 0x81: malformed in v5 §3.3.1.2
	},

	// PUBLISH.
	{
		name: "publish/v5 payload format twice", spec: "v5 §3.3.2.3.2", version: 5,
		raw: cat([]byte{
			packets.Publish << 4, 10, // fixed header, remaining 10
		}, topicAB, []byte{
			4,       // property length
			0x01, 0, // payload format indicator: bytes
			0x01, 1, // payload format indicator again
		}),
		want: ErrDuplicateProperty,
	},
	{
		name: "publish/v5 message expiry twice", spec: "v5 §3.3.2.3.3", version: 5,
		raw: cat([]byte{
			packets.Publish << 4, 16, // fixed header, remaining 16
		}, topicAB, []byte{
			10,               // property length
			0x02, 0, 0, 0, 1, // message expiry interval 1
			0x02, 0, 0, 0, 2, // message expiry interval again
		}),
		want: ErrDuplicateProperty,
	},
	{
		name: "publish/v5 topic alias twice", spec: "v5 §3.3.2.3.4", version: 5,
		raw: cat([]byte{
			packets.Publish << 4, 12, // fixed header, remaining 12
		}, topicAB, []byte{
			6,          // property length
			0x23, 0, 1, // topic alias 1
			0x23, 0, 2, // topic alias again
		}),
		want: ErrDuplicateProperty,
	},
	{
		name: "publish/v5 response topic twice", spec: "v5 §3.3.2.3.5", version: 5,
		raw: cat([]byte{
			packets.Publish << 4, 14, // fixed header, remaining 14
		}, topicAB, []byte{
			8,               // property length
			0x08, 0, 1, 'r', // response topic "r"
			0x08, 0, 1, 's', // response topic again
		}),
		want: ErrDuplicateProperty,
	},
	{
		name: "publish/v5 correlation data twice", spec: "v5 §3.3.2.3.6", version: 5,
		raw: cat([]byte{
			packets.Publish << 4, 14, // fixed header, remaining 14
		}, topicAB, []byte{
			8,             // property length
			0x09, 0, 1, 1, // correlation data 01
			0x09, 0, 1, 2, // correlation data again
		}),
		want: ErrDuplicateProperty,
	},
	{
		name: "publish/v5 content type twice", spec: "v5 §3.3.2.3.9", version: 5,
		raw: cat([]byte{
			packets.Publish << 4, 14, // fixed header, remaining 14
		}, topicAB, []byte{
			8,               // property length
			0x03, 0, 1, 'a', // content type "a"
			0x03, 0, 1, 'b', // content type again
		}),
		want: ErrDuplicateProperty,
	},
	{
		name: "publish/v5 property cut off by the property length", spec: "v5 §2.2.2", version: 5,
		raw: cat([]byte{
			packets.Publish << 4, 11, // fixed header, remaining 11
		}, topicAB, []byte{
			3,       // property length 3
			0x02, 0, // message expiry interval: needs 4 bytes, the block has 2 left
			0,        // (the block ends here)
			'x', 'y', // payload "xy", which the codec would read as the expiry
		}),
		want: ErrPropertyTruncated,
	},
	{
		name: "publish/v5 string property past its block", spec: "v5 §2.2.2", version: 5,
		raw: cat([]byte{
			packets.Publish << 4, 13, // fixed header, remaining 13
		}, topicAB, []byte{
			4,               // property length 4
			0x03, 0, 5, 'j', // content type of 5 bytes: the block ends after one
			's', 'o', 'n', // payload "son"
		}),
		want: ErrPropertyTruncated,
	},
	{
		name: "publish/v5 payload format 2", spec: "v5 §3.3.2.3.2", version: 5,
		raw: cat([]byte{
			packets.Publish << 4, 8, // fixed header, remaining 8
		}, topicAB, []byte{
			2,       // property length
			0x01, 2, // payload format indicator 2: only 0 and 1 exist
		}),
		want: ErrPropertyValue,
	},
	{
		name: "publish/v5 subscription identifier 0", spec: "v5 §3.3.2.3.8", version: 5,
		raw: cat([]byte{
			packets.Publish << 4, 8, // fixed header, remaining 8
		}, topicAB, []byte{
			2,       // property length
			0x0b, 0, // subscription identifier 0
		}),
		want: ErrPropertyValue,
	},
	{
		name: "publish/v5 subscription identifier not minimal", spec: "[MQTT-1.5.5-1]", version: 5,
		raw: cat([]byte{
			packets.Publish << 4, 9, // fixed header, remaining 9
		}, topicAB, []byte{
			3,                // property length
			0x0b, 0x81, 0x00, // subscription identifier 1 in two bytes
		}),
		want: ErrNonMinimalVBI,
	},
	{
		name: "publish/v5 response topic with a wildcard", spec: "[MQTT-3.3.2-14]", version: 5,
		raw: cat([]byte{
			packets.Publish << 4, 12, // fixed header, remaining 12
		}, topicAB, []byte{
			6,                         // property length
			0x08, 0, 3, 'a', '/', '+', // response topic "a/+"
		}),
		want: ErrResponseTopicWildcard,
	},
	{
		name: "publish/v5 content type with U+0000", spec: "[MQTT-1.5.4-2]", version: 5,
		raw: cat([]byte{
			packets.Publish << 4, 11, // fixed header, remaining 11
		}, topicAB, []byte{
			5,                  // property length
			0x03, 0, 2, 'a', 0, // content type "a\x00"
		}),
		want: ErrPropertyUTF8,
	},
	{
		name: "publish/v5 unknown property", spec: "v5 §2.2.2.2", version: 5,
		raw: cat([]byte{
			packets.Publish << 4, 8, // fixed header, remaining 8
		}, topicAB, []byte{
			2,       // property length
			0x7f, 0, // identifier 0x7f: no such property
		}),
		want: ErrPropertyNotAllowed,
	},
	{
		name: "publish/v5 qos 1 packet id 0", spec: "[MQTT-2.2.1-3]", version: 5,
		raw: cat([]byte{
			packets.Publish<<4 | 1<<1, 8, // fixed header: qos 1, remaining 8
		}, topicAB, []byte{
			0, 0, // packet id 0
			0, // property length 0
		}),
		want: packets.ErrProtocolViolationNoPacketID,
	},
	{
		name: "publish/v4 qos 2 packet id 0", spec: "[MQTT-2.3.1-1]", version: 4,
		raw: cat([]byte{
			packets.Publish<<4 | 2<<1, 7, // fixed header: qos 2, remaining 7
		}, topicAB, []byte{
			0, 0, // packet id 0
		}),
		want: packets.ErrProtocolViolationNoPacketID,
	},
	{
		name: "publish/v4 surrogate in topic", spec: "[MQTT-1.5.3-1]", version: 4,
		raw: []byte{
			packets.Publish << 4, 5, // fixed header, remaining 5
			0, 3, 0xed, 0xa0, 0x80, // topic: U+D800, a UTF-16 surrogate, encoded
		},
		want: packets.ErrMalformedInvalidUTF8,
	},
	{
		name: "publish/v5 surrogate in topic", spec: "[MQTT-1.5.4-1]", version: 5,
		raw: []byte{
			packets.Publish << 4, 6, // fixed header, remaining 6
			0, 3, 0xed, 0xbf, 0xbf, // topic: U+DFFF encoded
			0, // property length 0
		},
		want: packets.ErrMalformedTopic,
	},

	// PUBACK, PUBREC, PUBREL, PUBCOMP.
	{
		name: "puback/v4 remaining length 3", spec: "3.1.1 §3.4.1", version: 4,
		raw: []byte{
			packets.Puback << 4, 3, // fixed header, remaining 3 (must be 2)
			0, 1, // packet id 1
			0, // a byte too many
		},
		want: ErrRemainingLength,
	},
	{
		name: "pubrel/v4 remaining length 4", spec: "3.1.1 §3.6.1", version: 4,
		raw: []byte{
			packets.Pubrel<<4 | 1<<1, 4, // fixed header, remaining 4 (must be 2)
			0, 1, // packet id 1
			0, 0, // two bytes too many
		},
		want: ErrRemainingLength,
	},
	{
		name: "pubrec/v4 packet id 0", spec: "[MQTT-2.3.1-1]", version: 4,
		raw: []byte{
			packets.Pubrec << 4, 2, // fixed header, remaining 2
			0, 0, // packet id 0
		},
		want: packets.ErrProtocolViolationNoPacketID,
	},
	{
		name: "puback/v5 packet id 0", spec: "[MQTT-2.2.1-3]", version: 5,
		raw: []byte{
			packets.Puback << 4, 2, // fixed header, remaining 2
			0, 0, // packet id 0
		},
		want: packets.ErrProtocolViolationNoPacketID,
	},
	{
		name: "pubcomp/v5 remaining length 1", spec: "v5 §3.7.2", version: 5,
		raw: []byte{
			packets.Pubcomp << 4, 1, // fixed header, remaining 1
			0, // half a packet id
		},
		want: packets.ErrMalformedPacketID,
	},
	{
		name: "puback/v5 two reason strings", spec: "v5 §3.4.2.2.2", version: 5,
		raw: []byte{
			packets.Puback << 4, 12, // fixed header, remaining 12
			0, 1, // packet id 1
			0x10,            // reason: no matching subscribers
			8,               // property length
			0x1f, 0, 1, 'a', // reason string "a"
			0x1f, 0, 1, 'b', // reason string again
		},
		want: ErrDuplicateProperty,
	},
	{
		name: "pubrel/v5 property length past the packet", spec: "v5 §3.6.2.2", version: 5,
		raw: []byte{
			packets.Pubrel<<4 | 1<<1, 4, // fixed header, remaining 4
			0, 1, // packet id 1
			0, // reason: success
			5, // property length 5, nothing follows
		},
		want: ErrPropertyLength,
	},
	{
		name: "puback/v5 bytes after the properties", spec: "v5 §3.4.2", version: 5,
		raw: []byte{
			packets.Puback << 4, 5, // fixed header, remaining 5
			0, 1, // packet id 1
			0,   // reason: success
			0,   // property length 0
			'x', // a byte after the last field
		},
		want: ErrTrailingBytes,
	},
	{
		name: "pubrec/v5 reason code 0x05", spec: "[MQTT-3.5.2-1]", version: 5,
		raw: []byte{
			packets.Pubrec << 4, 3, // fixed header, remaining 3
			0, 1, // packet id 1
			0x05, // reason: not a PUBREC reason code
		},
		want: packets.ErrProtocolViolationInvalidReason,
	},
	{
		name: "pubrel/v5 reason code 0x10", spec: "[MQTT-3.6.2-1]", version: 5,
		raw: []byte{
			packets.Pubrel<<4 | 1<<1, 3, // fixed header, remaining 3
			0, 1, // packet id 1
			0x10, // reason: no matching subscribers, a PUBACK/PUBREC code only
		},
		want: packets.ErrProtocolViolationInvalidReason,
	},
	{
		name: "pubcomp/v5 user property cut off", spec: "v5 §2.2.2", version: 5,
		raw: []byte{
			packets.Pubcomp << 4, 9, // fixed header, remaining 9
			0, 1, // packet id 1
			0,                  // reason: success
			5,                  // property length 5
			0x26, 0, 1, 'k', 0, // user property: key "k", value's length half there
		},
		want: ErrPropertyTruncated,
	},
	{
		name: "puback/v5 topic alias", spec: "v5 §2.2.2.2", version: 5,
		raw: []byte{
			packets.Puback << 4, 7, // fixed header, remaining 7
			0, 1, // packet id 1
			0,          // reason: success
			3,          // property length
			0x23, 0, 1, // topic alias: a PUBLISH property only
		},
		want: ErrPropertyNotAllowed,
	},

	// PINGREQ, DISCONNECT, AUTH.
	{
		name: "pingreq/v4 remaining length 1", spec: "3.1.1 §3.12.1", version: 4,
		raw: []byte{
			packets.Pingreq << 4, 1, // fixed header, remaining 1 (must be 0)
			0, // body
		},
		want: ErrRemainingLength,
	},
	{
		name: "pingreq/v5 remaining length 2", spec: "v5 §3.12.1", version: 5,
		raw: []byte{
			packets.Pingreq << 4, 2, // fixed header, remaining 2 (must be 0)
			0, 0, // body
		},
		want: ErrRemainingLength,
	},
	{
		name: "disconnect/v4 remaining length 1", spec: "3.1.1 §3.14.1", version: 4,
		raw: []byte{
			packets.Disconnect << 4, 1, // fixed header, remaining 1 (must be 0)
			0, // body
		},
		want: ErrRemainingLength,
	},
	{
		name: "disconnect/v5 reason code 0x01", spec: "[MQTT-3.14.2-1]", version: 5,
		raw: []byte{
			packets.Disconnect << 4, 1, // fixed header, remaining 1
			0x01, // reason: not a DISCONNECT reason code
		},
		want: packets.ErrProtocolViolationInvalidReason,
	},
	{
		name: "disconnect/v5 session expiry twice", spec: "v5 §3.14.2.2.2", version: 5,
		raw: []byte{
			packets.Disconnect << 4, 12, // fixed header, remaining 12
			0x00,             // reason: normal
			10,               // property length
			0x11, 0, 0, 0, 1, // session expiry interval 1
			0x11, 0, 0, 0, 2, // session expiry interval again
		},
		want: ErrDuplicateProperty,
	},
	{
		name: "disconnect/v5 property past its block", spec: "v5 §2.2.2", version: 5,
		raw: []byte{
			packets.Disconnect << 4, 4, // fixed header, remaining 4
			0x00,    // reason: normal
			2,       // property length 2
			0x11, 0, // session expiry interval: needs 4 bytes, has 1
		},
		want: ErrPropertyTruncated,
	},
	{
		name: "auth/v4", spec: "3.1.1 §2.2.1", version: 4,
		raw: []byte{
			packets.Auth << 4, 0, // fixed header: type 15 is reserved in 3.1.1
		},
		want: packets.ErrProtocolViolation,
	},
	{
		name: "auth/v5 reason without properties", spec: "v5 §3.15.2.1", version: 5,
		raw: []byte{
			packets.Auth << 4, 1, // fixed header, remaining 1
			0x18, // reason: continue authentication; property length missing
		},
		want: ErrRemainingLength,
	},
	{
		name: "auth/v5 reason code 0x01", spec: "[MQTT-3.15.2-1]", version: 5,
		raw: []byte{
			packets.Auth << 4, 2, // fixed header, remaining 2
			0x01, // reason: not an AUTH reason code
			0,    // property length 0
		},
		want: packets.ErrProtocolViolationInvalidReason,
	},
	{
		name: "auth/v5 authentication method twice", spec: "v5 §3.15.2.2.2", version: 5,
		raw: []byte{
			packets.Auth << 4, 10, // fixed header, remaining 10
			0x18,            // reason: continue authentication
			8,               // property length
			0x15, 0, 1, 'a', // authentication method "a"
			0x15, 0, 1, 'b', // authentication method again
		},
		want: ErrDuplicateProperty,
	},

	// SUBSCRIBE.
	{
		name: "subscribe/v5 reserved option bits", spec: "[MQTT-3.8.3-5]", version: 5,
		raw: []byte{
			packets.Subscribe<<4 | 1<<1, 7, // fixed header, remaining 7
			0, 1, // packet id 1
			0,         // property length 0
			0, 1, 'a', // filter "a"
			0xc1, // options: reserved bits 6-7 set, qos 1
		},
		want: ErrSubscriptionOptions,
	},
	{
		name: "subscribe/v5 reserved option bit 6", spec: "[MQTT-3.8.3-5]", version: 5,
		raw: []byte{
			packets.Subscribe<<4 | 1<<1, 7, // fixed header, remaining 7
			0, 1, // packet id 1
			0,         // property length 0
			0, 1, 'a', // filter "a"
			0x40, // options: reserved bit 6 set
		},
		want: ErrSubscriptionOptions,
	},
	{
		name: "subscribe/v4 reserved qos bits", spec: "[MQTT-3-8.3-4]", version: 4,
		raw: []byte{
			packets.Subscribe<<4 | 1<<1, 6, // fixed header, remaining 6
			0, 1, // packet id 1
			0, 1, 'a', // filter "a"
			0x04, // requested qos byte: reserved bit 2 set
		},
		want: ErrSubscriptionOptions,
	},
	{
		name: "subscribe/v5 qos 3", spec: "v5 §3.8.3.1", version: 5,
		raw: []byte{
			packets.Subscribe<<4 | 1<<1, 7, // fixed header, remaining 7
			0, 1, // packet id 1
			0,         // property length 0
			0, 1, 'a', // filter "a"
			0x03, // options: maximum qos 3
		},
		want: packets.ErrProtocolViolationQosOutOfRange,
	},
	{
		name: "subscribe/v5 retain handling 3", spec: "v5 §3.8.3.1", version: 5,
		raw: []byte{
			packets.Subscribe<<4 | 1<<1, 7, // fixed header, remaining 7
			0, 1, // packet id 1
			0,         // property length 0
			0, 1, 'a', // filter "a"
			3 << 4, // options: retain handling 3
		},
		want: ErrRetainHandling,
	},
	{
		name: "subscribe/v5 subscription identifier 0", spec: "v5 §3.8.2.1.2", version: 5,
		raw: []byte{
			packets.Subscribe<<4 | 1<<1, 9, // fixed header, remaining 9
			0, 1, // packet id 1
			2,       // property length
			0x0b, 0, // subscription identifier 0
			0, 1, 'a', // filter "a"
			0, // options
		},
		want: ErrPropertyValue,
	},
	{
		name: "subscribe/v5 two subscription identifiers", spec: "v5 §3.8.2.1.2", version: 5,
		raw: []byte{
			packets.Subscribe<<4 | 1<<1, 11, // fixed header, remaining 11
			0, 1, // packet id 1
			4,       // property length
			0x0b, 1, // subscription identifier 1
			0x0b, 2, // subscription identifier 2
			0, 1, 'a', // filter "a"
			0, // options
		},
		want: ErrDuplicateProperty,
	},
	{
		name: "subscribe/v5 subscription identifier not minimal", spec: "[MQTT-1.5.5-1]", version: 5,
		raw: []byte{
			packets.Subscribe<<4 | 1<<1, 10, // fixed header, remaining 10
			0, 1, // packet id 1
			3,                // property length
			0x0b, 0x81, 0x00, // subscription identifier 1 in two bytes
			0, 1, 'a', // filter "a"
			0, // options
		},
		want: ErrNonMinimalVBI,
	},
	{
		name: "subscribe/v5 subscription identifier of five bytes", spec: "v5 §1.5.5", version: 5,
		raw: []byte{
			packets.Subscribe<<4 | 1<<1, 13, // fixed header, remaining 13
			0, 1, // packet id 1
			6,                            // property length
			0x0b, 0x80, 0x80, 0x80, 0x80, // subscription identifier: four continuation bytes
			0x01,      // and a fifth
			0, 1, 'a', // filter "a"
			0, // options
		},
		want: packets.ErrMalformedVariableByteInteger,
	},
	{
		name: "subscribe/v5 property length not minimal", spec: "[MQTT-1.5.5-1]", version: 5,
		raw: []byte{
			packets.Subscribe<<4 | 1<<1, 8, // fixed header, remaining 8
			0, 1, // packet id 1
			0x80, 0x00, // property length 0 in two bytes
			0, 1, 'a', // filter "a"
			0, // options
		},
		want: ErrNonMinimalVBI,
	},
	{
		name: "subscribe/v4 empty filter", spec: "[MQTT-4.7.3-1]", version: 4,
		raw: []byte{
			packets.Subscribe<<4 | 1<<1, 5, // fixed header, remaining 5
			0, 1, // packet id 1
			0, 0, // filter ""
			0, // qos 0
		},
		want: ErrEmptyTopicFilter,
	},
	{
		name: "subscribe/v5 empty filter", spec: "[MQTT-4.7.3-1]", version: 5,
		raw: []byte{
			packets.Subscribe<<4 | 1<<1, 6, // fixed header, remaining 6
			0, 1, // packet id 1
			0,    // property length 0
			0, 0, // filter ""
			0, // options
		},
		want: ErrEmptyTopicFilter,
	},
	{
		name: "subscribe/v4 filter with U+0000", spec: "[MQTT-1.5.3-2]", version: 4,
		raw: []byte{
			packets.Subscribe<<4 | 1<<1, 7, // fixed header, remaining 7
			0, 1, // packet id 1
			0, 2, 'a', 0, // filter "a\x00"
			0, // qos 0
		},
		want: packets.ErrMalformedTopic,
	},
	{
		name: "subscribe/v5 surrogate in filter", spec: "[MQTT-1.5.4-1]", version: 5,
		raw: []byte{
			packets.Subscribe<<4 | 1<<1, 9, // fixed header, remaining 9
			0, 1, // packet id 1
			0,                      // property length 0
			0, 3, 0xed, 0xa0, 0x80, // filter: U+D800 encoded
			0, // options
		},
		want: packets.ErrMalformedTopic,
	},
	{
		name: "subscribe/v4 packet id 0", spec: "[MQTT-2.3.1-1]", version: 4,
		raw: []byte{
			packets.Subscribe<<4 | 1<<1, 6, // fixed header, remaining 6
			0, 0, // packet id 0
			0, 1, 'a', // filter "a"
			0, // qos 0
		},
		want: packets.ErrProtocolViolationNoPacketID,
	},
	{
		name: "subscribe/v5 no filters", spec: "[MQTT-3.8.3-2]", version: 5,
		raw: []byte{
			packets.Subscribe<<4 | 1<<1, 3, // fixed header, remaining 3
			0, 1, // packet id 1
			0, // property length 0; no payload
		},
		want: packets.ErrProtocolViolationNoFilters,
	},
	{
		name: "subscribe/v5 reason string", spec: "v5 §2.2.2.2", version: 5,
		raw: []byte{
			packets.Subscribe<<4 | 1<<1, 11, // fixed header, remaining 11
			0, 1, // packet id 1
			4,               // property length
			0x1f, 0, 1, 'x', // reason string: not a SUBSCRIBE property
			0, 1, 'a', // filter "a"
			0, // options
		},
		want: ErrPropertyNotAllowed,
	},

	// UNSUBSCRIBE.
	{
		name: "unsubscribe/v4 empty filter", spec: "[MQTT-4.7.3-1]", version: 4,
		raw: []byte{
			packets.Unsubscribe<<4 | 1<<1, 4, // fixed header, remaining 4
			0, 1, // packet id 1
			0, 0, // filter ""
		},
		want: ErrEmptyTopicFilter,
	},
	{
		name: "unsubscribe/v5 empty filter", spec: "[MQTT-4.7.3-1]", version: 5,
		raw: []byte{
			packets.Unsubscribe<<4 | 1<<1, 5, // fixed header, remaining 5
			0, 1, // packet id 1
			0,    // property length 0
			0, 0, // filter ""
		},
		want: ErrEmptyTopicFilter,
	},
	{
		name: "unsubscribe/v4 packet id 0", spec: "[MQTT-2.3.1-1]", version: 4,
		raw: []byte{
			packets.Unsubscribe<<4 | 1<<1, 5, // fixed header, remaining 5
			0, 0, // packet id 0
			0, 1, 'a', // filter "a"
		},
		want: packets.ErrProtocolViolationNoPacketID,
	},
	{
		name: "unsubscribe/v5 no filters", spec: "[MQTT-3.10.3-2]", version: 5,
		raw: []byte{
			packets.Unsubscribe<<4 | 1<<1, 3, // fixed header, remaining 3
			0, 1, // packet id 1
			0, // property length 0; no payload
		},
		want: packets.ErrProtocolViolationNoFilters,
	},
	{
		name: "unsubscribe/v5 subscription identifier", spec: "v5 §2.2.2.2", version: 5,
		raw: []byte{
			packets.Unsubscribe<<4 | 1<<1, 8, // fixed header, remaining 8
			0, 1, // packet id 1
			2,       // property length
			0x0b, 1, // subscription identifier: not an UNSUBSCRIBE property
			0, 1, 'a', // filter "a"
		},
		want: ErrPropertyNotAllowed,
	},
	{
		name: "unsubscribe/v4 invalid UTF-8 filter", spec: "[MQTT-1.5.3-1]", version: 4,
		raw: []byte{
			packets.Unsubscribe<<4 | 1<<1, 6, // fixed header, remaining 6
			0, 1, // packet id 1
			0, 2, 0xc3, 0x28, // filter: 0xc3 0x28 is not UTF-8
		},
		want: packets.ErrMalformedTopic,
	},
	{
		name: "unsubscribe/v4 filter past the packet", spec: "[MQTT-3.10.3-1]", version: 4,
		raw: []byte{
			packets.Unsubscribe<<4 | 1<<1, 5, // fixed header, remaining 5
			0, 1, // packet id 1
			0, 9, 'a', // filter of 9 bytes, one present
		},
		want: packets.ErrMalformedTopic,
	},

	// Server to client (the test and bench clients decode these).
	{
		name: "connack/v4 reserved flag bits", spec: "[MQTT-3.2.2-1]", version: 4,
		raw: []byte{
			packets.Connack << 4, 2, // fixed header, remaining 2
			0x02, // acknowledge flags: reserved bit 1 set
			0,    // return code: accepted
		},
		want: packets.ErrMalformedSessionPresent,
	},
	{
		name: "connack/v5 topic alias", spec: "v5 §2.2.2.2", version: 5,
		raw: []byte{
			packets.Connack << 4, 6, // fixed header, remaining 6
			0,          // acknowledge flags
			0,          // reason: success
			3,          // property length
			0x23, 0, 1, // topic alias: a PUBLISH property only
		},
		want: ErrPropertyNotAllowed,
	},
	{
		name: "connack/v5 maximum qos 2", spec: "v5 §3.2.2.3.4", version: 5,
		raw: []byte{
			packets.Connack << 4, 5, // fixed header, remaining 5
			0,       // acknowledge flags
			0,       // reason: success
			2,       // property length
			0x24, 2, // maximum qos 2: only 0 and 1 may be sent
		},
		want: ErrPropertyValue,
	},
	{
		name: "suback/v5 property length past the packet", spec: "v5 §3.9.2.1", version: 5,
		raw: []byte{
			packets.Suback << 4, 4, // fixed header, remaining 4
			0, 1, // packet id 1
			9, // property length 9
			0, // one byte follows
		},
		want: ErrPropertyLength,
	},
}

// allRefusals is every refusal table.
func allRefusals() []refusal { return append(append([]refusal(nil), refusals...), connectRefusals...) }

func TestDecodeRefusals(t *testing.T) {
	before := codecPanics.Load()
	for _, tc := range allRefusals() {
		t.Run(tc.name, func(t *testing.T) {
			// A refusal from the fixed header consumes nothing; any other
			// consumes the whole packet, which the table must hold.
			_, hl, rem, herr := Header(tc.raw)
			wantN := len(tc.raw)
			if herr != nil {
				wantN = 0
			} else if hl+rem != len(tc.raw) {
				t.Fatalf("table error: header says %d+%d bytes, table has %d", hl, rem, len(tc.raw))
			}
			var pk packets.Packet
			n, err := Decode(tc.raw, &pk, tc.version, 0)
			if err == nil {
				t.Fatalf("Decode accepted it: %+v", pk)
			}
			if got := CodeOf(err); got != tc.want {
				t.Fatalf("Decode error %v (code %#x %q); want %#x %q", err, got.Code, got.Reason, tc.want.Code, tc.want.Reason)
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("errors.Is(%v, %v) is false", err, tc.want)
			}
			if n != wantN {
				t.Fatalf("Decode consumed %d of %d bytes, want %d", n, len(tc.raw), wantN)
			}
			// Fed one byte at a time, no prefix is refused differently.
			for i := range len(tc.raw) {
				n, err := Decode(tc.raw[:i], &pk, tc.version, 0)
				if err == nil || (!errors.Is(err, ErrIncomplete) && CodeOf(err) != tc.want) {
					t.Fatalf("prefix of %d bytes: %d, %v", i, n, err)
				}
			}
		})
	}
	if d := codecPanics.Load() - before; d != 0 {
		t.Fatalf("the codec panicked %d times behind the validation layer", d)
	}
}

// Every golden packet and every bad input decodes without the codec ever
// panicking: the validation layer bounds what it reads.
func TestCodecNeverPanicsBehindValidation(t *testing.T) {
	before := codecPanics.Load()
	var pk packets.Packet
	for _, seed := range fuzzSeeds() {
		for _, v := range []byte{0, 3, 4, 5} {
			_, _ = Decode(seed, &pk, v, 0)
		}
	}
	if d := codecPanics.Load() - before; d != 0 {
		t.Fatalf("the codec panicked %d times", d)
	}
}

// The spec points the tables enforce are all listed for users.
func TestConformanceDocListsEveryCheck(t *testing.T) {
	doc, err := os.ReadFile("../../docs/mqtt-conformance.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range allRefusals() {
		for _, id := range specIDs(tc.spec) {
			if !strings.Contains(string(doc), id) {
				t.Errorf("%s: %s is not in docs/mqtt-conformance.md", tc.name, id)
			}
		}
		if !strings.Contains(string(doc), tc.want.Reason) {
			t.Errorf("%s: reason %q is not in docs/mqtt-conformance.md", tc.name, tc.want.Reason)
		}
	}
}

// specIDs splits "[MQTT-a] [MQTT-b]" or "v5 §x.y" into what the doc must hold.
func specIDs(spec string) []string {
	if !strings.HasPrefix(spec, "[") {
		return []string{spec}
	}
	var ids []string
	for _, f := range strings.Fields(spec) {
		ids = append(ids, f)
	}
	return ids
}
