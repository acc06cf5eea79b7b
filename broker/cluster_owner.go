package broker

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cimgo/cim/broker/topic"
	"github.com/cimgo/cim/cluster"
	"github.com/cimgo/cim/storage"
)

// Ownership. Every session has an owner node in the cluster's table, keyed
// "m/<client id>" (MQTT) or "n/<user id>" (native), with an epoch; the
// newest claim wins. A login on node B of a session owned by live node A:
//
//	B: Call(A, takeover X) ─▶ A: close X's connection ("session taken over"),
//	                             wait for it to let go, hand the session off
//	                             (subscriptions, in-flight and queued messages,
//	                             in order; the store's part read in), remember
//	                             it for a retry, relay late arrivals to B
//	B ◀─ snapshot ──────────────
//	B: Claim X, restore, store it, attach, CONNACK session present
//
// If B claims without asking (the owner was dead or unknown to B, or two
// nodes raced), the cluster tells the loser NotifyTakenOver: it closes its
// connection and merges what it held into the winner (the winner appends
// the messages it does not have yet, by message id). A node that restarts
// re-asserts the sessions it recovered at the lowest epoch, so any claim
// made while it was away wins and its stale copy is merged the same way.
//
// Entries of a dead node are kept (not live) until it returns or
// DeadNodeTTL passes: its sessions are on its disk only, so the entry is
// the only trace of them, and a client that reconnects elsewhere just
// claims afresh (its messages meanwhile are parked, cluster_park.go, and
// merged when the dead node returns with its stored copy).

func ownerKey(k skey) string {
	if k.proto == storage.ProtocolNative {
		return "n/" + k.id
	}
	return "m/" + k.id
}

func keyOfOwner(key string) (skey, bool) {
	if len(key) < 3 || key[1] != '/' {
		return skey{}, false
	}
	switch key[0] {
	case 'm':
		return skey{storage.ProtocolMQTT, key[2:]}, true
	case 'n':
		return skey{storage.ProtocolNative, key[2:]}, true
	}
	return skey{}, false
}

// Acquire is the broker's Owner: it makes this node the owner of the
// session, fetching it from the node that had it. Off the loops; blocks on
// the peer link until ctx is done.
//
// The owner this node knows may be out of date (claims travel by gossip):
// a node that handed the session on answers with where it went, and the
// session is fetched there. When no live owner is known at all (a claim
// still on its way, or the owner died), every live peer is asked: the
// session may be on one of them, and a login that finds it must say
// "session present" [MQTT-3.2.2-2].
func (cn *clusterNode) Acquire(ctx context.Context, proto byte, id string) (*Snapshot, error) {
	k := skey{proto, id}
	key := ownerKey(k)
	o, known := cn.c.Lookup(key)
	var snap *Snapshot
	var err error
	claim := true
	cn.arrivals.expect(k)     // relays from the node that hands it over may come first
	defer cn.relays.forget(k) // a relay from here, left by a hand-off from here, would send its messages away
	switch {
	case known && o.Node == cn.self:
		// Ours, unless we handed it on and the new owner's claim has not
		// come back to us yet.
		if to := cn.relays.movedTo(k); to != "" && cn.srv.sessions.lookup(k) == nil {
			snap, err = cn.fetch(ctx, to, k)
		} else {
			claim = false
		}
	case known && o.Live:
		snap, err = cn.fetch(ctx, o.Node, k)
	default:
		snap, err = cn.fetchAny(ctx, k, o.Node)
	}
	if err == nil && claim {
		if _, _, cerr := cn.c.Claim(key); cerr != nil {
			err = fmt.Errorf("%w: claim %s: %w", ErrCluster, id, cerr)
		}
	}
	if err != nil || snap == nil {
		cn.cancelArrival(k) // nothing is handed over: no relays come
		return nil, err
	}
	snap.Session.Node = cn.self
	return snap, nil
}

