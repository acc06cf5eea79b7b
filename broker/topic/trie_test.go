package topic

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"unsafe"
)

// visit is one call of a Match callback.
type visit struct {
	key string
	id  uint32
}

// collect returns the visits of Match(name), sorted.
func collect(tr *Trie[string], name string, pick func(string) bool) []visit {
	var got []visit
	tr.Match(name, pick, func(k string, s Subscription) { got = append(got, visit{k, s.ID}) })
	slices.SortFunc(got, func(a, b visit) int {
		if c := strings.Compare(a.key, b.key); c != 0 {
			return c
		}
		return int(a.id) - int(b.id)
	})
	return got
}

// keysOf returns the keys visited by Match(name), in visit order.
func keysOf(tr *Trie[string], name string, pick func(string) bool) []string {
	var got []string
	tr.Match(name, pick, func(k string, _ Subscription) { got = append(got, k) })
	return got
}

func TestTrieOverlap(t *testing.T) {
	tr := NewTrie[string]()
	for i, s := range []struct{ filter, key string }{
		{"a/b", "k1"},
		{"a/+", "k1"}, // same key on an overlapping filter: visited twice
		{"a/#", "k2"},
		{"#", "k3"},
		{"+/b", "k4"},
		{"$SYS/#", "k5"},
		{"a/b/c", "k6"},
		{"+/+", "k7"},
		{"/+", "k8"},
		{"a/b/#", "k9"},
	} {
		if !tr.Subscribe(s.filter, s.key, Subscription{ID: uint32(i + 1)}) {
			t.Fatalf("Subscribe(%q, %q) not new", s.filter, s.key)
		}
	}
	for _, tc := range []struct {
		name string
		want []visit
	}{
		{"a/b", []visit{{"k1", 1}, {"k1", 2}, {"k2", 3}, {"k3", 4}, {"k4", 5}, {"k7", 8}, {"k9", 10}}},
		{"a", []visit{{"k2", 3}, {"k3", 4}}},
		{"a/b/c", []visit{{"k2", 3}, {"k3", 4}, {"k6", 7}, {"k9", 10}}},
		{"a/c", []visit{{"k1", 2}, {"k2", 3}, {"k3", 4}, {"k7", 8}}},
		{"$SYS/x", []visit{{"k5", 6}}},
		{"$SYS", []visit{{"k5", 6}}},
		{"/finance", []visit{{"k3", 4}, {"k7", 8}, {"k8", 9}}},
		{"x/y/z", []visit{{"k3", 4}}},
	} {
		if got := collect(tr, tc.name, nil); !slices.Equal(got, tc.want) {
			t.Errorf("Match(%q) = %v, want %v", tc.name, got, tc.want)
		}
	}
	if tr.Len() != 10 {
		t.Errorf("Len = %d, want 10", tr.Len())
	}
}

func TestTrieReplace(t *testing.T) {
	tr := NewTrie[string]()
	if !tr.Subscribe("a/+", "k", Subscription{QoS: 0, ID: 1}) {
		t.Fatal("first Subscribe not new")
	}
	if tr.Subscribe("a/+", "k", Subscription{QoS: 2, NoLocal: true, ID: 7}) {
		t.Fatal("second Subscribe of the same (filter, key) reported new")
	}
	var got []Subscription
	tr.Match("a/x", nil, func(_ string, s Subscription) { got = append(got, s) })
	if want := []Subscription{{QoS: 2, NoLocal: true, ID: 7}}; !slices.Equal(got, want) {
		t.Errorf("after replace Match = %+v, want %+v", got, want)
	}
	if tr.Len() != 1 {
		t.Errorf("Len = %d, want 1", tr.Len())
	}
}

