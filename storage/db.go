package storage

import (
	"errors"
	"fmt"
	iofs "io/fs"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cockroachdb/pebble"
	"github.com/cockroachdb/pebble/bloom"
	"github.com/cockroachdb/pebble/vfs"
)

// Errors. Open and Commit wrap them with %w; check with errors.Is.
var (
	// ErrLocked: another process (or another DB in this process) holds the data dir.
	ErrLocked = errors.New("storage: data dir locked by another process")
	// ErrCorrupt: the store's files or one of its records failed to decode.
	ErrCorrupt = errors.New("storage: data corrupt")
	// ErrUnwritable: the data dir cannot be created or written (permissions,
	// read-only filesystem, a file in the way).
	ErrUnwritable = errors.New("storage: data dir not writable")
	// ErrDiskFull accompanies ErrWrite when the cause was ENOSPC.
	ErrDiskFull = errors.New("storage: disk full")
	// ErrWrite: a group failed to commit (its batches' done get it). The
	// store then recovers by itself (see ErrUnavailable).
	ErrWrite = errors.New("storage: write failed")
	// ErrUnavailable: the store is recovering from a failed write: Commit
	// and the readers refuse at once until it has reopened. The error also
	// wraps the failure's cause (ErrWrite, ErrDiskFull). Health returns it.
	ErrUnavailable = errors.New("storage: unavailable after a failed write, retrying")
	// ErrVersion: the data dir was written by a newer version of cim.
	ErrVersion = errors.New("storage: data dir from a newer version")
	// ErrOpen: opening failed for a reason none of the above describe.
	ErrOpen = errors.New("storage: open failed")
	// ErrClosed: the DB was closed.
	ErrClosed = errors.New("storage: closed")
	// ErrBusy: the commit queue is over MaxPendingBytes. The batch was not
	// queued; the caller may retry or fail the operation.
	ErrBusy = errors.New("storage: busy, commit queue full")
	// ErrInvalidKey: a key component (session key, topic, name,
	// conversation) is empty, too long, contains U+0000, or a session key
	// was not built by SessionKey.
	ErrInvalidKey = errors.New("storage: invalid key")
	// ErrInvalidRecord: a nil or unusable record.
	ErrInvalidRecord = errors.New("storage: invalid record")
	// ErrInvalidArgument: a bad query (a page size, too many conversations).
	ErrInvalidArgument = errors.New("storage: invalid argument")
	// ErrNotFound: a Get found no record.
	ErrNotFound = errors.New("storage: not found")
	// ErrOptions: Options.Validate failed; the message names the field.
	ErrOptions = errors.New("storage: invalid options")
)

// commitQueue is the queue between callers of Commit and the committer.
type commitQueue struct {
	sync.Mutex
	pending []*Batch // FIFO; the committer takes a prefix as one group
	ops     int      // ops in pending
	bytes   int      // encoded bytes in pending, bounded by MaxPendingBytes
	wakeAt  int      // Commit wakes the committer once ops reaches this
	closed  bool
}

// DB is the broker's store. Commit and NewBatch are safe for concurrent use
// and never block on I/O; readers may do I/O and must run off event loops.
type DB struct {
	opts Options
	log  *slog.Logger
	dir  string
	lock *pebble.Lock
	wo   *pebble.WriteOptions
	t0   time.Time // monotonic base of commit timestamps

	// pdb is written by the committer while it reopens the store
	// (health.go), under rmu held exclusively; readers hold rmu shared.
	// nil while the store is down.
	pdb *pebble.DB

	q             commitQueue
	wake          chan struct{} // cap 1: "pending changed or closed"
	closing       chan struct{} // closed by Close: ends a recovery wait
	committerDone chan struct{}

	// idx mirrors queue sizes and the session set in memory so caps and the
	// sweeper need no disk reads. Written only by the committer.
	idx index
	// Committer-only state.
	scratch  []byte               // key buffer
	nextUser uint64               // next user id to assign (m␀next-user)
	ov       map[string]ovEntry   // writes of decided ops in the current group
	marks    map[string]dedupMark // committer only: dedup marks read or written (dedup.go)
	lat      []int64              // commit latencies of the current group, ns

	// failed is non-nil while the store is failing (health.go): Commit and
	// readers refuse with it. bgErr is a failure Pebble reported from one
	// of its own goroutines, for the committer to act on.
	failed atomic.Pointer[error]
	bgErr  atomic.Pointer[error]
	health healthState // REQUIRES: committer

	// rmu orders readers before Close and recovery: Pebble panics on an
	// iterator over a closed DB. Readers hold it shared; Close and the
	// recovery's reopen take it exclusively.
	rmu     sync.RWMutex
	rclosed bool // REQUIRES: rmu held

	sweeperStop chan struct{}
	sweeperDone chan struct{}
	closeOnce   sync.Once
	closeErr    error

	batches sync.Pool // *Batch, recycled after done
	st      counters
}

