package bench

import "encoding/binary"

// The payload header is drawn in doc.go. The send time is written by the
// protocol client (Client.Publish); the rest by the publisher.

func putHeader(p []byte, pub, seq uint32) {
	binary.BigEndian.PutUint32(p[8:], pub)
	binary.BigEndian.PutUint32(p[12:], seq)
}

func readHeader(p []byte) (sentAt int64, pub, seq uint32) {
	return int64(binary.BigEndian.Uint64(p)), binary.BigEndian.Uint32(p[8:]), binary.BigEndian.Uint32(p[12:])
}

// seqWindow is how far behind the highest sequence seen a message can arrive
// and still be told apart as a duplicate or a late (reordered) one. A
// shared-subscription group, whose members' readers race each other, gets
// groupWindow.
const (
	seqWindow   = 1024
	groupWindow = 1 << 16
)

type verdict uint8

const (
	inOrder verdict = iota
	reordered
	duplicate
)

// seqTrack follows the sequence numbers of one publisher as seen by one
// subscriber: a ring bitmap of the last seqWindow sequences.
type seqTrack struct {
	started bool
	max     uint32
	bits    []uint64 // a power of two of words

	// The range of sequences seen, for gap-based loss when the number of
	// messages sent is not known (the sub scenario).
	counted    int64
	cmin, cmax uint32
}

func newSeqTrack(window int) *seqTrack { return &seqTrack{bits: make([]uint64, window/64)} }

func (t *seqTrack) window() uint32      { return uint32(len(t.bits) * 64) }
func (t *seqTrack) word(s uint32) int   { return int(s/64) & (len(t.bits) - 1) }
func (t *seqTrack) set(s uint32)        { t.bits[t.word(s)] |= 1 << (s % 64) }
func (t *seqTrack) clear(s uint32)      { t.bits[t.word(s)] &^= 1 << (s % 64) }
func (t *seqTrack) isSet(s uint32) bool { return t.bits[t.word(s)]&(1<<(s%64)) != 0 }

func (t *seqTrack) observe(seq uint32) verdict {
	if !t.started {
		t.started, t.max = true, seq
		t.set(seq)
		return inOrder
	}
	if seq > t.max {
		if seq-t.max >= t.window() {
			clear(t.bits)
		} else {
			for s := t.max + 1; s != seq; s++ {
				t.clear(s) // a gap: not seen (yet)
			}
		}
		t.set(seq)
		t.max = seq
		return inOrder
	}
	if t.max-seq >= t.window() {
		return reordered // too old to tell; most likely late
	}
	if t.isSet(seq) {
		return duplicate
	}
	t.set(seq)
	return reordered
}

// count notes a unique message.
func (t *seqTrack) count(seq uint32) {
	if t.counted == 0 || seq < t.cmin {
		t.cmin = seq
	}
	if t.counted == 0 || seq > t.cmax {
		t.cmax = seq
	}
	t.counted++
}

// gaps is how many sequences inside the range seen never arrived.
func (t *seqTrack) gaps() int64 {
	if t.counted == 0 {
		return 0
	}
	return max(int64(t.cmax-t.cmin)+1-t.counted, 0)
}

// tracker holds one subscriber's seqTracks by publisher id. Most
// subscribers hear one publisher (pairs, fanout), so the last one is cached
// in front of the map.
type tracker struct {
	window  int // seqWindow when 0
	lastPub uint32
	last    *seqTrack
	m       map[uint32]*seqTrack
}

func (tr *tracker) get(pub uint32) *seqTrack {
	if tr.last != nil && tr.lastPub == pub {
		return tr.last
	}
	if tr.m == nil {
		tr.m = make(map[uint32]*seqTrack)
	}
	t := tr.m[pub]
	if t == nil {
		w := tr.window
		if w == 0 {
			w = seqWindow
		}
		t = newSeqTrack(w)
		tr.m[pub] = t
	}
	tr.lastPub, tr.last = pub, t
	return t
}

func (tr *tracker) gaps() int64 {
	var n int64
	for _, t := range tr.m {
		n += t.gaps()
	}
	return n
}