func TestTrieUnsubscribePrunes(t *testing.T) {
	tr := NewTrie[string]()
	filters := []string{"a", "a/b", "a/b/c", "a/+/c", "a/#", "#", "+", "/", "$SYS/#", "$share/g/a/b", "$share/h/a/b", "x/y/z/w"}
	for _, f := range filters {
		tr.Subscribe(f, "k1", Subscription{})
		tr.Subscribe(f, "k2", Subscription{})
	}
	for _, miss := range []struct{ filter, key string }{
		{"a/b", "k3"},          // wrong key
		{"a/b/c/d", "k1"},      // below an existing filter
		{"x/y", "k1"},          // a prefix of a filter: its node exists but holds nobody
		{"$share/z/a/b", "k1"}, // unknown group
		{"$share/g/a", "k1"},   // group name on another filter
	} {
		if tr.Unsubscribe(miss.filter, miss.key) {
			t.Errorf("Unsubscribe(%q, %q) = true for an absent subscription", miss.filter, miss.key)
		}
	}
	if got := keysOf(tr, "x/y/z/w", nil); len(got) != 4 { // x/y/z/w and #, for k1 and k2
		t.Errorf("Match(x/y/z/w) after failed unsubscribes = %v", got)
	}

	// Remove the shorter filter; the longer one below it must survive.
	tr.Unsubscribe("a/b", "k1")
	tr.Unsubscribe("a/b", "k2")
	if got := collect(tr, "a/b/c", nil); len(got) != 8 { // a/b/c, a/+/c, a/#, # for two keys
		t.Errorf("Match(a/b/c) after removing a/b = %v", got)
	}

	for _, f := range filters {
		for _, k := range []string{"k1", "k2"} {
			want := f != "a/b"
			if got := tr.Unsubscribe(f, k); got != want {
				t.Errorf("Unsubscribe(%q, %q) = %v, want %v", f, k, got, want)
			}
		}
	}
	if tr.Len() != 0 {
		t.Errorf("Len = %d after removing everything", tr.Len())
	}
	root := &tr.mu.root
	if !root.empty() || root.children != nil {
		t.Errorf("root not pruned: children=%v plus=%v hash=%v", root.children, root.plus, root.hash)
	}
}

func TestTrieShared(t *testing.T) {
	tr := NewTrie[string]()
	members := []string{"m0", "m1", "m2", "m3"}
	for _, m := range members {
		if !tr.Subscribe("$share/g/a/+", m, Subscription{}) {
			t.Fatalf("Subscribe %s not new", m)
		}
	}
	tr.Subscribe("a/+", "plain", Subscription{})
	tr.Subscribe("$share/h/a/+", "h0", Subscription{}) // another group on the same filter
	tr.Subscribe("$share/g/a/#", "x0", Subscription{}) // same group name, other filter: another group
	if tr.Len() != 7 {
		t.Fatalf("Len = %d, want 7", tr.Len())
	}
	// The same member subscribing again replaces, not duplicates.
	if tr.Subscribe("$share/g/a/+", "m1", Subscription{QoS: 1}) {
		t.Fatal("re-subscribing a member reported new")
	}

	count := map[string]int{}
	var order []string
	for range 8 {
		got := keysOf(tr, "a/x", nil)
		g := 0
		for _, k := range got {
			count[k]++
			if strings.HasPrefix(k, "m") {
				g++
				order = append(order, k)
			}
		}
		if g != 1 || len(got) != 4 {
			t.Fatalf("one message: visits %v, want plain, h0, x0 and one member of g", got)
		}
	}
	if want := []string{"m0", "m1", "m2", "m3", "m0", "m1", "m2", "m3"}; !slices.Equal(order, want) {
		t.Errorf("round robin order %v, want %v", order, want)
	}
	if count["plain"] != 8 || count["h0"] != 8 || count["x0"] != 8 {
		t.Errorf("non-g subscribers got %v, want 8 each", count)
	}

	// pick limits the choice to the members it accepts, still round robin.
	even := func(k string) bool { return k == "m0" || k == "m2" }
	order = order[:0]
	for range 6 {
		for _, k := range keysOf(tr, "a/x", even) {
			if strings.HasPrefix(k, "m") {
				order = append(order, k)
			}
		}
	}
	if want := []string{"m0", "m2", "m0", "m2", "m0", "m2"}; !slices.Equal(order, want) {
		t.Errorf("with pick: order %v, want %v", order, want)
	}
	// Only one eligible member gets everything.
	only3 := func(k string) bool { return k == "m3" }
	for range 5 {
		if got := keysOf(tr, "a/x", only3); !slices.Contains(got, "m3") || slices.Contains(got, "m0") {
			t.Fatalf("pick m3 only: visits %v", got)
		}
	}
	// No eligible member: fall back to all members, round robin.
	none := func(string) bool { return false }
	count = map[string]int{}
	for range 8 {
		for _, k := range keysOf(tr, "a/x", none) {
			count[k]++
		}
	}
	for _, m := range members {
		if count[m] != 2 {
			t.Errorf("pick none: member counts %v, want 2 each", count)
			break
		}
	}

	// Leaving members: the rest share; the last one out removes the group.
	for _, m := range members[:3] {
		if !tr.Unsubscribe("$share/g/a/+", m) {
			t.Fatalf("Unsubscribe %s failed", m)
		}
	}
	for range 3 {
		if got := keysOf(tr, "a/x", nil); !slices.Contains(got, "m3") {
			t.Fatalf("only m3 left, visits %v", got)
		}
	}
	tr.Unsubscribe("$share/g/a/+", "m3")
	if g := tr.mu.root.children["a"].plus.groups; g == nil || g.name != "h" || g.sibling != nil {
		t.Errorf("empty group g not removed, or h lost")
	}
	if tr.Unsubscribe("$share/g/a/+", "m3") {
		t.Error("second Unsubscribe of m3 succeeded")
	}
	if tr.Len() != 3 {
		t.Errorf("Len = %d, want 3", tr.Len())
	}
}

