package storage

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/text/cases"
)

func hmsg(c *fakeClock, id uint64, body string) *Message {
	return &Message{ID: id, SenderID: 1, SenderName: "alice", Created: c.UnixMilli(), Payload: []byte(body)}
}

func TestHistoryPaging(t *testing.T) {
	db, c := openMem(t, nil)
	mustCommit(t, db, func(b *Batch) {
		for id := uint64(1); id <= 100; id++ {
			b.PutHistory("1:2", hmsg(c, id, fmt.Sprint(id)), 1, 2)
			b.PutHistory("1:2x", hmsg(c, id, "neighbour")) // a name that extends "1:2"
		}
		b.PutHistory("g/devs", hmsg(c, 1000, "group"), 3)
	})
	page := func(before uint64, max int) []uint64 {
		var ids []uint64
		n, err := db.LoadHistory("1:2", before, max, func(m *Message) error {
			if string(m.Payload) != fmt.Sprint(m.ID) || m.SenderName != "alice" || m.SenderID != 1 {
				t.Fatalf("message %+v", m)
			}
			ids = append(ids, m.ID)
			return nil
		})
		if err != nil || n != len(ids) {
			t.Fatalf("LoadHistory(%d, %d) = %d, %v", before, max, n, err)
		}
		return ids
	}
	if got := page(0, 3); !reflect.DeepEqual(got, []uint64{100, 99, 98}) {
		t.Fatalf("newest page %v", got)
	}
	if got := page(98, 3); !reflect.DeepEqual(got, []uint64{97, 96, 95}) {
		t.Fatalf("page before 98: %v", got)
	}
	if got := page(3, 10); !reflect.DeepEqual(got, []uint64{2, 1}) {
		t.Fatalf("oldest page %v", got)
	}
	if got := page(1, 10); len(got) != 0 {
		t.Fatalf("before the oldest: %v", got)
	}
	if _, err := db.LoadHistory("1:2", 0, 0, func(*Message) error { return nil }); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("max 0: %v", err)
	}
	for u, want := range map[uint64][]string{1: {"1:2"}, 2: {"1:2"}, 3: {"g/devs"}, 4: nil} {
		if got, err := db.UserConversations(u); err != nil || !reflect.DeepEqual(got, want) {
			t.Fatalf("UserConversations(%d) = %v, %v", u, got, err)
		}
	}
	b := db.NewBatch()
	b.PutHistory("1:2", &Message{Payload: []byte("no id")})
	if err := db.Commit(b, nil); !errors.Is(err, ErrInvalidRecord) {
		t.Fatalf("PutHistory without an id: %v", err)
	}
	mustCommit(t, db, func(b *Batch) { b.DeleteHistory("1:2", 100) })
	if got := page(0, 1); !reflect.DeepEqual(got, []uint64{99}) {
		t.Fatalf("after DeleteHistory: %v", got)
	}
}

