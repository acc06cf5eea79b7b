package topic

import (
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"unsafe"
)

// matched returns the names MatchFilter(filter) visits, sorted, and fails on
// a name visited twice or with the wrong value.
func matched(t *testing.T, x *Index[string], filter string) []string {
	t.Helper()
	var got []string
	x.MatchFilter(filter, func(name, v string) bool {
		if v != "v:"+name {
			t.Errorf("MatchFilter(%q): %q has value %q", filter, name, v)
		}
		got = append(got, name)
		return true
	})
	slices.Sort(got)
	if c := slices.Compact(slices.Clone(got)); len(c) != len(got) {
		t.Errorf("MatchFilter(%q) visited a name twice: %v", filter, got)
	}
	return got
}

func TestIndexSetGetDelete(t *testing.T) {
	x := NewIndex[string]()
	names := []string{"a", "a/b", "a/b/c", "/", "a//b", "$SYS/x", "café/日本"}
	for _, n := range names {
		x.Set(n, "old")
		x.Set(n, "v:"+n) // replaces
	}
	if x.Len() != len(names) {
		t.Fatalf("Len = %d, want %d", x.Len(), len(names))
	}
	for _, n := range names {
		if v, ok := x.Get(n); !ok || v != "v:"+n {
			t.Errorf("Get(%q) = %q, %v", n, v, ok)
		}
	}
	for _, n := range []string{"a/b/c/d", "a/", "b", "$SYS", ""} {
		if v, ok := x.Get(n); ok {
			t.Errorf("Get(%q) = %q for a name never set", n, v)
		}
	}
	// Deleting an inner name keeps the names below it.
	x.Delete("a/b")
	x.Delete("a/b") // twice is fine
	x.Delete("nope/never")
	if _, ok := x.Get("a/b"); ok {
		t.Error("a/b still there after Delete")
	}
	if v, ok := x.Get("a/b/c"); !ok || v != "v:a/b/c" {
		t.Errorf("Get(a/b/c) after deleting a/b = %q, %v", v, ok)
	}
	if x.Len() != len(names)-1 {
		t.Errorf("Len = %d, want %d", x.Len(), len(names)-1)
	}
	for _, n := range names {
		x.Delete(n)
	}
	if x.Len() != 0 || x.mu.root.children != nil {
		t.Errorf("not pruned: Len %d, root children %v", x.Len(), x.mu.root.children)
	}
}

func TestIndexMatchFilter(t *testing.T) {
	x := NewIndex[string]()
	names := []string{
		"sport", "sport/tennis", "sport/tennis/player1", "sport/tennis/player1/ranking",
		"sport/golf", "sport/", "/finance", "/", "$SYS/monitor/Clients", "$SYS", "$SYS/a", "a/$b",
	}
	for _, n := range names {
		x.Set(n, "v:"+n)
	}
	for _, tc := range []struct {
		filter string
		want   []string
	}{
		{"sport/tennis/#", []string{"sport/tennis", "sport/tennis/player1", "sport/tennis/player1/ranking"}},
		{"sport/+", []string{"sport/", "sport/golf", "sport/tennis"}},
		{"+/+", []string{"/", "/finance", "a/$b", "sport/", "sport/golf", "sport/tennis"}},
		{"+", []string{"sport"}},
		{"#", []string{"/", "/finance", "a/$b", "sport", "sport/", "sport/golf", "sport/tennis",
			"sport/tennis/player1", "sport/tennis/player1/ranking"}},
		{"+/monitor/Clients", nil},
		{"$SYS/#", []string{"$SYS", "$SYS/a", "$SYS/monitor/Clients"}},
		{"$SYS/+", []string{"$SYS/a"}},
		{"sport/tennis/player1", []string{"sport/tennis/player1"}},
		{"sport/tennis/player2", nil},
		{"nothing/#", nil},
		{"$share/g/sport/+", []string{"sport/", "sport/golf", "sport/tennis"}},
		{"+/#", []string{"/", "/finance", "a/$b", "sport", "sport/", "sport/golf", "sport/tennis",
			"sport/tennis/player1", "sport/tennis/player1/ranking"}},
	} {
		got := matched(t, x, tc.filter)
		if !slices.Equal(got, tc.want) {
			t.Errorf("MatchFilter(%q) = %q, want %q", tc.filter, got, tc.want)
		}
		// And the table agrees with the reference matcher.
		var ref []string
		for _, n := range names {
			if refMatch(tc.filter, n) {
				ref = append(ref, n)
			}
		}
		slices.Sort(ref)
		if !slices.Equal(ref, tc.want) {
			t.Errorf("refMatch disagrees on %q: %q", tc.filter, ref)
		}
	}
}

func TestIndexMatchFilterStops(t *testing.T) {
	x := NewIndex[int]()
	for i, n := range []string{"a", "a/b", "a/c", "b/c", "b/d"} {
		x.Set(n, i)
	}
	for _, f := range []string{"#", "+/+", "a/#", "+/c"} {
		calls := 0
		x.MatchFilter(f, func(string, int) bool { calls++; return false })
		if calls != 1 {
			t.Errorf("MatchFilter(%q) called fn %d times after it returned false", f, calls)
		}
	}
}

func TestIndexAliasedName(t *testing.T) {
	buf := []byte("dev/42/temp")
	x := NewIndex[int]()
	x.Set(unsafe.String(&buf[0], len(buf)), 1)
	copy(buf, "XXXXXXXXXXX")
	var names []string
	x.MatchFilter("dev/+/temp", func(n string, _ int) bool { names = append(names, n); return true })
	if !slices.Equal(names, []string{"dev/42/temp"}) {
		t.Errorf("after overwriting the buffer, MatchFilter = %q", names)
	}
}

// TestIndexCrossCheck compares MatchFilter with refMatch over random names
// and filters.
func TestIndexCrossCheck(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	x := NewIndex[string]()
	stored := map[string]bool{}
	for range 300 {
		n := randomTopic(r, nameLevels, false)
		x.Set(n, "v:"+n)
		stored[n] = true
	}
	for range 100 {
		n := randomTopic(r, nameLevels, false)
		x.Delete(n)
		delete(stored, n)
	}
	if x.Len() != len(stored) {
		t.Fatalf("Len = %d, want %d", x.Len(), len(stored))
	}
	for range 1000 {
		f := randomTopic(r, filterLevels, true)
		var want []string
		for n := range stored {
			if refMatch(f, n) {
				want = append(want, n)
			}
		}
		slices.Sort(want)
		if got := matched(t, x, f); !slices.Equal(got, want) {
			t.Fatalf("MatchFilter(%q) = %q, want %q", f, got, want)
		}
	}
}

func TestIndexConcurrent(t *testing.T) {
	x := NewIndex[int]()
	names := []string{"a", "a/b", "a/b/c", "b", "$SYS/x", "c/d/e"}
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range 2000 {
				n := names[(w+i)%len(names)]
				if i%3 == 0 {
					x.Delete(n)
				} else {
					x.Set(n, i)
				}
			}
		})
		wg.Go(func() {
			for i := range 2000 {
				x.MatchFilter([]string{"#", "a/+", "$SYS/#"}[i%3], func(string, int) bool { return true })
				x.Get(names[i%len(names)])
				_ = x.Len()
			}
		})
	}
	wg.Wait()
	n := 0
	x.MatchFilter("#", func(string, int) bool { n++; return true })
	x.MatchFilter("$SYS/#", func(string, int) bool { n++; return true })
	if n != x.Len() {
		t.Errorf("MatchFilter sees %d names, Len says %d", n, x.Len())
	}
}