// TestTrieLargeSet crosses the threshold at which a subscriber set gets a
// key index, both ways.
func TestTrieLargeSet(t *testing.T) {
	tr := NewTrie[int]()
	const n = 1000
	for k := range n {
		tr.Subscribe("cim/all", k, Subscription{ID: uint32(k)})
		tr.Subscribe("$share/g/cim/all", k, Subscription{ID: uint32(k)})
	}
	if l := &tr.mu.root.children["cim"].children["all"].subs; l.index == nil || len(l.index) != n {
		t.Fatalf("no key index over %d subscribers", len(l.items))
	}
	for k := range n {
		if tr.Subscribe("cim/all", k, Subscription{ID: uint32(k), QoS: 1}) {
			t.Fatalf("replace of %d reported new", k)
		}
	}
	// Remove all but the multiples of 100, in an order that moves entries around.
	for k := n - 1; k >= 0; k -= 2 {
		tr.Unsubscribe("cim/all", k)
	}
	for k := 0; k < n; k += 2 {
		if k%100 != 0 {
			tr.Unsubscribe("cim/all", k)
		}
	}
	want := map[int]bool{}
	for k := 0; k < n; k += 100 {
		want[k] = true
	}
	got := map[int]bool{}
	shared := 0
	tr.Match("cim/all", nil, func(k int, s Subscription) {
		if s.QoS == 0 {
			shared++ // the share group's members kept QoS 0
			return
		}
		if got[k] || int(s.ID) != k {
			t.Errorf("visit %d (id %d) twice or with the wrong subscription", k, s.ID)
		}
		got[k] = true
	})
	if len(got) != len(want) || shared != 1 {
		t.Errorf("got %d plain keys %v and %d shared, want %v and 1", len(got), got, shared, want)
	}
	for k := range want {
		if !got[k] {
			t.Errorf("key %d missing", k)
		}
	}
	if l := &tr.mu.root.children["cim"].children["all"].subs; l.index != nil {
		t.Errorf("index kept for %d entries", len(l.items))
	}
	// Shared: every member once over n messages.
	seen := map[int]int{}
	for range n {
		tr.Match("cim/all", nil, func(k int, s Subscription) {
			if s.QoS == 0 {
				seen[k]++
			}
		})
	}
	if len(seen) != n {
		t.Errorf("share group of %d served %d distinct members in %d messages", n, len(seen), n)
	}
}

// TestTrieAliasedFilter subscribes with a filter that aliases a buffer, as
// mochi's decoder hands them out, then overwrites the buffer.
func TestTrieAliasedFilter(t *testing.T) {
	buf := []byte("$share/grp/dev/42/+")
	tr := NewTrie[int]()
	tr.Subscribe(unsafe.String(&buf[0], len(buf)), 1, Subscription{})
	copy(buf, "XXXXXXXXXXXXXXXXXXX")
	if got := keysOf2(tr, "dev/42/temp"); len(got) != 1 {
		t.Errorf("after overwriting the buffer, Match = %v", got)
	}
	if !tr.Unsubscribe("$share/grp/dev/42/+", 1) {
		t.Error("Unsubscribe of the original filter failed")
	}
}