// fetch takes session k over from node, following where it says the
// session went (at most a few hops): nil if nobody has it.
func (cn *clusterNode) fetch(ctx context.Context, node string, k skey) (*Snapshot, error) {
	body, err := request(opTakeover, &takeoverReq{Proto: k.proto, ID: k.id})
	if err != nil {
		return nil, err
	}
	asked := map[string]bool{cn.self: true}
	for hop := 0; hop < 4 && !asked[node]; hop++ {
		asked[node] = true
		resp, err := cn.ask(ctx, node, body, k)
		if err != nil || len(resp) == 0 {
			return nil, err
		}
		switch resp[0] {
		case takeoverSnapshot:
			if len(resp) < 9 {
				return nil, fmt.Errorf("%w: takeover answer of %d bytes", errWire, len(resp))
			}
			// Our claim must beat the one it made, even if that has not
			// reached us yet (clocks of two machines differ).
			cn.c.Observe(cluster.Epoch(binary.BigEndian.Uint64(resp[1:9])))
			return decodeSnapshot(resp[9:])
		case takeoverMoved:
			node = string(resp[1:])
		default:
			return nil, fmt.Errorf("%w: takeover answer %d", errWire, resp[0])
		}
	}
	return nil, nil // handed around in a loop, or too far: start afresh (merged later)
}

