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
	// ErrWrite: a group failed to commit. The DB stays failed: Pebble's commit
	// pipeline cannot continue after a WAL error, so every later Commit
	// returns this error too, and the process should restart.
	ErrWrite = errors.New("storage: write failed")
	// ErrOpen: opening failed for a reason none of the above describe.
	ErrOpen = errors.New("storage: open failed")
	// ErrClosed: the DB was closed.
	ErrClosed = errors.New("storage: closed")
	// ErrBusy: the commit queue is over MaxPendingBytes. The batch was not
	// queued; the caller may retry or fail the operation.
	ErrBusy = errors.New("storage: busy, commit queue full")
	// ErrInvalidKey: a client id or topic is empty or contains U+0000.
	ErrInvalidKey = errors.New("storage: invalid key")
	// ErrInvalidRecord: a nil record.
	ErrInvalidRecord = errors.New("storage: invalid record")
	// ErrNotFound: GetSession found no session.
	ErrNotFound = errors.New("storage: not found")
	// ErrOptions: Options.Validate failed; the message names the field.
	ErrOptions = errors.New("storage: invalid options")
)

// DB is the broker's store. Commit and NewBatch are safe for concurrent use
// and never block on I/O; readers may do I/O and must run off event loops.
type DB struct {
	opts Options
	log  *slog.Logger
	pdb  *pebble.DB
	lock *pebble.Lock
	wo   *pebble.WriteOptions

	// q is the commit queue between callers of Commit and the committer.
	q struct {
		sync.Mutex
		pending []*Batch // FIFO; the committer takes a prefix as one group
		ops     int      // ops in pending
		bytes   int      // encoded bytes in pending, bounded by MaxPendingBytes
		wakeAt  int      // Commit wakes the committer once ops reaches this
		closed  bool
	}
	wake          chan struct{} // cap 1: "pending changed or closed"
	committerDone chan struct{}

	// idx mirrors queue sizes and session expiry in memory so caps and the
	// sweeper need no disk reads. Written only by the committer.
	idx     index
	scratch []byte // committer-only key buffer

	// failed holds the sticky error after a failed write (see ErrWrite).
	failed atomic.Pointer[error]

	// rmu orders readers before Close: Pebble panics on an iterator over a
	// closed DB. Readers hold it shared; Close takes it exclusively.
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
// wrapping ErrLocked, ErrCorrupt, ErrUnwritable, ErrDiskFull or ErrOpen.
// Open scans the session and queue keyspaces once to rebuild the in-memory
// queue index; it takes a fraction of a second per million queued messages.
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
		wo:            &pebble.WriteOptions{Sync: opts.Durability == Sync},
		wake:          make(chan struct{}, 1),
		committerDone: make(chan struct{}),
		sweeperStop:   make(chan struct{}),
		sweeperDone:   make(chan struct{}),
	}
	db.idx.init()
	if err := mkdirDurable(opts.FS, dir); err != nil {
		return nil, openError(dir, err)
	}
	db.lock, err = pebble.LockDirectory(dir, opts.FS)
	if err != nil {
		return nil, lockError(dir, err)
	}
	cache := pebble.NewCache(opts.CacheSize)
	defer cache.Unref() // the DB holds its own reference
	popts := &pebble.Options{
		FS:                          opts.FS,
		Lock:                        db.lock,
		Cache:                       cache,
		MemTableSize:                opts.MemTableSize,
		MemTableStopWritesThreshold: 4,
		FormatMajorVersion:          pebble.FormatNewest,
		Logger:                      pebbleLogger{db.log.With("component", "pebble")},
	}
	db.pdb, err = openPebble(dir, popts)
	if err != nil {
		db.lock.Close()
		return nil, openError(dir, err)
	}
	start := time.Now()
	if err := db.loadIndex(); err != nil {
		db.pdb.Close()
		db.lock.Close()
		return nil, err
	}
	db.log.Info("storage opened", "dir", dir, "durability", string(opts.Durability),
		"sessions", len(db.idx.sessions), "queued", db.idx.msgs, "index_build", time.Since(start))
	go db.runCommitter()
	if opts.SweepInterval > 0 {
		go db.runSweeper()
	} else {
		close(db.sweeperDone)
	}
	return db, nil
}

// openPebble contains a panic from Pebble's Fatalf (see pebbleLogger) so
// that a damaged store is an error, not a crash.
func openPebble(dir string, popts *pebble.Options) (pdb *pebble.DB, err error) {
	defer func() {
		if r := recover(); r != nil {
			pdb, err = nil, panicError(r)
		}
	}()
	return pebble.Open(dir, popts)
}

// Close drains the commit queue (every queued batch is committed and its
// done called), stops the sweeper and closes Pebble. Later calls return the
// first call's result.
func (db *DB) Close() error {
	db.closeOnce.Do(func() {
		db.q.Lock()
		db.q.closed = true
		db.q.Unlock()
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

func (db *DB) closePebble() (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = panicError(r)
		}
		if lerr := db.lock.Close(); err == nil && lerr != nil {
			err = lerr
		}
	}()
	if err := db.pdb.Close(); err != nil {
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