// Open opens (creating if needed) the store in dir. It fails with an error
// wrapping ErrLocked, ErrCorrupt, ErrUnwritable, ErrDiskFull, ErrVersion or
// ErrOpen. A store written by an earlier version is migrated first (see
// doc.go). Open scans the session and queue keyspaces once to rebuild the
// in-memory queue index; it takes a fraction of a second per million
// queued messages.
func Open(dir string, opts Options) (db *DB, err error) {
	opts.EnsureDefaults()
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	if dir == "" {
		return nil, fmt.Errorf("%w: empty data dir", ErrOptions)
	}
	db = &DB{
		opts:          opts,
		log:           opts.Logger.With("component", "storage"),
		dir:           dir,
		wo:            &pebble.WriteOptions{Sync: opts.Durability == Sync},
		t0:            time.Now(),
		wake:          make(chan struct{}, 1),
		closing:       make(chan struct{}),
		committerDone: make(chan struct{}),
		sweeperStop:   make(chan struct{}),
		sweeperDone:   make(chan struct{}),
		ov:            make(map[string]ovEntry),
		marks:         make(map[string]dedupMark),
	}
	db.idx.init()
	if err := mkdirDurable(opts.FS, dir); err != nil {
		return nil, openError(dir, err)
	}
	db.lock, err = pebble.LockDirectory(dir, opts.FS)
	if err != nil {
		return nil, lockError(dir, err)
	}
	start := time.Now()
	db.pdb, err = db.openPebble()
	if err != nil {
		db.lock.Close()
		return nil, openError(dir, err)
	}
	if err := db.loadState(db.pdb); err != nil {
		db.pdb.Close()
		db.lock.Close()
		return nil, err
	}
	db.log.Info("storage opened", "dir", dir, "durability", string(opts.Durability),
		"sessions", len(db.idx.sessions), "queued", db.idx.msgs, "open_ms", time.Since(start).Milliseconds())
	go db.runCommitter()
	if opts.SweepInterval > 0 || opts.RetentionSweepInterval > 0 {
		go db.runSweeper()
	} else {
		close(db.sweeperDone)
	}
	return db, nil
}

// openPebble opens Pebble on db.dir with the lock db holds. It contains a
// panic from Pebble's Fatalf (see pebbleLogger) so that a damaged store is
// an error, not a crash.
func (db *DB) openPebble() (pdb *pebble.DB, err error) {
	cache := pebble.NewCache(db.opts.CacheSize)
	defer cache.Unref() // the DB holds its own reference
	levels := make([]pebble.LevelOptions, 7)
	for i := range levels {
		// Bloom filters make the committer's lookups of absent keys (a new
		// name, a new dedup id) cheap once they are in sstables.
		levels[i].FilterPolicy = bloom.FilterPolicy(10)
	}
	popts := &pebble.Options{
		FS:                          db.opts.FS,
		Lock:                        db.lock,
		Cache:                       cache,
		MemTableSize:                db.opts.MemTableSize,
		MemTableStopWritesThreshold: 4,
		FormatMajorVersion:          pebble.FormatNewest,
		Levels:                      levels,
		Logger:                      pebbleLogger{db.log.With("component", "pebble")},
		EventListener: &pebble.EventListener{
			BackgroundError: db.backgroundError,
		},
	}
	defer func() {
		if r := recover(); r != nil {
			pdb, err = nil, panicError(r)
		}
	}()
	return pebble.Open(db.dir, popts)
}