func keysOf2(tr *Trie[int], name string) []int {
	var got []int
	tr.Match(name, nil, func(k int, _ Subscription) { got = append(got, k) })
	return got
}

func TestNodeSize(t *testing.T) {
	// A node per filter level, and one per client for per-client topics:
	// keep it in the 64-byte size class (docs/architecture.md, rule 7).
	if s := unsafe.Sizeof(node[*session]{}); unsafe.Sizeof(uintptr(0)) == 8 && s > 64 {
		t.Errorf("node is %d bytes, want <= 64", s)
	}
}

func TestTrieMatchNoAllocs(t *testing.T) {
	tr := NewTrie[*int]()
	keys := make([]*int, 100)
	for i := range keys {
		keys[i] = new(int)
		tr.Subscribe(fmt.Sprintf("dev/%d/+/temp", i), keys[i], Subscription{})
		tr.Subscribe(fmt.Sprintf("dev/%d/#", i%10), keys[i], Subscription{})
		tr.Subscribe("$share/g/dev/+/x/temp", keys[i], Subscription{})
		tr.Subscribe("cim/all", keys[i], Subscription{})
	}
	tr.Subscribe("#", keys[0], Subscription{})
	n := 0
	fn := func(*int, Subscription) { n++ }
	pick := func(k *int) bool { return k != keys[0] }
	for _, name := range []string{"dev/3/x/temp", "cim/all", "$SYS/x", "nothing/here"} {
		if a := testing.AllocsPerRun(200, func() { tr.Match(name, pick, fn) }); a != 0 {
			t.Errorf("Match(%q): %v allocations, want 0", name, a)
		}
		if a := testing.AllocsPerRun(200, func() { tr.Match(name, nil, fn) }); a != 0 {
			t.Errorf("Match(%q, nil pick): %v allocations, want 0", name, a)
		}
	}
	if n == 0 {
		t.Fatal("nothing matched")
	}
}

// randomTopic builds a non-empty topic of 1-4 levels from alphabet and, when
// wild, may end with '#'.
func randomTopic(r *rand.Rand, alphabet []string, wild bool) string {
	for {
		if s := randomLevels(r, alphabet, wild); s != "" {
			return s
		}
	}
}

func randomLevels(r *rand.Rand, alphabet []string, wild bool) string {
	n := 1 + r.IntN(4)
	levels := make([]string, n)
	for i := range levels {
		levels[i] = alphabet[r.IntN(len(alphabet))]
	}
	if wild && r.IntN(4) == 0 {
		levels[n-1] = "#"
	}
	return strings.Join(levels, "/")
}

var (
	nameLevels   = []string{"a", "b", "c", "", "$x"}
	filterLevels = []string{"a", "b", "c", "", "$x", "+", "+"}
)

