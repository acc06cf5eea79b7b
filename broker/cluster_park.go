package broker

import (
	"strings"
	"sync"
	"sync/atomic"

	"github.com/cimgo/cim/cluster"
	"github.com/cimgo/cim/storage"
)

// Parking. When a node dies or leaves, its sessions live on only in its
// store; a QoS 1/2 message published meanwhile that one of them would have
// got must not be acknowledged and then lost. So the other nodes keep the
// down node's interest for ParkTTL, and a QoS 1/2 message that matches it
// is parked: stored here, in order, and acknowledged once stored. When the
// node returns, each node replays what it parked for it over the peer link
// (acked, then deleted here); the node routes it to its recovered sessions,
// and sessions that a client meanwhile took to another node pass it on
// (relay, then merge: cluster_owner.go).
//
// A parking lot is stored as the queue of a session record that no client
// can log in to: native protocol, id "park:<node>" (native ids are numbers),
// so it survives a restart of the parking node too and the store's caps
// and queue TTL apply to it. Messages for a $share group alone are not
// parked (another member of the group is preferred; a group with no live
// member loses them, as one with no member at all).

const parkPrefix = "park:"

func parkKey(node string) skey { return skey{storage.ProtocolNative, parkPrefix + node} }

// parkLots holds a lot per down node.
type parkLots struct {
	mu   sync.Mutex
	lots map[string]*parkLot // REQUIRES: mu held

	parked, replayed atomic.Uint64
}

type parkLot struct {
	node string
	key  string // store key

	mu        sync.Mutex
	next      uint64     // REQUIRES: mu held. next seq
	recorded  bool       // REQUIRES: mu held. the lot's session record is stored
	mem       []*Message // REQUIRES: mu held. the lot without a store
	replaying bool       // REQUIRES: mu held
}

func (p *parkLots) lot(cn *clusterNode, node string, make bool) *parkLot {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.lots == nil {
		p.lots = map[string]*parkLot{}
	}
	l := p.lots[node]
	if l == nil && make {
		l = &parkLot{node: node, key: parkKey(node).storeKey(), next: 1}
		p.lots[node] = l
	}
	return l
}

// recover takes the parking lots out of the sessions recovered from the
// store (they are not sessions). Before the cluster starts.
func (p *parkLots) recover(cn *clusterNode) {
	srv := cn.srv
	r := srv.sessions
	for i := range r.shards {
		sh := &r.shards[i]
		sh.mu.Lock()
		for _, s := range sh.m.all() {
			k := s.key
			if k.proto != storage.ProtocolNative || !strings.HasPrefix(k.id, parkPrefix) {
				continue
			}
			sh.m.del(k)
			srv.stats.Sessions.Add(-1)
			s.mu.Lock()
			s.ended = true // the deadline wheel and the store's caps skip it
			s.mu.Unlock()
			l := p.lot(cn, strings.TrimPrefix(k.id, parkPrefix), true)
			l.recorded = true
			if srv.store != nil {
				qi := srv.store.QueueInfo(l.key)
				l.next = max(qi.Tail+1, 1)
				if qi.Count > 0 {
					cn.log.Info("parked messages kept for a node", "for", l.node, "messages", qi.Count)
				}
			}
		}
		sh.mu.Unlock()
	}
}

// put parks m for node; cb (may be nil) hears once it is stored.
func (p *parkLots) put(cn *clusterNode, node string, m *Message, cb func(error)) {
	l := p.lot(cn, node, true)
	db := cn.srv.store
	l.mu.Lock()
	if db == nil {
		l.mem = append(l.mem, m)
		l.mu.Unlock()
		p.parked.Add(1)
		if cb != nil {
			cb(nil)
		}
		return
	}
	seq := l.next
	l.next++
	b := db.NewBatch()
	wrote := !l.recorded
	if wrote {
		b.PutSession(&storage.Session{ClientID: parkPrefix + node, Protocol: storage.ProtocolNative,
			ExpiryInterval: storage.NeverExpire, Node: cn.self})
		l.recorded = true
	}
	b.PutQueued(l.key, seq, storeMessage(m))
	err := db.Commit(b, func(err error) {
		if err != nil && wrote {
			l.mu.Lock()
			l.recorded = false
			l.mu.Unlock()
		}
		if err == nil {
			p.parked.Add(1)
		}
		if cb != nil {
			cb(err)
		}
	})
	if err != nil && wrote {
		l.recorded = false
	}
	l.mu.Unlock()
	if err != nil && cb != nil {
		cb(err)
	}
}

