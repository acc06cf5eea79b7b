package storage

import (
	"fmt"
	"log/slog"
	"math"
	"time"

	"github.com/cockroachdb/pebble/vfs"
)

// Durability says when a commit's done callback runs.
type Durability string

const (
	// Sync: done runs after the group's WAL write is fsynced. An acknowledged
	// write survives kill -9 and power loss.
	Sync Durability = "sync"
	// Async: done runs after the group is applied and handed to the WAL
	// writer, without waiting for fsync. Much cheaper per write, but a crash
	// loses the unsynced tail: a process kill can lose the last few
	// milliseconds of writes, a power loss whatever the OS had not written
	// back. Recovery still yields a consistent prefix of the groups.
	Async Durability = "async"
)

// QueueFullPolicy says what PutQueued does to a session queue at its cap.
type QueueFullPolicy string

const (
	// DropOldest deletes the oldest queued messages until the new one fits.
	DropOldest QueueFullPolicy = "drop-oldest"
	// RejectNew discards the new message and keeps the queue.
	RejectNew QueueFullPolicy = "reject-new"
)

// Options configure a DB. The zero value is usable: Open calls EnsureDefaults.
// For the limits, a negative value means "no limit" and zero means "default".
type Options struct {
	// Durability: Sync (default) or Async; see those constants for the tradeoff.
	Durability Durability

	// MaxBatchDelay bounds how long the committer lingers to let a group
	// grow. A group is started as soon as the committer is free (while one
	// group syncs, new writes gather into the next); the committer lingers
	// only when fewer writes are waiting than the previous group held, which
	// happens when the writers of that group are about to come back. An
	// isolated write on an idle store is never delayed. Default 200µs;
	// negative disables lingering.
	MaxBatchDelay time.Duration
	// MaxBatchOps caps the operations in one group (one Pebble batch, one
	// sync). Default 16384.
	MaxBatchOps int
	// MaxPendingBytes bounds the encoded bytes waiting for the committer.
	// Beyond it Commit returns ErrBusy instead of queueing. Default 64 MiB.
	MaxPendingBytes int

	// FS is the filesystem; nil means the OS disk. Tests use vfs.NewMem()
	// or vfs.NewStrictMem().
	FS vfs.FS
	// CacheSize is Pebble's block cache. Default 64 MiB.
	CacheSize int64
	// MemTableSize is Pebble's memtable size. Default 32 MiB: large enough
	// that a burst of queued messages acked soon after is deleted before it
	// is ever flushed to an sstable.
	MemTableSize uint64

	// QueueTTL is how long a queued message is kept. Default 7 days.
	QueueTTL time.Duration
	// MaxQueuedPerSession caps the messages queued for one session. Default 100000.
	MaxQueuedPerSession int
	// MaxQueuedBytesPerSession caps the encoded bytes queued for one
	// session. Default 64 MiB.
	MaxQueuedBytesPerSession int64
	// QueueFullPolicy: DropOldest (default) or RejectNew. Either way the
	// batch that hit the cap reports it (Batch.QueueEvents) and Stats
	// counts it.
	QueueFullPolicy QueueFullPolicy
	// SweepInterval is how often the sweeper removes queued messages past
	// QueueTTL or their own Expiry (from the in-memory index: cheap).
	// Default 1 minute; negative disables the background sweeper (DB.Sweep
	// still works).
	SweepInterval time.Duration
	// HistoryTTL is how long a history message is kept, counted from its
	// Created time. Default 30 days; negative keeps history forever.
	HistoryTTL time.Duration
	// DedupTTL is how long a dedup record (Batch.Dedup) answers for its
	// client message id. Default 24 hours.
	DedupTTL time.Duration
	// RetentionSweepInterval is how often the sweeper also scans the disk
	// for history past HistoryTTL and dedup records past DedupTTL (one seek
	// per conversation plus what expired, and one pass over the dedup
	// records). Default 10 minutes; negative disables it in the background.
	RetentionSweepInterval time.Duration
	// OnSweep, if set, is called from the sweeper goroutine after each
	// background sweep, once its deletes are durable. The broker drops its
	// in-memory copies of the queued messages listed in Expired. It may
	// block the sweeper (and Close, which waits for the sweeper) but
	// nothing else.
	OnSweep func(SweepResult)

	// RetryDelay is the first wait before reopening the store after a
	// failed write (Health reports the failure meanwhile); each failed
	// attempt doubles it up to MaxRetryDelay. Defaults 100ms and 10s.
	RetryDelay    time.Duration
	MaxRetryDelay time.Duration

	// Logger receives storage and Pebble messages. Default slog.Default().
	Logger *slog.Logger
	// Now is the clock for TTLs and record times. Default time.Now; tests
	// set it.
	Now func() time.Time
}

