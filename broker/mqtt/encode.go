package mqtt

import (
	"bytes"
	"sync"

	"github.com/mochi-mqtt/server/v2/packets"
)

// AppendVBI appends v as an MQTT variable byte integer.
func AppendVBI(dst []byte, v int) []byte {
	for {
		b := byte(v & 0x7f)
		v >>= 7
		if v > 0 {
			b |= 0x80
		}
		dst = append(dst, b)
		if v == 0 {
			return dst
		}
	}
}

// vbiLen is the encoded length of v as a variable byte integer.
func vbiLen(v int) int {
	switch {
	case v < 128:
		return 1
	case v < 16384:
		return 2
	case v < 2097152:
		return 3
	}
	return 4
}

// PublishSize is the encoded size of a PUBLISH with these parts; props is
// the length of the encoded property block (without its length prefix),
// ignored below v5.
func PublishSize(version byte, topic string, payload []byte, props int, qos byte) int {
	rem := publishRemaining(version, topic, payload, props, qos)
	return 1 + vbiLen(rem) + rem
}

func publishRemaining(version byte, topic string, payload []byte, props int, qos byte) int {
	rem := 2 + len(topic) + len(payload)
	if qos > 0 {
		rem += 2
	}
	if version >= 5 {
		rem += vbiLen(props) + props
	}
	return rem
}

// AppendPublish appends a PUBLISH packet to dst without allocating beyond
// dst's growth. The v5 property block is props followed by props2 (encoded
// properties without a length prefix; nil for none: two parts so a
// per-subscriber part needs no concatenation), ignored below v5. It returns
// the new slice and the offset in it of the two packet id bytes (-1 for QoS
// 0), so a shared encoding can be copied and the id patched with PutPacketID.
func AppendPublish(dst []byte, version byte, topic string, payload, props, props2 []byte, qos byte, retain, dup bool, pid uint16) ([]byte, int) {
	rem := publishRemaining(version, topic, payload, len(props)+len(props2), qos)
	first := byte(packets.Publish<<4) | qos<<1
	if retain {
		first |= 1
	}
	if dup {
		first |= 1 << 3
	}
	dst = append(dst, first)
	dst = AppendVBI(dst, rem)
	dst = append(dst, byte(len(topic)>>8), byte(len(topic)))
	dst = append(dst, topic...)
	pidAt := -1
	if qos > 0 {
		pidAt = len(dst)
		dst = append(dst, byte(pid>>8), byte(pid))
	}
	if version >= 5 {
		dst = AppendVBI(dst, len(props)+len(props2))
		dst = append(dst, props...)
		dst = append(dst, props2...)
	}
	return append(dst, payload...), pidAt
}

// PutPacketID writes pid at b[at:at+2].
func PutPacketID(b []byte, at int, pid uint16) {
	b[at] = byte(pid >> 8)
	b[at+1] = byte(pid)
}

var bufPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// AppendProperties appends pk's v5 properties for packet type typ, encoded
// without the length prefix. Response topic and correlation data are always
// forwarded.
func AppendProperties(dst []byte, p *packets.Properties, typ byte) []byte {
	b := bufPool.Get().(*bytes.Buffer)
	b.Reset()
	p.Encode(typ, packets.Mods{AllowResponseInfo: true}, b, 0)
	// Encode writes the VBI length first; strip it.
	enc := b.Bytes()
	if _, n, ok := readVBI(enc); ok {
		enc = enc[n:]
	}
	dst = append(dst, enc...)
	bufPool.Put(b)
	return dst
}

// Append encodes any packet with the codec and appends it to dst. It is the
// slow path for everything but PUBLISH fan-out.
func Append(dst []byte, pk *packets.Packet) ([]byte, error) {
	b := bufPool.Get().(*bytes.Buffer)
	defer bufPool.Put(b)
	b.Reset()
	pk.Mods.AllowResponseInfo = true
	var err error
	switch pk.FixedHeader.Type {
	case packets.Connect:
		err = pk.ConnectEncode(b)
	case packets.Connack:
		err = pk.ConnackEncode(b)
	case packets.Publish:
		err = pk.PublishEncode(b)
	case packets.Puback:
		err = pk.PubackEncode(b)
	case packets.Pubrec:
		err = pk.PubrecEncode(b)
	case packets.Pubrel:
		err = pk.PubrelEncode(b)
	case packets.Pubcomp:
		err = pk.PubcompEncode(b)
	case packets.Subscribe:
		err = pk.SubscribeEncode(b)
	case packets.Suback:
		err = pk.SubackEncode(b)
	case packets.Unsubscribe:
		err = pk.UnsubscribeEncode(b)
	case packets.Unsuback:
		err = pk.UnsubackEncode(b)
	case packets.Pingreq:
		err = pk.PingreqEncode(b)
	case packets.Pingresp:
		err = pk.PingrespEncode(b)
	case packets.Disconnect:
		err = pk.DisconnectEncode(b)
	case packets.Auth:
		err = pk.AuthEncode(b)
	default:
		err = packets.ErrNoValidPacketAvailable
	}
	if err != nil {
		return dst, err
	}
	return append(dst, b.Bytes()...), nil
}

// AppendAck appends a PUBACK, PUBREC, PUBREL or PUBCOMP with a reason code
// (v5; success omits it) and no properties: the common acks, without the codec.
func AppendAck(dst []byte, version, typ byte, pid uint16, reason byte) []byte {
	first := typ << 4
	if typ == packets.Pubrel {
		first |= 0x02 // [MQTT-3.6.1-1]
	}
	if version >= 5 && reason != 0 {
		return append(dst, first, 3, byte(pid>>8), byte(pid), reason)
	}
	return append(dst, first, 2, byte(pid>>8), byte(pid))
}

// AppendUserProperty appends one user property (0x26, a UTF-8 string pair)
// to a property block, without a length prefix, as AppendProperties does.
// key and val must be valid UTF-8 of at most 65,535 bytes. It is written by
// hand for the properties every native message carries (the broker's
// senderProps): going through the codec's Properties.Encode was 41% of the
// broker's CPU per native send (bench/native.sh profile).
func AppendUserProperty[V string | []byte](dst []byte, key string, val V) []byte {
	dst = append(dst, 0x26, byte(len(key)>>8), byte(len(key)))
	dst = append(dst, key...)
	dst = append(dst, byte(len(val)>>8), byte(len(val)))
	return append(dst, val...)
}
