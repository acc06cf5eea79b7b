package cluster

import (
	"bytes"
	"fmt"

	"github.com/vmihailenco/msgpack/v5"
)

// A node's full state, sent in memberlist's push/pull exchange (TCP, every
// PushPullInterval with one random node, at join, and to every node after a
// burst). It carries only what the sender is authoritative for, its own
// entries, so the receiver may delete what the state lacks:
//
//	'S' msgpack:
//	  uint  format (1)
//	  str   node
//	  uint  ownership high-water mark H
//	  array n: per entry  str key, uint epoch delta   (entries sorted by epoch, deltas from 0)
//	  uint  interest version V
//	  array m: per filter str filter                  (sorted)
//
// 10,000 session keys of ~16 bytes cost ~180 KB before memberlist's LZW
// compression. memberlist refuses a push/pull over 20 MiB, so a node can
// own about a million keys before this has to be split.
const stateFormat = 1

type nodeState struct {
	node      string
	hwm       Epoch
	entries   []ownEntry
	ver       Epoch
	interests []string
}

func encodeState(s *nodeState) []byte {
	var buf bytes.Buffer
	buf.Grow(64 + len(s.entries)*24 + len(s.interests)*24)
	buf.WriteByte(msgState)
	e := msgpack.NewEncoder(&buf)
	_ = e.EncodeUint(stateFormat)
	_ = e.EncodeString(s.node)
	_ = e.EncodeUint(uint64(s.hwm))
	_ = e.EncodeArrayLen(len(s.entries))
	var prev Epoch
	for _, en := range s.entries {
		_ = e.EncodeString(en.key)
		_ = e.EncodeUint(uint64(en.epoch - prev))
		prev = en.epoch
	}
	_ = e.EncodeUint(uint64(s.ver))
	_ = e.EncodeArrayLen(len(s.interests))
	for _, f := range s.interests {
		_ = e.EncodeString(f)
	}
	return buf.Bytes()
}

func decodeState(b []byte) (*nodeState, error) {
	if len(b) < 2 || b[0] != msgState {
		return nil, fmt.Errorf("%w: state header", ErrMalformed)
	}
	r := bytes.NewReader(b[1:])
	d := msgpack.NewDecoder(r)
	bad := func(what string, err error) (*nodeState, error) {
		return nil, fmt.Errorf("%w: state %s: %v", ErrMalformed, what, err)
	}
	f, err := d.DecodeUint64()
	if err != nil {
		return bad("format", err)
	}
	if f != stateFormat {
		return bad("format", fmt.Errorf("version %d", f))
	}
	s := &nodeState{}
	if s.node, err = d.DecodeString(); err != nil || validName(s.node) != nil {
		return bad("node", err)
	}
	h, err := d.DecodeUint64()
	if err != nil {
		return bad("hwm", err)
	}
	s.hwm = Epoch(h)
	n, err := d.DecodeArrayLen()
	if err != nil || n < 0 || n > r.Len()/2 {
		return bad("entries", err)
	}
	s.entries = make([]ownEntry, 0, n)
	var prev Epoch
	for range n {
		k, err := d.DecodeString()
		if err != nil {
			return bad("key", err)
		}
		delta, err := d.DecodeUint64()
		if err != nil {
			return bad("epoch", err)
		}
		prev += Epoch(delta)
		s.entries = append(s.entries, ownEntry{key: k, epoch: prev})
	}
	v, err := d.DecodeUint64()
	if err != nil {
		return bad("interest version", err)
	}
	s.ver = Epoch(v)
	m, err := d.DecodeArrayLen()
	if err != nil || m < 0 || m > r.Len() {
		return bad("interests", err)
	}
	s.interests = make([]string, 0, m)
	for range m {
		f, err := d.DecodeString()
		if err != nil {
			return bad("filter", err)
		}
		s.interests = append(s.interests, f)
	}
	return s, nil
}