// Close drains the commit queue (every queued batch is committed and its
// done called), stops the sweeper and closes Pebble. Later calls return the
// first call's result.
func (db *DB) Close() error {
	db.closeOnce.Do(func() {
		db.q.Lock()
		db.q.closed = true
		db.q.Unlock()
		close(db.closing)
		db.signal()
		<-db.committerDone
		close(db.sweeperStop)
		<-db.sweeperDone
		db.rmu.Lock()
		db.rclosed = true
		db.rmu.Unlock()
		db.closeErr = db.closePebble()
	})
	return db.closeErr
}

// closePebble closes Pebble (if it is open) and releases the lock.
func (db *DB) closePebble() (err error) {
	defer func() {
		if lerr := db.lock.Close(); err == nil && lerr != nil {
			err = lerr
		}
	}()
	if db.pdb == nil {
		return nil
	}
	err = closeQuietly(db.pdb)
	db.pdb = nil
	return err
}

// closeQuietly closes pdb, containing a panic from Pebble.
func closeQuietly(pdb *pebble.DB) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = panicError(r)
		}
	}()
	if err := pdb.Close(); err != nil {
		return fmt.Errorf("storage: close: %w", err)
	}
	return nil
}

// mkdirDurable creates dir and its missing parents and syncs the parent of
// each directory it created: without that, a crash soon after the first
// start could lose the data dir's own directory entry, and with it every
// acknowledged write. (Pebble syncs dir itself for the files inside.)
func mkdirDurable(fs vfs.FS, dir string) error {
	var created []string
	for p := dir; ; p = fs.PathDir(p) {
		if _, err := fs.Stat(p); err == nil || !errors.Is(err, iofs.ErrNotExist) {
			break
		}
		created = append(created, p)
		if fs.PathDir(p) == p {
			break
		}
	}
	if err := fs.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, p := range created {
		d, err := fs.OpenDir(fs.PathDir(p))
		if err != nil {
			return err
		}
		err = d.Sync()
		d.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

// lockError classifies a failure to take the directory lock. fcntl reports a
// lock held by another process as EAGAIN or EACCES (a bare errno), and Pebble
// reports one held in this process as "lock held by current process"; a
// failure to create the LOCK file comes as a *fs.PathError.
func lockError(dir string, err error) error {
	var pe *iofs.PathError
	if !errors.As(err, &pe) && (errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EACCES) ||
		strings.Contains(err.Error(), "lock held")) {
		return fmt.Errorf("%w: %s: %w", ErrLocked, dir, err)
	}
	return openError(dir, err)
}

func openError(dir string, err error) error {
	sentinel := ErrOpen
	switch {
	case pebble.IsCorruptionError(err):
		sentinel = ErrCorrupt
	case errors.Is(err, syscall.ENOSPC):
		sentinel = ErrDiskFull
	case errors.Is(err, iofs.ErrPermission), errors.Is(err, syscall.EROFS),
		errors.Is(err, syscall.ENOTDIR), errors.Is(err, syscall.EEXIST):
		sentinel = ErrUnwritable
	}
	return fmt.Errorf("%w: %s: %w", sentinel, dir, err)
}

// pebbleLogger routes Pebble's log lines to slog. Pebble's own logger calls
// os.Exit in Fatalf; ours panics with a pebbleFatal instead, which the
// commit path and Open recover into errors. A Fatalf on one of Pebble's
// background goroutines still ends the process, as it would have anyway.
type pebbleLogger struct{ l *slog.Logger }

func (p pebbleLogger) Infof(format string, args ...any) {
	p.l.Debug(fmt.Sprintf(format, args...))
}

func (p pebbleLogger) Fatalf(format string, args ...any) {
	f := pebbleFatal{msg: fmt.Sprintf(format, args...)}
	for _, a := range args {
		if err, ok := a.(error); ok {
			f.cause = err
			break
		}
	}
	p.l.Error("pebble fatal error", "err", f.msg)
	panic(f)
}

type pebbleFatal struct {
	msg   string
	cause error
}

func (f pebbleFatal) Error() string { return "pebble: " + f.msg }
func (f pebbleFatal) Unwrap() error { return f.cause }

func panicError(r any) error {
	if err, ok := r.(error); ok {
		return err
	}
	return fmt.Errorf("pebble panic: %v", r)
}
