package broker

import (
	"sync"

	"github.com/cimgo/cim/broker/wire"
)

// A native QoS 1 send may come again: the SDK resends every unacknowledged
// message after a reconnect. Each is known by (sender, client message id);
// a repeat is answered with the first one's acknowledgement (same server
// message id, same code) and not delivered again. Recent sends are kept
// here for dedupWindow; the store keeps a record of each too (written with
// the message, atomically), consulted for a send the memory does not know
// while the node is within dedupWindow of its start — the only time a
// resend can precede the memory of its original.

const dedupWindowSecs = 600 // the SDK resends within a reconnect, seconds to minutes

type sendResult struct {
	msgID uint64
	code  wire.Code
	at    int64 // unix ms
	text  string
}

type dedupKey struct{ sender, cmid uint64 }

type dedupEntry struct {
	res sendResult
	at  int64 // unix seconds it was recorded
}

// dedupCache is sharded so that senders on different loops rarely meet.
type dedupCache struct {
	shards [16]struct {
		mu    sync.Mutex
		m     map[dedupKey]dedupEntry // REQUIRES: mu held
		order []dedupKey              // REQUIRES: mu held. in recording order, for expiry
	}
}

func (c *dedupCache) shard(k dedupKey) int {
	return int((k.sender*31 + k.cmid) % uint64(len(c.shards)))
}

// get returns the recorded result of (sender, cmid), if recent.
func (c *dedupCache) get(k dedupKey) (sendResult, bool) {
	sh := &c.shards[c.shard(k)]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	e, ok := sh.m[k]
	return e.res, ok
}

// put records the result of a send at now (unix seconds), forgetting what
// is older than the window.
func (c *dedupCache) put(k dedupKey, r sendResult, now int64) {
	sh := &c.shards[c.shard(k)]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sh.m == nil {
		sh.m = make(map[dedupKey]dedupEntry)
	}
	drop := 0
	for drop < len(sh.order) {
		e, ok := sh.m[sh.order[drop]]
		if ok && now-e.at < dedupWindowSecs {
			break
		}
		delete(sh.m, sh.order[drop])
		drop++
	}
	sh.order = sh.order[drop:]
	if _, ok := sh.m[k]; !ok {
		sh.order = append(sh.order, k)
	}
	sh.m[k] = dedupEntry{r, now}
}
