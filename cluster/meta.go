package cluster

import (
	"bytes"
	"fmt"

	"github.com/vmihailenco/msgpack/v5"
)

// MetaVersion is the format version of the node metadata this build
// writes. A node refuses members whose metadata has a different major
// version (AliveDelegate), since it could not reach their links.
const MetaVersion = 1

// metaMax is memberlist's limit on node metadata.
const metaMax = 512

// Meta is what a node advertises about itself: the addresses clients and
// peers use. It travels in memberlist's alive messages, so it is small.
//
//	msgpack array: [version uint, mqtt str, native str, http str, peer str, leaving bool]
//
// Leaving is set by Close just before the node leaves: memberlist does not
// tell a dead node from one that left, so the last metadata does.
// Later versions may append fields; decoders skip what they do not know.
type Meta struct {
	Version int    `json:"version"`
	MQTT    string `json:"mqtt,omitempty"`
	Native  string `json:"native,omitempty"`
	HTTP    string `json:"http,omitempty"`
	Peer    string `json:"peer,omitempty"`
	Leaving bool   `json:"leaving,omitempty"`
}

func (m Meta) encode() ([]byte, error) {
	var buf bytes.Buffer
	e := msgpack.NewEncoder(&buf)
	_ = e.EncodeArrayLen(6)
	_ = e.EncodeUint(uint64(m.Version))
	_ = e.EncodeString(m.MQTT)
	_ = e.EncodeString(m.Native)
	_ = e.EncodeString(m.HTTP)
	_ = e.EncodeString(m.Peer)
	_ = e.EncodeBool(m.Leaving)
	if buf.Len() > metaMax {
		return nil, fmt.Errorf("%w: node metadata is %d bytes, limit %d", ErrTooLarge, buf.Len(), metaMax)
	}
	return buf.Bytes(), nil
}

func decodeMeta(b []byte) (Meta, error) {
	var m Meta
	d := msgpack.NewDecoder(bytes.NewReader(b))
	n, err := d.DecodeArrayLen()
	if err != nil || n < 5 {
		return m, fmt.Errorf("%w: node metadata", ErrMalformed)
	}
	v, err := d.DecodeUint64()
	if err != nil {
		return m, fmt.Errorf("%w: node metadata version: %v", ErrMalformed, err)
	}
	m.Version = int(v)
	for _, p := range []*string{&m.MQTT, &m.Native, &m.HTTP, &m.Peer} {
		if *p, err = d.DecodeString(); err != nil {
			return m, fmt.Errorf("%w: node metadata: %v", ErrMalformed, err)
		}
	}
	if n > 5 {
		if m.Leaving, err = d.DecodeBool(); err != nil {
			return m, fmt.Errorf("%w: node metadata: %v", ErrMalformed, err)
		}
	}
	return m, nil
}
