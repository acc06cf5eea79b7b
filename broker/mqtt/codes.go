package mqtt

import "github.com/mochi-mqtt/server/v2/packets"

// Reason codes Decode refuses a packet with when the codec's own codes
// (packets.ErrMalformed*, packets.ErrProtocolViolation*) say too little.
// They are packets.Code values, so CodeOf and errors.Is work on them and a
// caller compares them by value. Code is the v5 reason code to send (0x81
// Malformed Packet when the bytes do not parse as the spec draws them, 0x82
// Protocol Error when they parse but break a rule); Reason goes into the v5
// Reason String. A v3 client is just disconnected.
var (
	// A variable byte integer (remaining length, property length,
	// subscription identifier) longer than it needs to be [MQTT-1.5.5-1].
	ErrNonMinimalVBI = packets.Code{Code: 0x81, Reason: "malformed packet: variable byte integer not in its shortest form"}
	// A remaining length the packet type does not allow (PINGREQ with a
	// body, a v3 PUBACK of 3 bytes, AUTH with a reason but no properties).
	ErrRemainingLength = packets.Code{Code: 0x81, Reason: "malformed packet: wrong remaining length"}
	// Bytes left over after the packet's last field: in CONNECT, a user
	// name or password its flags say is absent [MQTT-3.1.2-16] [MQTT-3.1.2-18].
	ErrTrailingBytes = packets.Code{Code: 0x81, Reason: "malformed packet: bytes after the last field"}
	// CONNECT flags that contradict each other or set the reserved bit
	// [MQTT-3.1.2-3] [MQTT-3.1.2-11] [MQTT-3.1.2-12] [MQTT-3.1.2-13] [MQTT-3.1.2-22].
	ErrConnectFlags = packets.Code{Code: 0x81, Reason: "malformed packet: connect flags"}
	// A client identifier that is missing, cut off, or not a valid UTF-8
	// string [MQTT-1.5.4-1] [MQTT-1.5.4-2] [MQTT-3.1.3-4].
	ErrMalformedClientID = packets.Code{Code: 0x81, Reason: "malformed packet: client identifier"}
	// A zero-length topic filter in SUBSCRIBE or UNSUBSCRIBE [MQTT-4.7.3-1].
	ErrEmptyTopicFilter = packets.Code{Code: 0x81, Reason: "malformed packet: empty topic filter"}
	// SUBSCRIBE options with reserved bits set: bits 6-7 in v5
	// [MQTT-3.8.3-5], bits 2-7 in v3.1.1 [MQTT-3-8.3-4].
	ErrSubscriptionOptions = packets.Code{Code: 0x81, Reason: "malformed packet: reserved subscription option bits"}
	// A property block whose length is missing or runs past the packet.
	ErrPropertyLength = packets.Code{Code: 0x81, Reason: "malformed packet: property length past the packet"}
	// A property whose value runs past the end of its block (v5 §2.2.2).
	ErrPropertyTruncated = packets.Code{Code: 0x81, Reason: "malformed packet: property runs past its block"}
	// A property identifier unknown or not valid for the packet type
	// (v5 §2.2.2.2).
	ErrPropertyNotAllowed = packets.Code{Code: 0x81, Reason: "malformed packet: property not allowed in this packet"}
	// A string property that is not a valid UTF-8 string [MQTT-1.5.4-1]
	// [MQTT-1.5.4-2].
	ErrPropertyUTF8 = packets.Code{Code: 0x81, Reason: "malformed packet: property string not valid UTF-8"}
	// A property that may appear once given twice (v5 §2.2.2.2 and each
	// property's "It is a Protocol Error to include ... more than once").
	ErrDuplicateProperty = packets.Code{Code: 0x82, Reason: "protocol error: property given twice"}
	// A property value the spec rules out: a flag other than 0 or 1, a
	// Receive Maximum or Maximum Packet Size of 0, a Subscription
	// Identifier of 0 (v5 §3.1.2.11, §3.3.2.3.8, §3.8.2.1.2).
	ErrPropertyValue = packets.Code{Code: 0x82, Reason: "protocol error: property value out of range"}
	// Authentication Data without an Authentication Method (v5 §3.1.2.11.10).
	ErrAuthDataWithoutMethod = packets.Code{Code: 0x82, Reason: "protocol error: authentication data without a method"}
	// A Response Topic holding a wildcard [MQTT-3.3.2-14].
	ErrResponseTopicWildcard = packets.Code{Code: 0x82, Reason: "protocol error: response topic with a wildcard"}
	// SUBSCRIBE options asking for Retain Handling 3 (v5 §3.8.3.1).
	ErrRetainHandling = packets.Code{Code: 0x82, Reason: "protocol error: retain handling 3"}
)
