package broker

import (
	"errors"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cimgo/cim/broker/topic"
	"github.com/cimgo/cim/cluster"
	"github.com/cimgo/cim/storage"
)

// Forwarding. Every node knows the live filters of every other node (the
// cluster gossips them; NotifyInterest*), kept here in one trie keyed by
// node name, so a publish is matched once and goes once to each node with
// a matching filter, never to one without, and never back (a message from
// a peer has Origin set and is not offered to the Forwarder again).
//
// Shared subscriptions are served once cluster-wide: this node's own
// $share filters sit in the same trie under its own name, so the trie's
// round robin over a group's members picks one node per message among all
// nodes holding the group; the node picked serves it (route skips the
// groups another node got, MatchSkip), and a forwarded copy names the
// groups its receiver serves.
//
// Retained messages go to every live node (each keeps the retained set).
//
// Acknowledgements: a QoS 1/2 publish is acknowledged to its client once
// it is stored here and every node it went to has it (stored there: the
// receiver returns from HandlePublish after its commit). MQTT wants the
// acks of one connection in the order of its PUBLISHes, and the route's
// two halves complete on different goroutines, so the forward halves of one
// publisher complete in order (ackQueue) and are handed to the route
// through the store's committer (an empty batch is a barrier), whose
// callbacks run in order on one goroutine, like the local halves.

// interestTable is every node's live filters.
type interestTable struct {
	cn   *clusterNode
	trie *topic.Trie[string] // node name -> filters; this node's own only for $share filters

	mu      sync.Mutex
	byNode  map[string]map[string]bool      // REQUIRES: mu held. node -> filters in trie
	downAt  map[string]time.Time            // REQUIRES: mu held. nodes down since (their filters kept for parking)
	downSet atomic.Pointer[map[string]bool] // a copy of downAt's keys, read lock-free (Match callbacks)
	nShared atomic.Int32                    // $share entries of other nodes in trie

	shareMu sync.RWMutex
	shareID map[string]uint32 // REQUIRES: shareMu held. share filter -> id (Subscription.ID in trie)
	shares  []string          // REQUIRES: shareMu held. id -> share filter
}

func (t *interestTable) init(cn *clusterNode) {
	t.cn = cn
	t.trie = topic.NewTrie[string]()
	t.byNode = make(map[string]map[string]bool)
	t.downAt = make(map[string]time.Time)
	t.shareID = make(map[string]uint32)
	t.shares = []string{""}
	empty := map[string]bool{}
	t.downSet.Store(&empty)
}

// sub is the trie entry for filter: a $share filter carries its id.
func (t *interestTable) sub(filter string) topic.Subscription {
	if !topicShared(filter) {
		return topic.Subscription{}
	}
	t.shareMu.Lock()
	defer t.shareMu.Unlock()
	id, ok := t.shareID[filter]
	if !ok {
		id = uint32(len(t.shares))
		t.shareID[filter] = id
		t.shares = append(t.shares, filter)
	}
	return topic.Subscription{ID: id}
}

func (t *interestTable) shareName(id uint32) string {
	t.shareMu.RLock()
	defer t.shareMu.RUnlock()
	if int(id) < len(t.shares) {
		return t.shares[id]
	}
	return ""
}

// add and remove change node's filters (the trie outside mu: Match
// callbacks read mu-free state only).
func (t *interestTable) add(node string, filters []string) {
	for _, f := range filters {
		t.mu.Lock()
		set := t.byNode[node]
		if set == nil {
			set = make(map[string]bool)
			t.byNode[node] = set
		}
		isNew := !set[f]
		set[f] = true
		t.mu.Unlock()
		if isNew {
			t.trie.Subscribe(f, node, t.sub(f))
			if node != t.cn.self && topicShared(f) {
				t.nShared.Add(1)
			}
		}
	}
}

// heldElsewhere reports whether another node (live, or down with its
// interest kept for parking) holds filter itself.
func (t *interestTable) heldElsewhere(filter string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	for node, set := range t.byNode {
		if node != t.cn.self && set[filter] {
			return true
		}
	}
	return false
}

