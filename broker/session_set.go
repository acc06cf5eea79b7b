package broker

import "hash/maphash"

// sessionSet is one registry shard's sessions by key: an open-addressing
// table of session pointers with linear probing, the key read from the
// session itself. A Go map[skey]*session kept 24 B of key and 8 B of value
// per slot, ~68 B per session at 19,000 (TestIdleConnCost); this keeps
// 8 B per slot, at most 3/4 full. The caller holds the shard's lock.
type sessionSet struct {
	slots []*session // len is 0 or a power of two
	n     int
}

// keySeed hashes keys for the registry's shards and their sets.
var keySeed = maphash.MakeSeed()

func hashKey(k skey) uint64 {
	return maphash.String(keySeed, k.id) ^ uint64(k.proto)*0x9e3779b97f4a7c15
}

// home is the first slot to probe for a key of hash h. The low bits of h
// pick the shard (registry.shard), so the set uses the high ones.
func (t *sessionSet) home(h uint64) int { return int((h >> 32) & uint64(len(t.slots)-1)) }

// slot is where k is in a non-empty table, or the empty slot that ends
// its probe if it is not there.
func (t *sessionSet) slot(k skey) int {
	mask := len(t.slots) - 1
	i := t.home(hashKey(k))
	for t.slots[i] != nil && t.slots[i].key != k {
		i = (i + 1) & mask
	}
	return i
}

// get returns the session of k, or nil.
func (t *sessionSet) get(k skey) *session {
	if t.n == 0 {
		return nil
	}
	return t.slots[t.slot(k)]
}

// put stores s, replacing the session of the same key if there is one.
func (t *sessionSet) put(s *session) {
	if (t.n+1)*4 > len(t.slots)*3 {
		t.resize(max(len(t.slots)*2, 8))
	}
	i := t.slot(s.key)
	if t.slots[i] == nil {
		t.n++
	}
	t.slots[i] = s
}

// del removes the session of k, if any. The entries after it in its run
// move back into the hole (no tombstones), so a probe still meets every
// key before an empty slot.
func (t *sessionSet) del(k skey) {
	if t.n == 0 {
		return
	}
	i := t.slot(k)
	if t.slots[i] == nil {
		return
	}
	mask := len(t.slots) - 1
	for j := (i + 1) & mask; t.slots[j] != nil; j = (j + 1) & mask {
		// The entry at j may fill the hole at i unless its home lies
		// cyclically in (i, j]: then it would be found before the hole.
		h := t.home(hashKey(t.slots[j].key))
		if (j > i && (h <= i || h > j)) || (j < i && h <= i && h > j) {
			t.slots[i] = t.slots[j]
			i = j
		}
	}
	t.slots[i] = nil
	t.n--
	if t.n == 0 {
		t.slots = nil // an emptied shard gives its table back
	}
}

func (t *sessionSet) resize(size int) {
	old := t.slots
	t.slots, t.n = make([]*session, size), 0
	for _, s := range old {
		if s != nil {
			t.put(s)
		}
	}
}

// all returns the sessions in the set, in no order (a copy: the caller
// may delete while it walks them).
func (t *sessionSet) all() []*session {
	out := make([]*session, 0, t.n)
	t.each(func(s *session) { out = append(out, s) })
	return out
}

// each calls fn for every session; fn must not add or delete.
func (t *sessionSet) each(fn func(*session)) {
	for _, s := range t.slots {
		if s != nil {
			fn(s)
		}
	}
}
