package broker

import "testing"

// The wheel's slot/position bookkeeping stays consistent through adds,
// moves, removals and visits.
func TestWheelRemove(t *testing.T) {
	var w wheel
	w.last = 100
	cs := make([]*transport, 6)
	for i := range cs {
		cs[i] = &transport{}
		w.add(cs[i], 101+int64(i%2)) // three in slot 101, three in 102
	}
	w.remove(cs[0])   // first of slot 101: the last one moves into its place
	w.remove(cs[0])   // twice is a no-op
	w.add(cs[3], 105) // moved from slot 102
	check := func() {
		t.Helper()
		n := 0
		for i, slot := range w.slots {
			for j, c := range slot {
				if c.wslot != int32(i)+1 || c.wpos != int32(j) {
					t.Fatalf("conn at slot %d pos %d records slot %d pos %d", i, j, c.wslot-1, c.wpos)
				}
				n++
			}
		}
		if n != 5 {
			t.Fatalf("%d conns in the wheel, want 5", n)
		}
	}
	check()
	var seen []*transport
	w.advance(102, func(c *transport) {
		if c.wslot != 0 {
			t.Fatal("visited conn still recorded in the wheel")
		}
		seen = append(seen, c)
		w.add(c, 110) // re-slotted, as checkDeadline does
	})
	if len(seen) != 4 {
		t.Fatalf("visited %d conns, want 4 (slots 101 and 102)", len(seen))
	}
	check()
	for _, c := range cs[1:] {
		w.remove(c)
	}
	for _, slot := range w.slots {
		if len(slot) != 0 {
			t.Fatal("wheel not empty after removing everything")
		}
	}
}
