// Package mqtt frames and encodes MQTT 3.1.1 and 5.0 packets over the codec of
// github.com/mochi-mqtt/server/v2/packets. It does no I/O.
//
// Framing is incremental: Decode looks at the front of a buffer and either
// decodes one whole packet, reports ErrIncomplete (wait for more bytes), or
// fails with a reason code. A packet on the wire is
//
//	+--------+-----------------+------------------------------+
//	| type|  | remaining length| variable header + payload    |
//	| flags  | 1-4 bytes (VBI) | remaining length bytes       |
//	+--------+-----------------+------------------------------+
//
// Decoded packets alias the buffer they were decoded from: topic names,
// client ids, user names and payloads point into it. A caller that keeps any
// of them past the buffer's life must copy them (DESIGN.md, runtime rule 2).
//
// AppendPublish is the hot path of fan-out: it encodes a PUBLISH into a
// caller's slice without allocating and tells where the packet id sits, so one
// encoding can be copied to many subscribers and only the id patched.
package mqtt
