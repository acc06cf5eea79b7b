package topic

import (
	"strings"
	"sync"
	"sync/atomic"
)

// Subscription is what a subscriber asked for on one filter.
type Subscription struct {
	QoS               byte
	NoLocal           bool
	RetainAsPublished bool
	RetainHandling    byte
	ID                uint32 // MQTT 5 subscription identifier, 0 if none
}

// Trie maps topic filters to the subscribers holding them and finds, for a
// published topic name, every subscription that matches. K identifies a
// subscriber (a session pointer or client id); it is compared with ==.
//
// A Trie is safe for concurrent use. One RWMutex guards the whole tree:
// Subscribe and Unsubscribe take it for writing, Match and Len for reading, so
// publishes on all event loops match in parallel. The only state Match
// changes is the round-robin cursor of a $share group, which is atomic.
type Trie[K comparable] struct {
	mu struct {
		sync.RWMutex
		root node[K] // REQUIRES: mu held (read for Match, write to change)
		n    int     // number of (filter, key) subscriptions
	}
}

// node is one level of a filter: 64 bytes on 64-bit platforms, one size
// class, since a broker of unique per-device topics holds one per client.
// The '+' and '#' children have their own fields, not map entries, so that
// Match reaches them without hashing. A '#' node never has children: '#' is
// always the last level.
type node[K comparable] struct {
	children map[string]*node[K] // exact levels; nil until the first one
	plus     *node[K]
	hash     *node[K]
	subs     subList[K]     // non-shared subscriptions whose filter ends here
	groups   *shareGroup[K] // $share groups whose inner filter ends here: a list, as there are few
}

func (n *node[K]) empty() bool {
	return len(n.children) == 0 && n.plus == nil && n.hash == nil &&
		len(n.subs.items) == 0 && n.groups == nil
}

// shareGroup is one shared subscription: a group name on one filter. A
// message matching the filter goes to one member.
type shareGroup[K comparable] struct {
	name    string
	filter  string // the whole "$share/<group>/<filter>", for MatchSkip
	members subList[K]
	sibling *shareGroup[K] // the next group on the same node
	// next is the round-robin cursor. Match advances it under the read lock,
	// concurrently with other Matches, hence atomic.
	next atomic.Uint32
}

// entry is one subscriber on one filter.
type entry[K comparable] struct {
	key K
	sub Subscription
}

// subList is a set of subscribers. Publishing iterates it, so the entries sit
// in a slice; subscribing and unsubscribing look a key up, so once the set is
// large (a topic like cim/all that every app holds) a key->position map keeps
// that O(1) instead of a scan.
type subList[K comparable] struct {
	items []entry[K]
	index map[K]int32 // nil while the set is small
}

// The index is built above indexAbove entries and dropped below indexBelow;
// the gap keeps a set hovering at the threshold from rebuilding it each time.
// BenchmarkSubListFind puts the crossover of a scan and a map lookup for
// pointer keys near 32 entries (about 13 ns each).
const (
	indexAbove = 32
	indexBelow = 16
)

func (l *subList[K]) find(key K) int {
	if l.index != nil {
		if i, ok := l.index[key]; ok {
			return int(i)
		}
		return -1
	}
	for i := range l.items {
		if l.items[i].key == key {
			return i
		}
	}
	return -1
}

// set adds or replaces key's subscription and reports whether key is new.
func (l *subList[K]) set(key K, sub Subscription) bool {
	if i := l.find(key); i >= 0 {
		l.items[i].sub = sub
		return false
	}
	l.items = append(l.items, entry[K]{key: key, sub: sub})
	switch {
	case l.index != nil:
		l.index[key] = int32(len(l.items) - 1)
	case len(l.items) > indexAbove:
		l.index = make(map[K]int32, len(l.items))
		for i := range l.items {
			l.index[l.items[i].key] = int32(i)
		}
	}
	return true
}

