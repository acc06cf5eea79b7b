package cluster

import (
	"fmt"
	"time"

	"github.com/hashicorp/memberlist"
)

// The memberlist callbacks. memberlist calls the event, alive and conflict
// ones with its node lock held, so they only update our own tables and
// queue the rest (links, delegates) on the event goroutine; none calls
// back into memberlist.
type (
	mlDelegate Cluster
	mlEvents   Cluster
	mlAlive    Cluster
	mlPing     Cluster
	mlConflict Cluster
)

// NodeMeta returns our metadata (validated at most 512 bytes).
func (d *mlDelegate) NodeMeta(limit int) []byte {
	b := *(*Cluster)(d).metaBytes.Load()
	if len(b) > limit {
		return nil
	}
	return b
}

// NotifyMsg receives a gossip broadcast (on memberlist's packet goroutine;
// msg is reused after we return: decoding copies).
func (d *mlDelegate) NotifyMsg(msg []byte) { (*Cluster)(d).handleBroadcast(msg) }

func (d *mlDelegate) GetBroadcasts(overhead, limit int) [][]byte {
	return (*Cluster)(d).bc.get(overhead, limit)
}

func (d *mlDelegate) LocalState(join bool) []byte { return (*Cluster)(d).localState() }

func (d *mlDelegate) MergeRemoteState(buf []byte, join bool) { (*Cluster)(d).mergeState(buf) }

func (e *mlEvents) NotifyJoin(n *memberlist.Node) {
	c := (*Cluster)(e)
	name, addr, meta, _ := fromNode(n)
	prev, known := c.members.update(name, addr, meta, StateAlive, time.Now())
	m, _ := c.members.get(name)
	returned := known && (prev == StateDead || prev == StateLeft)
	c.events.post(func() { c.onJoin(m, returned) })
}

func (e *mlEvents) NotifyUpdate(n *memberlist.Node) {
	c := (*Cluster)(e)
	name, addr, meta, _ := fromNode(n)
	c.members.update(name, addr, meta, StateAlive, time.Now())
	m, _ := c.members.get(name)
	c.events.post(func() { c.onUpdate(m) })
}

func (e *mlEvents) NotifyLeave(n *memberlist.Node) {
	c := (*Cluster)(e)
	name, addr, meta, _ := fromNode(n)
	// memberlist's Node.State is not maintained: the node announced its
	// leave in its metadata first (Close).
	st := StateDead
	if meta.Leaving {
		st = StateLeft
	}
	c.members.update(name, addr, meta, st, time.Now())
	m, _ := c.members.get(name)
	if name == c.self {
		return
	}
	// Synchronously, so deltas from the gone node stop applying now.
	c.interest.drop(name)
	c.events.post(func() { c.onLeave(m) })
}

// NotifyAlive refuses members whose metadata we cannot use.
func (a *mlAlive) NotifyAlive(n *memberlist.Node) error {
	m, err := decodeMeta(n.Meta)
	if err != nil {
		return fmt.Errorf("node %s: %w", n.Name, err)
	}
	if m.Version != MetaVersion {
		return fmt.Errorf("node %s: metadata version %d, want %d", n.Name, m.Version, MetaVersion)
	}
	return nil
}

func (p *mlPing) AckPayload() []byte { return nil }

// NotifyPingComplete: a direct probe of other succeeded, so it is not
// suspect (from our side).
func (p *mlPing) NotifyPingComplete(other *memberlist.Node, _ time.Duration, _ []byte) {
	(*Cluster)(p).members.setSuspect(other.Name, false, time.Now())
}

func (k *mlConflict) NotifyConflict(existing, other *memberlist.Node) {
	(*Cluster)(k).log.Error("two nodes use one name", "name", existing.Name,
		"existing", existing.Address(), "other", other.Address())
}

// onJoin runs on the event goroutine.
func (c *Cluster) onJoin(m Member, returned bool) {
	if !m.Self {
		if m.Meta.Peer != "" {
			c.links.ensure(m.Name, m.Meta.Peer)
		}
		if returned {
			// It missed our broadcasts and we dropped its interest: swap
			// full states with it now rather than at the next push/pull.
			c.requestSync(m.Addr, false)
		}
	}
	if d := c.opts.Members; d != nil {
		d.NotifyJoin(m)
	}
}

