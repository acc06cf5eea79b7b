package cluster

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"testing"
)

// Deltas and states delivered late, lost or out of order (as gossip does)
// must leave the table, and the view built from the emitted changes,
// equal to the source after a final state.
func TestInterestRandomOrderMatchesModel(t *testing.T) {
	for seed := range 2000 {
		rng := rand.New(rand.NewPCG(uint64(seed), 1))
		src := newInterest("b", testClock())
		dst := newInterest("a", testClock())
		model := map[string]bool{}
		dst.emit = func(ch interestChange) {
			if ch.reset {
				model = map[string]bool{}
			}
			for _, f := range ch.live {
				model[f] = true
			}
			for _, f := range ch.dead {
				delete(model, f)
			}
		}
		var pending []func()
		for range 60 {
			f := fmt.Sprintf("f%d", rng.IntN(6))
			var d interestDelta
			var ok bool
			if rng.IntN(2) == 0 {
				d, ok = src.add(f)
			} else {
				d, ok, _ = src.remove(f)
			}
			if ok {
				pending = append(pending, func() { dst.applyDeltas("b", []interestDelta{d}) })
			}
			if rng.IntN(5) == 0 {
				v, set, _ := src.local(false)
				pending = append(pending, func() { dst.applyState("b", v, set) })
			}
			if rng.IntN(3) == 0 && len(pending) > 0 {
				i := rng.IntN(len(pending))
				if rng.IntN(4) != 0 {
					pending[i]()
				}
				pending = slices.Delete(pending, i, i+1)
			}
		}
		v, set, _ := src.local(false)
		dst.applyState("b", v, set)
		var m []string
		for f := range model {
			m = append(m, f)
		}
		sort.Strings(m)
		if !slices.Equal(dst.of("b"), set) || !slices.Equal(m, set) {
			t.Fatalf("seed %d: table %v model %v want %v", seed, dst.of("b"), m, set)
		}
	}
}

// Batches that change one filter several times, shuffled.
func TestInterestRandomBatchesMatchModel(t *testing.T) {
	for seed := range 2000 {
		rng := rand.New(rand.NewPCG(uint64(seed), 2))
		src := newInterest("b", testClock())
		dst := newInterest("a", testClock())
		model := map[string]bool{}
		dst.emit = func(ch interestChange) {
			if ch.reset {
				model = map[string]bool{}
			}
			for _, f := range ch.live {
				model[f] = true
			}
			for _, f := range ch.dead {
				delete(model, f)
			}
		}
		var batch []interestDelta
		for range 80 {
			f := fmt.Sprintf("f%d", rng.IntN(5))
			var d interestDelta
			var ok bool
			if rng.IntN(2) == 0 {
				d, ok = src.add(f)
			} else {
				d, ok, _ = src.remove(f)
			}
			if ok && rng.IntN(5) != 0 {
				batch = append(batch, d)
			}
			if rng.IntN(6) == 0 {
				rng.Shuffle(len(batch), func(i, j int) { batch[i], batch[j] = batch[j], batch[i] })
				dst.applyDeltas("b", batch)
				batch = nil
			}
			if rng.IntN(15) == 0 {
				v, set, _ := src.local(false)
				dst.applyState("b", v, set)
			}
		}
		v, set, _ := src.local(false)
		dst.applyState("b", v, set)
		var m []string
		for f := range model {
			m = append(m, f)
		}
		sort.Strings(m)
		if !slices.Equal(dst.of("b"), set) || !slices.Equal(m, set) {
			t.Fatalf("seed %d: table %v model %v want %v", seed, dst.of("b"), m, set)
		}
	}
}
