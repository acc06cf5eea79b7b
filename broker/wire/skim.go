package wire

import "encoding/binary"

// SkimDeliver reads what a receiver that only counts and acknowledges
// messages needs of a deliver frame: its message id, QoS and body. frame
// is exactly one whole frame, length prefix included (its size is the
// caller's to bound, as Decode's maxSize does); body aliases it. It reads
// with Decode's readers but checks less of the other fields: the sender's
// name and the group or topic may be any str or bin (no UTF-8 check), the
// rest any valid msgpack value. So it costs less than Decode, which checks
// every field (BenchmarkSkimDeliver against BenchmarkDecode/Deliver); cim bench's
// native subscribers use it, as its MQTT subscribers skip a PUBLISH's
// topic. ok is false for another frame type or a frame it cannot read;
// Decode then reads it and says why. A frame Decode accepts as a deliver,
// SkimDeliver accepts with the same id, QoS and body (FuzzDecode checks).
// Any goroutine; it keeps nothing.
func SkimDeliver(frame []byte) (msgID uint64, qos uint8, body []byte, ok bool) {
	size, hl, err := ReadLength(frame)
	if err != nil || size < 2 || hl+size != len(frame) || Type(frame[hl]) != TypeDeliver {
		return 0, 0, nil, false
	}
	b := frame[hl+1:]
	n, p, err := readMapLen(b, 0)
	for i := 0; i < n && err == nil; i++ {
		// The forms a server writes are read inline (a one-byte key; an
		// id in 8 bytes; a short body, name or topic; a small integer);
		// any other goes to Decode's readers. Inline, a skim took half
		// the time (BenchmarkSkimDeliver).
		if p+2 >= len(b) || b[p] != 0xa1 {
			var k key
			if k, p, err = readKey(b, p); err != nil {
				break
			}
			p, err = skimField(b, p, k, &msgID, &qos, &body)
			continue
		}
		c, v := b[p+1], b[p+2]
		p += 2
		switch {
		case c == 'i' && v == 0xcf && p+9 <= len(b):
			msgID, p = binary.BigEndian.Uint64(b[p+1:]), p+9
		case c == 'b' && v == 0xc4 && p+1 < len(b) && p+2+int(b[p+1]) <= len(b):
			l := int(b[p+1])
			body, p = b[p+2:p+2+l:p+2+l], p+2+l
		case (c == 'n' || c == 't') && v >= 0xa0 && v <= 0xbf && p+1+int(v&0x1f) <= len(b):
			p += 1 + int(v&0x1f) // a str, not checked for UTF-8
		case c == 'q' && v <= 0x7f:
			qos, p = v, p+1
		case (c == 'f' || c == 'u' || c == 'k') && v <= 0x7f:
			p++
		case (c == 'f' || c == 'u') && v == 0xcf && p+9 <= len(b):
			p += 9
		default:
			p, err = skimField(b, p, key1(c), &msgID, &qos, &body)
		}
	}
	if err != nil || p != len(b) {
		return 0, 0, nil, false
	}
	if len(body) == 0 {
		body = nil
	}
	return msgID, qos, body, true
}

// skimField reads the value of key k at p with Decode's readers.
func skimField(b []byte, p int, k key, msgID *uint64, qos *uint8, body *[]byte) (int, error) {
	var err error
	switch k {
	case keyI:
		*msgID, p, err = readUint(b, p)
	case keyQ:
		var v uint64
		v, p, err = readUintMax(b, p, 0xff)
		*qos = uint8(v)
	case keyB:
		*body, p, err = readBin(b, p)
	case keyN, keyT:
		_, p, _, err = readBytes(b, p) // a str, not checked for UTF-8
	default:
		p, err = skipValue(b, p)
	}
	return p, err
}
