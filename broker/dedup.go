package broker

import (
	"strconv"
	"sync"

	"github.com/cimgo/cim/broker/wire"
)

// A native QoS 1 send may come again: the SDK resends every unacknowledged
// message after a reconnect. Each is known by (sender, client message id);
// a repeat is answered with the first one's acknowledgement (same server
// message id) and not delivered again.
//
// The store keeps a record of each send (written with the message,
// atomically) and, per sender, a mark at or above every id it recorded
// (storage/dedup.go). Clients number their messages upwards, so the broker
// keeps each sender's mark too (read from the store once, raised by every
// send it routes): a send above it is new and is routed at once; one at or
// below it may be a resend, and is looked up in the store (off the loop)
// first. The committer checks every send again, so a resend that races its
// original's commit is still stored once (it may then be delivered twice,
// as MQTT's QoS 1 allows).

type sendResult struct {
	msgID uint64
	code  wire.Code
	at    int64 // unix ms
	text  string
}

// dedupMarks hold, per sender, a client message id at or above every one
// the store has recorded or this node has routed for it. A sender's mark
// is known once read from the store (lookupSends).
type dedupMarks struct {
	shards [16]struct {
		mu sync.Mutex
		m  map[uint64]uint64 // REQUIRES: mu held. sender -> mark
	}
}

func (d *dedupMarks) shard(sender uint64) int { return int(sender % uint64(len(d.shards))) }

// above reports whether cmid is above the sender's known mark: new.
func (d *dedupMarks) above(sender, cmid uint64) bool {
	sh := &d.shards[d.shard(sender)]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	mark, ok := sh.m[sender]
	return ok && cmid > mark
}

// learn records the store's mark of a sender (kept if this node's is higher).
func (d *dedupMarks) learn(sender, mark uint64) {
	sh := &d.shards[d.shard(sender)]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sh.m == nil {
		sh.m = make(map[uint64]uint64)
	}
	if old, ok := sh.m[sender]; !ok || mark > old {
		sh.m[sender] = mark
	}
}

// raise notes that cmid is being routed for sender, if its mark is known.
func (d *dedupMarks) raise(sender, cmid uint64) {
	sh := &d.shards[d.shard(sender)]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if old, ok := sh.m[sender]; ok && cmid > old {
		sh.m[sender] = cmid
	}
}

// needsLookup reports whether the QoS 1 sends of one sender, client ids
// first.., may be resends: the store must be asked (lookupSends) first.
func (srv *Server) needsLookup(sender, first uint64) bool {
	return first != 0 && srv.store != nil && !srv.im.marks.above(sender, first)
}

// lookupSends learns the sender's mark and looks up each request at or
// below it in the store: a result with a msgID is a resend of that message.
// Blocks on the store: off the loops.
func (srv *Server) lookupSends(reqs []*sendReq) []sendResult {
	out := make([]sendResult, len(reqs))
	if len(reqs) == 0 {
		return out
	}
	sender := reqs[0].from.ID
	name := strconv.FormatUint(sender, 10)
	if mark, err := srv.store.DedupMark(name); err == nil {
		srv.im.marks.learn(sender, mark)
	}
	for i, r := range reqs {
		if r.cmid == 0 || srv.im.marks.above(sender, r.cmid) {
			continue // new
		}
		id, err := srv.store.GetDedup(name, strconv.FormatUint(r.cmid, 10))
		if err == nil && id != 0 {
			out[i] = sendResult{msgID: id, code: wire.CodeOK, at: idTime(id).UnixMilli()}
		}
	}
	return out
}