func TestHistoryRetention(t *testing.T) {
	db, c := openMem(t, func(o *Options) { o.HistoryTTL = time.Hour })
	id := uint64(0)
	put := func(conv string, n int) {
		mustCommit(t, db, func(b *Batch) {
			for range n {
				id++
				b.PutHistory(conv, hmsg(c, id, "x"))
			}
		})
	}
	put("a", 5)
	put("b", 3)
	mustCommit(t, db, func(b *Batch) { b.PutHistory("c", &Message{ID: 1, Payload: []byte("timeless")}) }) // no Created: kept
	c.Add(40 * time.Minute)
	put("a", 2)
	put("d", 1)
	c.Add(30 * time.Minute) // the first batches are 70 min old, the later 30
	res, err := db.Sweep()
	if err != nil || !res.Retention || res.ExpiredHistory != 8 {
		t.Fatalf("sweep = %+v, %v", res, err)
	}
	count := func(conv string) int {
		n, err := db.LoadHistory(conv, 0, 1000, func(*Message) error { return nil })
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	for conv, want := range map[string]int{"a": 2, "b": 0, "c": 1, "d": 1} {
		if got := count(conv); got != want {
			t.Fatalf("%s holds %d after the sweep, want %d", conv, got, want)
		}
	}
	c.Add(time.Hour)
	if res, _ := db.Sweep(); res.ExpiredHistory != 3 {
		t.Fatalf("second sweep = %+v", res)
	}
	if st := db.Stats(); st.ExpiredHistory != 11 || st.Sweeps != 2 {
		t.Fatalf("stats %+v", st)
	}
	if count("c") != 1 {
		t.Fatal("a message without Created expired")
	}
}

// naiveSearch is the specification of SearchHistory: every message of the
// conversations whose folded payload contains the folded keyword, newest
// first.
func naiveSearch(all map[string][]*Message, convs []string, kw string) []uint64 {
	fold := func(s string) string { return cases.Fold().String(s) }
	var ids []uint64
	for _, c := range convs {
		for _, m := range all[c] {
			if strings.Contains(fold(string(m.Payload)), fold(kw)) {
				ids = append(ids, m.ID)
			}
		}
	}
	slices.Sort(ids)
	slices.Reverse(ids)
	return slices.Compact(ids)
}

func TestSearchFolding(t *testing.T) {
	db, c := openMem(t, nil)
	bodies := []string{"Hello World", "say HELLO", "die Straße", "STRASSE 5", "Σίσυφος", "ΣΊΣΥΦΟΣ", "nothing", "\xff\xfe binary hello", "\u01C5emal", "\u01C4EMAL", "D\u017DEMAL"}
	mustCommit(t, db, func(b *Batch) {
		for i, body := range bodies {
			b.PutHistory([]string{"a", "b"}[i%2], hmsg(c, uint64(i+1), body))
		}
	})
	search := func(kw string) []string {
		res, err := db.SearchHistory(SearchQuery{Conversations: []string{"a", "b", "a"}, Keyword: kw, Limit: 100})
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, h := range res.Hits {
			got = append(got, string(h.Message.Payload))
		}
		return got
	}
	for kw, want := range map[string][]string{
		"hello":       {"\xff\xfe binary hello", "say HELLO", "Hello World"},
		"strasse":     {"STRASSE 5", "die Straße"},
		"STRAßE":      {"STRASSE 5", "die Straße"},
		"σίσυφος":     {"ΣΊΣΥΦΟΣ", "Σίσυφος"},
		"\u01C6emal":  {"\u01C4EMAL", "\u01C5emal"}, // the digraph ǆ in its three cases
		"d\u017Eemal": {"D\u017DEMAL"},              // two letters: not the digraph
		"xyz":         nil,
	} {
		if got := search(kw); !reflect.DeepEqual(got, want) {
			t.Errorf("search %q = %q, want %q", kw, got, want)
		}
	}
	if got := search(""); len(got) != len(bodies) {
		t.Errorf("empty keyword found %d of %d", len(got), len(bodies))
	}
	for _, q := range []SearchQuery{
		{Conversations: make([]string, MaxSearchConversations+1)},
		{Conversations: []string{"a"}, Limit: MaxSearchLimit + 1},
		{Conversations: []string{"a"}, Limit: -1},
		{Conversations: []string{"a"}, MaxScan: -1},
		{Conversations: []string{"a\x00"}},
	} {
		if _, err := db.SearchHistory(q); !errors.Is(err, ErrInvalidArgument) && !errors.Is(err, ErrInvalidKey) {
			t.Errorf("query %+v: %v", q, err)
		}
	}
}

// TestSearchAgainstNaive: random histories in several conversations;
// paging through every page of a search gives exactly what the naive
// search finds, in order, whatever the page size and scan bound.
func TestSearchAgainstNaive(t *testing.T) {
	db, c := openMem(t, nil)
	r := rand.New(rand.NewPCG(7, 8))
	words := []string{"alpha", "Beta", "GAMMA", "straße", "Ärger", "ärger", "ÄRGER", "écho", "ÉCHO", "日本", "x"}
	convs := []string{"a", "b", "c", "d", "e"}
	all := map[string][]*Message{}
	mustCommit(t, db, func(b *Batch) {
		for id := uint64(1); id <= 600; id++ {
			var parts []string
			for range 1 + r.IntN(4) {
				parts = append(parts, words[r.IntN(len(words))])
			}
			conv := convs[r.IntN(len(convs))]
			m := hmsg(c, id*3, strings.Join(parts, " "))
			all[conv] = append(all[conv], m)
			b.PutHistory(conv, m)
		}
	})
	for _, kw := range []string{"ärger", "ECHO", "gamma", "日本", "strasse", "x", "zzz"} {
		for _, sel := range [][]string{convs, {"b"}, {"a", "e", "nobody"}} {
			want := naiveSearch(all, sel, kw)
			for _, q := range []SearchQuery{{Limit: 7}, {Limit: 1000}, {Limit: 5, MaxScan: 13}} {
				q.Conversations, q.Keyword = sel, kw
				var got []uint64
				for pages := 0; ; pages++ {
					res, err := db.SearchHistory(q)
					if err != nil {
						t.Fatal(err)
					}
					for _, h := range res.Hits {
						got = append(got, h.Message.ID)
					}
					if q.MaxScan > 0 && res.Scanned > q.MaxScan || len(res.Hits) > q.Limit {
						t.Fatalf("page over its bounds: %d hits, %d scanned", len(res.Hits), res.Scanned)
					}
					if res.Next == 0 {
						break
					}
					if pages > 1000 {
						t.Fatal("search does not end")
					}
					q.Before = res.Next
				}
				if !slices.Equal(got, want) {
					t.Fatalf("search %q in %v with %+v:\n got %v\nwant %v", kw, sel, q, got, want)
				}
			}
		}
	}
}

func TestSearchSince(t *testing.T) {
	db, c := openMem(t, nil)
	mustCommit(t, db, func(b *Batch) { b.PutHistory("a", hmsg(c, 1, "old news")) })
	c.Add(time.Hour)
	since := c.UnixMilli()
	mustCommit(t, db, func(b *Batch) { b.PutHistory("a", hmsg(c, 2, "fresh news")) })
	res, err := db.SearchHistory(SearchQuery{Conversations: []string{"a"}, Keyword: "news", Since: since})
	if err != nil || len(res.Hits) != 1 || res.Hits[0].Message.ID != 2 || res.Next != 0 {
		t.Fatalf("search since = %+v, %v", res, err)
	}
	if res.Scanned != 2 || res.BytesRead <= 0 {
		t.Fatalf("cost: %+v", res)
	}
}
