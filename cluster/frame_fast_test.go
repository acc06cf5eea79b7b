package cluster

import (
	"bytes"
	"strings"
	"testing"
)

// The hand-written publish encoder writes what the msgpack encoder writes,
// so the decoder (and older nodes) read it unchanged.
func TestPublishFrameMatchesEncoder(t *testing.T) {
	long := strings.Repeat("x", 300)
	pubs := []*Publish{
		{},
		{Topic: "a/b", Payload: []byte("hello"), QoS: 1, Retain: true, Props: []byte{1, 2}, Sender: "c1", ID: 1 << 40, Created: 1700000000, Expiry: -5, Origin: "n9"},
		{Topic: long, Payload: bytes.Repeat([]byte("p"), 70000), Sender: long, ID: 200, Created: -200, Expiry: -40000},
		{Topic: "t", Payload: []byte{}, Props: []byte{}, QoS: 2, ID: 0xffff, Created: -3000000000, Expiry: 1 << 33},
	}
	for _, seq := range []uint64{0, 5, 300, 1 << 20, 1 << 40} {
		for i, p := range pubs {
			want := newFrameEncoder("self").append(nil, &frame{typ: framePublish, seq: seq, pub: p})
			got := appendPublishFrame([]byte("prefix"), seq, p, "self")
			if !bytes.Equal(got[6:], want) {
				t.Fatalf("publish %d seq %d:\n got %x\nwant %x", i, seq, got[6:], want)
			}
		}
	}
}
