package topic

import "testing"

// MatchSkip passes over the $share groups skip names and nothing else.
func TestMatchSkipSharedGroups(t *testing.T) {
	tr := NewTrie[string]()
	tr.Subscribe("a/+", "plain", Subscription{})
	tr.Subscribe("$share/g1/a/#", "m1", Subscription{})
	tr.Subscribe("$share/g2/a/b", "m2", Subscription{})
	got := func(skip func(string) bool) map[string]bool {
		out := map[string]bool{}
		tr.MatchSkip("a/b", nil, skip, func(k string, _ Subscription) { out[k] = true })
		return out
	}
	if g := got(nil); !g["plain"] || !g["m1"] || !g["m2"] {
		t.Fatalf("no skip: got %v", g)
	}
	g := got(func(share string) bool { return share == "$share/g1/a/#" })
	if !g["plain"] || g["m1"] || !g["m2"] {
		t.Fatalf("skip g1: got %v", g)
	}
	g = got(func(string) bool { return true })
	if !g["plain"] || g["m1"] || g["m2"] || len(g) != 1 {
		t.Fatalf("skip all: got %v", g)
	}
}
