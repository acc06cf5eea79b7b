package broker

import "sync"

// registry holds every session by key, in shards so that logins on
// different loops rarely meet on a lock.
type registry struct {
	srv    *Server
	shards [64]struct {
		mu sync.Mutex
		m  sessionSet // REQUIRES: mu held
	}
}

func newRegistry(srv *Server) *registry { return &registry{srv: srv} }

func (r *registry) shard(k skey) int { return int(hashKey(k) % uint64(len(r.shards))) }

// attachment is what a login asks of the registry.
type attachment struct {
	key     skey
	ident   *Identity // who logged in
	clean   bool      // discard any state kept for the key
	expiry  uint32    // seconds the session is kept after its connection ends
	window  uint16    // in-flight maximum towards the client
	version byte
	moved   *Snapshot // the session as its previous owner node handed it over, or nil
}

// attach binds ep to the session of a.key, creating it if needed or if
// a.clean is set (the old state is then discarded), or replacing it with
// a.moved. A connection still attached is taken over: it is told why and
// closed. Nothing is sent to ep until it calls session.start (after its
// login answer). It returns the session and whether state was resumed
// (MQTT: session present). Any goroutine (the caller's loop).
func (r *registry) attach(a attachment, ep endpoint, now int64) (*session, bool) {
	sh := &r.shards[r.shard(a.key)]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	s := sh.m.get(a.key)
	if s != nil {
		s.mu.Lock()
		old := s.ep
		s.ep, s.ready = nil, false
		if s.rare != nil {
			s.rare.off = nil // reconnected before the delay: no will [MQTT-3.1.3-9]; no expiry (a stale filing is skipped)
		}
		if a.clean || s.expiry == 0 || a.moved != nil {
			// A session with expiry 0 lasts as long as its connection, which
			// the new one ends: the newcomer starts afresh [MQTT-3.1.2-6].
			r.endLocked(s)
			sh.m.del(a.key)
			s.mu.Unlock()
			s = nil
		} else {
			s.mu.Unlock()
		}
		if old != nil {
			old.tr().kick(reasonTakenOver) // [MQTT-3.1.4-3]
		}
	}
	present := s != nil
	fromPeer := false
	if s == nil && a.moved != nil && !a.clean {
		s = r.srv.restore(a.moved)
		present, fromPeer = true, true
	}
	if s == nil {
		s = &session{key: a.key, srv: r.srv}
		r.srv.stats.Sessions.Add(1)
	}
	sh.m.put(s)
	s.mu.Lock()
	s.ep = ep
	s.online.Store(true)
	s.ident = a.ident
	s.expiry = a.expiry
	s.window = a.window
	s.version = a.version
	s.saveLocked(0)
	s.mu.Unlock()
	if fromPeer {
		r.srv.storeMoved(s, a.moved) // cluster hook (cluster_owner.go): its queue into this node's store
	}
	return s, present
}

// endLocked removes s's subscriptions and marks it ended. The caller removes
// it from its shard. REQUIRES: the shard lock and s.mu held.
func (r *registry) endLocked(s *session) {
	r.srv.unsubscribeAllLocked(s)
	s.inflight = nil
	if x := s.rare; x != nil {
		x.queue, x.rx, x.disk = nil, nil, nil // seq stays: it only grows
	}
	s.ended = true
	s.saveLocked(0) // deletes the stored session and its queue
	s.online.Store(false)
	r.srv.stats.Sessions.Add(-1)
	r.srv.sessionEnded(s.key) // cluster hook (cluster_owner.go): its ownership entry goes
}