// remove deletes key and reports whether it was there. The last entry moves
// into the hole, so order is not kept; nothing relies on it but the
// round-robin of share groups, which only skips a beat.
func (l *subList[K]) remove(key K) bool {
	i := l.find(key)
	if i < 0 {
		return false
	}
	last := len(l.items) - 1
	if i != last {
		l.items[i] = l.items[last]
		if l.index != nil {
			l.index[l.items[i].key] = int32(i)
		}
	}
	l.items[last] = entry[K]{} // drop the reference so the key can be collected
	l.items = l.items[:last]
	if l.index != nil {
		delete(l.index, key)
		if len(l.items) < indexBelow {
			l.index = nil
		}
	}
	// Give memory back after a mass unsubscribe (a flash crowd leaving).
	switch {
	case len(l.items) == 0:
		l.items = nil
	case cap(l.items) > 64 && len(l.items) < cap(l.items)/4:
		l.items = append(make([]entry[K], 0, 2*len(l.items)), l.items...)
	}
	return true
}

// NewTrie returns an empty trie.
func NewTrie[K comparable]() *Trie[K] {
	return &Trie[K]{}
}

// Subscribe adds or replaces key's subscription on filter (which may be
// "$share/g/f"). It reports whether the (filter, key) pair is new.
//
// filter should have passed ValidFilter; an invalid one is stored without
// complaint but what it matches is unspecified. Subscribe copies the parts
// of filter it keeps, so filter may alias a network buffer.
func (t *Trie[K]) Subscribe(filter string, key K, sub Subscription) (isNew bool) {
	group, inner, shared := ParseShare(filter)
	t.mu.Lock()
	defer t.mu.Unlock()
	n := &t.mu.root
	owned := false
	for i := 0; i <= len(inner); {
		start := i
		var level string
		level, i = nextLevel(inner, i)
		c := n.lookup(level)
		if c == nil {
			if !owned {
				// The caller's filter may alias a decode buffer (docs/architecture.md,
				// rule 2). Clone it once; the keys of all nodes created here
				// are substrings of the clone.
				inner, owned = strings.Clone(inner), true
				level = inner[start : start+len(level)]
			}
			c = n.add(level)
		}
		n = c
	}
	if !shared {
		isNew = n.subs.set(key, sub)
	} else {
		g := n.group(group)
		if g == nil {
			g = &shareGroup[K]{name: strings.Clone(group), filter: strings.Clone(filter), sibling: n.groups}
			n.groups = g
		}
		isNew = g.members.set(key, sub)
	}
	if isNew {
		t.mu.n++
	}
	return isNew
}

// add creates n's child for level, which it keeps: level must not alias
// a buffer. REQUIRES: mu held for writing, no child for level yet.
func (n *node[K]) add(level string) *node[K] {
	c := &node[K]{}
	switch level {
	case "+":
		n.plus = c
	case "#":
		n.hash = c
	default:
		if n.children == nil {
			n.children = make(map[string]*node[K], 1)
		}
		n.children[level] = c
	}
	return c
}

// lookup returns n's child for level, or nil.
func (n *node[K]) lookup(level string) *node[K] {
	switch level {
	case "+":
		return n.plus
	case "#":
		return n.hash
	}
	return n.children[level]
}

func (n *node[K]) group(name string) *shareGroup[K] {
	for g := n.groups; g != nil; g = g.sibling {
		if g.name == name {
			return g
		}
	}
	return nil
}

// Unsubscribe removes key from filter and reports whether it was there.
// Nodes left empty are pruned, so a trie whose subscribers all left holds no
// memory for their filters.
func (t *Trie[K]) Unsubscribe(filter string, key K) bool {
	group, inner, shared := ParseShare(filter)
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.mu.root.remove(inner, 0, group, shared, key) {
		return false
	}
	t.mu.n--
	return true
}

// remove deletes key's subscription from the filter levels filter[i:] below
// n, pruning children it empties. Recursion depth is the number of levels.
// REQUIRES: mu held for writing.
func (n *node[K]) remove(filter string, i int, group string, shared bool, key K) bool {
	if i > len(filter) {
		if !shared {
			return n.subs.remove(key)
		}
		for p := &n.groups; *p != nil; p = &(*p).sibling {
			g := *p
			if g.name != group {
				continue
			}
			if !g.members.remove(key) {
				return false
			}
			if len(g.members.items) == 0 {
				*p = g.sibling // unlink the empty group
			}
			return true
		}
		return false
	}
	level, next := nextLevel(filter, i)
	c := n.lookup(level)
	if c == nil || !c.remove(filter, next, group, shared, key) {
		return false
	}
	if c.empty() {
		switch level {
		case "+":
			n.plus = nil
		case "#":
			n.hash = nil
		default:
			delete(n.children, level)
			if len(n.children) == 0 {
				n.children = nil // maps never shrink; drop it
			}
		}
	}
	return true
}