func (t *interestTable) remove(node string, filters []string) {
	for _, f := range filters {
		t.mu.Lock()
		set := t.byNode[node]
		had := set[f]
		delete(set, f)
		if len(set) == 0 {
			delete(t.byNode, node)
		}
		t.mu.Unlock()
		if had {
			t.trie.Unsubscribe(f, node)
			if node != t.cn.self && topicShared(f) {
				t.nShared.Add(-1)
			}
		}
	}
}

// reset replaces node's filters with filters.
func (t *interestTable) reset(node string, filters []string) {
	want := make(map[string]bool, len(filters))
	for _, f := range filters {
		want[f] = true
	}
	t.mu.Lock()
	var gone []string
	for f := range t.byNode[node] {
		if !want[f] {
			gone = append(gone, f)
		}
	}
	t.mu.Unlock()
	t.remove(node, gone)
	t.add(node, filters)
}

func (t *interestTable) setDown(node string, on bool, now time.Time) {
	t.mu.Lock()
	if on {
		t.downAt[node] = now
	} else {
		delete(t.downAt, node)
	}
	m := make(map[string]bool, len(t.downAt))
	for n := range t.downAt {
		m[n] = true
	}
	t.mu.Unlock()
	t.downSet.Store(&m)
}

func (t *interestTable) isDown(node string) bool { return (*t.downSet.Load())[node] }

// down: node died or left; its filters stay, marked, while it may return.
func (t *interestTable) down(node string) {
	if t.cn.opts.ParkTTL < 0 {
		t.reset(node, nil)
		return
	}
	t.setDown(node, true, time.Now())
}

// up: node is alive again (its full state follows and resets its filters).
func (t *interestTable) up(node string) { t.setDown(node, false, time.Time{}) }

// expireDown drops the filters of nodes down longer than ttl: nothing is
// parked for them any more.
func (t *interestTable) expireDown(now time.Time, ttl time.Duration) {
	t.mu.Lock()
	var gone []string
	for n, at := range t.downAt {
		if now.Sub(at) >= ttl {
			gone = append(gone, n)
		}
	}
	t.mu.Unlock()
	for _, n := range gone {
		t.cn.log.Info("no longer parking messages for a node gone too long", "node", n)
		t.reset(n, nil)
		t.setDown(n, false, time.Time{})
	}
}

// --- broker.Interest: this node's filters ---

// FilterLive: a filter went live here; the cluster gossips it, and a
// hint goes to every peer over its link at once (gossip takes tens of ms:
// a publish on another node right after our SUBACK would miss it).
func (cn *clusterNode) FilterLive(filter string) {
	if !cn.started.Load() {
		return // announced by StartCluster
	}
	cn.hints.add(cn, filter, true)
	if err := cn.c.AddInterest(filter); err != nil && !errors.Is(err, cluster.ErrClosed) {
		cn.log.Warn("filter not announced", "filter", filter, "err", err)
	}
	if topicShared(filter) {
		cn.interest.add(cn.self, []string{filter})
	}
}

// FilterDead: the last local holder of filter left.
func (cn *clusterNode) FilterDead(filter string) {
	if !cn.started.Load() {
		return
	}
	cn.hints.add(cn, filter, false)
	if err := cn.c.RemoveInterest(filter); err != nil && !errors.Is(err, cluster.ErrClosed) && !errors.Is(err, cluster.ErrNotLive) {
		cn.log.Warn("filter not withdrawn", "filter", filter, "err", err)
	}
	if topicShared(filter) {
		cn.interest.remove(cn.self, []string{filter})
	}
}

// hintQueue batches interest hints for the peers, in order.
type hintQueue struct {
	mu      sync.Mutex
	pending []interestHint // REQUIRES: mu held
	wake    chan struct{}
}

// add queues a hint (under broker locks: only appends).
func (h *hintQueue) add(cn *clusterNode, filter string, live bool) {
	h.mu.Lock()
	h.pending = append(h.pending, interestHint{Filter: filter, Live: live})
	h.mu.Unlock()
	h.poke()
}

