package wire

import (
	"encoding/binary"
	"slices"
	"unicode/utf8"
)

// Hand-written codecs for the frames of the message path: Send, SendAck,
// Deliver, DeliverAck, Ping and Pong. They produce what the msgpack struct
// tags in frame.go describe (a map of the non-zero fields, in field order,
// integers in their shortest form; TestHotMatchesLibrary holds them to it),
// except for the one key derived when absent (doc.go): a Deliver's ts is
// written when, and only when, it is not its id's time (MsgIDTime). They
// decode any encoding of it. They are written by hand because
// the library's reflection cost several times the rest of a send
// (BenchmarkSend/BenchmarkDeliver in bench_test.go; numbers in doc.go).
// Decoded strings and byte slices alias the frame buffer.

func appendPrefix(dst []byte, n int) []byte {
	for n >= 0x80 {
		dst = append(dst, byte(n)|0x80)
		n >>= 7
	}
	return append(dst, byte(n))
}

// grow makes room for n more bytes, amortized (a subscriber's outbound
// buffer with a backlog grows by appends: growing to exactly n copied it
// on every delivery).
func grow(dst []byte, n int) []byte { return slices.Grow(dst, n) }

func sizeTarget(t *Target) (n, fields int) {
	if t.Kind != 0 {
		n, fields = n+2+sizeUint(uint64(t.Kind)), fields+1
	}
	if t.User != 0 {
		n, fields = n+2+sizeUint(t.User), fields+1
	}
	if t.Name != "" {
		n, fields = n+2+sizeStr(len(t.Name)), fields+1
	}
	return n, fields
}

func appendTarget(b []byte, t *Target) []byte {
	if t.Kind != 0 {
		b = appendUint(append(b, 0xa1, 'k'), uint64(t.Kind))
	}
	if t.User != 0 {
		b = appendUint(append(b, 0xa1, 'u'), t.User)
	}
	if t.Name != "" {
		b = appendStr(append(b, 0xa1, 't'), t.Name)
	}
	return b
}

// putTarget is appendTarget by index (see putUint).
func putTarget(w []byte, i int, t *Target) int {
	if t.Kind != 0 {
		i = putUint(w, putKey(w, i, 'k'), uint64(t.Kind))
	}
	if t.User != 0 {
		i = putUint(w, putKey(w, i, 'u'), t.User)
	}
	if t.Name != "" {
		i = putStr(w, putKey(w, i, 't'), t.Name)
	}
	return i
}

func sizeSend(s *Send) (n, fields int) {
	if s.ID != 0 {
		n, fields = n+2+sizeUint(s.ID), fields+1
	}
	tn, tf := sizeTarget(&s.Target)
	n, fields = n+tn, fields+tf
	if s.QoS != 0 {
		n, fields = n+2+sizeUint(uint64(s.QoS)), fields+1
	}
	if s.Delay != 0 {
		n, fields = n+2+sizeUint(s.Delay), fields+1
	}
	if len(s.Body) > 0 {
		n, fields = n+2+sizeBin(len(s.Body)), fields+1
	}
	if len(s.Batch) > 0 {
		n += 2 + sizeLen(len(s.Batch))
		for _, m := range s.Batch {
			n += sizeBatchElem(m)
		}
		fields++
	}
	return n, fields
}

func sizeBatchElem(m []byte) int {
	if m == nil {
		return 1
	}
	return sizeBin(len(m))
}

func appendSend(dst []byte, s *Send) ([]byte, error) {
	n, fields := sizeSend(s)
	bodyLen := 1 + sizeLen(fields) + n
	if err := checkSize(TypeSend, bodyLen); err != nil {
		return dst, err
	}
	dst = grow(dst, 4+bodyLen)
	dst = append(appendPrefix(dst, bodyLen), byte(TypeSend))
	dst = appendMapLen(dst, fields)
	if s.ID != 0 {
		dst = appendUint(append(dst, 0xa1, 'i'), s.ID)
	}
	dst = appendTarget(dst, &s.Target)
	if s.QoS != 0 {
		dst = appendUint(append(dst, 0xa1, 'q'), uint64(s.QoS))
	}
	if s.Delay != 0 {
		dst = appendUint(append(dst, 0xa1, 'd'), s.Delay)
	}
	if len(s.Body) > 0 {
		dst = appendBin(append(dst, 0xa1, 'b'), s.Body)
	}
	if len(s.Batch) > 0 {
		dst = appendArrayLen(append(dst, 0xa1, 'a'), len(s.Batch))
		for _, m := range s.Batch {
			if m == nil {
				dst = append(dst, 0xc0) // as the library writes a nil slice
			} else {
				dst = appendBin(dst, m)
			}
		}
	}
	return dst, nil
}

