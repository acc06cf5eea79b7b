package topic

import (
	"strings"
	"sync"
)

// Index holds one value per exact topic name (the retained message of that
// topic) in a tree of levels, so that a new subscription's filter finds its
// retained messages by walking the tree instead of testing every topic.
//
// An Index is safe for concurrent use. One RWMutex guards the tree: Set and
// Delete take it for writing; Get, Len and MatchFilter for reading.
type Index[V any] struct {
	mu struct {
		sync.RWMutex
		root rnode[V] // REQUIRES: mu held; the root stands for no level and never has a value
		n    int      // number of names with a value
	}
}

// rnode is one level of a topic name.
type rnode[V any] struct {
	children map[string]*rnode[V] // nil until the first child
	name     string               // the full topic name, when has is set
	value    V
	has      bool
}

// NewIndex returns an empty index.
func NewIndex[V any]() *Index[V] {
	return &Index[V]{}
}

// Set stores v under the topic name, replacing any value there. name should
// have passed ValidName. Set copies name if it keeps it, so name may alias a
// network buffer.
func (x *Index[V]) Set(name string, v V) {
	x.mu.Lock()
	defer x.mu.Unlock()
	n := &x.mu.root
	src, cloned := name, false
	for i := 0; i <= len(src); {
		start := i
		var level string
		level, i = nextLevel(src, i)
		c := n.children[level]
		if c == nil {
			if !cloned {
				// Clone once; every new level key and the stored name are
				// substrings of the clone, so they share its memory.
				src, cloned = strings.Clone(name), true
				level = src[start : start+len(level)]
			}
			if n.children == nil {
				n.children = make(map[string]*rnode[V], 1)
			}
			c = &rnode[V]{}
			n.children[level] = c
		}
		n = c
	}
	if !n.has {
		n.has = true
		if !cloned {
			src = strings.Clone(name)
		}
		n.name = src
		x.mu.n++
	}
	n.value = v
}

// Get returns the value stored under name.
func (x *Index[V]) Get(name string) (V, bool) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	n := &x.mu.root
	for i := 0; i <= len(name); {
		var level string
		level, i = nextLevel(name, i)
		if n = n.children[level]; n == nil {
			var zero V
			return zero, false
		}
	}
	return n.value, n.has
}

// Delete removes the value under name, if any, and prunes the levels it
// leaves empty.
func (x *Index[V]) Delete(name string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.mu.root.remove(name, 0) {
		x.mu.n--
	}
}

// remove clears the value at name[i:] below n and reports whether there was
// one. REQUIRES: mu held for writing.
func (n *rnode[V]) remove(name string, i int) bool {
	if i > len(name) {
		if !n.has {
			return false
		}
		var zero V
		n.value, n.name, n.has = zero, "", false
		return true
	}
	level, next := nextLevel(name, i)
	c := n.children[level]
	if c == nil || !c.remove(name, next) {
		return false
	}
	if !c.has && len(c.children) == 0 {
		delete(n.children, level)
		if len(n.children) == 0 {
			n.children = nil
		}
	}
	return true
}

// Len returns the number of names with a value.
func (x *Index[V]) Len() int {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return x.mu.n
}

// MatchFilter calls fn for every stored name that the topic filter matches
// (see Match; a shared filter matches through its inner filter), in no
// particular order, until fn returns false. Names starting with '$' are not
// matched by a filter starting with a wildcard [MQTT-4.7.2-1].
//
// fn runs under the read lock: it must not call back into the index.
func (x *Index[V]) MatchFilter(filter string, fn func(name string, v V) bool) {
	_, filter, _ = ParseShare(filter)
	x.mu.RLock()
	defer x.mu.RUnlock()
	x.mu.root.walk(filter, 0, true, fn)
}

// walk visits the names below n that match the levels filter[i:]; it returns
// false once fn has asked to stop. root marks the root, where wildcards skip
// '$' levels. REQUIRES: mu held for reading.
func (n *rnode[V]) walk(filter string, i int, root bool, fn func(string, V) bool) bool {
	if i > len(filter) {
		if n.has {
			return fn(n.name, n.value)
		}
		return true
	}
	level, next := nextLevel(filter, i)
	switch level {
	case "#":
		// "a/#" matches "a" itself [MQTT-4.7.1-2]; the root is no topic.
		if n.has && !fn(n.name, n.value) {
			return false
		}
		for l, c := range n.children {
			if root && strings.HasPrefix(l, "$") {
				continue
			}
			if !c.all(fn) {
				return false
			}
		}
	case "+":
		for l, c := range n.children {
			if root && strings.HasPrefix(l, "$") {
				continue
			}
			if !c.walk(filter, next, false, fn) {
				return false
			}
		}
	default:
		if c := n.children[level]; c != nil {
			return c.walk(filter, next, false, fn)
		}
	}
	return true
}

// all visits n and every name below it.
func (n *rnode[V]) all(fn func(string, V) bool) bool {
	if n.has && !fn(n.name, n.value) {
		return false
	}
	for _, c := range n.children {
		if !c.all(fn) {
			return false
		}
	}
	return true
}