// poke wakes the sender (never blocks).
func (h *hintQueue) poke() {
	select {
	case h.wake <- struct{}{}:
	default:
	}
}

// run sends the queued hints to every live peer (best effort: the gossip
// carries the same, versioned, and wins).
func (h *hintQueue) run(cn *clusterNode) {
	defer cn.wg.Done()
	for {
		select {
		case <-cn.stop:
			return
		case <-h.wake:
		}
		// Presence first: a peer that sees a login's inbox filter sees
		// the user online too.
		cn.presence.flush(cn)
		h.mu.Lock()
		batch := h.pending
		h.pending = nil
		h.mu.Unlock()
		if len(batch) == 0 {
			continue
		}
		body, err := request(opInterestHint, batch)
		if err != nil {
			continue
		}
		for _, m := range cn.c.Members() {
			if !m.Self && m.State == cluster.StateAlive {
				_ = cn.c.Request(m.Name, body, 5*time.Second, func([]byte, error) {})
			}
		}
	}
}

// applyHints takes a peer's hints (on its link, in order).
func (cn *clusterNode) applyHints(from string, body []byte, r cluster.Reply) {
	var hs []interestHint
	if err := decodeBody(body, &hs); err != nil {
		_ = r.Fail(err)
		return
	}
	for _, h := range hs {
		if h.Live {
			cn.interest.add(from, []string{h.Filter})
		} else {
			cn.interest.remove(from, []string{h.Filter})
		}
	}
	_ = r.Respond(nil)
}

// --- cluster.InterestDelegate: the other nodes' filters ---

func (cn *clusterNode) NotifyInterest(node string, live, dead []string) {
	if !cn.await() {
		return
	}
	cn.interest.remove(node, dead)
	cn.interest.add(node, live)
}

// NotifyInterestReset: node's whole set. With nil because the node died or
// left, its filters are kept (down) so that its messages are parked.
func (cn *clusterNode) NotifyInterestReset(node string, filters []string) {
	if !cn.await() {
		return
	}
	if filters == nil && cn.opts.ParkTTL >= 0 {
		if m, ok := cn.c.Member(node); ok && !m.Live() {
			return // NotifyLeave marks it down
		}
	}
	cn.interest.reset(node, filters)
}

// --- planning: where a message goes ---

// fwdPlan is where one message goes besides this node. Pooled: Forward
// is done with it when it returns (the envelopes copy what they need).
type fwdPlan struct {
	targets []fwdTarget
	local   map[string]bool // $share groups this node serves for the message
	to      []string        // scratch: the targets' names
	env     []byte          // scratch: an envelope (the link copies it at Forward)
}

var planPool = sync.Pool{New: func() any { return new(fwdPlan) }}

func newPlan() *fwdPlan { return planPool.Get().(*fwdPlan) }

func (p *fwdPlan) free() {
	for i := range p.targets {
		t := &p.targets[i]
		t.node, t.plain, t.shares, t.relay = "", false, t.shares[:0], nil
	}
	p.targets, p.local = p.targets[:0], nil
	clear(p.to)
	p.to = p.to[:0]
	planPool.Put(p)
}

type fwdTarget struct {
	node   string
	plain  bool     // the node has a matching filter: it routes the message
	shares []string // groups it serves
	relay  []string // sessions (store keys) it gets the message for, after a hand-off
}

func (p *fwdPlan) target(node string) *fwdTarget {
	for i := range p.targets {
		if p.targets[i].node == node {
			return &p.targets[i]
		}
	}
	if len(p.targets) < cap(p.targets) {
		p.targets = p.targets[:len(p.targets)+1] // reuses the pooled target's shares
		p.targets[len(p.targets)-1].node = node
	} else {
		p.targets = append(p.targets, fwdTarget{node: node})
	}
	return &p.targets[len(p.targets)-1]
}

// pickLive prefers nodes that are up for $share groups.
func (cn *clusterNode) pickLive(node string) bool { return !cn.interest.isDown(node) }