func appendSendAck(dst []byte, a *SendAck) ([]byte, error) {
	n, fields := 2+sizeUint(uint64(a.Code)), 1
	if a.ID != 0 {
		n, fields = n+2+sizeUint(a.ID), fields+1
	}
	if a.MsgID != 0 {
		n, fields = n+2+sizeUint(a.MsgID), fields+1
	}
	if a.Time != 0 {
		n, fields = n+3+sizeInt(a.Time), fields+1
	}
	if a.Text != "" {
		n, fields = n+2+sizeStr(len(a.Text)), fields+1
	}
	bodyLen := 1 + sizeLen(fields) + n
	if err := checkSize(TypeSendAck, bodyLen); err != nil {
		return dst, err
	}
	dst = grow(dst, 4+bodyLen)
	dst = append(appendPrefix(dst, bodyLen), byte(TypeSendAck))
	dst = appendMapLen(dst, fields)
	if a.ID != 0 {
		dst = appendUint(append(dst, 0xa1, 'i'), a.ID)
	}
	if a.MsgID != 0 {
		dst = appendUint(append(dst, 0xa1, 's'), a.MsgID)
	}
	dst = appendUint(append(dst, 0xa1, 'c'), uint64(a.Code))
	if a.Time != 0 {
		dst = appendInt(append(dst, 0xa2, 't', 's'), a.Time)
	}
	if a.Text != "" {
		dst = appendStr(append(dst, 0xa1, 'm'), a.Text)
	}
	return dst, nil
}

func appendDeliver(dst []byte, d *Deliver) ([]byte, error) {
	n, fields := sizeTarget(&d.Target)
	if d.MsgID != 0 {
		n, fields = n+2+sizeUint(d.MsgID), fields+1
	}
	if d.From != 0 {
		n, fields = n+2+sizeUint(d.From), fields+1
	}
	if d.FromName != "" {
		n, fields = n+2+sizeStr(len(d.FromName)), fields+1
	}
	if len(d.Body) > 0 {
		n, fields = n+2+sizeBin(len(d.Body)), fields+1
	}
	writeTS := d.Time != MsgIDTime(d.MsgID) // else the decoder takes the id's
	if writeTS {
		n, fields = n+3+sizeInt(d.Time), fields+1
	}
	if d.QoS != 0 {
		n, fields = n+2+sizeUint(uint64(d.QoS)), fields+1
	}
	if d.Offline {
		n, fields = n+3, fields+1
	}
	bodyLen := 2 + n // type, fixmap (a deliver has at most 10 fields)
	if err := checkSize(TypeDeliver, bodyLen); err != nil {
		return dst, err
	}
	// Written by index into room made once (see putUint).
	at := len(dst)
	total := sizePrefix(bodyLen) + bodyLen
	dst = grow(dst, total)[:at+total]
	w := dst[at:]
	i := putPrefix(w, 0, bodyLen)
	w[i], w[i+1] = byte(TypeDeliver), 0x80|byte(fields)
	i += 2
	if d.MsgID != 0 {
		i = putUint(w, putKey(w, i, 'i'), d.MsgID)
	}
	if d.From != 0 {
		i = putUint(w, putKey(w, i, 'f'), d.From)
	}
	if d.FromName != "" {
		i = putStr(w, putKey(w, i, 'n'), d.FromName)
	}
	i = putTarget(w, i, &d.Target)
	if len(d.Body) > 0 {
		i = putBin(w, putKey(w, i, 'b'), d.Body)
	}
	if writeTS {
		w[i], w[i+1], w[i+2] = 0xa2, 't', 's'
		i = putInt(w, i+3, d.Time)
	}
	if d.QoS != 0 {
		i = putUint(w, putKey(w, i, 'q'), uint64(d.QoS))
	}
	if d.Offline {
		w[i], w[i+1], w[i+2] = 0xa1, 'o', 0xc3
	}
	return dst, nil
}

