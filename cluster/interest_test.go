package cluster

import (
	"slices"
	"testing"
)

func TestInterestRefCount(t *testing.T) {
	in := newInterest("a", testClock())
	if _, ok := in.add("x/#"); !ok {
		t.Fatal("first add not live")
	}
	if _, ok := in.add("x/#"); ok {
		t.Fatal("second add gossiped")
	}
	if _, changed, known := in.remove("x/#"); changed || !known {
		t.Fatal("first remove went dead")
	}
	d, changed, _ := in.remove("x/#")
	if !changed || d.live {
		t.Fatal("last remove not dead")
	}
	if _, _, known := in.remove("x/#"); known {
		t.Fatal("remove of a dead filter known")
	}
}

func TestInterestDeltasRaceState(t *testing.T) {
	in := newInterest("a", testClock())
	// Deltas in any order: the newest per filter wins.
	_, ch := in.applyDeltas("b", []interestDelta{{"f", 5, false}, {"f", 3, true}, {"g", 4, true}})
	if !slices.Equal(ch.live, []string{"g"}) || len(ch.dead) != 0 {
		t.Fatalf("deltas: %+v", ch)
	}
	if got := in.of("b"); !slices.Equal(got, []string{"g"}) {
		t.Fatalf("after deltas: %v", got)
	}
	// A delta newer than the state that arrives before it survives it.
	in.applyDeltas("b", []interestDelta{{"h", 20, true}})
	ch = in.applyState("b", 10, []string{"f", "k"})
	if !ch.reset || !slices.Equal(ch.live, []string{"f", "h", "k"}) {
		t.Fatalf("first state: %+v", ch)
	}
	// Deltas the state covered are stale now.
	if fresh, ch := in.applyDeltas("b", []interestDelta{{"f", 9, false}, {"g", 8, true}}); len(fresh) != 0 || len(ch.live)+len(ch.dead) != 0 {
		t.Fatalf("stale deltas applied: %+v %+v", fresh, ch)
	}
	// Later states report diffs, not resets; an older one is ignored.
	ch = in.applyState("b", 30, []string{"k"})
	if ch.reset || !slices.Equal(ch.dead, []string{"f", "h"}) || len(ch.live) != 0 {
		t.Fatalf("second state: %+v", ch)
	}
	if ch := in.applyState("b", 25, []string{"zzz"}); len(ch.live) != 0 {
		t.Fatalf("older state applied: %+v", ch)
	}
	var emitted []interestChange
	in.emit = func(ch interestChange) { emitted = append(emitted, ch) }
	in.drop("b")
	if len(in.of("b")) != 0 || len(emitted) != 1 || !emitted[0].reset || emitted[0].live != nil {
		t.Fatalf("drop: %v %+v", in.of("b"), emitted)
	}
	// A gone node's gossip is ignored until it is alive again; then its
	// next state is a reset.
	if ch := in.applyState("b", 40, []string{"k"}); ch.reset || len(in.of("b")) != 0 {
		t.Fatalf("state of a gone node applied: %+v", ch)
	}
	in.revive("b")
	if ch := in.applyState("b", 30, []string{"k"}); !ch.reset || len(emitted) != 2 {
		t.Fatalf("state after revive: %+v", ch)
	}
}
