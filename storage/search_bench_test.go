package storage

import (
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// BenchmarkSearchHistory measures SearchHistory over a store of
// CIM_STORAGE_SEARCH_MESSAGES history messages (default 1,000,000) of
// 40-120 bytes of chat text (one in ten with non-ASCII words), in 100
// conversations of equal size, on the real disk, flushed and compacted.
// The store is built once per process (it takes a while) and removed at
// the end. Cases:
//
//	miss/10conv    a word no message has, over 10 conversations: every message of them is read
//	miss/100conv   the same over all 100 conversations: all the messages
//	hit/100conv    a word in ~1% of the messages: stops after a page of 20 hits
//	unicode-hit/10conv   a non-ASCII keyword ("GRÖSSE", matching "größe") over 10 conversations
//	unicode-miss/10conv  "GRÖSSEN", which no message has: a full scan folding the non-ASCII ones
//
// Reported per search: ms, messages examined, MB of values read, MB of
// sstable blocks loaded (cache or disk).
func BenchmarkSearchHistory(b *testing.B) {
	dir, n := searchBenchStore(b)
	db, err := Open(dir, Options{Logger: quietLogger(), SweepInterval: -1, RetentionSweepInterval: -1})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	convs := make([]string, 100)
	for i := range convs {
		convs[i] = fmt.Sprintf("%d:%d", i, i+1000)
	}
	for _, tc := range []struct {
		name, kw string
		convs    []string
	}{
		{"miss/10conv", "zzyzx", convs[:10]},
		{"miss/100conv", "zzyzx", convs},
		{"hit/100conv", "meteor", convs},
		{"unicode-hit/10conv", "GRÖSSE", convs[:10]},
		{"unicode-miss/10conv", "GRÖSSEN", convs[:10]},
	} {
		b.Run(tc.name, func(b *testing.B) {
			q := SearchQuery{Conversations: tc.convs, Keyword: tc.kw}
			// One search first, untimed, so every case runs on a warm block
			// cache rather than on whatever the case before left in it.
			t0 := time.Now()
			if _, err := db.SearchHistory(q); err != nil {
				b.Fatal(err)
			}
			first := time.Since(t0)
			var scanned, bytesRead, blocks float64
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				res, err := db.SearchHistory(q)
				if err != nil {
					b.Fatal(err)
				}
				scanned += float64(res.Scanned)
				bytesRead += float64(res.BytesRead)
				blocks += float64(res.BlockBytes)
			}
			ops := float64(b.N)
			b.ReportMetric(b.Elapsed().Seconds()*1e3/ops, "ms/search")
			b.ReportMetric(scanned/ops, "msgs/search")
			b.ReportMetric(bytesRead/ops/1e6, "MB-read/search")
			b.ReportMetric(blocks/ops/1e6, "MB-blocks/search")
			b.ReportMetric(float64(first.Milliseconds()), "first-ms")
		})
	}
	_ = n
}

var searchStore struct {
	once sync.Once
	dir  string
	n    int
	err  error
}

// searchBenchStore builds the search benchmark's store once per process.
func searchBenchStore(b *testing.B) (string, int) {
	s := &searchStore
	s.once.Do(func() {
		s.n = 1_000_000
		if v, err := strconv.Atoi(os.Getenv("CIM_STORAGE_SEARCH_MESSAGES")); err == nil && v > 0 {
			s.n = v
		}
		s.dir, s.err = os.MkdirTemp("", "cim-search-bench-")
		if s.err != nil {
			return
		}
		start := time.Now()
		s.err = buildSearchStore(s.dir, s.n)
		b.Logf("built a store of %d history messages in %v", s.n, time.Since(start).Round(time.Second))
	})
	if s.err != nil {
		b.Fatal(s.err)
	}
	return s.dir, s.n
}

func buildSearchStore(dir string, n int) error {
	db, err := Open(dir, Options{Durability: Async, Logger: quietLogger(), SweepInterval: -1, RetentionSweepInterval: -1})
	if err != nil {
		return err
	}
	r := rand.New(rand.NewPCG(1, 1))
	words := strings.Fields("the a to and you is it of in that for on we can this be with are have at not what " +
		"meeting tomorrow lunch ok thanks see later good morning night call me when where how why yes no maybe " +
		"project deadline review deploy server client message push device battery update release coffee")
	rare := []string{"größe", "日本語", "Ärger", "café", "naïve"}
	now := time.Now().UnixMilli()
	var wg sync.WaitGroup
	var firstErr error
	var mu sync.Mutex
	done := func(err error) {
		if err != nil {
			mu.Lock()
			firstErr = err
			mu.Unlock()
		}
		wg.Done()
	}
	var sb strings.Builder
	for lo := 0; lo < n; lo += 1000 {
		bt := db.NewBatch()
		for i := lo; i < lo+1000 && i < n; i++ {
			sb.Reset()
			for sb.Len() < 40+r.IntN(80) {
				w := words[r.IntN(len(words))]
				switch {
				case r.IntN(100) == 0:
					w = "meteor"
				case r.IntN(60) == 0:
					w = rare[r.IntN(len(rare))]
				}
				sb.WriteString(w)
				sb.WriteByte(' ')
			}
			c := i % 100
			bt.PutHistory(fmt.Sprintf("%d:%d", c, c+1000), &Message{ID: uint64(i + 1), SenderID: uint64(c), SenderName: "user",
				Created: now - int64(n-i), Payload: []byte(sb.String())})
		}
		for {
			wg.Add(1)
			err := db.Commit(bt, done)
			if err == nil {
				break
			}
			wg.Done()
			if err != ErrBusy {
				return err
			}
			wg.Wait()
		}
	}
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	if err := db.pdb.Flush(); err != nil {
		return err
	}
	lo, hi := spaceBounds(spaceHistory)
	if err := db.pdb.Compact(lo, hi, true); err != nil {
		return err
	}
	return db.Close()
}
