package cluster

import (
	"sort"
	"sync"
)

// Owner is who owns a key: a node and the epoch of its claim. The newer
// (Epoch, then Node as a tie-break) of two claims wins everywhere.
type Owner struct {
	Node  string `json:"node"`
	Epoch Epoch  `json:"epoch"`
	// Live is false while Node is dead or has left (Lookup fills it; the
	// delegates do not).
	Live bool `json:"live"`
}

// IsZero reports whether o names no owner.
func (o Owner) IsZero() bool { return o.Node == "" }

// newer reports whether claim o beats claim p.
func (o Owner) newer(p Owner) bool {
	if o.Epoch != p.Epoch {
		return o.Epoch > p.Epoch
	}
	return o.Node > p.Node
}

// ownerChange is one change to report to the OwnershipDelegate.
type ownerChange struct {
	key      string
	old, new Owner
	takeover bool // old.Node was this node
}

// owners is the ownership table: key -> (node, epoch), plus an index by
// node. Rules (docs/cluster.md, "Ownership"):
//
//   - a claim (X, e) replaces the entry for its key only if newer;
//   - a release (X, r) deletes the entry if it is X's with an epoch below r;
//   - X's full state (hwm H, entries S) is authoritative for X: every
//     entry of X with an epoch <= H that S lacks is deleted, and S's
//     entries are applied as claims; afterwards claims and releases of X
//     with an epoch <= H are stale (floor[X] = H) and ignored, since the
//     state already reflects them;
//   - entries naming this node are only ever made by this node: copies
//     gossiped back are ignored (their epochs are observed).
type owners struct {
	self  string
	clock *hlc

	mu     sync.Mutex
	table  map[string]Owner               // REQUIRES: mu held
	byNode map[string]map[string]struct{} // REQUIRES: mu held
	floor  map[string]Epoch               // REQUIRES: mu held
	// stateDirty: our own entries changed since the last encoded state.
	stateDirty bool // REQUIRES: mu held
	// emit reports changes; called with mu held so that they reach the
	// delegate in the order they were made.
	emit func([]ownerChange)
}

func newOwners(self string, clock *hlc) *owners {
	return &owners{
		self: self, clock: clock,
		table:  make(map[string]Owner),
		byNode: make(map[string]map[string]struct{}),
		floor:  make(map[string]Epoch),
		emit:   func([]ownerChange) {},
	}
}

// set stores o for key, keeping byNode in step.
// REQUIRES: mu held.
func (t *owners) set(key string, o Owner) {
	if cur, ok := t.table[key]; ok {
		if cur.Node == o.Node {
			t.table[key] = o
			return
		}
		t.unindex(key, cur.Node)
	}
	t.table[key] = o
	s := t.byNode[o.Node]
	if s == nil {
		s = make(map[string]struct{})
		t.byNode[o.Node] = s
	}
	s[key] = struct{}{}
	if o.Node == t.self {
		t.stateDirty = true
	}
}

// REQUIRES: mu held.
func (t *owners) del(key string) {
	if cur, ok := t.table[key]; ok {
		delete(t.table, key)
		t.unindex(key, cur.Node)
	}
}

// REQUIRES: mu held.
func (t *owners) unindex(key, node string) {
	if s := t.byNode[node]; s != nil {
		delete(s, key)
		if len(s) == 0 {
			delete(t.byNode, node)
		}
	}
	if node == t.self {
		t.stateDirty = true
	}
}

// claim makes this node the owner of key with a fresh epoch above any
// known for it; it returns the new and the previous owner.
func (t *owners) claim(key string) (now, prev Owner) {
	t.mu.Lock()
	defer t.mu.Unlock()
	prev = t.table[key]
	e := t.clock.NextAfter(prev.Epoch)
	now = Owner{Node: t.self, Epoch: e}
	t.set(key, now)
	return now, prev
}

// restore re-asserts this node's claim on key at its original epoch e;
// false if a newer claim by another node is known.
func (t *owners) restore(key string, e Epoch) (Owner, bool) {
	t.clock.Observe(e)
	t.mu.Lock()
	defer t.mu.Unlock()
	o := Owner{Node: t.self, Epoch: e}
	cur, ok := t.table[key]
	if ok && cur.Node != t.self && cur.newer(o) {
		return cur, false
	}
	if ok && cur.Node == t.self && cur.Epoch >= e {
		return cur, true
	}
	t.set(key, o)
	return o, true
}

