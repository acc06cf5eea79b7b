package broker

import "sync"

// deadlines owns the time limits of offline sessions: the will delay and
// the session expiry. Sessions are filed by the second the earlier of the
// two falls due, and the server's one-second tick visits what is due: no
// timer per session, however many sessions a restart recovers. Filing is
// lazy: a session that reconnects stays filed and is skipped when visited.
// (Queued messages' TTL belongs to the store's sweeper, not here.)
type deadlines struct {
	mu   sync.Mutex
	at   map[int64][]*session // REQUIRES: mu held. by due second
	last int64                // REQUIRES: mu held. last second visited
}

// armLocked files s under the next of its will delay and expiry, unless an
// earlier visit is already filed (it re-arms). REQUIRES: s.mu held (lock
// order: session.mu → deadlines.mu).
func (d *deadlines) armLocked(s *session) {
	o := s.offlineLocked()
	if o == nil {
		return
	}
	due := o.endsAt
	if o.will != nil && (due == 0 || o.willDue < due) {
		due = o.willDue
	}
	if due == 0 || o.dueAt != 0 && o.dueAt <= due {
		return
	}
	d.mu.Lock()
	if d.at == nil {
		d.at = make(map[int64][]*session)
	}
	if due <= d.last {
		due = d.last + 1
	}
	o.dueAt = due
	d.at[due] = append(d.at[due], s)
	d.mu.Unlock()
}

// advance visits every session filed for a second up to now, with that
// second. Any goroutine; visit runs without d.mu.
func (d *deadlines) advance(now int64, visit func(s *session, at int64)) {
	type entry struct {
		s  *session
		at int64
	}
	var due []entry
	d.mu.Lock()
	take := func(t int64) {
		for _, s := range d.at[t] {
			due = append(due, entry{s, t})
		}
		delete(d.at, t)
	}
	if d.last == 0 || now-d.last > 3600 {
		for t := range d.at { // first tick, or the clock jumped: look at everything
			if t <= now {
				take(t)
			}
		}
	} else {
		for t := d.last + 1; t <= now; t++ {
			take(t)
		}
	}
	d.last = max(d.last, now)
	d.mu.Unlock()
	for _, e := range due {
		visit(e.s, e.at)
	}
}