// detach is called when ep's connection is over. If ep still owns s, s
// goes offline: it ends now (expiry 0) or is kept until its expiry; the will
// is published now or when its delay or the session ends, whichever first
// (will.go). A connection that was taken over only publishes an undelayed
// will. Any goroutine.
func (r *registry) detach(s *session, ep endpoint, will *Message, willDelay uint32, now int64) {
	sh := &r.shards[r.shard(s.key)]
	sh.mu.Lock()
	s.mu.Lock()
	if s.ep != ep {
		s.mu.Unlock()
		sh.mu.Unlock()
		if will != nil && willDelay == 0 {
			r.srv.publishWill(will, now)
		}
		return
	}
	s.ep, s.ready = nil, false
	s.online.Store(false)
	if s.expiry == 0 {
		r.endLocked(s)
		sh.m.del(s.key)
		s.mu.Unlock()
		sh.mu.Unlock()
		if will != nil {
			r.srv.publishWill(will, now)
		}
		return
	}
	// The delays count from this second rounded up, not from the tick's
	// clock (whole seconds, up to one old): a will or an expiry may come
	// up to a second late, never early.
	from := r.srv.secondUp()
	if s.expiry != foreverExpiry {
		s.offLocked().endsAt = from + int64(s.expiry)
	}
	s.saveLocked(from)
	if will != nil && willDelay != 0 {
		o := s.offLocked()
		o.will = will
		o.willDue = from + int64(willDelay)
		will = nil
	}
	r.srv.deadlines.armLocked(s)
	s.mu.Unlock()
	sh.mu.Unlock()
	if will != nil {
		// Only now: routing takes the lock of every matching session, this
		// one included (its will may match its own subscriptions).
		r.srv.publishWill(will, now)
	}
}

// timeout visits an offline session filed at second at, whose will delay
// or expiry may have passed: the will goes out when its delay passes or the session ends,
// whichever is first [MQTT-3.1.3-9]; then the session ends if its time is
// up. Any goroutine (the deadline wheel's).
func (r *registry) timeout(s *session, at, now int64) {
	sh := &r.shards[r.shard(s.key)]
	sh.mu.Lock()
	s.mu.Lock()
	o := s.offlineLocked()
	if o == nil || o.dueAt != at {
		s.mu.Unlock() // a stale filing: the session is filed elsewhere
		sh.mu.Unlock()
		return
	}
	o.dueAt = 0
	if s.ep != nil || s.ended || sh.m.get(s.key) != s {
		s.mu.Unlock()
		sh.mu.Unlock()
		return
	}
	var will *Message
	ending := o.endsAt != 0 && now >= o.endsAt
	if o.will != nil && (ending || now >= o.willDue) {
		will, o.will = o.will, nil
	}
	if ending {
		r.endLocked(s)
		sh.m.del(s.key)
	} else {
		r.srv.deadlines.armLocked(s)
	}
	s.mu.Unlock()
	sh.mu.Unlock()
	if will != nil {
		r.srv.publishWill(will, now)
	}
}

// lookup returns the session of key, or nil. Any goroutine.
func (r *registry) lookup(k skey) *session {
	sh := &r.shards[r.shard(k)]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	return sh.m.get(k)
}

// ensure returns the session of key, making an offline one with expiry if
// there is none (a native user who never logged in still has an inbox).
// created reports a new session. Any goroutine.
func (r *registry) ensure(k skey, expiry uint32, version byte) (s *session, created bool) {
	sh := &r.shards[r.shard(k)]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if s := sh.m.get(k); s != nil {
		return s, false
	}
	s = &session{key: k, srv: r.srv, expiry: expiry, version: version}
	sh.m.put(s)
	r.srv.stats.Sessions.Add(1)
	return s, true
}

// insert adds a session built from a snapshot (recovery). The key must be
// free. Any goroutine.
func (r *registry) insert(s *session) {
	sh := &r.shards[r.shard(s.key)]
	sh.mu.Lock()
	sh.m.put(s)
	sh.mu.Unlock()
}

// each calls fn for every session. fn must not call back into the registry.
func (r *registry) each(fn func(*session)) {
	for i := range r.shards {
		sh := &r.shards[i]
		sh.mu.Lock()
		sh.m.each(fn)
		sh.mu.Unlock()
	}
}