// plan matches m against every node's filters.
func (cn *clusterNode) plan(m *Message) *fwdPlan {
	p := newPlan()
	cn.interest.trie.Match(m.Topic, cn.pickLive, func(node string, sub topic.Subscription) {
		if sub.ID != 0 {
			share := cn.interest.shareName(sub.ID)
			if node == cn.self {
				if p.local == nil {
					p.local = make(map[string]bool)
				}
				p.local[share] = true
			} else {
				t := p.target(node)
				t.shares = append(t.shares, share)
			}
			return
		}
		if node != cn.self {
			p.target(node).plain = true
		}
	})
	return p
}

// shareSkip is route's hook (route.go): the $share groups this node must
// pass over for m, or nil for none. For a message of this node it plans
// where m goes (the plan waits for Forward); for one from a peer, the
// peer's envelope said which groups are ours.
func (cn *clusterNode) shareSkip(m *Message) func(string) bool {
	cn.recent.note(m)
	if m.Origin != "" {
		if v, ok := cn.plans.Load(m); ok {
			if mine, ok := v.(map[string]bool); ok {
				return func(share string) bool { return !mine[share] }
			}
		}
		return skipAll // a peer's message serves no group it did not name
	}
	if cn.interest.nShared.Load() == 0 {
		return nil // no other node holds a shared group: ours decide alone
	}
	p := cn.plan(m)
	cn.plans.Store(m, p)
	return func(share string) bool { return !p.local[share] }
}

// --- broker.Forwarder ---

// Forward sends m to the nodes that want it (and, if retained, to every
// live node); done (QoS 1/2) hears when all have it. Never blocks.
func (cn *clusterNode) Forward(m *Message, done func(nodes int, err error)) {
	var p *fwdPlan
	if v, ok := cn.plans.LoadAndDelete(m); ok {
		p, _ = v.(*fwdPlan)
	}
	if !cn.started.Load() || strings.HasPrefix(m.Topic, "$SYS/") { // $SYS is each node's own
		if p != nil {
			p.free()
		}
		cn.acks.complete(cn, m, done)
		return
	}
	if p == nil {
		p = cn.plan(m)
	}
	defer p.free()
	if m.Retain {
		for _, mem := range cn.c.Members() {
			if !mem.Self && mem.Live() {
				p.target(mem.Name)
			}
		}
	}
	cn.relays.addTargets(cn, m, p)
	if len(p.targets) == 0 {
		cn.acks.complete(cn, m, done)
		return
	}
	for i := range p.targets {
		// to: the nodes that route m themselves. A node that gets it only
		// as a relay for moved sessions is not one: it must not take m
		// for its own copy's (deliverRelayed).
		if t := &p.targets[i]; routesItself(t.plain, len(t.relay) > 0, len(t.shares) > 0, m.Retain) {
			p.to = append(p.to, t.node)
		}
	}
	var cb func(error)
	if m.QoS > 0 && done != nil {
		cb = cn.acks.add(cn, m, done, len(p.targets)).finish
	}
	// The link encodes the publish into its queue at Forward (cluster.Forward):
	// m's bytes (which may alias a connection's read buffer) are not copied
	// here, and the envelope is built in the plan's scratch, so a QoS 0
	// forward allocates nothing here (BenchmarkClusterForwardQoS0).
	for i := range p.targets {
		t := &p.targets[i]
		var pub cluster.Publish
		p.env = publishFor(&pub, m, t, p.to, p.env[:0])
		cn.send(t, m, &pub, cb)
	}
}

// publishFor fills pub with m as a peer-link publish for target t (to:
// all of m's targets), its envelope appended to env (returned, for reuse;
// pub.Props aliases it). pub aliases m's bytes.
func publishFor(pub *cluster.Publish, m *Message, t *fwdTarget, to []string, env []byte) []byte {
	e := fwdEnvelope{Version: envelopeVersion, Props: mqttProps(m), SenderID: m.Sender, SenderName: m.SenderName,
		Shares: t.shares, Relay: t.relay, To: to, Plain: t.plain}
	env = appendEnvelope(env, &e)
	*pub = cluster.Publish{Topic: m.Topic, Payload: m.Payload, QoS: m.QoS, Retain: m.Retain, Props: env,
		Sender: m.From, ID: m.ID, Created: m.Created, Expiry: m.Expiry, Origin: m.Origin}
	return env
}