// Len returns the number of (filter, key) subscriptions, shared ones included.
func (t *Trie[K]) Len() int {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.mu.n
}

// Match calls fn once for every (key, subscription) whose filter matches
// name. For each $share group with a matching filter, fn is called once, for
// one member chosen round-robin among the members for which pick(key)
// returns true (if none does, among all members; pick may be nil = all
// eligible). Round-robin is exact for sequential calls; concurrent calls each
// start from their own slot, so they spread too.
//
// Match holds the read lock while it calls fn and pick: they must not call
// back into the trie, and should be quick (copy the key out, deliver later).
// The same key may be visited more than once (overlapping filters); callers
// merge. Match does not allocate.
func (t *Trie[K]) Match(name string, pick func(K) bool, fn func(K, Subscription)) {
	t.MatchSkip(name, pick, nil, fn)
}

// MatchSkip is Match, except that a $share group for which skip (when not
// nil) reports true is passed over: no member gets the message. A cluster
// uses it so that each shared subscription is served on one node only
// (skip gets the whole "$share/<group>/<filter>").
func (t *Trie[K]) MatchSkip(name string, pick func(K) bool, skip func(share string) bool, fn func(K, Subscription)) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	root := &t.mu.root
	level, next := nextLevel(name, 0)
	// [MQTT-4.7.2-1]: a filter starting with a wildcard does not match a name
	// starting with '$', so the root's '+' and '#' are skipped for them.
	if name == "" || name[0] != '$' {
		if root.hash != nil {
			root.hash.emit(pick, skip, fn)
		}
		if root.plus != nil {
			root.plus.match(name, next, pick, skip, fn)
		}
	}
	if c := root.children[level]; c != nil {
		c.match(name, next, pick, skip, fn)
	}
}

// match visits the subscriptions below n (which matched the levels of name
// before i) for the levels name[i:]. Exact children are followed in a loop,
// '+' children by recursion, so depth grows only with '+' levels.
// REQUIRES: mu held for reading.
func (n *node[K]) match(name string, i int, pick func(K) bool, skip func(string) bool, fn func(K, Subscription)) {
	for {
		if i > len(name) {
			n.emit(pick, skip, fn)
			if n.hash != nil {
				n.hash.emit(pick, skip, fn) // "a/#" matches "a" [MQTT-4.7.1-2]
			}
			return
		}
		level, next := nextLevel(name, i)
		if n.hash != nil {
			n.hash.emit(pick, skip, fn)
		}
		if n.plus != nil {
			n.plus.match(name, next, pick, skip, fn)
		}
		c := n.children[level] // a lookup in a nil map is fine
		if c == nil {
			return
		}
		n, i = c, next
	}
}

// emit visits the subscriptions whose filter ends at n.
// REQUIRES: mu held for reading.
func (n *node[K]) emit(pick func(K) bool, skip func(string) bool, fn func(K, Subscription)) {
	for i := range n.subs.items {
		e := &n.subs.items[i]
		fn(e.key, e.sub)
	}
	for g := n.groups; g != nil; g = g.sibling {
		if skip == nil || !skip(g.filter) {
			g.deliver(pick, fn)
		}
	}
}

// deliver hands one message of the group to one member. Each call claims a
// cursor slot with an atomic add, then walks from it to the first member pick
// accepts; when that skipped members, the cursor jumps past the chosen one
// (if no other call moved it meanwhile), so sequential calls cycle through
// the eligible members exactly.
func (g *shareGroup[K]) deliver(pick func(K) bool, fn func(K, Subscription)) {
	items := g.members.items
	n := uint32(len(items))
	if n == 0 {
		return // empty groups are removed; be safe anyway
	}
	c := g.next.Add(1) - 1
	start := c % n
	chosen := start
	if pick != nil {
		for j := uint32(0); j < n; j++ {
			k := start + j
			if k >= n {
				k -= n
			}
			if pick(items[k].key) {
				chosen = k
				if j > 0 {
					g.next.CompareAndSwap(c+1, c+1+j)
				}
				break
			}
		}
	}
	e := &items[chosen]
	fn(e.key, e.sub)
}
