package broker

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// TestSessionSet runs random puts, replaces and deletes against a Go map
// and checks every key after each step: the backward shift of del must
// keep every remaining key reachable, across wraparound too.
func TestSessionSet(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var set sessionSet
	want := map[skey]*session{}
	keys := make([]skey, 300)
	for i := range keys {
		keys[i] = skey{byte(i % 2), fmt.Sprintf("client-%d", i/2)}
	}
	for step := range 20000 {
		k := keys[rng.IntN(len(keys))]
		if rng.IntN(3) == 0 {
			set.del(k)
			delete(want, k)
		} else {
			s := &session{key: k}
			set.put(s)
			want[k] = s
		}
		if set.n != len(want) {
			t.Fatalf("step %d: n %d, want %d", step, set.n, len(want))
		}
		if step%97 != 0 {
			continue
		}
		for _, k := range keys {
			if got := set.get(k); got != want[k] {
				t.Fatalf("step %d: get(%v) = %p, want %p", step, k, got, want[k])
			}
		}
		seen := 0
		set.each(func(s *session) {
			if want[s.key] != s {
				t.Fatalf("step %d: each gave %v, not in the set", step, s.key)
			}
			seen++
		})
		if seen != len(want) || len(set.all()) != len(want) {
			t.Fatalf("step %d: each saw %d, all %d, want %d", step, seen, len(set.all()), len(want))
		}
	}
	for k := range want {
		set.del(k)
	}
	if set.n != 0 || set.slots != nil || set.get(keys[0]) != nil {
		t.Fatalf("emptied set: n %d, %d slots", set.n, len(set.slots))
	}
}
