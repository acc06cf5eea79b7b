package cluster

import (
	"bytes"
	"fmt"
	"sync"

	"github.com/hashicorp/memberlist"
	"github.com/vmihailenco/msgpack/v5"
)

// Gossip broadcasts (memberlist user messages, sent over UDP in gossip
// packets; never message payloads). Each is one batch from one origin node:
//
//	'o' ownership:  msgpack str owner, then per entry: str key, int epoch delta, uint op (0 claim, 1 release)
//	'i' interest:   msgpack str node,  then per entry: str filter, int version delta, bool live
//
// The epoch of an entry is the previous entry's plus its delta (the first's
// delta is from 0), so a burst of claims costs about len(key)+3 bytes each.
// A batch fills at most one gossip packet. A node that applies an entry
// that changed its table relays it (in a new batch, from its relay queue,
// sent half as often), so a broadcast spreads epidemically rather than
// depending on its origin reaching every node itself.
const (
	msgOwnership = 'o'
	msgInterest  = 'i'
	msgState     = 'S'

	opClaim   = 0
	opRelease = 1
)

type broadcast struct{ msg []byte }

func (b *broadcast) Invalidates(memberlist.Broadcast) bool { return false }
func (b *broadcast) Message() []byte                       { return b.msg }
func (b *broadcast) Finished()                             {}

// batch builds one broadcast message entry by entry.
type batch struct {
	kind byte
	node string
	max  int
	buf  bytes.Buffer
	enc  *msgpack.Encoder
	prev Epoch
	n    int
}

func newBatch(kind byte, node string, max int) *batch {
	b := &batch{kind: kind, node: node, max: max}
	b.enc = msgpack.NewEncoder(&b.buf)
	b.start()
	return b
}

func (b *batch) start() {
	b.buf.Reset()
	b.buf.WriteByte(b.kind)
	_ = b.enc.EncodeString(b.node)
	b.prev, b.n = 0, 0
}

// entrySize bounds the encoded size of an entry with a string of n bytes.
func entrySize(n int) int { return n + 5 + 9 + 1 }

// fits reports whether a string of n bytes can ever be in a batch.
func (b *batch) fits(n int) bool { return 1+entrySize(len(b.node))+entrySize(n) <= b.max }

// add appends an entry; when the batch is full it is sealed first and
// returned. The caller checked fits.
func (b *batch) add(s string, e Epoch, flag uint8) (sealed []byte) {
	if b.n > 0 && b.buf.Len()+entrySize(len(s)) > b.max {
		sealed = b.seal()
	}
	_ = b.enc.EncodeString(s)
	_ = b.enc.EncodeInt(int64(e - b.prev))
	if b.kind == msgInterest {
		_ = b.enc.EncodeBool(flag != 0)
	} else {
		_ = b.enc.EncodeUint(uint64(flag))
	}
	b.prev = e
	b.n++
	return sealed
}

// seal returns the batch's message (nil if empty) and starts a new one.
func (b *batch) seal() []byte {
	if b.n == 0 {
		return nil
	}
	msg := bytes.Clone(b.buf.Bytes())
	b.start()
	return msg
}

// gossipEntry is one decoded broadcast entry.
type gossipEntry struct {
	s     string
	epoch Epoch
	flag  uint8
}

// decodeBatch decodes an 'o' or 'i' message.
func decodeBatch(msg []byte) (kind byte, node string, entries []gossipEntry, err error) {
	if len(msg) < 2 {
		return 0, "", nil, fmt.Errorf("%w: short broadcast", ErrMalformed)
	}
	kind = msg[0]
	if kind != msgOwnership && kind != msgInterest {
		return 0, "", nil, fmt.Errorf("%w: broadcast type %#x", ErrMalformed, kind)
	}
	r := bytes.NewReader(msg[1:])
	d := msgpack.NewDecoder(r)
	if node, err = d.DecodeString(); err != nil || validName(node) != nil {
		return 0, "", nil, fmt.Errorf("%w: broadcast origin", ErrMalformed)
	}
	var prev Epoch
	for r.Len() > 0 {
		var e gossipEntry
		if e.s, err = d.DecodeString(); err != nil {
			return 0, "", nil, fmt.Errorf("%w: broadcast entry: %v", ErrMalformed, err)
		}
		delta, err := d.DecodeInt64()
		if err != nil {
			return 0, "", nil, fmt.Errorf("%w: broadcast epoch: %v", ErrMalformed, err)
		}
		e.epoch = prev + Epoch(delta)
		prev = e.epoch
		if kind == msgInterest {
			live, err := d.DecodeBool()
			if err != nil {
				return 0, "", nil, fmt.Errorf("%w: broadcast flag: %v", ErrMalformed, err)
			}
			if live {
				e.flag = 1
			}
		} else {
			op, err := d.DecodeUint64()
			if err != nil || op > opRelease {
				return 0, "", nil, fmt.Errorf("%w: broadcast op", ErrMalformed)
			}
			e.flag = uint8(op)
		}
		entries = append(entries, e)
	}
	return kind, node, entries, nil
}

