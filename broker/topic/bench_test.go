package topic

import (
	"fmt"
	"strconv"
	"testing"
)

// session stands in for the broker's subscriber key: a pointer.
type session struct{ id int }

var benchSizes = []struct {
	label string
	n     int
}{{"1k", 1_000}, {"100k", 100_000}}

// benchTrie builds a trie of n subscriptions of one kind and the names to
// publish to, each matching a small number of them (kind fanout: all).
//
//	exact   dev/<i>/temp                        name dev/<i>/temp
//	plus    dev/<i>/+/temp                      name dev/<i>/x/temp
//	hash    dev/<i>/#                           name dev/<i>/x/temp
//	mixed   a third of each, plus dev/+/x/temp held by 10 keys
//	        and $share/g/dev/+/x/temp by 10     name dev/<i>/x/temp
//	fanout  cim/all held by all n keys          name cim/all
func benchTrie(kind string, n int) (*Trie[*session], []string) {
	tr := NewTrie[*session]()
	names := make([]string, 0, 1024)
	for i := range n {
		k := &session{i}
		is := strconv.Itoa(i)
		switch kind {
		case "exact":
			tr.Subscribe("dev/"+is+"/temp", k, Subscription{})
		case "plus":
			tr.Subscribe("dev/"+is+"/+/temp", k, Subscription{})
		case "hash":
			tr.Subscribe("dev/"+is+"/#", k, Subscription{})
		case "mixed":
			switch i % 3 {
			case 0:
				tr.Subscribe("dev/"+is+"/x/temp", k, Subscription{})
			case 1:
				tr.Subscribe("dev/"+is+"/+/temp", k, Subscription{})
			case 2:
				tr.Subscribe("dev/"+is+"/#", k, Subscription{})
			}
			if i < 10 {
				tr.Subscribe("dev/+/x/temp", k, Subscription{})
				tr.Subscribe("$share/g/dev/+/x/temp", k, Subscription{})
			}
		case "fanout":
			tr.Subscribe("cim/all", k, Subscription{})
		}
	}
	for j := range cap(names) {
		i := strconv.Itoa(j * n / cap(names))
		switch kind {
		case "exact":
			names = append(names, "dev/"+i+"/temp")
		case "fanout":
			names = append(names, "cim/all")
		default:
			names = append(names, "dev/"+i+"/x/temp")
		}
	}
	return tr, names
}

// BenchmarkMatch measures Trie.Match, the publish path: ns/op is one publish
// matched against subs subscriptions (fanout: visiting all of them).
func BenchmarkMatch(b *testing.B) {
	for _, size := range benchSizes {
		for _, kind := range []string{"exact", "plus", "hash", "mixed", "fanout"} {
			b.Run(fmt.Sprintf("subs=%s/kind=%s", size.label, kind), func(b *testing.B) {
				tr, names := benchTrie(kind, size.n)
				visits := 0
				fn := func(*session, Subscription) { visits++ }
				b.ReportAllocs()
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					tr.Match(names[i%len(names)], nil, fn)
				}
				b.StopTimer()
				if visits == 0 {
					b.Fatal("nothing matched")
				}
				b.ReportMetric(float64(visits)/float64(b.N), "visits/op")
			})
		}
	}
}

// BenchmarkMatchParallel is BenchmarkMatch from every P at once: the event
// loops publishing together, all under the read lock.
func BenchmarkMatchParallel(b *testing.B) {
	for _, kind := range []string{"exact", "mixed"} {
		b.Run("subs=100k/kind="+kind, func(b *testing.B) {
			tr, names := benchTrie(kind, 100_000)
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				i := 0
				fn := func(*session, Subscription) {}
				for pb.Next() {
					tr.Match(names[i%len(names)], nil, fn)
					i++
				}
			})
		})
	}
}

