package cluster

import (
	"testing"
	"time"
)

func testClock() *hlc {
	now := time.UnixMilli(1_000_000)
	return newHLC(0, func() time.Time { now = now.Add(time.Millisecond); return now })
}

func applyClaims(t *owners, node string, es ...ownEntry) []ownerChange {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []ownerChange
	for _, e := range es {
		out, _ = t.applyClaim(node, e.key, e.epoch, true, out)
	}
	return out
}

func TestOwnersNewestWins(t *testing.T) {
	a := newOwners("a", testClock())
	mine, prev := a.claim("k")
	if !prev.IsZero() || mine.Node != "a" {
		t.Fatalf("claim: %+v %+v", mine, prev)
	}
	// An older claim by b loses; a newer one takes over.
	if ch := applyClaims(a, "b", ownEntry{"k", mine.Epoch - 1}); len(ch) != 0 {
		t.Fatalf("older claim applied: %+v", ch)
	}
	ch := applyClaims(a, "b", ownEntry{"k", mine.Epoch + 5})
	if len(ch) != 1 || !ch[0].takeover || ch[0].new.Node != "b" || ch[0].old != mine {
		t.Fatalf("takeover: %+v", ch)
	}
	// Equal epochs: the higher name wins, on every node alike.
	if ch := applyClaims(a, "c", ownEntry{"k", mine.Epoch + 5}); len(ch) != 1 || ch[0].new.Node != "c" {
		t.Fatalf("tie-break: %+v", ch)
	}
	// Our next claim is newer than anything we saw.
	again, prev := a.claim("k")
	if again.Epoch <= mine.Epoch+5 || prev.Node != "c" {
		t.Fatalf("reclaim: %+v after %+v", again, prev)
	}
	// Copies of our own claims gossiped back change nothing.
	if ch := applyClaims(a, "a", ownEntry{"x", again.Epoch + 100}); len(ch) != 0 {
		t.Fatalf("own echo applied: %+v", ch)
	}
	if _, ok := a.lookup("x"); ok {
		t.Fatal("own echo created an entry")
	}
}

func TestOwnersReleaseAndState(t *testing.T) {
	a := newOwners("a", testClock())
	applyClaims(a, "b", ownEntry{"k1", 10 << 16}, ownEntry{"k2", 11 << 16}, ownEntry{"k3", 12 << 16})
	// b's release of k1 (epoch after its claim) deletes it.
	a.mu.Lock()
	ch, ok := a.applyRelease("b", "k1", 13<<16, nil)
	a.mu.Unlock()
	if !ok || len(ch) != 1 || !ch[0].new.IsZero() {
		t.Fatalf("release: %v %+v", ok, ch)
	}
	// b's state at H=20 lists k2 only: k3 (epoch <= H) goes; k4 arrives.
	ch = a.applyState("b", 20<<16, []ownEntry{{"k2", 11 << 16}, {"k4", 19 << 16}})
	if _, ok := a.lookup("k3"); ok {
		t.Fatal("k3 survived b's state")
	}
	if o, _ := a.lookup("k4"); o.Node != "b" {
		t.Fatalf("k4: %+v", o)
	}
	if len(ch) != 2 {
		t.Fatalf("changes: %+v", ch)
	}
	// A claim by b older than the state is stale: the state reflected it.
	if ch := applyClaims(a, "b", ownEntry{"k3", 15 << 16}); len(ch) != 0 {
		t.Fatalf("stale claim applied after state: %+v", ch)
	}
	// A claim newer than the state applies, and an older state is ignored
	// and deletes nothing.
	applyClaims(a, "b", ownEntry{"k5", 25 << 16})
	if ch := a.applyState("b", 18<<16, nil); len(ch) != 0 {
		t.Fatalf("older state applied: %+v", ch)
	}
	// A state at H=22 does not delete k5 (claimed after it).
	a.applyState("b", 22<<16, []ownEntry{{"k2", 11 << 16}, {"k4", 19 << 16}})
	if o, _ := a.lookup("k5"); o.Node != "b" {
		t.Fatalf("k5 deleted by an older state: %+v", o)
	}
	if got := a.keysOf("b"); len(got) != 3 {
		t.Fatalf("b owns %v", got)
	}
	if ch := a.forget("b"); len(ch) != 3 || len(a.keysOf("b")) != 0 {
		t.Fatalf("forget: %+v", ch)
	}
}

func TestOwnersStateTakesOver(t *testing.T) {
	a := newOwners("a", testClock())
	mine, _ := a.claim("s")
	ch := a.applyState("b", mine.Epoch+10, []ownEntry{{"s", mine.Epoch + 1}})
	if len(ch) != 1 || !ch[0].takeover {
		t.Fatalf("state takeover: %+v", ch)
	}
	if _, entries, _ := a.own(false); len(entries) != 0 {
		t.Fatalf("still own %v", entries)
	}
}

func TestOwnersRestore(t *testing.T) {
	a := newOwners("a", testClock())
	applyClaims(a, "b", ownEntry{"new", 50 << 16})
	if o, ok := a.restore("new", 40<<16); ok || o.Node != "b" {
		t.Fatalf("restore over a newer claim: %+v %v", o, ok)
	}
	if o, ok := a.restore("old", 40<<16); !ok || o.Epoch != 40<<16 {
		t.Fatalf("restore: %+v %v", o, ok)
	}
	if a.clock.Last() < 50<<16 {
		t.Fatal("clock did not observe")
	}
}