func appendDeliverAck(dst []byte, a *DeliverAck) []byte {
	if a.MsgID == 0 {
		return append(dst, 2, byte(TypeDeliverAck), 0x80)
	}
	bodyLen := 1 + 1 + 2 + sizeUint(a.MsgID)
	dst = append(dst, byte(bodyLen), byte(TypeDeliverAck), 0x81, 0xa1, 'i')
	return appendUint(dst, a.MsgID)
}

// mapKey reads a map key (a str) aliasing b.
func mapKey(b []byte, p int) (string, int, error) {
	k, q, str, err := readBytes(b, p)
	if err != nil {
		return "", p, err
	}
	if !str {
		return "", p, errKey
	}
	return bytesToString(k), q, nil
}

// skipValue skips (and validates) a value whose key this version does not
// know: a newer peer's field.
func skipValue(b []byte, p int) (int, error) { return scan(b, p, 1) }

// A key is decoded as a number: the protocol's keys are one or two ASCII
// bytes, and switching on a number instead of a string read through the
// generic str path halved the cost of decoding a deliver frame
// (BenchmarkDecode/Deliver). The length is part of it, so "i" and "\x00i"
// differ.
type key uint32

func key1(c byte) key    { return 1<<16 | key(c) }
func key2(c, d byte) key { return 2<<16 | key(c)<<8 | key(d) }

var (
	keyI, keyK, keyU, keyT, keyQ = key1('i'), key1('k'), key1('u'), key1('t'), key1('q')
	keyD, keyB, keyA, keyS, keyC = key1('d'), key1('b'), key1('a'), key1('s'), key1('c')
	keyM, keyF, keyN, keyO       = key1('m'), key1('f'), key1('n'), key1('o')
	keyTS                        = key2('t', 's')
)

// readKey reads a map key (a str); a key longer than two bytes is none of
// ours (0).
func readKey(b []byte, p int) (key, int, error) {
	if p+2 < len(b) { // the common encoding: a fixstr, and a value after it
		switch b[p] {
		case 0xa1:
			return key1(b[p+1]), p + 2, nil
		case 0xa2:
			return key2(b[p+1], b[p+2]), p + 3, nil
		}
	}
	k, q, err := mapKey(b, p)
	if err != nil {
		return 0, p, err
	}
	switch len(k) {
	case 1:
		return key1(k[0]), q, nil
	case 2:
		return key2(k[0], k[1]), q, nil
	}
	return 0, q, nil
}

// readTargetField decodes Target's key k (keyK, keyU or keyT) into t.
func readTargetField(b []byte, p int, k key, t *Target) (int, error) {
	var err error
	switch k {
	case keyK:
		var v uint64
		v, p, err = readUintMax(b, p, 0xff)
		t.Kind = Kind(v)
	case keyU:
		t.User, p, err = readUint(b, p)
	case keyT:
		t.Name, p, err = readStr(b, p)
	}
	return p, err
}

func decodeSend(b []byte, s *Send) error {
	*s = Send{Batch: s.Batch[:0]}
	n, p, err := readMapLen(b, 0)
	if err != nil {
		return err
	}
	for i := 0; i < n; i++ {
		// The forms a client writes are read inline, as SkimDeliver
		// does; any other goes to the readers below.
		if p+2 < len(b) && b[p] == 0xa1 {
			c, v := b[p+1], b[p+2]
			switch {
			case c == 'b' && v == 0xc4 && p+3 < len(b) && p+4+int(b[p+3]) <= len(b):
				l := int(b[p+3])
				s.Body, p = b[p+4:p+4+l:p+4+l], p+4+l
				continue
			case c == 'i' && v == 0xcf && p+11 <= len(b):
				s.ID, p = binary.BigEndian.Uint64(b[p+3:]), p+11
				continue
			case c == 'k' && v <= 0x7f:
				s.Kind, p = Kind(v), p+3
				continue
			case c == 'q' && v <= 0x7f:
				s.QoS, p = v, p+3
				continue
			case c == 't' && v >= 0xa0 && v <= 0xbf && p+3+int(v&0x1f) <= len(b):
				t := b[p+3 : p+3+int(v&0x1f)]
				if !utf8.Valid(t) {
					return errUTF8
				}
				s.Name, p = bytesToString(t), p+3+len(t)
				continue
			}
		}
		var k key
		if k, p, err = readKey(b, p); err != nil {
			return err
		}
		switch k {
		case keyK, keyU, keyT:
			p, err = readTargetField(b, p, k, &s.Target)
		case keyI:
			s.ID, p, err = readUint(b, p)
		case keyQ:
			var v uint64
			v, p, err = readUintMax(b, p, 0xff)
			s.QoS = uint8(v)
		case keyD:
			s.Delay, p, err = readUint(b, p)
		case keyB:
			s.Body, p, err = readBin(b, p)
		case keyA:
			var m int
			if m, p, err = readArrayLen(b, p); err != nil {
				return err
			}
			s.Batch = s.Batch[:0]
			for j := 0; j < m && err == nil; j++ {
				var v []byte
				v, p, err = readBin(b, p)
				s.Batch = append(s.Batch, v)
			}
		default:
			p, err = skipValue(b, p)
		}
		if err != nil {
			return err
		}
	}
	if len(s.Body) == 0 {
		s.Body = nil
	}
	return end(b, p)
}