// broadcaster owns the two transmit queues and the open batches of this
// node's own changes.
type broadcaster struct {
	self  string
	max   int
	own   *memberlist.TransmitLimitedQueue
	relay *memberlist.TransmitLimitedQueue
	// burst is called (without locks) when the own queue passes its
	// threshold.
	burst     func()
	threshold int

	mu       sync.Mutex
	ownOpen  *batch // REQUIRES: mu held
	intOpen  *batch // REQUIRES: mu held
	relayMax int
}

func newBroadcaster(self string, max, retransmit, threshold int, numNodes func() int, burst func()) *broadcaster {
	rm := retransmit / 2
	if rm < 1 {
		rm = 1
	}
	return &broadcaster{
		self: self, max: max, burst: burst, threshold: threshold,
		own:      &memberlist.TransmitLimitedQueue{NumNodes: numNodes, RetransmitMult: retransmit},
		relay:    &memberlist.TransmitLimitedQueue{NumNodes: numNodes, RetransmitMult: rm},
		ownOpen:  newBatch(msgOwnership, self, max),
		intOpen:  newBatch(msgInterest, self, max),
		relayMax: 4 * threshold,
	}
}

// queueOwn adds one of our own changes; false if the entry can never fit a
// gossip packet (the caller spreads it by full state instead).
func (b *broadcaster) queueOwn(kind byte, s string, e Epoch, flag uint8) bool {
	b.mu.Lock()
	bt := b.ownOpen
	if kind == msgInterest {
		bt = b.intOpen
	}
	if !bt.fits(len(s)) {
		b.mu.Unlock()
		return false
	}
	sealed := bt.add(s, e, flag)
	b.mu.Unlock()
	if sealed != nil {
		b.own.QueueBroadcast(&broadcast{msg: sealed})
		b.checkBurst()
	}
	return true
}

func (b *broadcaster) checkBurst() {
	if b.threshold > 0 && b.own.NumQueued() > b.threshold && b.burst != nil {
		b.burst()
	}
}

// queueRelay queues entries received from node for relaying.
func (b *broadcaster) queueRelay(kind byte, node string, entries []gossipEntry) {
	bt := newBatch(kind, node, b.max)
	for _, e := range entries {
		if !bt.fits(len(e.s)) {
			continue
		}
		if m := bt.add(e.s, e.epoch, e.flag); m != nil {
			b.relay.QueueBroadcast(&broadcast{msg: m})
		}
	}
	if m := bt.seal(); m != nil {
		b.relay.QueueBroadcast(&broadcast{msg: m})
	}
	if b.relay.NumQueued() > b.relayMax {
		b.relay.Prune(b.relayMax)
	}
}

// flush seals the open batches into the own queue.
func (b *broadcaster) flush() {
	b.mu.Lock()
	o, i := b.ownOpen.seal(), b.intOpen.seal()
	b.mu.Unlock()
	if o != nil {
		b.own.QueueBroadcast(&broadcast{msg: o})
	}
	if i != nil {
		b.own.QueueBroadcast(&broadcast{msg: i})
	}
	if o != nil || i != nil {
		b.checkBurst()
	}
}

// get is memberlist's GetBroadcasts: our own changes first, then relays.
func (b *broadcaster) get(overhead, limit int) [][]byte {
	b.flush()
	out := b.own.GetBroadcasts(overhead, limit)
	used := 0
	for _, m := range out {
		used += len(m) + overhead
	}
	if limit-used > overhead {
		out = append(out, b.relay.GetBroadcasts(overhead, limit-used)...)
	}
	return out
}

// dropOwn forgets our queued own broadcasts (a full-state sync to every
// member covers them).
func (b *broadcaster) dropOwn() {
	b.mu.Lock()
	b.ownOpen.seal()
	b.intOpen.seal()
	b.mu.Unlock()
	b.own.Reset()
}

func (b *broadcaster) queued() (own, relay int) { return b.own.NumQueued(), b.relay.NumQueued() }
