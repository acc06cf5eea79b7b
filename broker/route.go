package broker

import (
	"errors"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

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
	index   map[*session]int // used once targets outgrow a linear scan; kept (cleared) across routes
	indexed bool             // index is in use for this route
	ids     []uint32         // backing store for targets' subIDs
	visit   func(*session, topic.Subscription)
	shared  encodeOnce
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
		if r.indexed {
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
	if r.indexed {
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
		if r.index == nil {
			r.index = make(map[*session]int, 2*len(r.targets))
		}
		r.indexed = true
		for i := range r.targets {
			r.index[r.targets[i].s] = i
		}
	}
	return -1
}

func (r *router) reset() {
	clear(r.targets)
	r.targets = r.targets[:0]
	if r.indexed {
		if len(r.index) > 1<<16 {
			r.index = nil // a huge fan-out: don't keep its table pooled
		} else {
			clear(r.index)
		}
		r.indexed = false
	}
	r.m, r.from = nil, nil
	r.shared.m = nil
	if cap(r.shared.buf) > 1<<20 {
		r.shared.buf = nil // a huge message: don't keep its bytes pooled
	}
}

// pickOnline prefers connected members of a shared subscription group.
func pickOnline(s *session) bool { return s.online.Load() }

// route delivers m to every matching session, keeps it if retained, and
// offers it to the Forwarder if it originated here. from is the publishing
// session (nil for the server). done, if not nil, is called once what m
// needs stored is durable (persist.go) and the nodes it was forwarded to
// have it, possibly on another goroutine, with the number of sessions and
// nodes m went to. It returns the number of local sessions m went to. Any
// goroutine; never blocks on I/O; never with a session
// or shard lock held (it takes the lock of every matching session).
func (srv *Server) route(m *Message, from *session, done func(matched int, err error)) int {
	return srv.routeWith(m, from, done, nil)
}

// routeWith is route with fill adding more records to the same batch, so
// they are durable exactly when m is (MQTT: an inbound QoS 2 packet id).
func (srv *Server) routeWith(m *Message, from *session, done func(matched int, err error), fill func(*lazyBatch)) int {
	cn := srv.clusterNode() // cluster hook (cluster_forward.go): nil when not clustered
	if cn != nil && m.ID == 0 && m.Origin == "" && m.QoS > 0 {
		m.ID = srv.newID() // forwarded QoS 1/2 copies are known by id (acks, hand-off dedup)
	}
	if m.Retain {
		srv.retain(m)
	}
	r := routerPool.Get().(*router)
	r.m, r.from = m, from
	if cn != nil {
		// A cluster serves each $share group on one node: skip the groups
		// another node was given this message for.
		srv.subs.MatchSkip(m.Topic, pickOnline, cn.shareSkip(m), r.visit)
	} else {
		srv.subs.Match(m.Topic, pickOnline, r.visit)
	}
	now := srv.now()
	lb := lazyBatch{db: srv.store}
	if fill != nil && srv.store != nil {
		lb = filledBatch(srv.store, fill)
	}
	if srv.store != nil && m.Retain && !strings.HasPrefix(m.Topic, "$SYS/") { // $SYS is rebuilt on start
		if len(m.Payload) == 0 {
			lb.get().DeleteRetained(m.Topic)
		} else {
			lb.get().PutRetained(storeMessage(m))
		}
	}
	// Deliveries are encoded once per group into the router's buffer, even
	// for one target: the bytes are then made outside the receiver's lock.
	shared := &r.shared
	shared.reset(m, now)
	for i := range r.targets {
		t := &r.targets[i]
		t.s.deliverShared(m, t.qos, t.retain, t.subIDs, now, &lb, shared)
	}
	matched := len(r.targets)
	r.reset()
	routerPool.Put(r)
	fwd := srv.opts.Forwarder
	if fwd == nil || m.Origin != "" {
		if done == nil {
			srv.commit(&lb, nil)
			return matched
		}
		srv.commit(&lb, func(err error) { done(matched, err) })
		return matched
	}
	if done == nil {
		fwd.Forward(m, nil)
		srv.commit(&lb, nil)
		return matched
	}
	j := &join{done: done}
	j.matched.Store(int32(matched))
	j.pending.Store(2)
	fwd.Forward(m, func(nodes int, err error) { j.finish(nodes, err) })
	srv.commit(&lb, func(err error) { j.finish(0, err) })
	return matched
}

// join completes a route once its two parts (the local commit and the
// forward to other nodes) have.
type join struct {
	pending atomic.Int32
	matched atomic.Int32
	err     atomic.Pointer[error]
	done    func(matched int, err error)
}

func (j *join) finish(n int, err error) {
	j.matched.Add(int32(n))
	if err != nil {
		j.err.CompareAndSwap(nil, &err)
	}
	if j.pending.Add(-1) == 0 {
		var e error
		if p := j.err.Load(); p != nil {
			e = *p
		}
		j.done(int(j.matched.Load()), e)
	}
}

// lazyBatch is a storage batch made on first use, so routing that stores
// nothing (QoS 0, clean sessions) costs no batch.
type lazyBatch struct {
	db      *storage.DB // nil without a store
	b       *storage.Batch
	spilled []spilled // disk-only messages in b, told when it commits (spill.go)
}

// filledBatch is a batch that fill filled. Apart from routeWith, so that
// routeWith's own lazyBatch stays on its stack (fill, a func value, would
// make it escape: two allocations per cross-node message,
// BenchmarkClusterForwardQoS0).
func filledBatch(db *storage.DB, fill func(*lazyBatch)) lazyBatch {
	lb := &lazyBatch{db: db}
	fill(lb)
	return *lb
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
	b, spilled := lb.get(), lb.spilled
	inner := done
	done = func(err error) {
		events := b.QueueEvents()
		srv.queueEvents(events)
		if err == nil {
			srv.noteStoreOK()
			if slices.ContainsFunc(events, func(e storage.QueueEvent) bool { return e.Reason == storage.QueueRejected }) {
				err = errQueueFull // the publisher is told (MQTT 5: PUBACK 0x97)
			}
		}
		for _, sp := range spilled {
			sp.s.saved(sp.seq, err)
		}
		inner(err)
	}
	if err := srv.store.Commit(b, done); err != nil {
		done(err)
	}
}

// errQueueFull: a subscriber's stored queue refused the message (the store's
// reject-new policy at its cap).
var errQueueFull = errors.New("broker: a subscriber's queue is full")
