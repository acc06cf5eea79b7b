package broker

import (
	"sync"

	"github.com/cimgo/cim/broker/topic"
)

// Subscriptions live in three places that must agree: the routing trie
// (who gets a topic), the session's own list (what is stored and resumed),
// and the per-filter counts behind Interest (what this node as a whole
// wants). subscribe and unsubscribe are the only ways in; the session record
// is saved by the caller once per request (session.save), not per filter.

// filterCounts counts local subscribers per filter, for Interest.
type filterCounts struct {
	mu sync.Mutex
	n  map[string]int32 // REQUIRES: mu held
}

// change adds d to filter's count and tells the delegate when the filter
// goes live or dead. Any goroutine; the lock is a leaf.
func (fc *filterCounts) change(filter string, d int32, to Interest) {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	if fc.n == nil {
		fc.n = make(map[string]int32)
	}
	was := fc.n[filter]
	now := was + d
	if now <= 0 {
		delete(fc.n, filter)
	} else {
		fc.n[filter] = now
	}
	switch {
	case to == nil:
	case was == 0 && now > 0:
		to.FilterLive(filter)
	case was > 0 && now <= 0:
		to.FilterDead(filter)
	}
}

// filters returns every live filter (a snapshot, for a full state).
func (fc *filterCounts) filters() []string {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	out := make([]string, 0, len(fc.n))
	for f := range fc.n {
		out = append(out, f)
	}
	return out
}

// subscribe adds s's subscription to filter, or replaces its options; it
// reports whether it is new for s. Any goroutine; never with s.mu held.
func (srv *Server) subscribe(s *session, filter string, sub topic.Subscription) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return srv.subscribeLocked(s, filter, sub)
}

// subscribeLocked is subscribe with s.mu held (recovery, restore).
// REQUIRES: s.mu held.
func (srv *Server) subscribeLocked(s *session, filter string, sub topic.Subscription) bool {
	isNew := srv.subs.Subscribe(filter, s, sub)
	s.addSubLocked(filter, sub)
	if isNew {
		srv.stats.Subscriptions.Add(1)
		srv.filters.change(filter, 1, srv.opts.Interest)
	}
	return isNew
}

// unsubscribe removes s's subscription to filter; it reports whether there
// was one. Any goroutine; never with s.mu held.
func (srv *Server) unsubscribe(s *session, filter string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !srv.subs.Unsubscribe(filter, s) {
		return false
	}
	s.removeSubLocked(filter)
	srv.stats.Subscriptions.Add(-1)
	srv.filters.change(filter, -1, srv.opts.Interest)
	return true
}

// unsubscribeAllLocked removes every subscription of s (its end).
// REQUIRES: s.mu held.
func (srv *Server) unsubscribeAllLocked(s *session) {
	for _, e := range s.subs {
		if srv.subs.Unsubscribe(e.filter, s) {
			srv.stats.Subscriptions.Add(-1)
			srv.filters.change(e.filter, -1, srv.opts.Interest)
		}
	}
	s.subs = nil
}
