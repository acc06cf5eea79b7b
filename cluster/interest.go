package cluster

import (
	"sort"
	"sync"
)

// interest keeps this node's live filters (ref-counted) and every other
// node's, as last-writer-wins per filter:
//
//   - each change of a node's set has a version (an epoch of that node's
//     clock, so versions keep rising across restarts);
//   - a delta (f, v, live) applies if v is above f's version and above the
//     node's floor;
//   - a full state (V, S) replaces every filter whose version is <= V by
//     S's verdict (live iff in S) and sets floor = V; filters changed by a
//     newer delta (version > V) keep it. Tombstones (dead filters) are only
//     needed between two states, and a state clears those it covers.
type interest struct {
	self  string
	clock *hlc

	mu sync.Mutex
	// local
	refs    map[string]int // REQUIRES: mu held
	version Epoch          // version of the last local change; REQUIRES: mu held
	dirty   bool           // local set changed since the last encoded state; REQUIRES: mu held
	// remote
	nodes map[string]*remoteInterest // REQUIRES: mu held
	gone  map[string]bool            // dead or left: ignored; REQUIRES: mu held
	// emit reports a change; called with mu held so that changes reach
	// the delegate in the order they were made.
	emit func(interestChange)
}

type remoteInterest struct {
	floor   Epoch
	filters map[string]ival
	live    int
	seeded  bool // a full state was applied (the next one is reported as a diff)
}

type ival struct {
	ver  Epoch
	live bool
}

// interestDelta is one change of a node's set.
type interestDelta struct {
	filter string
	ver    Epoch
	live   bool
}

// interestChange is what to report to the InterestDelegate.
type interestChange struct {
	node       string
	live, dead []string
	reset      bool // live is the complete set
}

func newInterest(self string, clock *hlc) *interest {
	return &interest{self: self, clock: clock, refs: make(map[string]int), nodes: make(map[string]*remoteInterest),
		gone: make(map[string]bool), emit: func(interestChange) {}}
}

// add counts one more local holder of f; it returns the delta to gossip
// when f went live.
func (t *interest) add(f string) (interestDelta, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.refs[f]++
	if t.refs[f] > 1 {
		return interestDelta{}, false
	}
	t.version = t.clock.Next()
	t.dirty = true
	return interestDelta{filter: f, ver: t.version, live: true}, true
}

// remove counts one holder less; the delta is returned when f went dead.
// known is false if f was not live here.
func (t *interest) remove(f string) (d interestDelta, changed, known bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	n, ok := t.refs[f]
	if !ok {
		return d, false, false
	}
	if n > 1 {
		t.refs[f] = n - 1
		return d, false, true
	}
	delete(t.refs, f)
	t.version = t.clock.Next()
	t.dirty = true
	return interestDelta{filter: f, ver: t.version, live: false}, true, true
}

// local returns this node's live filters (sorted) and their version.
func (t *interest) local(mark bool) (Epoch, []string, bool) {
	t.mu.Lock()
	out := make([]string, 0, len(t.refs))
	for f := range t.refs {
		out = append(out, f)
	}
	v, dirty := t.version, t.dirty
	if mark {
		t.dirty = false
	}
	t.mu.Unlock()
	sort.Strings(out)
	return v, out, dirty
}

// REQUIRES: mu held.
func (t *interest) remote(node string) *remoteInterest {
	r := t.nodes[node]
	if r == nil {
		r = &remoteInterest{filters: make(map[string]ival)}
		t.nodes[node] = r
	}
	return r
}

