package wire

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
		var k key
		if k, p, err = readKey(b, p); err != nil {
			break
		}
		switch k {
		case keyI:
			msgID, p, err = readUint(b, p)
		case keyQ:
			var v uint64
			v, p, err = readUintMax(b, p, 0xff)
			qos = uint8(v)
		case keyB:
			body, p, err = readBin(b, p)
		case keyN, keyT:
			_, p, _, err = readBytes(b, p) // a str, not checked for UTF-8
		default:
			p, err = skipValue(b, p)
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