// newPublish is m as a peer-link publish for t, in memory of its own.
func newPublish(m *Message, t *fwdTarget, to []string) *cluster.Publish {
	pub := new(cluster.Publish)
	publishFor(pub, m, t, to, nil)
	return pub
}

// send forwards pub (m as a publish for t) to one target; cb (QoS 1/2,
// may be nil) hears once when the target has it, or why not. A target
// that is down gets m parked.
func (cn *clusterNode) send(t *fwdTarget, m *Message, pub *cluster.Publish, cb func(error)) {
	// Parked: what the node's sessions would get. Not QoS 0, and not a
	// message only for a $share group (another member is preferred).
	parkable := m.QoS > 0 && (t.plain || len(t.relay) > 0) && cn.opts.ParkTTL >= 0
	if cn.interest.isDown(t.node) {
		if parkable {
			cn.park.put(cn, t.node, m, cb)
		} else if cb != nil {
			cb(nil)
		}
		return
	}
	if err := cn.forward(t.node, pub, m, parkable, cb); err != nil && cb != nil {
		cb(err)
	}
}

// forward hands p to the peer link. For QoS 1/2 cb is called once with
// the outcome (from NotifyForwarded); an error returned means it was not
// sent and cb will not be called.
func (cn *clusterNode) forward(node string, p *cluster.Publish, m *Message, parkable bool, cb func(error)) error {
	if p.QoS == 0 {
		err := cn.c.Forward(node, p)
		if err != nil && !errors.Is(err, cluster.ErrQueueFull) {
			cn.log.Debug("QoS 0 forward failed", "node", node, "err", err)
		}
		return nil // QoS 0 is not waited for
	}
	k := fwdKey{node, p.ID}
	cn.pending.add(k, func(err error) {
		if errors.Is(err, cluster.ErrPeerGone) && parkable {
			cn.park.put(cn, node, m, cb) // it died before it had it: keep it for its return
			return
		}
		if cb != nil {
			cb(err)
		}
	})
	if err := cn.c.Forward(node, p); err != nil {
		cn.pending.take(k)
		if (errors.Is(err, cluster.ErrUnknownPeer) || errors.Is(err, cluster.ErrPeerGone)) && parkable {
			cn.park.put(cn, node, m, cb)
			return nil
		}
		return err
	}
	return nil
}

// --- cluster.ForwardDelegate ---

type fwdKey struct {
	node string
	id   uint64
}

// pendingForwards are QoS 1/2 forwards waiting for their peer's ack.
type pendingForwards struct {
	mu sync.Mutex
	m  map[fwdKey][]func(error) // REQUIRES: mu held
}

func (p *pendingForwards) add(k fwdKey, cb func(error)) {
	p.mu.Lock()
	p.m[k] = append(p.m[k], cb)
	p.mu.Unlock()
}

// take removes and returns the oldest callback of k.
func (p *pendingForwards) take(k fwdKey) func(error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	list := p.m[k]
	if len(list) == 0 {
		return nil
	}
	cb := list[0]
	if len(list) == 1 {
		delete(p.m, k)
	} else {
		p.m[k] = list[1:]
	}
	return cb
}

func (cn *clusterNode) NotifyForwarded(peer string, id uint64, err error) {
	if cb := cn.pending.take(fwdKey{peer, id}); cb != nil {
		cb(err)
	}
}

// --- acknowledgements in order ---

// ackQueues keeps, per publisher, the forward halves of its QoS 1/2
// publishes in publish order.
type ackQueues struct {
	mu sync.Mutex
	m  map[string]*ackQueue // REQUIRES: mu held
}

type ackQueue struct {
	key string
	q   []*ackEntry // REQUIRES: ackQueues.mu held
}