// applyDeltas applies gossiped deltas of node; it returns the deltas that
// changed something (to relay) and the change to report.
func (t *interest) applyDeltas(node string, ds []interestDelta) ([]interestDelta, interestChange) {
	ch := interestChange{node: node}
	if node == t.self {
		for _, d := range ds {
			t.clock.Observe(d.ver)
		}
		return nil, ch
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.gone[node] {
		return nil, ch
	}
	defer func() { t.report(ch) }()
	r := t.remote(node)
	var fresh []interestDelta
	// A batch may change one filter several times: report only the net
	// change of each, so live and dead never share a filter.
	var before map[string]bool
	for _, d := range ds {
		if d.ver <= r.floor {
			continue
		}
		cur, ok := r.filters[d.filter]
		if ok && d.ver <= cur.ver {
			continue
		}
		t.clock.Observe(d.ver)
		fresh = append(fresh, d)
		if before == nil {
			before = make(map[string]bool)
		}
		if _, seen := before[d.filter]; !seen {
			before[d.filter] = ok && cur.live
		}
		r.filters[d.filter] = ival{ver: d.ver, live: d.live}
		switch wasLive := ok && cur.live; {
		case d.live && !wasLive:
			r.live++
		case !d.live && wasLive:
			r.live--
		}
	}
	for _, d := range fresh {
		was, pending := before[d.filter]
		if !pending {
			continue
		}
		delete(before, d.filter)
		switch now := r.filters[d.filter].live; {
		case now && !was:
			ch.live = append(ch.live, d.filter)
		case !now && was:
			ch.dead = append(ch.dead, d.filter)
		}
	}
	return fresh, ch
}

// applyState applies node's full state (version v, live set). The first
// state of a node is reported as a reset with the complete set.
func (t *interest) applyState(node string, v Epoch, set []string) interestChange {
	ch := interestChange{node: node}
	if node == t.self {
		t.clock.Observe(v)
		return ch
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.gone[node] {
		return ch
	}
	r := t.remote(node)
	if v < r.floor {
		return ch
	}
	defer func() { t.report(ch) }()
	t.clock.Observe(v)
	r.floor = v
	in := make(map[string]struct{}, len(set))
	for _, f := range set {
		in[f] = struct{}{}
	}
	for f, cur := range r.filters {
		if cur.ver > v {
			continue // a newer delta
		}
		if _, ok := in[f]; ok {
			continue
		}
		delete(r.filters, f)
		if cur.live {
			r.live--
			ch.dead = append(ch.dead, f)
		}
	}
	for _, f := range set {
		cur, ok := r.filters[f]
		if ok && cur.ver > v {
			continue
		}
		r.filters[f] = ival{ver: v, live: true}
		if !ok || !cur.live {
			r.live++
			ch.live = append(ch.live, f)
		}
	}
	sort.Strings(ch.live)
	sort.Strings(ch.dead)
	if !r.seeded {
		r.seeded = true
		ch.reset = true
		ch.dead = nil
		ch.live = r.liveList()
	}
	return ch
}

func (r *remoteInterest) liveList() []string {
	out := make([]string, 0, r.live)
	for f, v := range r.filters {
		if v.live {
			out = append(out, f)
		}
	}
	sort.Strings(out)
	return out
}

// REQUIRES: mu held.
func (t *interest) report(ch interestChange) {
	if ch.reset || len(ch.live) > 0 || len(ch.dead) > 0 {
		t.emit(ch)
	}
}

// drop forgets node's interest (it died or left) and ignores it until
// revive; a reset to nothing is reported if anything was known.
func (t *interest) drop(node string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	r, ok := t.nodes[node]
	delete(t.nodes, node)
	t.gone[node] = true
	if ok && r.live > 0 {
		t.emit(interestChange{node: node, reset: true})
	}
}

// revive accepts node's interest again (it is alive).
func (t *interest) revive(node string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.gone, node)
}

// of returns node's live filters, sorted (this node's too).
func (t *interest) of(node string) []string {
	if node == t.self {
		_, l, _ := t.local(false)
		return l
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	r := t.nodes[node]
	if r == nil {
		return nil
	}
	return r.liveList()
}

func (t *interest) counts() (local, remote int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, r := range t.nodes {
		remote += r.live
	}
	return len(t.refs), remote
}

// isDirty reports whether the local set changed since the last state.
func (t *interest) isDirty() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.dirty
}
