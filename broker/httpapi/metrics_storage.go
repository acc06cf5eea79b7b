package httpapi

import (
	"github.com/cimgo/cim/storage"
	"github.com/prometheus/client_golang/prometheus"
)

// Storage metrics: everything storage.DB.Stats exposes.
type storageDescs struct {
	groups, batches, ops, busy, dropped, rejected, expiredMsgs, expiredHistory     *prometheus.Desc
	sessions, queuedMsgs, queuedBytes, pendingBatches, pendingBytes, failed        *prometheus.Desc
	writeErrors, failures, recoveries, unavailable, sweeps, registered, duplicates *prometheus.Desc
	commitLatency, applyLatency, groupOps                                          *prometheus.Desc
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
		expiredHistory: d("cim_storage_sweeper_expired_history_total", "History messages deleted by retention (history_ttl)."),
		writeErrors:    d("cim_storage_write_errors_total", "Groups that failed to commit (disk full, I/O error)."),
		failures:       d("cim_storage_failures_total", "Times the store went from writable to failing."),
		recoveries:     d("cim_storage_recoveries_total", "Times the store reopened itself and became writable again."),
		unavailable:    d("cim_storage_unavailable_total", "Commits refused while the store was recovering."),
		sweeps:         d("cim_storage_sweeps_total", "Sweeps run (queue TTL, message expiry, retention)."),
		registered:     d("cim_storage_accounts_registered_total", "Accounts created."),
		duplicates:     d("cim_storage_dedup_duplicates_total", "Sends recognised as resends and not stored again."),
		commitLatency:  d("cim_storage_commit_seconds", "Time from Commit to done per batch (its durability included)."),
		applyLatency:   d("cim_storage_apply_seconds", "Time to write one group to Pebble (with its fsync under durability sync)."),
		groupOps:       d("cim_storage_group_ops", "Operations per committed group."),
		sessions:       d("cim_storage_sessions", "Persistent sessions stored."),
		queuedMsgs:     d("cim_storage_queued_messages", "Messages in all stored session queues (queue depth)."),
		queuedBytes:    d("cim_storage_queued_bytes", "Encoded bytes of the stored queued messages."),
		pendingBatches: d("cim_storage_commit_queue_batches", "Batches waiting for the committer (commit queue depth)."),
		pendingBytes:   d("cim_storage_commit_queue_bytes", "Encoded bytes waiting for the committer."),
		failed:         d("cim_storage_write_failed", "1 once a write failed and the store refuses writes (see the log), else 0."),
	}
}

func (d *storageDescs) describe(ch chan<- *prometheus.Desc) {
	for _, x := range []*prometheus.Desc{d.groups, d.batches, d.ops, d.busy, d.dropped, d.rejected, d.expiredMsgs, d.expiredHistory,
		d.sessions, d.queuedMsgs, d.queuedBytes, d.pendingBatches, d.pendingBytes, d.failed,
		d.writeErrors, d.failures, d.recoveries, d.unavailable, d.sweeps, d.registered, d.duplicates,
		d.commitLatency, d.applyLatency, d.groupOps} {
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
	counter(d.expiredHistory, st.ExpiredHistory)
	counter(d.writeErrors, st.WriteErrors)
	counter(d.failures, st.Failures)
	counter(d.recoveries, st.Recoveries)
	counter(d.unavailable, st.Unavailable)
	counter(d.sweeps, st.Sweeps)
	counter(d.registered, st.Registered)
	counter(d.duplicates, st.Duplicates)
	histogram := func(desc *prometheus.Desc, h storage.Histogram) {
		buckets := make(map[float64]uint64, len(h.Bounds))
		for i, b := range h.Bounds {
			buckets[b] = h.Counts[i]
		}
		ch <- prometheus.MustNewConstHistogram(desc, h.Count, h.Sum, buckets)
	}
	histogram(d.commitLatency, st.CommitLatency)
	histogram(d.applyLatency, st.ApplyLatency)
	histogram(d.groupOps, st.GroupOps)
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
}
