package broker

import (
	"bytes"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cimgo/cim/storage"
	"github.com/cockroachdb/pebble/vfs"
	"github.com/cockroachdb/pebble/vfs/errorfs"
	"github.com/mochi-mqtt/server/v2/packets"
)

// syncBuffer is a log sink tests can read while the broker writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// A failed disk write is not sticky: while the disk is full, QoS 1
// publishes to a persistent subscriber are refused (v5 PUBACK 0x80, never
// acknowledged), logged once, not once per publish; once space is back the
// broker accepts and acknowledges again by itself, and nothing it
// acknowledged is lost. Before, every publish failed until a restart and
// each failure logged a line.
func TestStoreFailureIsNotSticky(t *testing.T) {
	var full atomic.Bool
	fs := errorfs.Wrap(vfs.NewMem(), errorfs.InjectorFunc(func(op errorfs.Op, path string) error {
		if full.Load() && op.OpKind() == errorfs.OpKindWrite {
			return &os.PathError{Op: "write", Path: path, Err: syscall.ENOSPC}
		}
		return nil
	}))
	logs := &syncBuffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	db, err := storage.Open("data", storage.Options{FS: fs, SweepInterval: -1, Logger: log, RetryDelay: 20 * time.Millisecond, MaxRetryDelay: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	s := startServer(t, Options{Store: db, Logger: log})
	subscribeOffline(t, s, "keeper", "disk/q")
	pub := dialRaw(t, s)
	pub.connect5("publisher", true, packets.Properties{})
	publish := func(pid uint16) byte {
		pub.publish("disk/q", []byte{byte(pid)}, 1, pid, false, packets.Properties{})
		return pub.expect(packets.Puback).ReasonCode
	}
	if rc := publish(1); rc != 0 {
		t.Fatalf("before the failure: PUBACK %#x", rc)
	}
	full.Store(true)
	refused := 0
	for pid := uint16(2); pid < 12; pid++ {
		if rc := publish(pid); rc == packets.ErrUnspecifiedError.Code {
			refused++
		}
	}
	if refused == 0 {
		t.Fatal("no publish was refused while the disk was full")
	}
	full.Store(false)
	var acked []byte
	acked = append(acked, 1)
	waitE2E(t, "publishes acknowledged again", func() bool {
		pid := uint16(100 + len(acked))
		if publish(pid) == 0 {
			acked = append(acked, byte(pid))
			return true
		}
		return false
	})
	if n := strings.Count(logs.String(), "storage write failed"); n != 1 {
		t.Errorf("%d failure lines logged, want 1 (the rest counted: %d)", n, s.Stats().StoreErrors)
	}
	if !strings.Contains(logs.String(), "storage writable again") {
		t.Error("recovery not logged")
	}
	// Whatever was acknowledged reaches the subscriber.
	sub := dialRaw(t, s)
	sub.connect(4, "keeper", false, 0)
	var got []byte
	for {
		p, err := sub.tryRead(quiet)
		if err != nil {
			break
		}
		got = append(got, p.Payload...)
		sub.ack(packets.Puback, p.PacketID)
	}
	for _, a := range acked {
		if !bytes.Contains(got, []byte{a}) {
			t.Errorf("acknowledged message %d not delivered (got %v)", a, got)
		}
	}
}
