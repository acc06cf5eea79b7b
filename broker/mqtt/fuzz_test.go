package mqtt

import (
	"bytes"
	"errors"
	"fmt"
	"hash/crc32"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/mochi-mqtt/server/v2/packets"
)

// decodeResult is what one Decode call made of the front of a buffer, in a
// form that outlives the buffer.
type decodeResult struct {
	n   int
	err string
	pk  string
}

// checkDecode calls Decode and checks the invariants every call must keep,
// whatever the input.
func checkDecode(t *testing.T, buf []byte, version byte, maxSize uint32) (decodeResult, error) {
	t.Helper()
	var pk packets.Packet
	n, err := Decode(buf, &pk, version, maxSize)
	switch {
	case n < 0 || n > len(buf):
		t.Fatalf("Decode consumed %d of %d bytes", n, len(buf))
	case errors.Is(err, ErrIncomplete):
		if n != 0 {
			t.Fatalf("incomplete but consumed %d", n)
		}
	case err != nil:
		var c packets.Code
		if !errors.As(err, &c) || c.Code < 0x80 {
			t.Fatalf("error %v carries no failure reason code", err)
		}
	default:
		if n < 2 {
			t.Fatalf("decoded a packet from %d bytes", n)
		}
		if maxSize > 0 && n > int(maxSize) {
			t.Fatalf("decoded %d bytes with maxSize %d", n, maxSize)
		}
		if version == 0 && pk.FixedHeader.Type != packets.Connect {
			t.Fatalf("decoded %s before CONNECT", packets.PacketNames[pk.FixedHeader.Type])
		}
		if pk.FixedHeader.Type == packets.Publish {
			if pk.FixedHeader.Qos > 2 {
				t.Fatalf("PUBLISH qos %d", pk.FixedHeader.Qos)
			}
			if !utf8.ValidString(pk.TopicName) || strings.IndexByte(pk.TopicName, 0) >= 0 {
				t.Fatalf("PUBLISH topic %q is not a valid UTF-8 string", pk.TopicName)
			}
		}
	}
	r := decodeResult{n: n}
	if err != nil {
		r.err = err.Error()
	} else {
		r.pk = fingerprint(&pk)
	}
	return r, err
}

// fingerprint sums up a decoded packet cheaply (fmt's %+v of a whole Packet
// would dominate the fuzzer's time).
func fingerprint(pk *packets.Packet) string {
	fh := pk.FixedHeader
	h := crc32.NewIEEE()
	h.Write(pk.Payload)
	h.Write([]byte(pk.TopicName))
	h.Write([]byte(pk.Connect.ClientIdentifier))
	for _, f := range pk.Filters {
		h.Write([]byte(f.Filter))
		h.Write([]byte{f.Qos, f.RetainHandling})
	}
	return fmt.Sprint(fh.Type, fh.Qos, fh.Dup, fh.Retain, fh.Remaining, pk.ProtocolVersion,
		pk.PacketID, pk.ReasonCode, len(pk.Filters), len(pk.Properties.User), h.Sum32())
}

// decodeWhole decodes buf front to back until an error (ErrIncomplete at
// the end included).
func decodeWhole(t *testing.T, buf []byte, version byte, maxSize uint32) []decodeResult {
	var out []decodeResult
	for used := 0; ; {
		r, err := checkDecode(t, buf[used:], version, maxSize)
		out = append(out, r)
		if err != nil {
			return out
		}
		used += r.n
	}
}

// decodeChunked feeds data into an accumulating buffer in chunks of the
// given sizes (cycled), decoding what it can after each chunk as a
// connection's read loop does, and must see what decodeWhole sees.
func decodeChunked(t *testing.T, data []byte, version byte, maxSize uint32, sizes func() int) []decodeResult {
	var out []decodeResult
	var acc []byte
	used, fed := 0, 0
	for {
		k := min(sizes(), len(data)-fed)
		acc = append(acc, data[fed:fed+k]...)
		fed += k
		for {
			r, err := checkDecode(t, acc[used:], version, maxSize)
			if errors.Is(err, ErrIncomplete) && fed < len(data) {
				break // wait for more
			}
			out = append(out, r)
			if err != nil {
				return out
			}
			used += r.n
		}
	}
}

func fuzzSeeds() [][]byte {
	var seeds [][]byte
	var stream4, stream5 []byte
	for _, tc := range goldenDecode {
		seeds = append(seeds, tc.raw)
		switch tc.version {
		case 0, 4:
			stream4 = append(stream4, tc.raw...)
		case 5:
			stream5 = append(stream5, tc.raw...)
		}
	}
	for _, tc := range goldenEncode {
		b, _ := tc.got()
		seeds = append(seeds, b[tc.prefix:])
	}
	for _, tc := range badInput {
		seeds = append(seeds, tc.raw)
	}
	for _, tc := range allRefusals() {
		seeds = append(seeds, tc.raw)
	}
	return append(seeds, stream4, stream5)
}