// joined: node is back; replay what was parked for it.
func (p *parkLots) joined(cn *clusterNode, node string) {
	l := p.lot(cn, node, false)
	if l == nil {
		return
	}
	l.mu.Lock()
	if l.replaying {
		l.mu.Unlock()
		return
	}
	l.replaying = true
	l.mu.Unlock()
	cn.wg.Add(1)
	go func() {
		defer cn.wg.Done()
		cn.replay(l)
		l.mu.Lock()
		l.replaying = false
		l.mu.Unlock()
	}()
}

// retry replays the lots of live nodes that still hold messages (parked
// after their replay ended: a forward that failed as the node flapped).
// Once a second, from maintain.
func (p *parkLots) retry(cn *clusterNode) {
	p.mu.Lock()
	var nodes []string
	for node, l := range p.lots {
		l.mu.Lock()
		busy := l.replaying
		empty := len(l.mem) == 0
		l.mu.Unlock()
		if busy {
			continue
		}
		if db := cn.srv.store; db != nil {
			empty = db.QueueInfo(l.key).Count == 0
		}
		if !empty {
			nodes = append(nodes, node)
		}
	}
	p.mu.Unlock()
	for _, node := range nodes {
		if m, ok := cn.c.Member(node); ok && m.State == cluster.StateAlive && !cn.interest.isDown(node) {
			if _, up := cn.linkUp(node); up {
				p.joined(cn, node)
			}
		}
	}
}

// replayBatch is how many parked messages are in flight at once.
const replayBatch = 512

// replay hands the lot to its node, oldest first, deleting what it
// acknowledged; it stops at the first failure (the next return resumes).
func (cn *clusterNode) replay(l *parkLot) {
	db := cn.srv.store
	total := 0
	defer func() {
		if total > 0 {
			cn.log.Info("parked messages handed to a returning node", "to", l.node, "messages", total)
		}
	}()
	for {
		select {
		case <-cn.stop:
			return
		default:
		}
		var seqs []uint64
		var msgs []*Message
		if db == nil {
			l.mu.Lock()
			msgs = append(msgs, l.mem[:min(len(l.mem), replayBatch)]...)
			l.mu.Unlock()
		} else {
			qi := db.QueueInfo(l.key)
			if qi.Count == 0 {
				return
			}
			if _, err := db.ReadQueue(l.key, qi.Head, replayBatch, func(seq uint64, r *storage.Message) error {
				seqs = append(seqs, seq)
				msgs = append(msgs, loadMessage(r))
				return nil
			}); err != nil {
				cn.log.Warn("reading parked messages", "node", l.node, "err", err)
				return
			}
		}
		if len(msgs) == 0 {
			return
		}
		results := make(chan error, len(msgs))
		for _, m := range msgs {
			m.Origin = ""
			pub := newPublish(m, &fwdTarget{node: l.node, plain: true}, nil)
			if err := cn.forwardOnce(l.node, pub, func(err error) { results <- err }); err != nil {
				results <- err
			}
		}
		var failed error
		for range msgs {
			if err := <-results; err != nil && failed == nil {
				failed = err
			}
		}
		if failed != nil {
			cn.log.Info("replay of parked messages interrupted; resumed when the node returns", "node", l.node, "err", failed)
			return
		}
		total += len(msgs)
		cn.park.replayed.Add(uint64(len(msgs)))
		if db == nil {
			l.mu.Lock()
			l.mem = l.mem[len(msgs):]
			l.mu.Unlock()
			continue
		}
		key := l.key
		done := make(chan error, 1)
		b := db.NewBatch()
		for _, s := range seqs {
			b.DeleteQueued(key, s)
		}
		if err := db.Commit(b, func(err error) { done <- err }); err != nil {
			done <- err
		}
		if err := <-done; err != nil {
			cn.log.Warn("deleting replayed messages", "node", l.node, "err", err)
			return
		}
	}
}

// forwardOnce sends a QoS 1/2 publish to node without parking it again on
// failure: cb hears the peer's answer.
func (cn *clusterNode) forwardOnce(node string, p *cluster.Publish, cb func(error)) error {
	k := fwdKey{node, p.ID}
	cn.pending.add(k, cb)
	if err := cn.c.Forward(node, p); err != nil {
		cn.pending.take(k)
		return err
	}
	return nil
}
