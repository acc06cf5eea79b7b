package broker

import (
	"hash/fnv"
	"sync/atomic"
	"time"

	"github.com/cimgo/cim/broker/wire"
)

// Server message ids (native deliveries, history, dedup) are unique
// cluster-wide and across restarts, and ordered by time within a node:
//
//	 63                   23 22        13 12          0
//	+-----------------------+------------+-------------+
//	| ms since 2025-01-01   |  node (10) | seq (13)    |
//	+-----------------------+------------+-------------+
//
// 41 bits of milliseconds last until 2094; 8192 ids a millisecond, and a
// burst beyond that borrows the next millisecond, so ids never repeat nor go
// backwards while the clock does not jump back further than the node was
// down. The node field is a hash of the node name: a cluster must not have
// two nodes with the same 10 bits (the cluster refuses a member that
// collides). The time field is part of the native protocol (wire.MsgIDTime:
// a deliver frame leaves out a time that is its id's), so its epoch and
// place are wire's constants.
type idGen struct {
	node uint64
	last atomic.Uint64 // (ms << 13) | seq of the last id
}

const idEpochMs = wire.MsgIDEpoch // 2025-01-01T00:00:00Z

// nodeBits is the 10-bit node field for a node name.
func nodeBits(name string) uint64 {
	h := fnv.New32a()
	h.Write([]byte(name))
	return uint64(h.Sum32()) & 0x3ff
}

// next returns a new id. Any goroutine; lock-free.
func (g *idGen) next(now time.Time) uint64 {
	t := uint64(now.UnixMilli()-idEpochMs) << 13
	for {
		last := g.last.Load()
		n := max(t, last+1)
		if g.last.CompareAndSwap(last, n) {
			return (n>>13)<<wire.MsgIDTimeShift | g.node<<13 | n&0x1fff
		}
	}
}

// idTime is when an id (not 0) was made.
func idTime(id uint64) time.Time { return time.UnixMilli(wire.MsgIDTime(id)) }