func FuzzDecode(f *testing.F) {
	for i, s := range fuzzSeeds() {
		f.Add(s, uint64(i))
	}
	f.Fuzz(func(t *testing.T, data []byte, seed uint64) {
		if len(data) > 4<<10 {
			// Each input is decoded 27 ways, so minimizing a long one
			// stalls the fuzzer for a minute; a few KiB of packets reach
			// every path a longer input does.
			return
		}
		panics := codecPanics.Load()
		defer func() {
			if codecPanics.Load() != panics {
				t.Fatalf("the codec panicked behind the validation layer on % x", data)
			}
		}()
		rng := rand.New(rand.NewPCG(seed, seed>>32|1))
		for _, version := range []byte{0, 4, 5} {
			for _, maxSize := range []uint32{0, 20, uint32(rng.IntN(len(data) + 3))} {
				whole := decodeWhole(t, data, version, maxSize)
				byByte := decodeChunked(t, data, version, maxSize, func() int { return 1 })
				if !slices.Equal(whole, byByte) {
					t.Fatalf("v%d max %d: byte by byte\n%+v\nwhole\n%+v", version, maxSize, byByte, whole)
				}
				chunked := decodeChunked(t, data, version, maxSize, func() int { return 1 + rng.IntN(24) })
				if !slices.Equal(whole, chunked) {
					t.Fatalf("v%d max %d: chunked\n%+v\nwhole\n%+v", version, maxSize, chunked, whole)
				}
			}
		}
	})
}

// FuzzAppendPublish checks that what AppendPublish writes decodes back to
// what it was given, and that the packet id sits where it says.
func FuzzAppendPublish(f *testing.F) {
	f.Add("a/b", []byte("hi"), byte(0), uint16(0), "", uint32(0), []byte(nil))
	f.Add("a/b", []byte("hello"), byte(1<<1|1<<3), uint16(7), "", uint32(0), []byte{1, 2, 3})
	f.Add("t/é/x", []byte{0, 0xff}, byte(1|2<<1|1<<4), uint16(65535), "json", uint32(129), []byte(nil))
	f.Add("", []byte(nil), byte(1|1<<1), uint16(1), "text/plain", uint32(268435455), []byte{0xaa})
	f.Add("big", bytes.Repeat([]byte("x"), 300), byte(1|2<<1), uint16(3), "", uint32(1), []byte(nil))
	f.Fuzz(func(t *testing.T, topic string, payload []byte, flags byte, pid uint16, contentType string, subID uint32, prefix []byte) {
		if !utf8.ValidString(topic) || strings.IndexByte(topic, 0) >= 0 || len(topic) > 65535 {
			return // not a topic name: AppendPublish's caller validated it
		}
		version := byte(4)
		if flags&1 != 0 {
			version = 5
		}
		qos := (flags >> 1 & 3) % 3
		if qos > 0 && pid == 0 {
			pid = 1 // ids are never 0 [MQTT-2.2.1-3]; Decode refuses 0
		}
		retain := flags&(1<<3) != 0
		dup := flags&(1<<4) != 0 && qos > 0 // dup needs qos > 0 [MQTT-3.3.1-2]
		var props, props2 []byte
		ctOK := contentType != "" && utf8.ValidString(contentType) && strings.IndexByte(contentType, 0) < 0 && len(contentType) <= 65535
		if ctOK {
			props = AppendProperties(nil, &packets.Properties{ContentType: contentType}, packets.Publish)
		}
		subOK := subID > 0 && subID <= maxRemaining
		if subOK {
			props2 = AppendVBI([]byte{packets.PropSubscriptionIdentifier}, int(subID))
		}

		dst := append([]byte(nil), prefix...)
		out, at := AppendPublish(dst, version, topic, payload, props, props2, qos, retain, dup, pid)
		if !bytes.Equal(out[:len(prefix)], prefix) {
			t.Fatalf("AppendPublish changed dst's bytes")
		}
		enc := out[len(prefix):]
		if size := PublishSize(version, topic, payload, len(props)+len(props2), qos); size != len(enc) {
			t.Fatalf("PublishSize %d, encoded %d", size, len(enc))
		}
		var pk packets.Packet
		n, err := Decode(enc, &pk, version, 0)
		if err != nil || n != len(enc) {
			t.Fatalf("Decode = %d, %v; want %d, nil", n, err, len(enc))
		}
		fh := pk.FixedHeader
		if fh.Type != packets.Publish || fh.Qos != qos || fh.Retain != retain || fh.Dup != dup {
			t.Fatalf("header %+v; want qos %d retain %v dup %v", fh, qos, retain, dup)
		}
		if pk.TopicName != topic || !bytes.Equal(pk.Payload, payload) {
			t.Fatalf("topic %q payload %q; want %q %q", pk.TopicName, pk.Payload, topic, payload)
		}
		if qos == 0 {
			if at != -1 || pk.PacketID != 0 {
				t.Fatalf("qos 0: id offset %d, id %d", at, pk.PacketID)
			}
		} else {
			if pk.PacketID != pid {
				t.Fatalf("packet id %d; want %d", pk.PacketID, pid)
			}
			if at < len(prefix) || at+2 > len(out) || uint16(out[at])<<8|uint16(out[at+1]) != pid {
				t.Fatalf("packet id offset %d does not hold the id", at)
			}
			alt := ^pid
			if alt == 0 {
				alt = 1
			}
			PutPacketID(out, at, alt)
			if _, err := Decode(enc, &pk, version, 0); err != nil || pk.PacketID != alt || pk.TopicName != topic {
				t.Fatalf("after PutPacketID: %v id %d topic %q", err, pk.PacketID, pk.TopicName)
			}
		}
		if version == 5 {
			if ctOK && pk.Properties.ContentType != contentType {
				t.Fatalf("content type %q; want %q", pk.Properties.ContentType, contentType)
			}
			if subOK && !slices.Equal(pk.Properties.SubscriptionIdentifier, []int{int(subID)}) {
				t.Fatalf("subscription ids %v; want [%d]", pk.Properties.SubscriptionIdentifier, subID)
			}
		}
	})
}