func (c *Cluster) onUpdate(m Member) {
	if !m.Self && m.Meta.Peer != "" {
		c.links.ensure(m.Name, m.Meta.Peer)
	}
	if d := c.opts.Members; d != nil {
		d.NotifyUpdate(m)
	}
}

func (c *Cluster) onLeave(m Member) {
	c.links.remove(m.Name, ErrPeerGone)
	if d := c.opts.Members; d != nil {
		d.NotifyLeave(m)
	}
}

// handleBroadcast applies one gossip batch and relays what was news.
func (c *Cluster) handleBroadcast(msg []byte) {
	kind, node, entries, err := decodeBatch(msg)
	if err != nil {
		c.malformed.Add(1)
		c.log.Debug("dropped gossip message", "err", err)
		return
	}
	switch kind {
	case msgOwnership:
		var changes []ownerChange
		var fresh []gossipEntry
		c.owners.mu.Lock()
		for _, e := range entries {
			var ok bool
			if e.flag == opClaim {
				changes, ok = c.owners.applyClaim(node, e.s, e.epoch, true, changes)
			} else {
				changes, ok = c.owners.applyRelease(node, e.s, e.epoch, changes)
			}
			if ok {
				fresh = append(fresh, e)
			}
		}
		if len(changes) > 0 {
			c.owners.emit(changes)
		}
		c.owners.mu.Unlock()
		if len(fresh) > 0 {
			c.bc.queueRelay(kind, node, fresh)
		}
	case msgInterest:
		ds := make([]interestDelta, len(entries))
		for i, e := range entries {
			ds[i] = interestDelta{filter: e.s, ver: e.epoch, live: e.flag != 0}
		}
		fresh, _ := c.interest.applyDeltas(node, ds)
		if len(fresh) > 0 {
			rel := make([]gossipEntry, len(fresh))
			for i, d := range fresh {
				rel[i] = gossipEntry{s: d.filter, epoch: d.ver}
				if d.live {
					rel[i].flag = 1
				}
			}
			c.bc.queueRelay(kind, node, rel)
		}
	}
}

// localState is our full state for push/pull, re-encoded only when it
// changed.
func (c *Cluster) localState() []byte {
	c.stateMu.Lock()
	defer c.stateMu.Unlock()
	if c.stateCache != nil && !c.owners.dirty() && !c.interest.isDirty() {
		return c.stateCache
	}
	s := &nodeState{node: c.self}
	s.hwm, s.entries, _ = c.owners.own(true)
	s.ver, s.interests, _ = c.interest.local(true)
	c.stateCache = encodeState(s)
	return c.stateCache
}

// mergeState applies a peer's full state.
func (c *Cluster) mergeState(buf []byte) {
	if len(buf) == 0 {
		return
	}
	s, err := decodeState(buf)
	if err != nil {
		c.malformed.Add(1)
		c.log.Debug("dropped remote state", "err", err)
		return
	}
	c.owners.applyState(s.node, s.hwm, s.entries)
	if s.node != c.self {
		c.interest.applyState(s.node, s.ver, s.interests)
	}
}

func (c *Cluster) postOwnerChanges(changes []ownerChange) {
	d := c.opts.Ownership
	if d == nil || len(changes) == 0 {
		return
	}
	c.events.post(func() {
		for _, ch := range changes {
			if ch.takeover {
				d.NotifyTakenOver(ch.key, ch.new)
			}
			d.NotifyOwnerChanged(ch.key, ch.old, ch.new)
		}
	})
}

func (c *Cluster) postInterest(ch interestChange) {
	d := c.opts.Interest
	if d == nil || (!ch.reset && len(ch.live) == 0 && len(ch.dead) == 0) {
		return
	}
	c.events.post(func() {
		if ch.reset {
			d.NotifyInterestReset(ch.node, ch.live)
		} else {
			d.NotifyInterest(ch.node, ch.live, ch.dead)
		}
	})
}
