package httpapi

import (
	"github.com/cimgo/cim/storage"
	"github.com/prometheus/client_golang/prometheus"
)

// Storage metrics: what storage.DB.Stats exposes today. The storage
// package is being extended on another branch; what it does not expose
// yet has its place in pendingStorageMetrics below.
type storageDescs struct {
	groups, batches, ops, busy, dropped, rejected, expiredMsgs, expiredSess *prometheus.Desc
	sessions, queuedMsgs, queuedBytes, pendingBatches, pendingBytes, failed *prometheus.Desc
}

func newStorageDescs() storageDescs {
	d := func(name, help string) *prometheus.Desc { return prometheus.NewDesc(name, help, nil, nil) }
	return storageDescs{
		groups:         d("cim_storage_commit_groups_total", "Pebble batches written by the group committer (one sync each with durability sync)."),
		batches:        d("cim_storage_commit_batches_total", "Broker batches committed (failed ones included)."),
		ops:            d("cim_storage_commit_ops_total", "Operations in the committed batches."),
		busy:           d("cim_storage_busy_total", "Commits refused because the commit queue was full."),
		dropped:        d("cim_storage_queue_dropped_total", "Stored queued messages dropped at a session's cap (drop-oldest)."),
		rejected:       d("cim_storage_queue_rejected_total", "Queued messages refused by a session's cap or for their size."),
		expiredMsgs:    d("cim_storage_sweeper_expired_messages_total", "Queued messages deleted by the sweeper."),
		expiredSess:    d("cim_storage_sweeper_expired_sessions_total", "Sessions deleted by the sweeper."),
		sessions:       d("cim_storage_sessions", "Persistent sessions stored."),
		queuedMsgs:     d("cim_storage_queued_messages", "Messages in all stored session queues (queue depth)."),
		queuedBytes:    d("cim_storage_queued_bytes", "Encoded bytes of the stored queued messages."),
		pendingBatches: d("cim_storage_commit_queue_batches", "Batches waiting for the committer (commit queue depth)."),
		pendingBytes:   d("cim_storage_commit_queue_bytes", "Encoded bytes waiting for the committer."),
		failed:         d("cim_storage_write_failed", "1 once a write failed and the store refuses writes (see the log), else 0."),
	}
}

func (d *storageDescs) describe(ch chan<- *prometheus.Desc) {
	for _, x := range []*prometheus.Desc{d.groups, d.batches, d.ops, d.busy, d.dropped, d.rejected, d.expiredMsgs, d.expiredSess,
		d.sessions, d.queuedMsgs, d.queuedBytes, d.pendingBatches, d.pendingBytes, d.failed} {
		ch <- x
	}
}

func (d *storageDescs) collect(ch chan<- prometheus.Metric, db *storage.DB) {
	st := db.Stats()
	counter := func(desc *prometheus.Desc, v uint64) {
		ch <- prometheus.MustNewConstMetric(desc, prometheus.CounterValue, float64(v))
	}
	gauge := func(desc *prometheus.Desc, v float64) {
		ch <- prometheus.MustNewConstMetric(desc, prometheus.GaugeValue, v)
	}
	counter(d.groups, st.Groups)
	counter(d.batches, st.Batches)
	counter(d.ops, st.Ops)
	counter(d.busy, st.Busy)
	counter(d.dropped, st.Dropped)
	counter(d.rejected, st.Rejected)
	counter(d.expiredMsgs, st.ExpiredMessages)
	counter(d.expiredSess, st.ExpiredSessions)
	gauge(d.sessions, float64(st.Sessions))
	gauge(d.queuedMsgs, float64(st.QueuedMessages))
	gauge(d.queuedBytes, float64(st.QueuedBytes))
	gauge(d.pendingBatches, float64(st.PendingBatches))
	gauge(d.pendingBytes, float64(st.PendingBytes))
	failed := 0.0
	if st.Failed != nil {
		failed = 1
	}
	gauge(d.failed, failed)
	pendingStorageMetrics(ch, db)
}

// pendingStorageMetrics is the place for what storage.DB does not expose
// yet (its branch adds them): a commit latency histogram
// (cim_storage_commit_seconds), sweeper errors
// (cim_storage_sweeper_errors_total), write errors by kind. Nothing is
// exported for them until storage has them: no made-up numbers.
func pendingStorageMetrics(ch chan<- prometheus.Metric, db *storage.DB) {}
