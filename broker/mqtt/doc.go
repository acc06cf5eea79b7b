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
// Decode is the codec behind a validation layer (validate.go, props.go,
// connect.go): before the codec reads a body, the layer walks it as the spec
// draws it and refuses with the spec's reason code (0x81 malformed, 0x82
// protocol error) what the codec lets through: a property running past its
// block, not allowed in the packet or given twice; CONNECT fields the flags
// say are absent, or bytes after the last field; ill-formed UTF-8, U+0000 or
// surrogates in any string; packet id 0; an empty topic filter; reserved
// flag and option bits; a variable byte integer not in its shortest form.
// Once the walk has passed, the codec reads only the fields the walk
// checked. Each check cites its spec point; docs/mqtt-conformance.md lists
// them all. What depends on a connection (topic aliases, receive maximum,
// the session) is the caller's, as is ValidateConnect's protocol name and
// level check after a CONNECT decodes.
//
// Decoded packets alias the buffer they were decoded from: topic names,
// client ids, user names and payloads point into it. A caller that keeps any
// of them past the buffer's life must copy them (docs/architecture.md, runtime rule 2).
//
// AppendPublish is the hot path of fan-out: it encodes a PUBLISH into a
// caller's slice without allocating and tells where the packet id sits, so one
// encoding can be copied to many subscribers and only the id patched.
package mqtt
