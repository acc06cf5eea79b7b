package broker

import (
	"hash/maphash"
	"sync"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"
)

// registry holds every session by client id, in shards so that connects on
// different loops rarely meet on a lock.
type registry struct {
	srv    *Server
	seed   maphash.Seed
	shards [64]struct {
		mu sync.Mutex
		m  map[string]*session // REQUIRES: mu held
	}
}

func newRegistry(srv *Server) *registry {
	r := &registry{srv: srv, seed: maphash.MakeSeed()}
	for i := range r.shards {
		r.shards[i].m = make(map[string]*session)
	}
	return r
}

func (r *registry) shard(id string) int {
	return int(maphash.String(r.seed, id) % uint64(len(r.shards)))
}

// attach binds c to the session of its client id, creating it if needed or
// if clean is set (the old state is then discarded). A conn still attached to
// the session is taken over: it is told why and closed. It returns the
// session and whether state was resumed (CONNACK Session Present).
func (r *registry) attach(id string, clean bool, expiry uint32, window uint16, c *conn, now int64) (*session, bool) {
	sh := &r.shards[r.shard(id)]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	s := sh.m[id]
	if s != nil {
		s.mu.Lock()
		old := s.conn
		s.conn = nil
		if s.timer != nil {
			s.timer.Stop() // reconnected before the delay: no will [MQTT-3.1.3-9]
			s.timer = nil
		}
		s.will = nil
		s.endsAt = 0
		if clean || s.expiry == 0 {
			// A session with expiry 0 lasts as long as its connection, which
			// the new one ends: the newcomer starts afresh [MQTT-3.1.2-6].
			r.endLocked(s)
			s.mu.Unlock()
			s = nil
		} else {
			s.mu.Unlock()
		}
		if old != nil {
			old.kick(packets.ErrSessionTakenOver) // [MQTT-3.1.4-3]
		}
	}
	present := s != nil
	if s == nil {
		s = &session{id: id, srv: r.srv}
		sh.m[id] = s
		r.srv.stats.Sessions.Add(1)
	}
	s.mu.Lock()
	s.conn = c
	s.online.Store(true)
	s.expiry = expiry
	s.window = window
	s.version = c.version
	s.saveLocked(0)
	switch {
	case present && s.diskUpTo != 0:
		go r.srv.loadQueue(s) // disk I/O: off the loop; it resumes s when done
	case present:
		s.resumeLocked(now)
	}
	s.mu.Unlock()
	return s, present
}

// endLocked removes s's subscriptions and marks it ended. The caller removes
// it from its shard. REQUIRES: the shard lock and s.mu held.
func (r *registry) endLocked(s *session) {
	for _, e := range s.subs {
		if r.srv.subs.Unsubscribe(e.filter, s) {
			r.srv.stats.Subscriptions.Add(-1)
		}
	}
	s.subs, s.queue, s.inflight, s.rx = nil, nil, nil, nil
	s.ended = true
	s.saveLocked(0) // deletes the stored session and its queue
	s.online.Store(false)
	if s.timer != nil {
		s.timer.Stop()
		s.timer = nil
	}
	r.srv.stats.Sessions.Add(-1)
}

// detach is called when c closes. If c still owns its session, the session
// goes offline: it ends now (expiry 0) or is kept until its expiry; the will
// is published now or when its delay or the session ends, whichever first.
// A conn that was taken over only publishes an undelayed will.
func (r *registry) detach(c *conn, now int64) {
	s := c.sess
	will := c.will
	if c.normalEnd {
		will = nil // [MQTT-3.1.2-10]
	}
	sh := &r.shards[r.shard(s.id)]
	sh.mu.Lock()
	s.mu.Lock()
	if s.conn != c {
		s.mu.Unlock()
		sh.mu.Unlock()
		if will != nil && c.willDelay == 0 {
			r.srv.publishWill(will, now)
		}
		return
	}
	s.conn = nil
	s.online.Store(false)
	if s.expiry == 0 {
		r.endLocked(s)
		delete(sh.m, s.id)
		s.mu.Unlock()
		sh.mu.Unlock()
		if will != nil {
			r.srv.publishWill(will, now)
		}
		return
	}
	if s.expiry != foreverExpiry {
		s.endsAt = now + int64(s.expiry)
	}
	s.saveLocked(now)
	if will != nil && c.willDelay != 0 {
		s.will = will
		s.willDue = now + int64(c.willDelay)
		will = nil
	}
	s.armLocked(now)
	s.mu.Unlock()
	sh.mu.Unlock()
	if will != nil {
		// Only now: routing takes the lock of every matching session, this
		// one included (its will may match its own subscriptions).
		r.srv.publishWill(will, now)
	}
}

// armLocked sets the timer for the next of the will delay and the session
// expiry, if any. REQUIRES: s.mu held.
func (s *session) armLocked(now int64) {
	due := s.endsAt
	if s.will != nil && (due == 0 || s.willDue < due) {
		due = s.willDue
	}
	if due == 0 {
		return
	}
	r := s.srv.sessions
	s.timer = time.AfterFunc(time.Duration(max(due-now, 0))*time.Second, func() { r.timeout(s) })
}

// timeout fires when an offline session's will delay or expiry passes: the
// will goes out when its delay passes or the session ends, whichever is
// first [MQTT-3.1.3-9]; then the session ends if its time is up.
func (r *registry) timeout(s *session) {
	now := time.Now().Unix()
	sh := &r.shards[r.shard(s.id)]
	sh.mu.Lock()
	s.mu.Lock()
	if s.conn != nil || s.ended || sh.m[s.id] != s {
		s.mu.Unlock()
		sh.mu.Unlock()
		return
	}
	s.timer = nil
	var will *Message
	ending := s.endsAt != 0 && now >= s.endsAt
	if s.will != nil && (ending || now >= s.willDue) {
		will, s.will = s.will, nil
	}
	if ending {
		r.endLocked(s)
		delete(sh.m, s.id)
	} else {
		s.armLocked(now)
	}
	s.mu.Unlock()
	sh.mu.Unlock()
	if will != nil {
		r.srv.publishWill(will, now)
	}
}

// each calls fn for every session. fn must not call back into the registry.
func (r *registry) each(fn func(*session)) {
	for i := range r.shards {
		sh := &r.shards[i]
		sh.mu.Lock()
		for _, s := range sh.m {
			fn(s)
		}
		sh.mu.Unlock()
	}
}
