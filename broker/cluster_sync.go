package broker

import (
	"context"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/cimgo/cim/broker/topic"
	"github.com/cimgo/cim/cluster"
)

// What every node shares besides routing: who is online (presence), the
// retained messages and the IM directory.
//
// Presence: each node tells the others, over the peer links, which users
// came online or went offline on it (at once, batched with what else
// changed meanwhile, ahead of the interest hints), and its whole
// set when a node joins or after a failed send; a node that leaves takes
// its users with it. So a sender's 7000 "receiver offline" and the online
// user list are cluster-wide. A user online on a node also counts as that
// node holding the user's inbox filter, so that a message sent at once
// after a first login (its filter's gossip still on the way) is not lost.
//
// Retained messages: a retained publish goes to every live node
// (cluster_forward.go); a node that starts fetches the set of the first
// node it meets and keeps the newer of each topic (by message id, which is
// time-ordered). A clear leaves a tombstone on every node it reaches, for
// an hour (clearedRetained), sent with the first page of the set, so a node
// that was away when a retained message was cleared drops its copy when it
// returns.
//
// The IM directory (accounts and groups) is in cluster_dir.go.

// --- a native user's session ---

// imSession is Server.imSession clustered: the user's session here, or a
// new one (its inbox, everyone and its groups) when no node has it, so
// that a message for a user who never logged in waits for them; nil when
// the session is on another node (its owner, or a node holding its inbox
// whose claim has not reached this one yet), which gets the message by
// forwarding. A new one is put in the ownership table at the lowest epoch:
// any real claim (a login elsewhere racing this) wins, and this copy is
// merged into it. Any goroutine; never with a session lock held.
func (cn *clusterNode) imSession(user uint64) *session {
	srv := cn.srv
	k := nativeKey(user)
	if s := srv.sessions.lookup(k); s != nil {
		return s
	}
	key := ownerKey(k)
	if o, known := cn.c.Lookup(key); known && o.Node != cn.self {
		return nil
	}
	if cn.interest.heldElsewhere(inboxTopic(user)) {
		return nil
	}
	s, created := srv.sessions.ensure(k, foreverExpiry, 1)
	if !created {
		return s
	}
	srv.imSubscriptions(s, user)
	if o, ok, err := cn.c.Restore(key, 1); err != nil {
		cn.log.Warn("a new session not put in the ownership table", "user", user, "err", err)
	} else if !ok {
		cn.wg.Add(1)
		go func() {
			defer cn.wg.Done()
			cn.yield(k, o.Node)
		}()
	}
	return s
}

// --- presence ---

type presenceTable struct {
	sending  sync.Mutex // held through flush: batches go out in the order they were taken
	mu       sync.Mutex
	pendOn   map[uint64]bool            // REQUIRES: mu held. local changes not sent yet
	needFull map[string]bool            // REQUIRES: mu held. peers to send our whole set
	remote   map[string]map[uint64]bool // REQUIRES: mu held. node -> its online users
	count    map[uint64]int             // REQUIRES: mu held. user -> nodes it is online on (remote)
}

func (p *presenceTable) init() {
	p.pendOn = map[uint64]bool{}
	p.needFull = map[string]bool{}
	p.remote = map[string]map[uint64]bool{}
	p.count = map[uint64]int{}
}

// presenceChanged is the directory's hook (im.go).
func (cn *clusterNode) presenceChanged(user uint64, online bool) {
	p := &cn.presence
	p.mu.Lock()
	p.pendOn[user] = online
	p.mu.Unlock()
	cn.hints.poke() // sent with the next hints, at once, ahead of them
}

func (p *presenceTable) joined(cn *clusterNode, node string) {
	p.mu.Lock()
	p.needFull[node] = true
	p.mu.Unlock()
}

func (p *presenceTable) left(node string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.needFull, node)
	p.setLocked(node, nil)
}

// setLocked replaces node's users. REQUIRES: p.mu held.
func (p *presenceTable) setLocked(node string, users map[uint64]bool) {
	for u := range p.remote[node] {
		if !users[u] {
			p.dec(u)
		}
	}
	for u := range users {
		if !p.remote[node][u] {
			p.count[u]++
		}
	}
	if users == nil {
		delete(p.remote, node)
	} else {
		p.remote[node] = users
	}
}

// REQUIRES: p.mu held.
func (p *presenceTable) dec(u uint64) {
	if p.count[u] <= 1 {
		delete(p.count, u)
	} else {
		p.count[u]--
	}
}

