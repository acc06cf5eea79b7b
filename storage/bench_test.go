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
// BenchmarkCommit{Sync,Async}/inflight=N models the broker: GOMAXPROCS
// "event loops" that never block, serving N publishing clients between
// them, each client with one 64-byte QoS 1 message in flight (queued for
// its own offline session, acknowledged when done runs). msgs/s is the
// durable throughput, p99-µs the time from Commit to done, ops/group the
// group size.
func BenchmarkCommitSync(b *testing.B)  { benchCommit(b, Sync) }
func BenchmarkCommitAsync(b *testing.B) { benchCommit(b, Async) }

func benchCommit(b *testing.B, d Durability) {
	for _, inflight := range []int{1, 16, 256, 1024, 4096} {
		b.Run(fmt.Sprintf("inflight=%d", inflight), func(b *testing.B) {
			db, err := Open(b.TempDir(), Options{Durability: d, Logger: quietLogger(), SweepInterval: -1,
				MaxBatchDelay: benchDelay()})
			if err != nil {
				b.Fatal(err)
			}
			defer db.Close()
			loops := runtime.GOMAXPROCS(0)
			if inflight < loops {
				b.SetParallelism(1)
				loops = 1 // RunParallel still starts GOMAXPROCS goroutines; the others get no work
			}
			per := max(1, inflight/loops)
			payload := make([]byte, 64)
			var nextLoop atomic.Int64
			var mu sync.Mutex
			var lat []time.Duration
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				loop := nextLoop.Add(1)
				if loop > int64(loops) {
					return
				}
				acks := make(chan int, per) // client index, sent by done: never blocks
				ids := make([]string, per)
				seqs := make([]uint64, per)
				sent := make([]time.Time, per)
				dones := make([]func(error), per)
				for i := range per {
					ids[i] = mk(fmt.Sprintf("dev-%d-%d", loop, i))
					dones[i] = func(err error) {
						if err != nil {
							b.Error(err)
						}
						acks <- i
					}
				}
				my := make([]time.Duration, 0, 1024)
				publish := func(i int) bool {
					if !pb.Next() {
						return false
					}
					sent[i] = time.Now()
					bt := db.NewBatch()
					bt.PutQueued(ids[i], seqs[i], &Message{ID: seqs[i], Topic: "cim/u/x", Payload: payload, QoS: 1,
						From: "sender", Created: sent[i].UnixMilli()})
					seqs[i]++
					if err := db.Commit(bt, dones[i]); err != nil {
						b.Error(err)
						return false
					}
					return true
				}
				outstanding := 0
				for i := 0; i < per && publish(i); i++ {
					outstanding++
				}
				for outstanding > 0 {
					i := <-acks
					outstanding--
					my = append(my, time.Since(sent[i]))
					if publish(i) {
						outstanding++
					}
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
				b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
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
	key := mk("dev-1")
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if i%1024 == 0 {
			bt.reset()
		}
		bt.PutQueued(key, uint64(i), m)
	}
}

// BenchmarkRecovery is a restart: Open (which rebuilds the queue index),
// LoadSessions, then every queued message, either with one LoadQueues scan
// or with a LoadQueue per session. The store has
// CIM_STORAGE_RECOVERY_SESSIONS sessions (default 10000) with 10 queued
// 64-byte messages each; set it to 100000 for the 1M-message case.
func BenchmarkRecovery(b *testing.B) {
	sessions := 10000
	if v, err := strconv.Atoi(os.Getenv("CIM_STORAGE_RECOVERY_SESSIONS")); err == nil && v > 0 {
		sessions = v
	}
	const perSession = 10
	dir := b.TempDir()
	opts := Options{Durability: Async, Logger: quietLogger(), SweepInterval: -1}
	buildRecoveryStore(b, dir, opts, sessions, perSession)
	for _, oneScan := range []bool{true, false} {
		name := "LoadQueues"
		if !oneScan {
			name = "LoadQueue"
		}
		b.Run(name, func(b *testing.B) {
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
				if oneScan {
					err = db.LoadQueues(func(string, uint64, *Message) error { n++; return nil })
				} else {
					for _, id := range ids {
						if err = db.LoadQueue(mk(id), func(uint64, *Message) error { n++; return nil }); err != nil {
							break
						}
					}
				}
				if err != nil {
					b.Fatal(err)
				}
				if len(ids) != sessions || n != sessions*perSession {
					b.Fatalf("recovered %d sessions, %d messages", len(ids), n)
				}
				db.Close()
			}
			b.ReportMetric(float64(openDur.Milliseconds())/float64(b.N), "open-ms")
			b.ReportMetric(float64(sessions*perSession)*float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
		})
	}
}

func buildRecoveryStore(b testing.TB, dir string, opts Options, sessions, perSession int) {
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
				bt.PutQueued(mk(id), uint64(seq), &Message{ID: uint64(seq), Topic: "cim/u/" + id, Payload: payload, QoS: 1, Created: now})
			}
		}
		for {
			wg.Add(1)
			err := db.Commit(bt, func(err error) {
				if err != nil {
					b.Error(err)
				}
				wg.Done()
			})
			if err == nil {
				break
			}
			wg.Done()
			if err != ErrBusy {
				b.Fatal(err)
			}
			wg.Wait() // the queue is full: let it drain
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

// BenchmarkReadQueue is one page (100 messages of 64 bytes) of a queue the
// broker keeps only partly in memory: 100,000 queued for one session, the
// older half already acknowledged (deleted), pages read from the live half.
func BenchmarkReadQueue(b *testing.B) {
	db, err := Open(b.TempDir(), Options{Durability: Async, Logger: quietLogger(), SweepInterval: -1})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	key := mk("paged")
	payload := make([]byte, 64)
	const total = 100_000
	for lo := uint64(1); lo <= total; lo += 1000 {
		bt := db.NewBatch()
		for seq := lo; seq < lo+1000; seq++ {
			bt.PutQueued(key, seq, &Message{ID: seq, Topic: "cim/u/x", Payload: payload, QoS: 1, Created: 1})
		}
		if err := db.commitAndWait(bt); err != nil {
			b.Fatal(err)
		}
	}
	for lo := uint64(1); lo <= total/2; lo += 1000 {
		bt := db.NewBatch()
		for seq := lo; seq < lo+1000; seq++ {
			bt.DeleteQueued(key, seq)
		}
		if err := db.commitAndWait(bt); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	from := uint64(total / 2)
	for b.Loop() {
		n, err := db.ReadQueue(key, from, 100, func(uint64, *Message) error { return nil })
		if err != nil || n != 100 {
			b.Fatalf("ReadQueue = %d, %v", n, err)
		}
		if from += 100; from > total-100 {
			from = total / 2
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/100, "ns/msg")
}
