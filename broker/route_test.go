package broker

import (
	"testing"

	"github.com/mochi-mqtt/server/v2/packets"
)

func TestRawPublishSubscribe(t *testing.T) {
	s := startServer(t, Options{})
	sub := dialRaw(t, s)
	sub.connect(4, "sub", true, 0)
	sub.send(&packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Subscribe, Qos: 1}, PacketID: 1,
		Filters: packets.Subscriptions{{Filter: "a/#", Qos: 1}}})
	if ack := sub.read(); ack.FixedHeader.Type != packets.Suback || ack.ReasonCodes[0] != 1 {
		t.Fatalf("suback: %+v", ack)
	}
	pub := dialRaw(t, s)
	pub.connect(4, "pub", true, 0)
	pub.send(&packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1}, PacketID: 7, TopicName: "a/b", Payload: []byte("hi")})
	if ack := pub.read(); ack.FixedHeader.Type != packets.Puback || ack.PacketID != 7 {
		t.Fatalf("puback: %+v", ack)
	}
	got := sub.read()
	if got.FixedHeader.Type != packets.Publish || got.TopicName != "a/b" || string(got.Payload) != "hi" || got.FixedHeader.Qos != 1 {
		t.Fatalf("publish: %+v", got)
	}
}