type ackEntry struct {
	cn    *clusterNode
	q     *ackQueue
	done  func(int, error)
	left  int
	nodes int
	err   error
}

// publisherKey names who published m, for the order of its acks.
func publisherKey(m *Message) string {
	if m.Sender != 0 {
		return "n/" + strconv.FormatUint(m.Sender, 10)
	}
	return "m/" + m.From
}

// add queues the forward half of m, waiting for n nodes.
func (a *ackQueues) add(cn *clusterNode, m *Message, done func(int, error), n int) *ackEntry {
	key := publisherKey(m)
	a.mu.Lock()
	defer a.mu.Unlock()
	q := a.m[key]
	if q == nil {
		q = &ackQueue{key: key}
		a.m[key] = q
	}
	e := &ackEntry{cn: cn, q: q, done: done, left: n}
	q.q = append(q.q, e)
	return e
}

// complete is the forward half of a message that went to no node: done
// at once, unless earlier ones of its publisher still wait.
func (a *ackQueues) complete(cn *clusterNode, m *Message, done func(int, error)) {
	if done == nil {
		return
	}
	key := publisherKey(m)
	a.mu.Lock()
	if q := a.m[key]; q != nil {
		q.q = append(q.q, &ackEntry{cn: cn, q: q, done: done})
		a.mu.Unlock()
		return
	}
	a.mu.Unlock()
	done(0, nil)
}

// finish records one node's outcome and releases, in order, the entries
// whose nodes all answered.
func (e *ackEntry) finish(err error) {
	a := &e.cn.acks
	a.mu.Lock()
	e.left--
	if err != nil && e.err == nil {
		e.err = err
	}
	if err == nil {
		e.nodes++
	}
	q := e.q
	var ready []*ackEntry
	for len(q.q) > 0 && q.q[0].left <= 0 {
		ready = append(ready, q.q[0])
		q.q[0] = nil
		q.q = q.q[1:]
	}
	if len(q.q) == 0 && a.m[q.key] == q {
		delete(a.m, q.key)
	}
	// Released under the lock, so that two finishes cannot reorder them;
	// release only queues work (a store barrier, or an append).
	for _, r := range ready {
		r.release()
	}
	a.mu.Unlock()
}

// release hands the outcome to the route: through the committer when
// there is a store, so it is ordered with the local halves.
func (e *ackEntry) release() {
	db := e.cn.srv.store
	nodes, err := e.nodes, e.err
	if db == nil {
		e.done(nodes, err)
		return
	}
	if cerr := db.Commit(db.NewBatch(), func(error) { e.done(nodes, err) }); cerr != nil {
		e.done(nodes, err)
	}
}

// --- cluster.PublishDelegate: messages from peers ---

// HandlePublish is the synchronous form, unused: the cluster calls
// HandlePublishAsync (the adapter is an AsyncPublishDelegate).
func (cn *clusterNode) HandlePublish(from string, p *cluster.Publish) {
	ch := make(chan struct{})
	cn.HandlePublishAsync(from, p, func() { close(ch) })
	if p.QoS == 0 {
		return
	}
	<-ch
}

