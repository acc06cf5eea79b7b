package broker

import (
	"sync"
	"time"
)

// Arrivals: relayed messages for a session this node is taking over.
//
// The node that hands a session over relays what still reaches it for the
// session from the moment it took it out (cluster_owner.go). Those relays
// and its takeover answer race here: the answer goes to the login waiting
// in Acquire, the relays to the link's reader, and a relay can be read
// before the login has restored the session. Such a relay is held until
// the session arrives (storeMoved), then delivered after what the
// snapshot held; its sender hears it stored then. A hold that the session
// never comes for (the login failed) is let go after arrivalTTL,
// acknowledged and logged: the message is lost, as it would be for a
// session that ended.
type arrivals struct {
	mu sync.Mutex
	m  map[skey]*arrival // REQUIRES: mu held
}

type arrival struct {
	since time.Time
	held  []heldRelay
}

type heldRelay struct {
	m  *Message
	to []string
	w  *storedWait
}

// arrivalTTL is how long a session may take to arrive: the login's wait
// for its owner, and some.
const arrivalTTL = 2 * ownerTimeout

// expect marks session k as being fetched here. Any goroutine.
func (a *arrivals) expect(k skey) {
	a.mu.Lock()
	if a.m == nil {
		a.m = make(map[skey]*arrival)
	}
	if a.m[k] == nil {
		a.m[k] = &arrival{since: time.Now()}
	}
	a.mu.Unlock()
}

// hold keeps relayed message m for session k if it is expected (else m
// is not for a session here: dropped); w then waits for it. Any goroutine.
func (a *arrivals) hold(k skey, m *Message, to []string, w *storedWait) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if e := a.m[k]; e != nil {
		w.left.Add(1)
		e.held = append(e.held, heldRelay{m: m, to: to, w: w})
	}
}

// take ends the wait for k and returns what was held for it.
func (a *arrivals) take(k skey) []heldRelay {
	a.mu.Lock()
	defer a.mu.Unlock()
	e := a.m[k]
	if e == nil {
		return nil
	}
	delete(a.m, k)
	return e.held
}

// arrived delivers what was held for s, which was just restored here.
// Any goroutine; never with s.mu held.
func (cn *clusterNode) arrived(s *session) {
	held := cn.arrivals.take(s.key)
	if len(held) == 0 {
		return
	}
	now := cn.srv.now()
	for _, h := range held {
		lb := lazyBatch{db: cn.srv.store}
		cn.deliverRelayed(s, h.m, h.to, now, &lb)
		cn.srv.commit(&lb, h.w.finish)
	}
}

// cancelArrival ends the wait for k with nothing arriving: what was held is
// acknowledged, lost. Any goroutine.
func (cn *clusterNode) cancelArrival(k skey) {
	held := cn.arrivals.take(k)
	if len(held) > 0 {
		cn.log.Warn("relayed messages for a session that did not arrive are dropped", "client", k.id, "messages", len(held))
	}
	for _, h := range held {
		h.w.finish(nil)
	}
}

// expireArrivals lets go of the waits older than arrivalTTL. From maintain.
func (cn *clusterNode) expireArrivals(now time.Time) {
	var old []skey
	cn.arrivals.mu.Lock()
	for k, e := range cn.arrivals.m {
		if now.Sub(e.since) > arrivalTTL {
			old = append(old, k)
		}
	}
	cn.arrivals.mu.Unlock()
	for _, k := range old {
		cn.cancelArrival(k)
	}
}
