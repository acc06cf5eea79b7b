package broker

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/cimgo/cim/storage"
)

// TestRecoveryTime measures how long a node takes to serve again over a data
// dir holding CIM_RECOVERY_SESSIONS persistent sessions (default 100,000)
// with 10 queued messages each (1M). It is a measurement, not a check: it
// runs only with CIM_RECOVERY=1 (make bench-recovery) and logs the time.
func TestRecoveryTime(t *testing.T) {
	if os.Getenv("CIM_RECOVERY") != "1" {
		t.Skip("set CIM_RECOVERY=1 to measure recovery time")
	}
	sessions := 100000
	if v, err := strconv.Atoi(os.Getenv("CIM_RECOVERY_SESSIONS")); err == nil {
		sessions = v
	}
	const perSession = 10
	dir := t.TempDir()
	db, err := storage.Open(dir, storage.Options{Durability: storage.Async, Logger: startServerLogger()})
	if err != nil {
		t.Fatal(err)
	}
	payload := make([]byte, 64)
	fill := time.Now()
	done := make(chan error, sessions)
	for i := range sessions {
		b := db.NewBatch()
		id := fmt.Sprintf("device-%06d", i)
		b.PutSession(&storage.Session{ClientID: id, Protocol: storage.ProtocolMQTT, Version: 4,
			ExpiryInterval: storage.NeverExpire, NextSeq: perSession + 1, DisconnectedAt: time.Now().UnixMilli(),
			Subs: []storage.Sub{{Filter: "devices/" + id + "/cmd", QoS: 1}}})
		for seq := uint64(1); seq <= perSession; seq++ {
			b.PutQueued(mqttKey(id).storeKey(), seq, &storage.Message{Topic: "devices/" + id + "/cmd", Payload: payload, QoS: 1, Created: time.Now().UnixMilli()})
		}
		for {
			err := db.Commit(b, func(err error) { done <- err })
			if err == nil {
				break
			}
			time.Sleep(time.Millisecond) // ErrBusy: let the committer catch up
		}
	}
	for range sessions {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	t.Logf("filled %d sessions, %d queued messages in %v", sessions, sessions*perSession, time.Since(fill).Round(time.Millisecond))

	start := time.Now()
	db, err = storage.Open(dir, storage.Options{Logger: startServerLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	opened := time.Since(start)
	s, err := New(Options{MQTTAddr: "127.0.0.1:0", Store: db, SysInterval: -1, Logger: startServerLogger()})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	serving := time.Since(start)
	defer s.Shutdown(context.Background())
	if got := s.Stats().Sessions; got != int64(sessions) {
		t.Fatalf("recovered %d sessions, want %d", got, sessions)
	}
	t.Logf("RECOVERY sessions=%d queued=%d storage_open=%v serving_after=%v", sessions, sessions*perSession,
		opened.Round(time.Millisecond), serving.Round(time.Millisecond))
}
