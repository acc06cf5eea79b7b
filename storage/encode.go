package storage

import (
	"encoding/binary"
	"math"
)

// Hand-written msgpack encoders for the records written on the hot path.
// They produce exactly what the msgpack struct tags in records.go describe
// (a map of the non-zero fields; TestEncodersMatchTags holds them to it),
// and are read back with the msgpack library. Written by hand because
// reflection-based encoding cost more than everything else a broker does
// per queued message on the event loop (about 1.5µs against 0.1µs).

func appendMessage(b []byte, m *Message) []byte {
	at, n := len(b), 0
	b = append(b, 0x80) // fixmap; the count is patched below (at most 15 fields: a 16th needs a map16)
	if m.ID != 0 {
		b, n = appendUint(appendStr(b, "i"), m.ID), n+1
	}
	b, n = appendStr(appendStr(b, "t"), m.Topic), n+1
	if len(m.Payload) > 0 {
		b, n = appendBin(appendStr(b, "p"), m.Payload), n+1
	}
	if m.QoS != 0 {
		b, n = appendUint(appendStr(b, "q"), uint64(m.QoS)), n+1
	}
	if m.Retain {
		b, n = appendBool(appendStr(b, "r"), true), n+1
	}
	if m.From != "" {
		b, n = appendStr(appendStr(b, "f"), m.From), n+1
	}
	if m.Created != 0 {
		b, n = appendInt(appendStr(b, "c"), m.Created), n+1
	}
	if m.Expiry != 0 {
		b, n = appendInt(appendStr(b, "e"), m.Expiry), n+1
	}
	if len(m.Props) > 0 {
		b, n = appendBin(appendStr(b, "x"), m.Props), n+1
	}
	if m.PacketID != 0 {
		b, n = appendUint(appendStr(b, "k"), uint64(m.PacketID)), n+1
	}
	if m.Sent {
		b, n = appendBool(appendStr(b, "s"), true), n+1
	}
	if m.SenderID != 0 {
		b, n = appendUint(appendStr(b, "u"), m.SenderID), n+1
	}
	if m.SenderName != "" {
		b, n = appendStr(appendStr(b, "n"), m.SenderName), n+1
	}
	if m.ClientMsgID != "" {
		b, n = appendStr(appendStr(b, "m"), m.ClientMsgID), n+1
	}
	if len(m.SubIDs) > 0 {
		b, n = appendArrayLen(appendStr(b, "si"), len(m.SubIDs)), n+1
		for _, id := range m.SubIDs {
			b = appendUint(b, uint64(id))
		}
	}
	b[at] |= byte(n)
	return b
}

func appendSession(b []byte, s *Session) []byte {
	at, n := len(b), 0
	b = append(b, 0x80)
	b, n = appendStr(appendStr(b, "c"), s.ClientID), n+1
	b, n = appendUint(appendStr(b, "p"), uint64(s.Protocol)), n+1
	if s.Version != 0 {
		b, n = appendUint(appendStr(b, "v"), uint64(s.Version)), n+1
	}
	if len(s.Subs) > 0 {
		b, n = appendArrayLen(appendStr(b, "s"), len(s.Subs)), n+1
		for i := range s.Subs {
			b = appendSub(b, &s.Subs[i])
		}
	}
	if s.ExpiryInterval != 0 {
		b, n = appendUint(appendStr(b, "e"), uint64(s.ExpiryInterval)), n+1
	}
	if s.DisconnectedAt != 0 {
		b, n = appendInt(appendStr(b, "d"), s.DisconnectedAt), n+1
	}
	if s.Node != "" {
		b, n = appendStr(appendStr(b, "n"), s.Node), n+1
	}
	if s.NextSeq != 0 {
		b, n = appendUint(appendStr(b, "q"), s.NextSeq), n+1
	}
	if len(s.Rx) > 0 {
		b, n = appendArrayLen(appendStr(b, "x"), len(s.Rx)), n+1
		for _, id := range s.Rx {
			b = appendUint(b, uint64(id))
		}
	}
	b[at] |= byte(n)
	return b
}

func appendSub(b []byte, s *Sub) []byte {
	at, n := len(b), 0
	b = append(b, 0x80)
	b, n = appendStr(appendStr(b, "f"), s.Filter), n+1
	if s.QoS != 0 {
		b, n = appendUint(appendStr(b, "q"), uint64(s.QoS)), n+1
	}
	if s.NoLocal {
		b, n = appendBool(appendStr(b, "nl"), true), n+1
	}
	if s.RetainAsPublished {
		b, n = appendBool(appendStr(b, "rap"), true), n+1
	}
	if s.RetainHandling != 0 {
		b, n = appendUint(appendStr(b, "rh"), uint64(s.RetainHandling)), n+1
	}
	if s.ID != 0 {
		b, n = appendUint(appendStr(b, "i"), uint64(s.ID)), n+1
	}
	b[at] |= byte(n)
	return b
}

func appendStr(b []byte, s string) []byte {
	switch n := len(s); {
	case n < 32:
		b = append(b, 0xa0|byte(n))
	case n <= math.MaxUint8:
		b = append(b, 0xd9, byte(n))
	case n <= math.MaxUint16:
		b = binary.BigEndian.AppendUint16(append(b, 0xda), uint16(n))
	default:
		b = binary.BigEndian.AppendUint32(append(b, 0xdb), uint32(n))
	}
	return append(b, s...)
}

func appendBin(b []byte, p []byte) []byte {
	switch n := len(p); {
	case n <= math.MaxUint8:
		b = append(b, 0xc4, byte(n))
	case n <= math.MaxUint16:
		b = binary.BigEndian.AppendUint16(append(b, 0xc5), uint16(n))
	default:
		b = binary.BigEndian.AppendUint32(append(b, 0xc6), uint32(n))
	}
	return append(b, p...)
}

func appendArrayLen(b []byte, n int) []byte {
	switch {
	case n < 16:
		return append(b, 0x90|byte(n))
	case n <= math.MaxUint16:
		return binary.BigEndian.AppendUint16(append(b, 0xdc), uint16(n))
	default:
		return binary.BigEndian.AppendUint32(append(b, 0xdd), uint32(n))
	}
}

func appendUint(b []byte, v uint64) []byte {
	switch {
	case v < 128:
		return append(b, byte(v))
	case v <= math.MaxUint8:
		return append(b, 0xcc, byte(v))
	case v <= math.MaxUint16:
		return binary.BigEndian.AppendUint16(append(b, 0xcd), uint16(v))
	case v <= math.MaxUint32:
		return binary.BigEndian.AppendUint32(append(b, 0xce), uint32(v))
	default:
		return binary.BigEndian.AppendUint64(append(b, 0xcf), v)
	}
}

func appendInt(b []byte, v int64) []byte {
	switch {
	case v >= 0:
		return appendUint(b, uint64(v))
	case v >= -32:
		return append(b, byte(v)) // negative fixint
	case v >= math.MinInt8:
		return append(b, 0xd0, byte(v))
	case v >= math.MinInt16:
		return binary.BigEndian.AppendUint16(append(b, 0xd1), uint16(v))
	case v >= math.MinInt32:
		return binary.BigEndian.AppendUint32(append(b, 0xd2), uint32(v))
	default:
		return binary.BigEndian.AppendUint64(append(b, 0xd3), uint64(v))
	}
}

func appendBool(b []byte, v bool) []byte {
	if v {
		return append(b, 0xc3)
	}
	return append(b, 0xc2)
}