func decodeSendAck(b []byte, a *SendAck) error {
	*a = SendAck{}
	n, p, err := readMapLen(b, 0)
	if err != nil {
		return err
	}
	for i := 0; i < n; i++ {
		var k key
		if k, p, err = readKey(b, p); err != nil {
			return err
		}
		switch k {
		case keyI:
			a.ID, p, err = readUint(b, p)
		case keyS:
			a.MsgID, p, err = readUint(b, p)
		case keyC:
			var v uint64
			v, p, err = readUintMax(b, p, 0xffff)
			a.Code = Code(v)
		case keyTS:
			a.Time, p, err = readInt(b, p)
		case keyM:
			a.Text, p, err = readStr(b, p)
		default:
			p, err = skipValue(b, p)
		}
		if err != nil {
			return err
		}
	}
	return end(b, p)
}

func decodeDeliver(b []byte, d *Deliver) error {
	*d = Deliver{}
	n, p, err := readMapLen(b, 0)
	if err != nil {
		return err
	}
	hasTS := false
	for i := 0; i < n; i++ {
		var k key
		if k, p, err = readKey(b, p); err != nil {
			return err
		}
		switch k {
		case keyK, keyU, keyT:
			p, err = readTargetField(b, p, k, &d.Target)
		case keyI:
			d.MsgID, p, err = readUint(b, p)
		case keyF:
			d.From, p, err = readUint(b, p)
		case keyN:
			d.FromName, p, err = readStr(b, p)
		case keyB:
			d.Body, p, err = readBin(b, p)
		case keyTS:
			hasTS = p < len(b) && b[p] != 0xc0 // nil is as good as absent
			d.Time, p, err = readInt(b, p)
		case keyQ:
			var v uint64
			v, p, err = readUintMax(b, p, 0xff)
			d.QoS = uint8(v)
		case keyO:
			d.Offline, p, err = readBool(b, p)
		default:
			p, err = skipValue(b, p)
		}
		if err != nil {
			return err
		}
	}
	if !hasTS {
		d.Time = MsgIDTime(d.MsgID)
	}
	if len(d.Body) == 0 {
		d.Body = nil
	}
	return end(b, p)
}

func decodeDeliverAck(b []byte, a *DeliverAck) error {
	*a = DeliverAck{}
	n, p, err := readMapLen(b, 0)
	if err != nil {
		return err
	}
	for i := 0; i < n; i++ {
		var k key
		if k, p, err = readKey(b, p); err != nil {
			return err
		}
		if k == keyI {
			a.MsgID, p, err = readUint(b, p)
		} else {
			p, err = skipValue(b, p)
		}
		if err != nil {
			return err
		}
	}
	return end(b, p)
}

// decodeEmpty decodes Ping and Pong: a map whose fields (a newer peer's)
// are all skipped.
func decodeEmpty(b []byte) error {
	n, p, err := readMapLen(b, 0)
	if err != nil {
		return err
	}
	for i := 0; i < n; i++ {
		if _, p, err = readKey(b, p); err != nil {
			return err
		}
		if p, err = skipValue(b, p); err != nil {
			return err
		}
	}
	return end(b, p)
}

func end(b []byte, p int) error {
	if p != len(b) {
		return errTrailing
	}
	return nil
}