// flush sends what changed (a whole set to peers that need one).
func (p *presenceTable) flush(cn *clusterNode) {
	p.sending.Lock()
	defer p.sending.Unlock()
	p.mu.Lock()
	if len(p.pendOn) == 0 && len(p.needFull) == 0 {
		p.mu.Unlock()
		return
	}
	var delta presenceMsg
	for u, on := range p.pendOn {
		if on {
			delta.On = append(delta.On, u)
		} else {
			delta.Off = append(delta.Off, u)
		}
	}
	clear(p.pendOn)
	full := p.needFull
	p.needFull = map[string]bool{}
	p.mu.Unlock()
	var fullBody []byte
	for _, m := range cn.c.Members() {
		if m.Self || !m.Live() {
			continue
		}
		var body []byte
		if full[m.Name] {
			if fullBody == nil {
				all := presenceMsg{Full: true}
				cn.srv.im.dir.mu.RLock()
				for u := range cn.srv.im.dir.online {
					all.On = append(all.On, u)
				}
				cn.srv.im.dir.mu.RUnlock()
				fullBody, _ = request(opPresence, &all)
			}
			body = fullBody
		} else if len(delta.On)+len(delta.Off) > 0 {
			body, _ = request(opPresence, &delta)
		} else {
			continue
		}
		node := m.Name
		retry := func() {
			p.mu.Lock()
			p.needFull[node] = true
			p.mu.Unlock()
		}
		if err := cn.c.Request(node, body, 5*time.Second, func(_ []byte, err error) {
			if err != nil {
				retry()
			}
		}); err != nil {
			retry()
		}
	}
}

// apply takes a peer's presence message (on its link, in order).
func (p *presenceTable) apply(cn *clusterNode, from string, body []byte, r cluster.Reply) {
	var msg presenceMsg
	if err := decodeBody(body, &msg); err != nil {
		_ = r.Fail(err)
		return
	}
	p.mu.Lock()
	users := p.remote[from]
	if msg.Full || users == nil {
		users = map[uint64]bool{}
		if !msg.Full {
			for u := range p.remote[from] {
				users[u] = true
			}
		}
	} else {
		users = maps(users)
	}
	for _, u := range msg.On {
		users[u] = true
	}
	for _, u := range msg.Off {
		delete(users, u)
	}
	p.setLocked(from, users)
	p.mu.Unlock()
	// A user online there has its inbox there, even if the gossip of that
	// filter (a first login) has not arrived yet: a message sent right now
	// must go there, not nowhere.
	if len(msg.On) > 0 {
		inboxes := make([]string, len(msg.On))
		for i, u := range msg.On {
			inboxes[i] = inboxTopic(u)
		}
		cn.interest.add(from, inboxes)
	}
	_ = r.Respond(nil)
}

func maps(m map[uint64]bool) map[uint64]bool {
	out := make(map[uint64]bool, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

func (p *presenceTable) online(user uint64) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.count[user] > 0
}

func (p *presenceTable) users() []uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]uint64, 0, len(p.count))
	for u := range p.count {
		out = append(out, u)
	}
	return out
}

// userOnline reports whether user is online on any node (native_send.go,
// api_im.go hooks).
func (srv *Server) userOnline(user uint64) bool {
	if srv.im.dir.isOnline(user) {
		return true
	}
	cn := srv.clusterNode()
	return cn != nil && cn.presence.online(user)
}

// onlineUsersCluster is OnlineUsers over the whole cluster.
func (cn *clusterNode) onlineUsers(prefix string, limit int) (users []*Account, more bool) {
	d := cn.srv.im.dir
	remote := cn.presence.users()
	d.mu.Lock() // (the Caser needs exclusive use)
	defer d.mu.Unlock()
	fold := d.folding.String(prefix)
	seen := map[uint64]bool{}
	add := func(id uint64) {
		if seen[id] {
			return
		}
		seen[id] = true
		a := d.byID[id]
		if a == nil || prefix != "" && !strings.HasPrefix(d.folding.String(a.Name), fold) {
			return
		}
		users = append(users, a)
	}
	for id := range d.online {
		add(id)
	}
	for _, id := range remote {
		add(id)
	}
	slices.SortFunc(users, func(a, b *Account) int { return strings.Compare(a.Name, b.Name) })
	if limit > 0 && len(users) > limit {
		return users[:limit], true
	}
	return users, false
}

// --- retained messages ---

// syncJoined runs what a node does when it meets another: the retained
// set (from the first one), and what the directory lacks.
func (cn *clusterNode) syncJoined(node string) {
	first := false
	cn.dir.mu.Lock()
	if !cn.dir.retainedSynced {
		cn.dir.retainedSynced, first = true, true
	}
	cn.dir.mu.Unlock()
	cn.wg.Add(1)
	go func() {
		defer cn.wg.Done()
		// The peer link comes up with the membership: give it a moment.
		for try := 0; try < 50; try++ {
			if _, ok := cn.linkUp(node); ok {
				break
			}
			select {
			case <-time.After(20 * time.Millisecond):
			case <-cn.stop:
				return
			}
		}
		if first {
			if err := cn.pullRetained(node); err != nil {
				cn.log.Warn("retained messages not fetched", "peer", node, "err", err)
				cn.dir.mu.Lock()
				cn.dir.retainedSynced = false
				cn.dir.mu.Unlock()
			}
		}
		cn.dir.enqueue(cn, dirWork{syncFrom: node})
	}()
}

