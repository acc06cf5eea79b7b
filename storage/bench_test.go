package storage

import (
	"fmt"
	"os"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Benchmarks write to the real disk (b.TempDir), because the point is the
// cost of fsync shared by a group. Run:
//
//	go test -run '^$' -bench . -benchmem ./storage
//
// BenchmarkCommit{Sync,Async}/writers=N: N goroutines, each an offline
// session's publisher that waits for its done before the next message (a
// client with one QoS 1 message in flight). Each op is one 64-byte QoS 1
// message queued for one session. msgs/s is the durable throughput,
// p99-µs the time from Commit to done, ops/group the group size.
func BenchmarkCommitSync(b *testing.B)  { benchCommit(b, Sync) }
func BenchmarkCommitAsync(b *testing.B) { benchCommit(b, Async) }

func benchCommit(b *testing.B, d Durability) {
	for _, writers := range []int{1, 16, 256, 1024} {
		b.Run(fmt.Sprintf("writers=%d", writers), func(b *testing.B) {
			db, err := Open(b.TempDir(), Options{Durability: d, Logger: quietLogger(), SweepInterval: -1, MaxBatchDelay: benchDelay()})
			if err != nil {
				b.Fatal(err)
			}
			defer db.Close()
			payload := make([]byte, 64)
			var next atomic.Int64
			var mu sync.Mutex
			var lat []time.Duration
			b.SetParallelism(max(1, writers/runtime.GOMAXPROCS(0)))
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				id := "dev-" + strconv.FormatInt(next.Add(1), 10)
				ch := make(chan error, 1)
				done := func(err error) { ch <- err }
				var my []time.Duration
				for seq := uint64(0); pb.Next(); seq++ {
					t0 := time.Now()
					bt := db.NewBatch()
					bt.PutQueued(id, seq, &Message{ID: seq, Topic: "cim/u/" + id, Payload: payload, QoS: 1,
						From: "sender", Created: t0.UnixMilli()})
					if err := db.Commit(bt, done); err != nil {
						b.Error(err)
						return
					}
					if err := <-ch; err != nil {
						b.Error(err)
						return
					}
					my = append(my, time.Since(t0))
				}
				mu.Lock()
				lat = append(lat, my...)
				mu.Unlock()
			})
			elapsed := time.Since(start)
			b.StopTimer()
			st := db.Stats()
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "msgs/s")
			b.ReportMetric(float64(st.Ops)/float64(max(st.Groups, 1)), "ops/group")
			if len(lat) > 0 {
				slices.Sort(lat)
				b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
			}
		})
	}
}

// BenchmarkBatchPutQueued is the caller-side cost of one queued message:
// the key and msgpack encoding done on the event loop.
func BenchmarkBatchPutQueued(b *testing.B) {
	db, _ := openMem(b, nil)
	m := &Message{ID: 1, Topic: "cim/u/alice", Payload: make([]byte, 64), QoS: 1, From: "bob", Created: 1700000000000}
	bt := db.NewBatch()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if i%1024 == 0 {
			bt.reset()
		}
		bt.PutQueued("dev-1", uint64(i), m)
	}
}

// BenchmarkRecovery is a restart: Open (rebuilding the queue index), then
// LoadSessions and LoadQueue for every session, as the broker does. The
// store has CIM_STORAGE_RECOVERY_SESSIONS sessions (default 10000) with 10
// queued 64-byte messages each; set it to 100000 for the 1M-message case.
func BenchmarkRecovery(b *testing.B) {
	sessions := 10000
	if v, err := strconv.Atoi(os.Getenv("CIM_STORAGE_RECOVERY_SESSIONS")); err == nil && v > 0 {
		sessions = v
	}
	const perSession = 10
	dir := b.TempDir()
	opts := Options{Durability: Async, Logger: quietLogger(), SweepInterval: -1}
	buildRecoveryStore(b, dir, opts, sessions, perSession)
	b.ReportAllocs()
	var openDur time.Duration
	for b.Loop() {
		t0 := time.Now()
		db, err := Open(dir, opts)
		if err != nil {
			b.Fatal(err)
		}
		openDur += time.Since(t0)
		var ids []string
		if err := db.LoadSessions(func(s *Session) error { ids = append(ids, s.ClientID); return nil }); err != nil {
			b.Fatal(err)
		}
		n := 0
		for _, id := range ids {
			if err := db.LoadQueue(id, func(uint64, *Message) error { n++; return nil }); err != nil {
				b.Fatal(err)
			}
		}
		if len(ids) != sessions || n != sessions*perSession {
			b.Fatalf("recovered %d sessions, %d messages", len(ids), n)
		}
		db.Close()
	}
	b.ReportMetric(float64(openDur.Milliseconds())/float64(b.N), "open-ms")
	b.ReportMetric(float64(sessions*perSession)*float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}

func buildRecoveryStore(b *testing.B, dir string, opts Options, sessions, perSession int) {
	db, err := Open(dir, opts)
	if err != nil {
		b.Fatal(err)
	}
	payload := make([]byte, 64)
	now := time.Now().UnixMilli()
	var wg sync.WaitGroup
	for lo := 0; lo < sessions; lo += 500 {
		bt := db.NewBatch()
		for i := lo; i < lo+500 && i < sessions; i++ {
			id := fmt.Sprintf("dev-%07d", i)
			bt.PutSession(&Session{ClientID: id, Protocol: ProtocolMQTT, Version: 5, ExpiryInterval: NeverExpire,
				DisconnectedAt: now, Subs: []Sub{{Filter: "cim/u/" + id, QoS: 1}, {Filter: "cim/all", QoS: 1}}})
			for seq := 0; seq < perSession; seq++ {
				bt.PutQueued(id, uint64(seq), &Message{ID: uint64(seq), Topic: "cim/u/" + id, Payload: payload, QoS: 1, Created: now})
			}
		}
		wg.Add(1)
		for db.Commit(bt, func(error) { wg.Done() }) == ErrBusy {
			wg.Wait()
		}
	}
	wg.Wait()
	if err := db.Close(); err != nil {
		b.Fatal(err)
	}
}

func benchDelay() time.Duration {
	d, _ := time.ParseDuration(os.Getenv("CIM_STORAGE_BATCH_DELAY"))
	return d
}
