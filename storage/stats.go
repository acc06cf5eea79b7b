package storage

import (
	"sync/atomic"
	"time"
)

// counters are the DB's statistics, updated atomically.
type counters struct {
	groups, batches, ops                 atomic.Uint64
	busy, dropped, rejected, unavailable atomic.Uint64
	writeErrors, failures                atomic.Uint64
	recoveries, retries                  atomic.Uint64
	expiredMessages, expiredHistory      atomic.Uint64
	expiredDedup, sweeps, sweepNanos     atomic.Uint64
	registered, duplicates               atomic.Uint64
	writtenBytes                         atomic.Uint64
	commitLatency                        histogram // ns, per batch: Commit to done
	groupOps                             histogram // ops per group
	applyLatency                         histogram // ns, per group: Pebble apply (+ fsync in Sync mode)
}

// Histogram bounds. Latencies are in seconds, as Prometheus wants them.
var (
	// LatencyBuckets are the upper bounds of Stats.CommitLatency and
	// Stats.ApplyLatency: 50µs to 2.5s.
	LatencyBuckets = []float64{50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 50e-3, 100e-3, 250e-3, 500e-3, 1, 2.5}
	// GroupSizeBuckets are the upper bounds of Stats.GroupOps: 1 to 16384.
	GroupSizeBuckets = []float64{1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384}
)

// histogram counts observations per bucket; written by the committer only,
// read by Stats.
type histogram struct {
	counts [16]atomic.Uint64 // per bucket, non-cumulative; the last is +Inf
	sum    atomic.Uint64
}

var (
	latencyBoundsNs = func() (b [15]int64) {
		for i, s := range LatencyBuckets {
			b[i] = int64(s * 1e9)
		}
		return b
	}()
	groupBounds = func() (b [15]int64) {
		for i, s := range GroupSizeBuckets {
			b[i] = int64(s)
		}
		return b
	}()
)

func (h *histogram) observeIn(bounds *[15]int64, v int64) {
	i := 0
	for i < len(bounds) && v > bounds[i] {
		i++
	}
	h.counts[i].Add(1)
	h.sum.Add(uint64(max(v, 0)))
}

func (h *histogram) observe(ns int64) { h.observeIn(&latencyBoundsNs, ns) }

// snapshot returns h with cumulative counts, sum scaled by unit.
func (h *histogram) snapshot(bounds []float64, unit float64) Histogram {
	s := Histogram{Bounds: bounds, Counts: make([]uint64, len(bounds))}
	var c uint64
	for i := range bounds {
		c += h.counts[i].Load()
		s.Counts[i] = c
	}
	s.Count = c + h.counts[len(bounds)].Load()
	s.Sum = float64(h.sum.Load()) * unit
	return s
}

func (c *counters) observeGroup(ops, bytes int, applyNs int64) {
	c.groups.Add(1)
	c.writtenBytes.Add(uint64(bytes))
	c.groupOps.observeIn(&groupBounds, int64(ops))
	c.applyLatency.observe(applyNs)
}

// Histogram is a snapshot in Prometheus' shape: Counts[i] is the number of
// observations <= Bounds[i] (cumulative); Count includes those above the
// last bound. prometheus.MustNewConstHistogram takes it as is.
type Histogram struct {
	Bounds []float64
	Counts []uint64
	Count  uint64
	Sum    float64
}

// Stats is a snapshot of the DB's counters and sizes. Counters only grow;
// the rest are gauges.
type Stats struct {
	Groups       uint64 // Pebble batches written (one sync each in Sync mode)
	Batches      uint64 // Batches committed (including failed ones)
	Ops          uint64 // operations in them
	WrittenBytes uint64 // bytes of the Pebble batches written

	Busy        uint64 // Commit calls refused with ErrBusy
	Unavailable uint64 // Commit calls refused while the store was recovering
	Dropped     uint64 // queued messages dropped by DropOldest
	Rejected    uint64 // queued messages refused by RejectNew or too large

	WriteErrors uint64 // groups that failed to commit
	Failures    uint64 // times the store went from healthy to failing
	Recoveries  uint64 // times it reopened and became healthy again
	Retries     uint64 // reopen attempts that failed

	ExpiredMessages uint64        // queued messages deleted by the sweeper
	ExpiredHistory  uint64        // history messages deleted by retention
	ExpiredDedup    uint64        // dedup records deleted by retention
	Sweeps          uint64        // sweeps run
	SweepTime       time.Duration // total time spent in them

	Registered uint64 // accounts created
	Duplicates uint64 // batches skipped because a Dedup found a duplicate

	// CommitLatency is per batch, Commit to done (seconds); ApplyLatency
	// per group, the Pebble write (with its fsync in Sync mode); GroupOps
	// the ops per group.
	CommitLatency Histogram
	ApplyLatency  Histogram
	GroupOps      Histogram

	Sessions       int   // persistent sessions stored
	QueuedMessages int64 // messages in all queues
	QueuedBytes    int64 // their encoded size
	PendingBatches int   // batches waiting for the committer
	PendingBytes   int
	Failed         error // Health(): non-nil while the store is not writable
}

// Stats returns a snapshot of the counters.
func (db *DB) Stats() Stats {
	st := &db.st
	s := Stats{
		Groups:          st.groups.Load(),
		Batches:         st.batches.Load(),
		Ops:             st.ops.Load(),
		WrittenBytes:    st.writtenBytes.Load(),
		Busy:            st.busy.Load(),
		Unavailable:     st.unavailable.Load(),
		Dropped:         st.dropped.Load(),
		Rejected:        st.rejected.Load(),
		WriteErrors:     st.writeErrors.Load(),
		Failures:        st.failures.Load(),
		Recoveries:      st.recoveries.Load(),
		Retries:         st.retries.Load(),
		ExpiredMessages: st.expiredMessages.Load(),
		ExpiredHistory:  st.expiredHistory.Load(),
		ExpiredDedup:    st.expiredDedup.Load(),
		Sweeps:          st.sweeps.Load(),
		SweepTime:       time.Duration(st.sweepNanos.Load()),
		Registered:      st.registered.Load(),
		Duplicates:      st.duplicates.Load(),
		CommitLatency:   st.commitLatency.snapshot(LatencyBuckets, 1e-9),
		ApplyLatency:    st.applyLatency.snapshot(LatencyBuckets, 1e-9),
		GroupOps:        st.groupOps.snapshot(GroupSizeBuckets, 1),
		Failed:          db.Health(),
	}
	db.idx.mu.Lock()
	s.Sessions, s.QueuedMessages, s.QueuedBytes = len(db.idx.sessions), db.idx.msgs, db.idx.bytes
	db.idx.mu.Unlock()
	db.q.Lock()
	s.PendingBatches, s.PendingBytes = len(db.q.pending), db.q.bytes
	db.q.Unlock()
	return s
}