// Defaults used by EnsureDefaults.
const (
	DefaultMaxBatchDelay            = 200 * time.Microsecond
	DefaultMaxBatchOps              = 16384
	DefaultMaxPendingBytes          = 64 << 20
	DefaultCacheSize                = 64 << 20
	DefaultMemTableSize             = 32 << 20
	DefaultQueueTTL                 = 7 * 24 * time.Hour
	DefaultMaxQueuedPerSession      = 100000
	DefaultMaxQueuedBytesPerSession = 64 << 20
	DefaultSweepInterval            = time.Minute
	DefaultHistoryTTL               = 30 * 24 * time.Hour
	DefaultDedupTTL                 = 24 * time.Hour
	DefaultRetentionSweepInterval   = 10 * time.Minute
	DefaultRetryDelay               = 100 * time.Millisecond
	DefaultMaxRetryDelay            = 10 * time.Second
)

// EnsureDefaults fills zero fields with their defaults and returns o.
func (o *Options) EnsureDefaults() *Options {
	if o.Durability == "" {
		o.Durability = Sync
	}
	if o.MaxBatchDelay == 0 {
		o.MaxBatchDelay = DefaultMaxBatchDelay
	}
	if o.MaxBatchOps == 0 {
		o.MaxBatchOps = DefaultMaxBatchOps
	}
	if o.MaxPendingBytes == 0 {
		o.MaxPendingBytes = DefaultMaxPendingBytes
	}
	if o.FS == nil {
		o.FS = vfs.Default
	}
	if o.CacheSize == 0 {
		o.CacheSize = DefaultCacheSize
	}
	if o.MemTableSize == 0 {
		o.MemTableSize = DefaultMemTableSize
	}
	if o.QueueTTL == 0 {
		o.QueueTTL = DefaultQueueTTL
	}
	if o.MaxQueuedPerSession == 0 {
		o.MaxQueuedPerSession = DefaultMaxQueuedPerSession
	}
	if o.MaxQueuedBytesPerSession == 0 {
		o.MaxQueuedBytesPerSession = DefaultMaxQueuedBytesPerSession
	}
	if o.QueueFullPolicy == "" {
		o.QueueFullPolicy = DropOldest
	}
	if o.SweepInterval == 0 {
		o.SweepInterval = DefaultSweepInterval
	}
	if o.HistoryTTL == 0 {
		o.HistoryTTL = DefaultHistoryTTL
	}
	if o.DedupTTL == 0 {
		o.DedupTTL = DefaultDedupTTL
	}
	if o.RetentionSweepInterval == 0 {
		o.RetentionSweepInterval = DefaultRetentionSweepInterval
	}
	if o.RetryDelay == 0 {
		o.RetryDelay = DefaultRetryDelay
	}
	if o.MaxRetryDelay == 0 {
		o.MaxRetryDelay = DefaultMaxRetryDelay
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o
}

// Validate reports the first invalid field. It expects EnsureDefaults to have run.
func (o *Options) Validate() error {
	switch {
	case o.Durability != Sync && o.Durability != Async:
		return fmt.Errorf("%w: Durability %q (want %q or %q)", ErrOptions, o.Durability, Sync, Async)
	case o.QueueFullPolicy != DropOldest && o.QueueFullPolicy != RejectNew:
		return fmt.Errorf("%w: QueueFullPolicy %q (want %q or %q)", ErrOptions, o.QueueFullPolicy, DropOldest, RejectNew)
	case o.MaxBatchOps < 1:
		return fmt.Errorf("%w: MaxBatchOps %d (want >= 1)", ErrOptions, o.MaxBatchOps)
	case o.MaxPendingBytes < 1:
		return fmt.Errorf("%w: MaxPendingBytes %d (want >= 1)", ErrOptions, o.MaxPendingBytes)
	case o.CacheSize < 0:
		return fmt.Errorf("%w: CacheSize %d (want >= 0)", ErrOptions, o.CacheSize)
	case o.MemTableSize < 1<<20 || o.MemTableSize >= 4<<30:
		return fmt.Errorf("%w: MemTableSize %d (want 1 MiB to 4 GiB)", ErrOptions, o.MemTableSize)
	case o.DedupTTL < 0:
		return fmt.Errorf("%w: DedupTTL %v (want > 0)", ErrOptions, o.DedupTTL)
	case o.RetryDelay < 0 || o.MaxRetryDelay < o.RetryDelay:
		return fmt.Errorf("%w: RetryDelay %v, MaxRetryDelay %v (want 0 < RetryDelay <= MaxRetryDelay)", ErrOptions, o.RetryDelay, o.MaxRetryDelay)
	case o.FS == nil || o.Logger == nil || o.Now == nil:
		return fmt.Errorf("%w: FS, Logger and Now must be set (call EnsureDefaults)", ErrOptions)
	}
	return nil
}

// limitInt and limitInt64 turn the "negative means none" convention into a
// comparable bound (separate functions: a generic one cannot name the
// largest value of int on both 32- and 64-bit targets).
func limitInt(v int) int {
	if v < 0 {
		return math.MaxInt
	}
	return v
}

func limitInt64(v int64) int64 {
	if v < 0 {
		return math.MaxInt64
	}
	return v
}