// TestTrieCrossCheck compares Trie.Match with refMatch over random filters and
// names, before and after removing half of the subscriptions.
func TestTrieCrossCheck(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	tr := NewTrie[int]()
	type sub struct {
		filter string
		key    int
	}
	subs := map[uint32]sub{} // subscription id -> what it is
	live := map[sub]uint32{} // (filter, key) -> its current id
	for id := uint32(1); id <= 2000; id++ {
		f := randomTopic(r, filterLevels, true)
		if r.IntN(5) == 0 {
			f = fmt.Sprintf("$share/g%d/%s", r.IntN(2), f)
		}
		if err := ValidFilter(f); err != nil {
			t.Fatalf("generator made invalid filter %q: %v", f, err)
		}
		s := sub{f, r.IntN(50)}
		isNew := tr.Subscribe(f, s.key, Subscription{ID: id})
		if _, had := live[s]; had == isNew {
			t.Fatalf("Subscribe(%q, %d) isNew = %v, had = %v", f, s.key, isNew, had)
		}
		if old, had := live[s]; had {
			delete(subs, old)
		}
		subs[id], live[s] = s, id
	}
	check := func(phase string) {
		if tr.Len() != len(live) {
			t.Fatalf("%s: Len = %d, want %d", phase, tr.Len(), len(live))
		}
		for range 500 {
			name := randomTopic(r, nameLevels, false)
			wantPlain := map[uint32]bool{}
			wantGroups := map[string]bool{}
			for id, s := range subs {
				if !refMatch(s.filter, name) {
					continue
				}
				if strings.HasPrefix(s.filter, SharePrefix) {
					wantGroups[s.filter] = true
				} else {
					wantPlain[id] = true
				}
			}
			gotPlain := map[uint32]bool{}
			gotGroups := map[string]bool{}
			tr.Match(name, nil, func(k int, sb Subscription) {
				s, ok := subs[sb.ID]
				switch {
				case !ok || s.key != k:
					t.Fatalf("%s: Match(%q) visited unknown (%d, id %d)", phase, name, k, sb.ID)
				case strings.HasPrefix(s.filter, SharePrefix):
					if gotGroups[s.filter] {
						t.Errorf("%s: Match(%q) served group %q twice", phase, name, s.filter)
					}
					gotGroups[s.filter] = true
				default:
					if gotPlain[sb.ID] {
						t.Errorf("%s: Match(%q) visited %q twice", phase, name, s.filter)
					}
					gotPlain[sb.ID] = true
				}
			})
			if !mapsEqual(gotPlain, wantPlain) || !mapsEqual(gotGroups, wantGroups) {
				t.Fatalf("%s: Match(%q): %d plain, %d groups; want %d, %d",
					phase, name, len(gotPlain), len(gotGroups), len(wantPlain), len(wantGroups))
			}
		}
	}
	check("full")
	for id, s := range subs {
		if id%2 == 0 {
			if !tr.Unsubscribe(s.filter, s.key) {
				t.Fatalf("Unsubscribe(%q, %d) = false", s.filter, s.key)
			}
			delete(subs, id)
			delete(live, s)
		}
	}
	check("half")
	for id, s := range subs {
		tr.Unsubscribe(s.filter, s.key)
		delete(subs, id)
		delete(live, s)
	}
	check("empty")
	if !tr.mu.root.empty() {
		t.Error("root not empty after removing everything")
	}
}

func mapsEqual[K comparable](a, b map[K]bool) bool {
	if len(a) != len(b) {
		return false
	}
	for k := range a {
		if !b[k] {
			return false
		}
	}
	return true
}

// TestTrieConcurrent runs subscribers, unsubscribers and publishers at once;
// it is meant for -race, and checks the count and contents at the end.
func TestTrieConcurrent(t *testing.T) {
	tr := NewTrie[int]()
	filters := []string{"a/b", "a/+", "a/#", "#", "+/b", "$share/g/a/+", "$share/h/#", "cim/all", "$SYS/#"}
	const writers, readers, rounds = 4, 4, 2000
	var wg sync.WaitGroup
	final := make([]map[string]bool, writers) // what each writer holds at the end
	for w := range writers {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), 9))
			held := map[string]bool{}
			for range rounds {
				f := filters[r.IntN(len(filters))]
				if held[f] {
					if !tr.Unsubscribe(f, w) {
						t.Errorf("writer %d: Unsubscribe(%q) lost", w, f)
						return
					}
					delete(held, f)
				} else {
					if !tr.Subscribe(f, w, Subscription{QoS: byte(w % 3)}) {
						t.Errorf("writer %d: Subscribe(%q) not new", w, f)
						return
					}
					held[f] = true
				}
			}
			final[w] = held
		})
	}
	for i := range readers {
		wg.Go(func() {
			names := []string{"a/b", "$SYS/x", "cim/all", "x"}
			for j := range rounds {
				tr.Match(names[(i+j)%len(names)], func(k int) bool { return k%2 == 0 }, func(k int, _ Subscription) {
					if k < 0 || k >= writers {
						t.Errorf("visited unknown key %d", k)
					}
				})
				_ = tr.Len()
			}
		})
	}
	wg.Wait()
	want := 0
	for _, held := range final {
		want += len(held)
	}
	if tr.Len() != want {
		t.Fatalf("Len = %d, want %d", tr.Len(), want)
	}
	for w, held := range final {
		for f := range held {
			if !tr.Unsubscribe(f, w) {
				t.Errorf("writer %d's %q missing at the end", w, f)
			}
		}
	}
	if tr.Len() != 0 || !tr.mu.root.empty() {
		t.Errorf("not empty after cleanup: Len %d", tr.Len())
	}
}
