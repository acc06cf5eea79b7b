package broker

import (
	"sync"
	"testing"
	"time"
)

// Ids are unique and increasing, also when many are made in one
// millisecond from several goroutines, and carry their time and node.
func TestIDs(t *testing.T) {
	g := idGen{node: nodeBits("node-a")}
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	const perG, gs = 20000, 4
	out := make([][]uint64, gs)
	var wg sync.WaitGroup
	for i := range gs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range perG {
				out[i] = append(out[i], g.next(now)) // all in the same millisecond
			}
		}()
	}
	wg.Wait()
	seen := map[uint64]bool{}
	for _, ids := range out {
		for j, id := range ids {
			if seen[id] {
				t.Fatalf("id %d repeated", id)
			}
			seen[id] = true
			if j > 0 && id <= ids[j-1] {
				t.Fatal("ids of one goroutine not increasing")
			}
			if (id>>13)&0x3ff != g.node {
				t.Fatal("node bits lost")
			}
		}
	}
	first := g.next(now)
	if d := idTime(first).Sub(now); d < 0 || d > time.Second {
		t.Fatalf("id time %v, made at %v", idTime(first), now) // borrowed at most 80k/8192 ms ahead
	}
	if later := g.next(now.Add(time.Hour)); idTime(later).Before(now.Add(time.Hour)) {
		t.Fatal("an id made later is dated earlier")
	}
	if g.next(now.Add(-time.Hour)) <= first {
		t.Fatal("the clock going back made an id go back")
	}
}
