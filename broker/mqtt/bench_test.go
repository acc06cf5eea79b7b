package mqtt

import (
	"bytes"
	"testing"

	"github.com/mochi-mqtt/server/v2/packets"
)

// A typical device publish: short topic, 64-byte payload, QoS 1.
var (
	benchTopic   = "sensors/42/temp"
	benchPayload = bytes.Repeat([]byte{'x'}, 64)
	// v5 properties a forwarder adds: content type and a user property.
	benchProps = AppendProperties(nil, &packets.Properties{
		ContentType: "json",
		User:        []packets.UserProperty{{Key: "from", Val: "u1"}},
	}, packets.Publish)
	benchProps2 = []byte{packets.PropSubscriptionIdentifier, 7}
)

func benchPublish(version byte, props []byte) []byte {
	b, _ := AppendPublish(nil, version, benchTopic, benchPayload, props, nil, 1, false, false, 1)
	return b
}

func benchDecode(b *testing.B, version byte, raw []byte) {
	var pk packets.Packet
	b.ReportAllocs()
	b.SetBytes(int64(len(raw)))
	for b.Loop() {
		if _, err := Decode(raw, &pk, version, 0); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodePublishV4(b *testing.B) { benchDecode(b, 4, benchPublish(4, nil)) }

func BenchmarkDecodePublishV5(b *testing.B) { benchDecode(b, 5, benchPublish(5, benchProps)) }

func benchAppend(b *testing.B, version byte, props, props2 []byte) {
	buf := make([]byte, 0, 256)
	b.ReportAllocs()
	b.SetBytes(int64(PublishSize(version, benchTopic, benchPayload, len(props)+len(props2), 1)))
	for b.Loop() {
		buf, _ = AppendPublish(buf[:0], version, benchTopic, benchPayload, props, props2, 1, false, false, 1)
	}
}

func BenchmarkAppendPublishV4(b *testing.B) { benchAppend(b, 4, nil, nil) }

func BenchmarkAppendPublishV5(b *testing.B) { benchAppend(b, 5, benchProps, benchProps2) }

// The hot paths promise no allocations; hold them to it outside benchmarks.
func TestHotPathAllocs(t *testing.T) {
	raw4 := benchPublish(4, nil)
	var pk packets.Packet
	if a := testing.AllocsPerRun(100, func() { _, _ = Decode(raw4, &pk, 4, 0) }); a != 0 {
		t.Errorf("Decode of a v4 PUBLISH: %v allocs, want 0", a)
	}
	// The v5 codec allocates; the validation in front of it must not.
	raw5 := benchPublish(5, benchProps)
	_, hl, _, _ := Header(raw5)
	pk5 := packets.Packet{ProtocolVersion: 5, FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1}}
	if a := testing.AllocsPerRun(100, func() {
		if err := check(&pk5, raw5[hl:]); err != nil {
			t.Fatal(err)
		}
	}); a != 0 {
		t.Errorf("validating a v5 PUBLISH: %v allocs, want 0", a)
	}
	buf := make([]byte, 0, 256)
	for _, version := range []byte{4, 5} {
		if a := testing.AllocsPerRun(100, func() {
			buf, _ = AppendPublish(buf[:0], version, benchTopic, benchPayload, benchProps, benchProps2, 1, false, false, 1)
		}); a != 0 {
			t.Errorf("AppendPublish v%d into a large enough slice: %v allocs, want 0", version, a)
		}
	}
	ack := make([]byte, 0, 8)
	if a := testing.AllocsPerRun(100, func() { ack = AppendAck(ack[:0], 5, packets.Puback, 1, 0x10) }); a != 0 {
		t.Errorf("AppendAck: %v allocs, want 0", a)
	}
}

// The validation layer's share of a v5 PUBLISH decode: the walk alone.
func BenchmarkCheckPublishV5(b *testing.B) {
	raw := benchPublish(5, benchProps)
	_, hl, _, _ := Header(raw)
	pk := packets.Packet{ProtocolVersion: 5, FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1}}
	b.ReportAllocs()
	b.SetBytes(int64(len(raw)))
	for b.Loop() {
		if err := check(&pk, raw[hl:]); err != nil {
			b.Fatal(err)
		}
	}
}