// HandlePublishAsync routes a peer's message here, on the link's reader,
// in order. For QoS 1/2 done runs once the message is stored here (the
// peer's publisher waits for that), so the link acknowledges it then,
// without holding the link to one store round trip per message. It never
// waits for another node (that node's answer may need this very reader).
func (cn *clusterNode) HandlePublishAsync(from string, p *cluster.Publish, done func()) {
	if !cn.await() {
		return // (never: the cluster calls no delegate before it exists)
	}
	var env fwdEnvelope
	if p.QoS == 0 && !p.Retain {
		// Most of a flat-out stream: routed from the link's read buffer,
		// as a local client's QoS 0 is from its connection's; route keeps
		// nothing of it (a relay may queue it: that takes the copy below).
		if decodeEnvelope(p.Props, &env) == nil && len(env.Relay) == 0 {
			m := scratchMessages.Get().(*Message)
			fillFromPublish(m, p, &env, from)
			cn.routePeer(m, &env, nil)
			*m = Message{}
			scratchMessages.Put(m)
			return
		}
		env = fwdEnvelope{}
	}
	own := p.Clone() // p aliases the link's read buffer
	m := new(Message)
	if err := decodeEnvelope(own.Props, &env); err != nil {
		cn.log.Warn("dropped a malformed publish from a peer", "peer", from, "err", err)
		if done != nil {
			done() // acknowledged: it would be refused again, forever
		}
		return
	}
	fillFromPublish(m, &own, &env, from)
	var w *storedWait
	if done != nil && m.QoS > 0 {
		w = &storedWait{cn: cn, from: from, topic: m.Topic, done: done}
		w.left.Store(1) // the hold released below
	}
	if routesItself(env.Plain, len(env.Relay) > 0, len(env.Shares) > 0, m.Retain) {
		cn.routePeer(m, &env, w)
	}
	if len(env.Relay) > 0 {
		if w != nil {
			w.left.Add(1)
		}
		cn.relays.deliverTo(cn, m, env.Relay, env.toList(), w)
	}
	if w != nil {
		w.finish(nil)
	}
}

// routesItself says whether a node routes a message it is forwarded (plain,
// for shared groups, retained, or with no relay), or only hands it to the
// moved sessions it is relayed for.
func routesItself(plain, relay, shares, retain bool) bool {
	return plain || !relay || shares || retain
}

// scratchMessages holds the Messages that a peer's QoS 0 publishes are
// routed in (HandlePublishAsync): one per link reader at a time, not an
// allocation per message.
var scratchMessages = sync.Pool{New: func() any { return new(Message) }}

// routePeer routes a peer's message m (envelope env) to this node's
// subscribers; w (nil for QoS 0) hears when it is stored.
func (cn *clusterNode) routePeer(m *Message, env *fwdEnvelope, w *storedWait) {
	if len(env.Shares) > 0 { // else every shared group skips it (shareSkip)
		mine := make(map[string]bool, len(env.Shares))
		for _, s := range env.Shares {
			mine[s] = true
		}
		cn.plans.Store(m, mine)
	}
	if w == nil {
		cn.srv.route(m, nil, nil)
	} else {
		w.left.Add(1)
		cn.srv.route(m, nil, func(_ int, err error) { w.finish(err) })
	}
	if len(env.Shares) > 0 {
		cn.plans.Delete(m)
	}
	// A session handed from here to another node moments ago: what
	// still arrives for it goes on (one hop only: a relay is not routed).
	if cn.relays.n.Load() > 0 {
		cn.relays.onward(cn, m, env.toList(), w)
	}
}

// storedWait calls done when every part of a forwarded message is stored.
type storedWait struct {
	cn          *clusterNode
	from, topic string
	left        atomic.Int32
	done        func()
}

func (w *storedWait) finish(err error) {
	if err != nil {
		// The store refused it: the peer cannot be told (a link ack has no
		// error); it is acknowledged, as the local part of a publish that
		// reached a node whose disk failed would be lost there too.
		w.cn.log.Warn("a forwarded message could not be stored", "peer", w.from, "topic", w.topic, "err", err)
	}
	if w.left.Add(-1) == 0 {
		w.done()
	}
}

func skipAll(string) bool { return true }

// storeBarrier calls done once everything committed so far is durable.
func storeBarrier(db *storage.DB, done func(error)) {
	if db == nil {
		done(nil)
		return
	}
	if err := db.Commit(db.NewBatch(), done); err != nil {
		done(err)
	}
}

// PublishBatchBegin and PublishBatchEnd (cluster.PublishBatcher) bracket
// a batch of a peer's publishes: the loops' flushes wait for its end
// (holdFlushes), so a stream of forwarded messages costs each loop one
// wake-up and each subscriber one write per batch.
func (cn *clusterNode) PublishBatchBegin(string) { cn.srv.holdFlushes() }
func (cn *clusterNode) PublishBatchEnd(string)   { cn.srv.releaseFlushes() }
