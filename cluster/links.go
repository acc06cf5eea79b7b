package cluster

import (
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// links is the set of peer links, by peer name. A link exists while its
// peer is a live member advertising a peer address, or has connected to
// us. What a link received (the peer's incarnation and last delivered
// seq) outlives it, so a peer that was declared dead and comes back is not
// handed its resent publishes twice; so does the last seq it sent, so that
// a new link to a peer that kept its own receive state (it was only
// paused or partitioned) numbers above what that peer already delivered:
// starting again at 1 would have the peer drop the new publishes as
// duplicates (and ack them), losing them.
type links struct {
	c      *Cluster
	mu     sync.Mutex
	m      map[string]*link     // REQUIRES: mu held
	recv   map[string][2]uint64 // peer -> (incarnation, delivered); REQUIRES: mu held
	sent   map[string]uint64    // peer -> last seq sent; REQUIRES: mu held
	closed bool                 // REQUIRES: mu held
	// snap is a copy of m for get, which every Forward calls: lock-free
	// (the loops that forward would otherwise contend on mu).
	snap atomic.Pointer[map[string]*link]
}

// publish refreshes snap. REQUIRES: mu held.
func (s *links) publish() {
	m := make(map[string]*link, len(s.m))
	for k, v := range s.m {
		m[k] = v
	}
	s.snap.Store(&m)
}

func newLinks(c *Cluster) *links {
	return &links{c: c, m: make(map[string]*link), recv: make(map[string][2]uint64), sent: make(map[string]uint64)}
}

func (s *links) get(peer string) *link {
	if m := s.snap.Load(); m != nil {
		return (*m)[peer]
	}
	return nil
}

// ensure creates the link to peer (starting its goroutine) or updates its
// address.
func (s *links) ensure(peer, addr string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	if l := s.m[peer]; l != nil {
		l.mu.Lock()
		if addr != "" {
			l.addr = addr
		}
		l.mu.Unlock()
		return
	}
	s.startLocked(peer, addr)
}

// getOrCreate returns the link for an inbound connection from peer.
func (s *links) getOrCreate(peer string) *link {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	if l := s.m[peer]; l != nil {
		return l
	}
	return s.startLocked(peer, "")
}

// REQUIRES: mu held.
func (s *links) startLocked(peer, addr string) *link {
	r := s.recv[peer]
	l := newLink(s.c, peer, addr, r[0], r[1])
	l.nextSeq = s.sent[peer]
	s.m[peer] = l
	s.publish()
	s.c.wg.Add(1)
	go l.run()
	return l
}

// remove stops and forgets the link to peer.
func (s *links) remove(peer string, err error) {
	s.mu.Lock()
	l := s.m[peer]
	delete(s.m, peer)
	s.publish()
	if l != nil {
		l.mu.Lock()
		s.recv[peer] = [2]uint64{l.recvInc, l.delivered}
		s.sent[peer] = l.nextSeq
		l.mu.Unlock()
	}
	s.mu.Unlock()
	if l != nil {
		l.stop(err)
	}
}

// forget drops what was kept about peer (its DeadNodeTTL passed).
func (s *links) forget(peer string) {
	s.mu.Lock()
	delete(s.recv, peer) // (sent is kept: the peer may come back with its state)
	s.mu.Unlock()
}

// closeAll stops every link; no link is created afterwards.
func (s *links) closeAll(err error) {
	s.mu.Lock()
	s.closed = true
	all := make([]*link, 0, len(s.m))
	for _, l := range s.m {
		all = append(all, l)
	}
	s.m = map[string]*link{}
	s.publish()
	s.mu.Unlock()
	for _, l := range all {
		l.stop(err)
	}
}

func (s *links) list() []*link {
	s.mu.Lock()
	out := make([]*link, 0, len(s.m))
	for _, l := range s.m {
		out = append(out, l)
	}
	s.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].peer < out[j].peer })
	return out
}

// drain waits until every link wrote and got acknowledged all it holds,
// or until deadline.
func (s *links) drain(deadline time.Time) bool {
	for {
		idle := true
		for _, l := range s.list() {
			if !l.idle() {
				idle = false
				break
			}
		}
		if idle {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
}