// ask sends one takeover request to node, again while the link is down or
// the session busy: nil when the node is gone (its copy, if any, merges in
// when it returns).
func (cn *clusterNode) ask(ctx context.Context, node string, body []byte, k skey) ([]byte, error) {
	for {
		resp, err := cn.c.Call(ctx, node, body)
		if err == nil {
			return resp, nil
		}
		if errors.Is(err, cluster.ErrPeerGone) || errors.Is(err, cluster.ErrUnknownPeer) {
			cn.log.Info("session owner gone; starting the session here", "client", k.id, "owner", node)
			return nil, nil
		}
		var re *cluster.RemoteError
		retry := errors.Is(err, cluster.ErrLinkDown) || errors.Is(err, cluster.ErrQueueFull) ||
			errors.As(err, &re) && re.Msg == errBusy.Error()
		if !retry || ctx.Err() != nil {
			return nil, fmt.Errorf("%w: taking session %s over from %s: %w", ErrCluster, k.id, node, err)
		}
		// The owner remembers what it handed over: asking again is safe.
		select {
		case <-time.After(50 * time.Millisecond):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// fetchAny asks every live peer but skip (a dead owner) for session k, at
// once. Two copies (stale ones: a partition, a restart) are merged into
// the first.
func (cn *clusterNode) fetchAny(ctx context.Context, k skey, skip string) (*Snapshot, error) {
	var peers []string
	for _, m := range cn.c.Members() {
		if !m.Self && m.Live() && m.Name != skip {
			peers = append(peers, m.Name)
		}
	}
	if len(peers) == 0 {
		return nil, nil
	}
	type result struct {
		snap *Snapshot
		err  error
	}
	results := make(chan result, len(peers))
	for _, p := range peers {
		go func() {
			snap, err := cn.fetch(ctx, p, k)
			results <- result{snap, err}
		}()
	}
	var snap *Snapshot
	var firstErr error
	for range peers {
		r := <-results
		switch {
		case r.err != nil:
			if firstErr == nil {
				firstErr = r.err
			}
		case r.snap == nil:
		case snap == nil:
			snap = r.snap
		default:
			mergeSnapshot(snap, r.snap)
		}
	}
	if snap == nil && firstErr != nil {
		return nil, firstErr
	}
	return snap, nil
}

// mergeSnapshot appends to dst the QoS 1/2 messages of src it lacks (by
// message id), after its own; dst's subscriptions stand.
func mergeSnapshot(dst, src *Snapshot) {
	have := make(map[uint64]bool, len(dst.Queue))
	seq := max(dst.Session.NextSeq, dst.DiskTail+1, 1) - 1
	for _, q := range dst.Queue {
		have[q.Message.ID] = true
		seq = max(seq, q.Seq)
	}
	for _, q := range src.Queue {
		if q.Message.QoS == 0 || q.Message.ID != 0 && have[q.Message.ID] || q.Message.QoS == 2 && q.Message.Sent {
			continue
		}
		seq++
		q.Seq = seq
		q.Message.Sent = false
		dst.Queue = append(dst.Queue, q)
	}
	dst.Session.NextSeq = max(dst.Session.NextSeq, seq+1)
}

// Takeover answers (op 1): empty when there is no session; 's', the
// answering node's clock (8 bytes, big endian: the asker's claim goes
// above it) and the snapshot; or 'm' and the node the session was handed
// to.
const (
	takeoverSnapshot byte = 's'
	takeoverMoved    byte = 'm'
)

// errBusy: the session's connection did not let go in time.
var errBusy = errors.New("session busy")

// HandleRequest answers a peer's request; each op runs on a goroutine of
// its own (they may read the store or wait for a connection to close).
func (cn *clusterNode) HandleRequest(from string, body []byte, r cluster.Reply) {
	if !cn.await() {
		_ = r.Fail(ErrCluster)
		return
	}
	if len(body) == 0 {
		_ = r.Fail(errWire)
		return
	}
	op, body := body[0], body[1:]
	switch op {
	case opPresence: // in order, cheap: not on a goroutine
		cn.presence.apply(cn, from, body, r)
		return
	case opDirApply: // in order: the registrar's decisions
		cn.dir.applyRequest(cn, from, body, r)
		return
	case opInterestHint: // in order, cheap
		cn.applyHints(from, body, r)
		return
	}
	go func() {
		var resp []byte
		var err error
		switch op {
		case opTakeover:
			resp, err = cn.serveTakeover(from, body)
		case opMerge:
			err = cn.serveMerge(from, body)
		case opRetained:
			resp, err = cn.serveRetained(body)
		case opDirSync:
			resp, err = cn.dir.serveSync(cn, body)
		case opDirCall:
			resp, err = cn.dir.serveCall(cn, from, body)
		default:
			err = fmt.Errorf("%w: unknown op %d", errWire, op)
		}
		if err != nil {
			_ = r.Fail(err)
			return
		}
		if err := r.Respond(resp); err != nil {
			cn.log.Debug("answer not sent", "peer", from, "op", op, "err", err)
		}
	}()
}

// serveTakeover hands session k over to node to.
func (cn *clusterNode) serveTakeover(to string, body []byte) ([]byte, error) {
	var req takeoverReq
	if err := decodeBody(body, &req); err != nil {
		return nil, err
	}
	k := skey{req.Proto, req.ID}
	mv := cn.relayAhead(k, to)
	if mv == nil {
		// Handed over already: to the asker (its answer was lost and it
		// asks again), or to another node (the asker's view of the owner
		// is out of date), or there is none.
		return cn.relays.handedTo(k, to), nil
	}
	snap, err := cn.release(k)
	if err != nil {
		cn.relays.cancel(mv) // it stays here
		return nil, err
	}
	if snap == nil {
		// It ended meanwhile, or a request of the same asker running
		// alongside took it (and shares mv): that one answers.
		return cn.relays.handedTo(k, to), nil
	}
	b, err := encodeSnapshot(snap)
	if err != nil {
		cn.relays.cancel(mv)
		cn.putBack(snap)
		return nil, err
	}
	b = append(binary.BigEndian.AppendUint64([]byte{takeoverSnapshot}, uint64(cn.c.Epoch())), b...)
	cn.relays.answered(mv, b)
	cn.log.Debug("session handed over", "client", k.id, "to", to, "queued", len(snap.Queue))
	return b, nil
}

// deliveredLate: a QoS 1/2 message reached session k just after it was
// taken out (a routing pass that had matched it before). If it was handed
// to another node, the message follows it there, as a relay (not waited
// for: the pass that routed it is under way). Any goroutine; never blocks.
func (srv *Server) deliveredLate(k skey, m *Message) {
	cn := srv.clusterNode()
	if cn == nil {
		return
	}
	if node := cn.relays.movedTo(k); node != "" {
		cn.relays.relayTo(cn, node, []string{k.storeKey()}, m, nil, nil)
	}
}

// relayAhead starts relaying what reaches this node for session k to node
// to, before the session is taken out for it: a message routed here from
// then on would find the session ended, or gone and nothing in its place,
// and be lost, acknowledged. nil when k is not here.
func (cn *clusterNode) relayAhead(k skey, to string) *moved {
	s := cn.srv.sessions.lookup(k)
	if s == nil {
		return nil
	}
	s.mu.Lock()
	rec := s.recordLocked(cn.srv.now())
	s.mu.Unlock()
	return cn.relays.handed(k, to, &Snapshot{Session: *rec}, cn.opts.RelayTTL)
}

// release closes k's connection (if any), waits for it to let go, and
// takes the session out of this node: nil if there is none. Off the loops.
func (cn *clusterNode) release(k skey) (*Snapshot, error) {
	s := cn.srv.sessions.lookup(k)
	if s == nil {
		return nil, nil
	}
	deadline := time.Now().Add(2 * time.Second)
	for {
		s.mu.Lock()
		ep := s.ep
		s.mu.Unlock()
		if ep == nil {
			break
		}
		if time.Now().After(deadline) {
			return nil, errBusy
		}
		ep.tr().kick(reasonTakenOver) // [MQTT-3.1.4-3] across nodes
		time.Sleep(2 * time.Millisecond)
	}
	snap, ok := cn.srv.handOff(k)
	if !ok {
		if cn.srv.sessions.lookup(k) != nil {
			return nil, errBusy // a new connection took it here meanwhile
		}
		return nil, nil // it ended (expiry 0) as its connection closed
	}
	return snap, nil
}

// putBack restores a session that could not be handed over.
func (cn *clusterNode) putBack(snap *Snapshot) {
	r := cn.srv.sessions
	k := skey{snap.Session.Protocol, snap.Session.ClientID}
	sh := &r.shards[r.shard(k)]
	sh.mu.Lock()
	if sh.m.get(k) != nil {
		sh.mu.Unlock()
		cn.log.Error("a session that could not be handed over was replaced meanwhile; its messages are merged", "client", k.id)
		cn.mergeLocal(k, snap)
		return
	}
	s := cn.srv.restore(snap)
	sh.m.put(s)
	sh.mu.Unlock()
	cn.srv.storeMoved(s, snap)
}

// storeMoved writes a session that came from another node to this node's
// store: its record and its queue under the seqs it arrived with (the
// session continues after them). Called by registry.attach (hook) and by
// merges. Any goroutine; never with s.mu held.
func (srv *Server) storeMoved(s *session, snap *Snapshot) {
	if cn := srv.clusterNode(); cn != nil {
		cn.recent.arrivedNow(s.key)
		cn.relays.forget(s.key)
		defer cn.arrived(s) // after its queue is on its way to the store
	}
	if srv.store == nil {
		return
	}
	s.mu.Lock()
	if !s.persistentLocked() || s.ended {
		s.mu.Unlock()
		return
	}
	s.stored = true
	rec := s.recordLocked(0)
	if s.ep == nil {
		rec.DisconnectedAt = srv.now() * 1000
	}
	s.mu.Unlock()
	key := s.key.storeKey()
	queue := slices.Clone(snap.Queue)
	srv.async.commit(func(b *storage.Batch) {
		b.PutSession(rec)
		for i := range queue {
			b.PutQueued(key, queue[i].Seq, &queue[i].Message)
		}
	})
}

// NotifyTakenOver: another node claimed a session this node holds (it did
// not ask: a race, or it thought us gone). Close the connection here and
// merge what the session held into the new owner.
func (cn *clusterNode) NotifyTakenOver(key string, by cluster.Owner) {
	if !cn.await() {
		return
	}
	k, ok := keyOfOwner(key)
	if !ok || cn.srv.sessions.lookup(k) == nil {
		return
	}
	cn.wg.Add(1)
	go func() {
		defer cn.wg.Done()
		cn.yield(k, by.Node)
	}()
}

func (cn *clusterNode) NotifyOwnerChanged(string, cluster.Owner, cluster.Owner) {}

// yieldHook, if set (tests), runs after yield took the session out and
// before it sends it.
var yieldHook func(k skey)

// yield moves session k, which node to owns now, there.
//
// Messages that reach this node for k are passed on to the new owner from
// before the session is taken out until RelayTTL after: the owner holds
// the session already (it claimed it), and a message routed here while
// the merge is on its way would otherwise find the session ended and be
// lost, acknowledged (a parked message replayed to this node as it
// returns is for this node alone).
func (cn *clusterNode) yield(k skey, to string) {
	mv := cn.relayAhead(k, to)
	if mv == nil {
		return
	}
	snap, err := cn.release(k)
	if err != nil || snap == nil {
		if err != nil {
			cn.relays.cancel(mv)
			cn.log.Warn("session claimed elsewhere but busy here", "client", k.id, "owner", to, "err", err)
		}
		return
	}
	if yieldHook != nil {
		yieldHook(k)
	}
	body, err := encodeSnapshot(snap)
	if err == nil {
		body = append([]byte{opMerge}, body...)
	}
	for attempt := 0; err == nil && attempt < 20; attempt++ {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err = cn.c.Call(ctx, to, body)
		cancel()
		if err == nil {
			cn.relays.merged.Add(1)
			cn.log.Info("stale session merged into its new owner", "client", k.id, "owner", to, "queued", len(snap.Queue))
			return
		}
		if errors.Is(err, cluster.ErrClosed) {
			break
		}
		select {
		case <-time.After(time.Duration(attempt+1) * 100 * time.Millisecond):
			err = nil
		case <-cn.stop:
		}
	}
	cn.log.Warn("could not merge a session into its new owner; kept here", "client", k.id, "owner", to, "err", err)
	cn.relays.cancel(mv)
	cn.putBack(snap)
}

// serveMerge takes in a session another node held for a client that is
// now ours.
func (cn *clusterNode) serveMerge(from string, body []byte) error {
	snap, err := decodeSnapshot(body)
	if err != nil {
		return err
	}
	k := skey{snap.Session.Protocol, snap.Session.ClientID}
	if k.proto != storage.ProtocolMQTT && k.proto != storage.ProtocolNative {
		return fmt.Errorf("%w: protocol %d", errWire, k.proto)
	}
	snap.Session.Node = cn.self
	cn.mergeLocal(k, snap)
	return nil
}

// mergeLocal adds what snap holds to session k here: as the session if
// there is none, else its messages this session lacks, after its own.
func (cn *clusterNode) mergeLocal(k skey, snap *Snapshot) {
	r := cn.srv.sessions
	sh := &r.shards[r.shard(k)]
	sh.mu.Lock()
	s := sh.m.get(k)
	if s == nil {
		s = cn.srv.restore(snap)
		sh.m.put(s)
		sh.mu.Unlock()
		cn.srv.storeMoved(s, snap)
		return
	}
	sh.mu.Unlock()
	have := s.pendingIDs()
	now := cn.srv.now()
	lb := lazyBatch{db: cn.srv.store}
	for i := range snap.Queue {
		rec := &snap.Queue[i].Message
		if rec.ID != 0 && have[rec.ID] || rec.QoS == 0 {
			continue
		}
		if rec.QoS == 2 && rec.Sent {
			continue // its receiver had it (PUBREC came): only the release was left
		}
		s.deliver(loadMessage(rec), rec.QoS, rec.Retain, rec.SubIDs, now, &lb)
	}
	cn.srv.commit(&lb, nil)
}

// pendingIDs are the ids of the messages s holds (in flight and queued in
// memory): a merged or relayed copy of one of them is not taken twice.
func (s *session) pendingIDs() map[uint64]bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	queue := s.queueLocked()
	ids := make(map[uint64]bool, len(queue)+len(s.inflight))
	for _, q := range queue {
		if q.m != nil && q.m.ID != 0 {
			ids[q.m.ID] = true
		}
	}
	for _, f := range s.inflight {
		if f.m != nil && f.m.ID != 0 {
			ids[f.m.ID] = true
		}
	}
	return ids
}

// restoreOwnership re-asserts the sessions recovered from the store. The
// lowest epoch: a claim made while this node was away wins, and the stale
// copy here is merged into it (NotifyTakenOver, or below).
func (cn *clusterNode) restoreOwnership() {
	var keys []skey
	cn.srv.sessions.each(func(s *session) { keys = append(keys, s.key) })
	for _, k := range keys {
		o, ok, err := cn.c.Restore(ownerKey(k), 1)
		if err != nil {
			cn.log.Warn("session not restored to the cluster", "client", k.id, "err", err)
			continue
		}
		if !ok {
			k, to := k, o.Node
			cn.wg.Add(1)
			go func() {
				defer cn.wg.Done()
				cn.yield(k, to)
			}()
		}
	}
}

// sessionEnded is registry.endLocked's hook: the session is gone for
// good, so is its ownership entry. Never blocks.
func (srv *Server) sessionEnded(k skey) {
	if cn := srv.clusterNode(); cn != nil && cn.started.Load() {
		_, _ = cn.c.Release(ownerKey(k))
	}
}

// --- relays: messages for a session that just moved ---

// moved is a session handed to another node: for a while, messages that
// reach this node for it are passed on.
type moved struct {
	key     skey
	node    string
	filters []string
	until   time.Time
	body    []byte // the snapshot as sent (takeover answers only), for a retry. REQUIRES: relayTable.mu held
}

type relayTable struct {
	trie *topic.Trie[*moved]
	srv  *Server

	mu    sync.Mutex
	byKey map[skey]*moved // REQUIRES: mu held

	n                          atomic.Int32
	relayed, handedOff, merged atomic.Uint64
}

func (t *relayTable) init(srv *Server) {
	t.srv = srv
	t.trie = topic.NewTrie[*moved]()
	t.byKey = make(map[skey]*moved)
}

// handed records that session k (as snap) goes to node, and returns the
// record; a hand-off to node already under way (a retried takeover
// request) keeps its record. Its filters count as this node's interest
// while it relays (filterCounts): a node that publishes for the session
// meanwhile, the new owner included until it has restored it, keeps
// sending here what no one else would get.
func (t *relayTable) handed(k skey, node string, snap *Snapshot, ttl time.Duration) *moved {
	mv := &moved{key: k, node: node, until: time.Now().Add(ttl)}
	for _, sub := range snap.Session.Subs {
		if !topicShared(sub.Filter) && topic.ValidFilter(sub.Filter) == nil {
			mv.filters = append(mv.filters, sub.Filter)
		}
	}
	t.mu.Lock()
	old := t.byKey[k]
	if old != nil && old.node == node {
		old.until = mv.until
		t.mu.Unlock()
		return old
	}
	t.byKey[k] = mv
	t.mu.Unlock()
	if old != nil {
		t.drop(old)
	}
	for _, f := range mv.filters {
		t.trie.Subscribe(f, mv, topic.Subscription{})
		t.srv.filters.change(f, 1, t.srv.opts.Interest)
	}
	t.n.Add(1)
	return mv
}

// answered keeps the takeover answer that handed mv's session over, for a
// retry of the asker (handedTo).
func (t *relayTable) answered(mv *moved, body []byte) {
	t.mu.Lock()
	mv.body = body
	t.mu.Unlock()
	t.handedOff.Add(1)
}

// forget drops what k's hand-off from here left, if any: the session is
// back (a relay from here would send its messages away).
func (t *relayTable) forget(k skey) {
	t.mu.Lock()
	mv := t.byKey[k]
	delete(t.byKey, k)
	t.mu.Unlock()
	if mv != nil {
		t.drop(mv)
	}
}

// cancel forgets mv (a hand-off that did not happen), unless a later one
// replaced it.
func (t *relayTable) cancel(mv *moved) {
	t.mu.Lock()
	mine := t.byKey[mv.key] == mv
	if mine {
		delete(t.byKey, mv.key)
	}
	t.mu.Unlock()
	if mine {
		t.drop(mv)
	}
}

// movedTo is the node session k was handed to from here, if it was, a
// moment ago (RelayTTL).
func (t *relayTable) movedTo(k skey) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if mv := t.byKey[k]; mv != nil {
		return mv.node
	}
	return ""
}

// handedTo is the takeover answer for k to node when k is no longer
// here: the answer sent before if node asked before, where k went if it
// went elsewhere, else nothing.
func (t *relayTable) handedTo(k skey, node string) []byte {
	t.mu.Lock()
	defer t.mu.Unlock()
	switch mv := t.byKey[k]; {
	case mv == nil:
		return nil
	case mv.node == node:
		return mv.body
	default:
		return append([]byte{takeoverMoved}, mv.node...)
	}
}

func (t *relayTable) drop(mv *moved) {
	for _, f := range mv.filters {
		t.trie.Unsubscribe(f, mv)
		t.srv.filters.change(f, -1, t.srv.opts.Interest)
	}
	t.n.Add(-1)
}

func (t *relayTable) expire(now time.Time) {
	t.mu.Lock()
	var gone []*moved
	for k, mv := range t.byKey {
		if now.After(mv.until) {
			gone = append(gone, mv)
			delete(t.byKey, k)
		}
	}
	t.mu.Unlock()
	for _, mv := range gone {
		t.drop(mv)
	}
}

// matching lists the moved sessions m is for, by node.
func (t *relayTable) matching(m *Message) map[string][]string {
	var out map[string][]string
	t.trie.Match(m.Topic, nil, func(mv *moved, _ topic.Subscription) {
		if out == nil {
			out = make(map[string][]string)
		}
		k := mv.key.storeKey()
		if !slices.Contains(out[mv.node], k) {
			out[mv.node] = append(out[mv.node], k)
		}
	})
	return out
}

// addTargets adds relays to a plan of a message published here. A node
// the plan routes it to gets them too: its session may not be restored
// yet when it routes the message, and the relay is then held for it
// (cluster_arrivals.go); one that is there by then skips the relay.
func (t *relayTable) addTargets(cn *clusterNode, m *Message, p *fwdPlan) {
	if t.n.Load() == 0 {
		return
	}
	for node, keys := range t.matching(m) {
		p.target(node).relay = keys
		t.relayed.Add(1)
	}
}

// onward relays a peer's message to the nodes sessions moved to; w (nil
// for QoS 0) waits for each relay as for a store here: the peer's
// publisher is acknowledged once the moved session's node has the message
// (or it is parked for that node), since this node keeps no copy.
func (t *relayTable) onward(cn *clusterNode, m *Message, to []string, w *storedWait) {
	for node, keys := range t.matching(m) {
		// Also to m's origin: it may have routed m before the session
		// arrived there (deliverTo skips what the session already holds).
		t.relayTo(cn, node, keys, m, to, w)
	}
}

// relayTo sends m to node for its moved sessions keys (store keys); to is
// m's origin's list of nodes that route it; w, if not nil, waits for it
// (a failure is logged, and parks it like any forward when the node is
// down).
func (t *relayTable) relayTo(cn *clusterNode, node string, keys []string, m *Message, to []string, w *storedWait) {
	t.relayed.Add(1)
	tg := fwdTarget{node: node, relay: keys}
	if w != nil {
		w.left.Add(1)
	}
	cn.send(&tg, m, newPublish(m, &tg, to), func(err error) {
		if err != nil {
			cn.log.Debug("relay failed", "node", node, "err", err)
		}
		if w != nil {
			w.finish(nil) // (a failure is logged above, not as a store's)
		}
	})
}

// deliverTo hands a relayed message to the named sessions here, unless
// they already hold it; w (nil for QoS 0) hears when it is stored. A
// session on its way here from the node that relays (a takeover: its
// answer and the relays race) gets the message once it is restored.
func (t *relayTable) deliverTo(cn *clusterNode, m *Message, keys, to []string, w *storedWait) {
	now := cn.srv.now()
	lb := lazyBatch{db: cn.srv.store}
	for _, key := range keys {
		p, id, ok := storage.SplitSessionKey(key)
		if !ok {
			continue
		}
		k := skey{p, id}
		if s := cn.srv.sessions.lookup(k); s != nil {
			cn.deliverRelayed(s, m, to, now, &lb)
		} else if w != nil {
			cn.arrivals.hold(k, m, to, w)
		}
	}
	if w == nil {
		cn.srv.commit(&lb, nil)
		return
	}
	cn.srv.commit(&lb, w.finish)
}

// deliverRelayed hands relayed message m to session s, unless s holds it,
// had it, or gets it by this node's own copy (to lists the nodes its
// origin routes it to).
func (cn *clusterNode) deliverRelayed(s *session, m *Message, to []string, now int64, lb *lazyBatch) {
	if m.ID != 0 && (s.pendingIDs()[m.ID] || !cn.recent.missed(s.key, m, slices.Contains(to, cn.self))) {
		return
	}
	if qos, retain, subIDs, matched := s.matchSubs(m); matched {
		s.deliver(m, qos, retain, subIDs, now, lb)
	}
}

// matchSubs is what route would decide for s alone: the highest QoS and
// every subscription id of its matching (non-shared) subscriptions.
func (s *session) matchSubs(m *Message) (qos byte, retain bool, subIDs []uint32, matched bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range s.subs {
		if topicShared(e.filter) || !topic.Match(e.filter, m.Topic) {
			continue
		}
		matched = true
		qos = max(qos, min(e.sub.QoS, m.QoS))
		retain = retain || e.sub.RetainAsPublished && m.Retain
		if e.sub.ID != 0 {
			subIDs = append(subIDs, e.sub.ID)
		}
	}
	return qos, retain, subIDs, matched
}

// recentRoutes tells whether a relayed copy of a message is needed by a
// session that moved here: the node notes when each QoS 1/2 message
// started routing here (the last 65,536), and when each moved-in session
// arrived. A message routed here after the session arrived reached it; one
// routed before missed it; one not routed yet that this node gets its own
// copy of (the origin's list says so) will reach it.
type recentRoutes struct {
	mu      sync.Mutex
	at      map[uint64]int64 // REQUIRES: mu held. message id -> started routing here (unix ns)
	order   []uint64         // REQUIRES: mu held. ids in at, oldest first
	arrived map[skey]int64   // REQUIRES: mu held. moved-in session -> arrived (unix ns)
}

const recentMax = 1 << 16

// arrivedNow records that session k was just restored here from a peer.
func (r *recentRoutes) arrivedNow(k skey) {
	now := time.Now().UnixNano()
	r.mu.Lock()
	if r.arrived == nil {
		r.arrived = map[skey]int64{}
	}
	r.arrived[k] = now
	r.mu.Unlock()
}

// note records that m starts routing here.
func (r *recentRoutes) note(m *Message) {
	if m.QoS == 0 || m.ID == 0 {
		return
	}
	now := time.Now().UnixNano()
	r.mu.Lock()
	if r.at == nil {
		r.at = map[uint64]int64{}
	}
	if _, ok := r.at[m.ID]; !ok {
		r.at[m.ID] = now
		r.order = append(r.order, m.ID)
		if len(r.order) > recentMax {
			delete(r.at, r.order[0])
			r.order[0] = 0
			r.order = r.order[1:]
		}
	}
	r.mu.Unlock()
}

// missed reports whether session k lacks m: routed here before k arrived,
// or not routed here and not coming by a copy of our own (ownCopy).
func (r *recentRoutes) missed(k skey, m *Message, ownCopy bool) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	at, routed := r.at[m.ID]
	if !routed {
		return !ownCopy
	}
	return at <= r.arrived[k]
}

// expire forgets arrivals older than ttl.
func (r *recentRoutes) expire(now time.Time, ttl time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for k, at := range r.arrived {
		if now.UnixNano()-at > int64(ttl) {
			delete(r.arrived, k)
		}
	}
}
