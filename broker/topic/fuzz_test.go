package topic

import "testing"

// FuzzMatch checks, for any (filter, name), that nothing panics and that,
// when both are valid, Match, the Trie (plain and shared) and the retained
// Index all agree with the naive reference matcher; and that unsubscribing
// leaves the trie empty.
//
//	go test -run '^$' -fuzz FuzzMatch -fuzztime 30s ./broker/topic
func FuzzMatch(f *testing.F) {
	for _, tc := range matchCases {
		f.Add(tc.filter, tc.name)
	}
	f.Add("$share/g/a/#", "a")
	f.Add("a/#/b", "a/x/b")
	f.Add("$share/g", "")
	f.Add("\xff/+", "\xff/a")
	f.Fuzz(func(t *testing.T, filter, name string) {
		got := Match(filter, name)
		validF, validN := ValidFilter(filter) == nil, ValidName(name) == nil
		_, _, shared := ParseShare(filter)

		tr := NewTrie[int]()
		tr.Subscribe(filter, 1, Subscription{ID: 1})
		tr.Subscribe(filter, 2, Subscription{ID: 2})
		sharedFilter := "$share/fz/" + filter
		tr.Subscribe(sharedFilter, 3, Subscription{ID: 3})
		tr.Subscribe(sharedFilter, 4, Subscription{ID: 4})
		plain, group := 0, 0
		tr.Match(name, func(k int) bool { return k != 3 }, func(k int, s Subscription) {
			if int(s.ID) != k {
				t.Fatalf("key %d carries subscription %d", k, s.ID)
			}
			if k >= 3 {
				group++
			} else {
				plain++
			}
		})

		x := NewIndex[int]()
		x.Set(name, 7)
		retained := 0
		x.MatchFilter(filter, func(n string, v int) bool {
			if n != name || v != 7 {
				t.Fatalf("MatchFilter visited %q=%d, want %q=7", n, v, name)
			}
			retained++
			return true
		})

		if validF && validN {
			want := refMatch(filter, name)
			if got != want {
				t.Fatalf("Match(%q, %q) = %v, reference says %v", filter, name, got, want)
			}
			// The two plain keys, or one of the two members when the
			// filter is itself shared.
			wantPlain := 0
			if want {
				wantPlain = 2
				if shared {
					wantPlain = 1
				}
			}
			// Wrapping a shared filter in another $share makes its inner
			// filter the literal "$share/...", which ValidFilter allows.
			wantGroup := b2i(refMatch(sharedFilter, name))
			if ValidFilter(sharedFilter) != nil {
				wantGroup = group // too long: no claim
			}
			if plain != wantPlain || group != wantGroup {
				t.Fatalf("Trie.Match(%q) under %q: %d plain, %d group visits; want %d, %d",
					name, filter, plain, group, wantPlain, wantGroup)
			}
			if retained != b2i(want) {
				t.Fatalf("Index.MatchFilter(%q) over %q: %d visits, want %d", filter, name, retained, b2i(want))
			}
		}

		for k, f := range []string{filter, filter, sharedFilter, sharedFilter} {
			if !tr.Unsubscribe(f, k+1) {
				t.Fatalf("Unsubscribe(%q, %d) = false", f, k+1)
			}
		}
		if tr.Len() != 0 || !tr.mu.root.empty() {
			t.Fatalf("trie not empty after unsubscribing everything (Len %d)", tr.Len())
		}
		x.Delete(name)
		if x.Len() != 0 || x.mu.root.children != nil {
			t.Fatalf("index not empty after Delete")
		}
	})
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}
