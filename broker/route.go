package broker

import (
	"slices"
	"strings"
	"sync"

	"github.com/cimgo/cim/broker/topic"
	"github.com/cimgo/cim/storage"
)

// target is one session a message goes to, with the merged options of all
// its matching subscriptions: the highest QoS and every subscription id
// [MQTT-3.3.4-2] [MQTT-3.3.4-3].
type target struct {
	s      *session
	qos    byte
	retain bool // retain as published on some matching subscription
	subIDs []uint32
}

// router is the scratch of one routing pass, pooled so routing allocates
// nothing in the steady state.
type router struct {
	srv     *Server
	m       *Message
	from    *session
	targets []target
	index   map[*session]int // used once targets outgrow a linear scan
	ids     []uint32         // backing store for targets' subIDs
	visit   func(*session, topic.Subscription)
}

var routerPool = sync.Pool{New: func() any {
	r := &router{}
	r.visit = r.add
	return r
}}

// add merges one matching subscription into the targets.
func (r *router) add(s *session, sub topic.Subscription) {
	if sub.NoLocal && s == r.from {
		return // [MQTT-3.8.3-3]
	}
	qos := min(sub.QoS, r.m.QoS)
	rap := sub.RetainAsPublished && r.m.Retain
	i := r.find(s)
	if i < 0 {
		r.targets = append(r.targets, target{s: s, qos: qos, retain: rap})
		i = len(r.targets) - 1
		if r.index != nil {
			r.index[s] = i
		}
	} else {
		t := &r.targets[i]
		t.qos = max(t.qos, qos)
		t.retain = t.retain || rap
	}
	if sub.ID != 0 {
		t := &r.targets[i]
		t.subIDs = append(t.subIDs, sub.ID)
	}
}

func (r *router) find(s *session) int {
	if r.index != nil {
		if i, ok := r.index[s]; ok {
			return i
		}
		return -1
	}
	for i := range r.targets {
		if r.targets[i].s == s {
			return i
		}
	}
	if len(r.targets) >= 16 {
		r.index = make(map[*session]int, 2*len(r.targets))
		for i := range r.targets {
			r.index[r.targets[i].s] = i
		}
	}
	return -1
}

func (r *router) reset() {
	clear(r.targets)
	r.targets = r.targets[:0]
	r.index = nil
	r.m, r.from = nil, nil
}

// pickOnline prefers connected members of a shared subscription group.
func pickOnline(s *session) bool { return s.online.Load() }

// route delivers m to every matching session and keeps it if retained.
// from is the publishing session (nil for the server). done, if not nil, is
// called once what m needs stored is durable (see persist.go), possibly on
// the committer goroutine, with the number of sessions m went to. Safe from
// any goroutine; never blocks on I/O.
func (srv *Server) route(m *Message, from *session, done func(matched int, err error)) {
	if m.Retain {
		srv.retain(m)
	}
	r := routerPool.Get().(*router)
	r.m, r.from = m, from
	srv.subs.Match(m.Topic, pickOnline, r.visit)
	now := srv.now()
	lb := lazyBatch{db: srv.store}
	if srv.store != nil && m.Retain && !strings.HasPrefix(m.Topic, "$SYS/") { // $SYS is rebuilt on start
		if len(m.Payload) == 0 {
			lb.get().DeleteRetained(m.Topic)
		} else {
			lb.get().PutRetained(storeMessage(m))
		}
	}
	for i := range r.targets {
		t := &r.targets[i]
		t.s.deliver(m, t.qos, t.retain, t.subIDs, now, &lb)
	}
	matched := len(r.targets)
	r.reset()
	routerPool.Put(r)
	if done == nil {
		srv.commit(&lb, nil)
		return
	}
	srv.commit(&lb, func(err error) { done(matched, err) })
}

// lazyBatch is a storage batch made on first use, so routing that stores
// nothing (QoS 0, clean sessions) costs no batch.
type lazyBatch struct {
	db *storage.DB // nil without a store
	b  *storage.Batch
}

func (lb *lazyBatch) get() *storage.Batch {
	if lb.b == nil {
		lb.b = lb.db.NewBatch()
	}
	return lb.b
}

// commit commits what lb holds and then calls done (if not nil) with the
// result: at once when there is no store. With a store, done always goes
// through the committer, even with nothing to write, so the acks of a
// connection keep their order (persist.go).
func (srv *Server) commit(lb *lazyBatch, done func(error)) {
	if lb.db == nil || lb.b == nil && done == nil {
		if done != nil {
			done(nil)
		}
		return
	}
	if done == nil {
		done = srv.logCommit
	}
	if err := srv.store.Commit(lb.get(), done); err != nil {
		done(err)
	}
}

// retain stores m as its topic's retained message, or clears it when the
// payload is empty [MQTT-3.3.1-6] [MQTT-3.3.1-7].
func (srv *Server) retain(m *Message) {
	if len(m.Payload) == 0 {
		if _, ok := srv.retained.Get(m.Topic); ok {
			srv.retained.Delete(m.Topic)
			srv.stats.Retained.Add(-1)
		}
		return
	}
	if _, ok := srv.retained.Get(m.Topic); !ok {
		srv.stats.Retained.Add(1)
	}
	srv.retained.Set(m.Topic, m)
}

// sendRetained delivers the retained messages matching filter to s, with the
// retain flag set [MQTT-3.3.1-8].
func (srv *Server) sendRetained(s *session, filter string, sub topic.Subscription) {
	now := srv.now()
	var ids []uint32
	if sub.ID != 0 {
		ids = []uint32{sub.ID}
	}
	lb := lazyBatch{db: srv.store}
	srv.retained.MatchFilter(filter, func(_ string, m *Message) bool {
		if m.expired(now) {
			return true
		}
		s.deliver(m, min(sub.QoS, m.QoS), true, slices.Clip(ids), now, &lb)
		return true
	})
	srv.commit(&lb, nil)
}

// publishWill routes a will message as if its client had published it.
func (srv *Server) publishWill(m *Message, now int64) {
	m.ID = srv.nextID()
	if m.Expiry != 0 {
		m.Expiry = now + (m.Expiry - m.Created) // the interval runs from publication
	}
	m.Created = now
	srv.route(m, nil, nil)
}