// release drops this node's claim on key; ok is false if it is not ours.
// r is the release epoch to gossip.
func (t *owners) release(key string) (r Epoch, ok bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	cur, have := t.table[key]
	if !have || cur.Node != t.self {
		return 0, false
	}
	t.del(key)
	return t.clock.Next(), true
}

func (t *owners) lookup(key string) (Owner, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	o, ok := t.table[key]
	return o, ok
}

// applyClaim applies a gossiped claim of key by node at e; changed reports
// whether the table changed (the claim is then relayed).
// REQUIRES: mu held.
func (t *owners) applyClaim(node, key string, e Epoch, floorCheck bool, out []ownerChange) ([]ownerChange, bool) {
	if node == t.self {
		t.clock.Observe(e)
		return out, false
	}
	if floorCheck && e <= t.floor[node] {
		return out, false
	}
	o := Owner{Node: node, Epoch: e}
	cur, ok := t.table[key]
	if ok && !o.newer(cur) {
		return out, false
	}
	t.clock.Observe(e)
	t.set(key, o)
	out = append(out, ownerChange{key: key, old: cur, new: o, takeover: cur.Node == t.self})
	return out, true
}

// applyRelease applies a gossiped release of key by node at r.
// REQUIRES: mu held.
func (t *owners) applyRelease(node, key string, r Epoch, out []ownerChange) ([]ownerChange, bool) {
	if node == t.self {
		t.clock.Observe(r)
		return out, false
	}
	if r <= t.floor[node] {
		return out, false
	}
	cur, ok := t.table[key]
	if !ok || cur.Node != node || cur.Epoch >= r {
		return out, false
	}
	t.clock.Observe(r)
	t.del(key)
	return append(out, ownerChange{key: key, old: cur}), true
}

// ownEntry is one entry of a node's own state.
type ownEntry struct {
	key   string
	epoch Epoch
}

// applyState applies node's authoritative state: its high-water mark hwm
// and everything it owns. A state older than one already applied is
// ignored.
func (t *owners) applyState(node string, hwm Epoch, entries []ownEntry) []ownerChange {
	t.mu.Lock()
	defer t.mu.Unlock()
	if node == t.self {
		t.clock.Observe(hwm)
		return nil
	}
	if hwm < t.floor[node] {
		return nil
	}
	t.clock.Observe(hwm)
	t.floor[node] = hwm
	var out []ownerChange
	in := make(map[string]struct{}, len(entries))
	for _, e := range entries {
		in[e.key] = struct{}{}
	}
	for key := range t.byNode[node] {
		if _, ok := in[key]; ok {
			continue
		}
		cur := t.table[key]
		if cur.Epoch <= hwm {
			t.del(key)
			out = append(out, ownerChange{key: key, old: cur})
		}
	}
	for _, e := range entries {
		out, _ = t.applyClaim(node, e.key, e.epoch, false, out)
	}
	if len(out) > 0 {
		t.emit(out)
	}
	return out
}

// own returns this node's entries sorted by epoch and the clock's
// high-water mark, taken together so the mark covers every entry; dirty
// reports whether they changed since the last call with mark=true.
func (t *owners) own(mark bool) (hwm Epoch, entries []ownEntry, dirty bool) {
	t.mu.Lock()
	hwm = t.clock.Last()
	s := t.byNode[t.self]
	entries = make([]ownEntry, 0, len(s))
	for key := range s {
		entries = append(entries, ownEntry{key, t.table[key].Epoch})
	}
	dirty = t.stateDirty
	if mark {
		t.stateDirty = false
	}
	t.mu.Unlock()
	sort.Slice(entries, func(i, j int) bool { return entries[i].epoch < entries[j].epoch })
	return hwm, entries, dirty
}

// forget drops every entry of node (its DeadNodeTTL passed, or the broker
// said so) and its floor.
func (t *owners) forget(node string) []ownerChange {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []ownerChange
	for key := range t.byNode[node] {
		cur := t.table[key]
		t.del(key)
		out = append(out, ownerChange{key: key, old: cur})
	}
	delete(t.floor, node)
	if len(out) > 0 {
		t.emit(out)
	}
	return out
}

// keysOf lists the keys node owns.
func (t *owners) keysOf(node string) []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.byNode[node]
	out := make([]string, 0, len(s))
	for k := range s {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func (t *owners) counts() (total, mine int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.table), len(t.byNode[t.self])
}

// dirty reports whether our own entries changed since the last state.
func (t *owners) dirty() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.stateDirty
}