// linkUp reports whether a peer link to node exists.
func (cn *clusterNode) linkUp(node string) (cluster.LinkStats, bool) {
	for _, l := range cn.c.Links() {
		if l.Peer == node {
			return l, l.Connected
		}
	}
	return cluster.LinkStats{}, false
}

const retainedPage = 1000

// Tombstones of cleared retained messages: how long and how many are kept.
const (
	tombstoneTTL = 3600 // seconds
	tombstoneMax = 10000
)

// clearedRetained holds the tombstones of the retained messages this node
// saw cleared, by topic. Any goroutine.
type clearedRetained struct {
	mu sync.Mutex
	m  map[string]tombstone // REQUIRES: mu held.
}

type tombstone struct {
	id uint64 // the clearing message's (time-ordered, so comparable)
	at int64  // unix seconds, for tombstoneTTL
}

// note records that topic's retained message was cleared by message id (0:
// not known, a new id is taken).
func (c *clearedRetained) note(topic string, id uint64, srv *Server) {
	if id == 0 {
		id = srv.newID()
	}
	now := srv.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = make(map[string]tombstone)
	}
	if len(c.m) >= tombstoneMax {
		for t, ts := range c.m { // the expired first, then any
			if now-ts.at > tombstoneTTL || len(c.m) >= tombstoneMax {
				delete(c.m, t)
			}
		}
	}
	c.m[strings.Clone(topic)] = tombstone{id: id, at: now}
}

// forget drops topic's tombstone: it is retained again.
func (c *clearedRetained) forget(topic string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.m, topic)
}

// list is the tombstones younger than tombstoneTTL.
func (c *clearedRetained) list(now int64) []retainedClear {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]retainedClear, 0, len(c.m))
	for t, ts := range c.m {
		if now-ts.at <= tombstoneTTL {
			out = append(out, retainedClear{Topic: t, ID: ts.id})
		}
	}
	return out
}

func (cn *clusterNode) serveRetained(body []byte) ([]byte, error) {
	var req retainedReq
	if err := decodeBody(body, &req); err != nil {
		return nil, err
	}
	var all []*Message
	cn.srv.retained.MatchFilter("#", func(name string, m *Message) bool {
		if name > req.After {
			all = append(all, m)
		}
		return true
	})
	slices.SortFunc(all, func(a, b *Message) int { return strings.Compare(a.Topic, b.Topic) })
	resp := retainedResp{}
	if req.After == "" {
		resp.Cleared = cn.cleared.list(cn.srv.now())
	}
	size := 0
	for _, m := range all {
		if len(resp.Msgs) == retainedPage || size > 1<<20 {
			resp.More = true
			break
		}
		resp.Msgs = append(resp.Msgs, *storeMessage(m))
		size += len(m.Payload) + len(m.Topic)
	}
	return request(0, &resp)
}

// pullRetained fetches node's retained set, keeping the newer per topic.
func (cn *clusterNode) pullRetained(node string) error {
	after := ""
	n := 0
	for {
		body, err := request(opRetained, &retainedReq{After: after})
		if err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		resp, err := cn.c.Call(ctx, node, body)
		cancel()
		if err != nil {
			return err
		}
		var page retainedResp
		if len(resp) < 1 {
			return errWire
		}
		if err := decodeBody(resp[1:], &page); err != nil {
			return err
		}
		now := cn.srv.now()
		lb := lazyBatch{db: cn.srv.store}
		for i := range page.Msgs {
			m := loadMessage(&page.Msgs[i])
			after = m.Topic
			if m.expired(now) || topic.ValidName(m.Topic) != nil {
				continue
			}
			if cur, ok := cn.srv.retained.Get(m.Topic); ok && cur.ID >= m.ID {
				continue
			}
			cn.srv.retain(m)
			if cn.srv.store != nil {
				lb.get().PutRetained(storeMessage(m))
			}
			n++
		}
		// Cleared while this node was away: drop a copy older than its clear.
		for _, c := range page.Cleared {
			if cur, ok := cn.srv.retained.Get(c.Topic); ok && cur.ID < c.ID {
				cn.srv.retain(&Message{ID: c.ID, Topic: strings.Clone(c.Topic)})
				if cn.srv.store != nil {
					lb.get().DeleteRetained(c.Topic)
				}
				n++
			}
		}
		cn.srv.commit(&lb, nil)
		if !page.More {
			break
		}
	}
	if n > 0 {
		cn.log.Info("retained messages fetched", "peer", node, "taken", n)
	}
	return nil
}