// BenchmarkSubscribe measures subscription churn on a trie that already holds
// 100k subscriptions: ns/op is one Unsubscribe plus one Subscribe, which
// removes and recreates the filter's nodes when the filter is unique.
//
//	exact   dev/<i>/temp, one key each (nodes pruned and rebuilt)
//	plus    dev/<i>/+/temp, one key each
//	bigset  cim/all held by 100k keys (the key index at work)
//	shared  $share/g/cim/all with 100k members
func BenchmarkSubscribe(b *testing.B) {
	const n = 100_000
	for _, kind := range []string{"exact", "plus", "bigset", "shared"} {
		b.Run("subs=100k/kind="+kind, func(b *testing.B) {
			tr := NewTrie[*session]()
			filters := make([]string, n)
			keys := make([]*session, n)
			for i := range n {
				keys[i] = &session{i}
				switch kind {
				case "exact":
					filters[i] = "dev/" + strconv.Itoa(i) + "/temp"
				case "plus":
					filters[i] = "dev/" + strconv.Itoa(i) + "/+/temp"
				case "bigset":
					filters[i] = "cim/all"
				case "shared":
					filters[i] = "$share/g/cim/all"
				}
				tr.Subscribe(filters[i], keys[i], Subscription{})
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				j := i % n
				if !tr.Unsubscribe(filters[j], keys[j]) || !tr.Subscribe(filters[j], keys[j], Subscription{QoS: 1}) {
					b.Fatal("churn lost a subscription")
				}
			}
		})
	}
}

// BenchmarkMatchFilterRetained measures Index.MatchFilter, the subscribe
// path, over 100k retained names dev/<i>/temp and dev/<i>/hum.
//
//	exact  dev/<i>/temp     1 name
//	plus   dev/<i>/+        2 names
//	hash   dev/<i>/#        2 names
//	wide   +/+/temp         50k names: the cost per visited name
func BenchmarkMatchFilterRetained(b *testing.B) {
	const n = 50_000
	x := NewIndex[int]()
	for i := range n {
		x.Set("dev/"+strconv.Itoa(i)+"/temp", i)
		x.Set("dev/"+strconv.Itoa(i)+"/hum", i)
	}
	for _, tc := range []struct{ kind, filter string }{
		{"exact", "dev/%d/temp"},
		{"plus", "dev/%d/+"},
		{"hash", "dev/%d/#"},
		{"wide", "+/+/temp"},
	} {
		b.Run("names=100k/filter="+tc.kind, func(b *testing.B) {
			filters := make([]string, 1024)
			for j := range filters {
				filters[j] = tc.filter
				if tc.kind != "wide" {
					filters[j] = fmt.Sprintf(tc.filter, j*n/len(filters))
				}
			}
			visits := 0
			fn := func(string, int) bool { visits++; return true }
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				x.MatchFilter(filters[i%len(filters)], fn)
			}
			b.StopTimer()
			b.ReportMetric(float64(visits)/float64(b.N), "visits/op")
		})
	}
}

// BenchmarkMatchFunc measures the single-pair Match.
func BenchmarkMatchFunc(b *testing.B) {
	for _, tc := range []struct{ kind, filter, name string }{
		{"exact", "sport/tennis/player1/ranking", "sport/tennis/player1/ranking"},
		{"wild", "sport/+/player1/#", "sport/tennis/player1/ranking/wimbledon"},
		{"miss", "sport/+/player2", "sport/tennis/player1"},
	} {
		b.Run("kind="+tc.kind, func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				if Match(tc.filter, tc.name) != (tc.kind != "miss") {
					b.Fatal("wrong answer")
				}
			}
		})
	}
}

// BenchmarkValid measures the validation done on every PUBLISH and SUBSCRIBE.
func BenchmarkValid(b *testing.B) {
	b.Run("what=name", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			if ValidName("sport/tennis/player1/ranking") != nil {
				b.Fatal("invalid")
			}
		}
	})
	b.Run("what=filter", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			if ValidFilter("$share/g/sport/+/player1/#") != nil {
				b.Fatal("invalid")
			}
		}
	})
}

// BenchmarkSubListFind backs the choice of indexAbove: a linear scan of n
// pointer keys against a map lookup.
func BenchmarkSubListFind(b *testing.B) {
	for _, n := range []int{8, 16, 32, 64} {
		keys := make([]*session, n)
		var scan subList[*session]
		for i := range keys {
			keys[i] = &session{i}
			scan.items = append(scan.items, entry[*session]{key: keys[i]})
		}
		indexed := scan
		indexed.index = make(map[*session]int32, n)
		for i, k := range keys {
			indexed.index[k] = int32(i)
		}
		for _, v := range []struct {
			how string
			l   *subList[*session]
		}{{"scan", &scan}, {"map", &indexed}} {
			b.Run(fmt.Sprintf("n=%02d/how=%s", n, v.how), func(b *testing.B) {
				for i := 0; i < b.N; i++ {
					if v.l.find(keys[i%n]) < 0 {
						b.Fatal("lost")
					}
				}
			})
		}
	}
}
