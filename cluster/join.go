package cluster

import (
	"math/rand/v2"
	"time"
)

// joinLoop joins the seeds, retrying with backoff until one answers, then
// swaps full states with every member it learned of.
func (c *Cluster) joinLoop(seeds []string) {
	defer c.wg.Done()
	backoff := c.opts.JoinRetryMin
	for attempt := 1; ; attempt++ {
		n, err := c.ml.Join(seeds)
		if n > 0 {
			c.log.Info("joined cluster", "via", n, "members", c.ml.NumMembers())
			c.requestSync("", false)
			return
		}
		lvl := c.log.Debug
		if attempt == 1 || attempt%10 == 0 {
			lvl = c.log.Warn
		}
		lvl("join failed, retrying", "seeds", seeds, "attempt", attempt, "err", err)
		t := time.NewTimer(jitter(backoff))
		select {
		case <-t.C:
		case <-c.stop:
			t.Stop()
			return
		}
		backoff = min(2*backoff, c.opts.JoinRetryMax)
	}
}

// burst is called when our broadcast backlog passed its threshold.
func (c *Cluster) burst() { c.requestSync("", true) }

// requestSync asks the sync goroutine for a full-state exchange with addr,
// or with every live member when addr is "". drop: our queued broadcasts
// are covered by it and may be discarded.
func (c *Cluster) requestSync(addr string, drop bool) {
	c.syncMu.Lock()
	if addr == "" {
		c.syncAll = true
	} else {
		c.syncTargets[addr] = struct{}{}
	}
	c.syncDrop = c.syncDrop || drop
	c.syncMu.Unlock()
	select {
	case c.syncWake <- struct{}{}:
	default:
	}
}

// syncLoop runs requested full-state exchanges, memberlist's push/pull
// through Join, at most one every few gossip intervals.
func (c *Cluster) syncLoop() {
	defer c.wg.Done()
	gap := 5 * c.opts.Timing.GossipInterval
	for {
		select {
		case <-c.stop:
			return
		case <-c.syncWake:
		}
		// Let a burst of requests gather.
		select {
		case <-c.stop:
			return
		case <-time.After(c.opts.Timing.GossipInterval):
		}
		c.syncMu.Lock()
		all, drop := c.syncAll, c.syncDrop
		targets := c.syncTargets
		c.syncAll, c.syncDrop, c.syncTargets = false, false, make(map[string]struct{})
		c.syncMu.Unlock()
		var addrs []string
		if all {
			for _, m := range c.members.list() {
				if !m.Self && m.Live() && m.Addr != "" {
					addrs = append(addrs, m.Addr)
				}
			}
		} else {
			for a := range targets {
				addrs = append(addrs, a)
			}
		}
		if drop {
			c.bursts.Add(1)
			if len(addrs) > 0 {
				// The states sent below carry everything queued.
				c.bc.dropOwn()
			}
		}
		if len(addrs) > 0 {
			c.syncs.Add(1)
			if n, err := c.ml.Join(addrs); err != nil {
				c.log.Debug("state sync incomplete", "reached", n, "of", len(addrs), "err", err)
			}
		}
		select {
		case <-c.stop:
			return
		case <-time.After(gap):
		}
	}
}

// maintainLoop expires dead members and retries dead ones (and the seeds
// when alone), so a healed partition merges again: memberlist by itself
// stops gossiping to the dead after GossipToTheDeadTime.
func (c *Cluster) maintainLoop() {
	defer c.wg.Done()
	tick := min(c.opts.ReconnectInterval, c.opts.DeadNodeTTL/4)
	tick = max(tick, 20*time.Millisecond)
	t := time.NewTicker(tick)
	defer t.Stop()
	lastReconnect := time.Now()
	for {
		select {
		case <-c.stop:
			return
		case <-t.C:
		}
		now := time.Now()
		for _, name := range c.members.expire(now, c.opts.DeadNodeTTL) {
			c.log.Info("forgetting departed node", "peer", name)
			c.links.forget(name)
			c.owners.forget(name)
		}
		if now.Sub(lastReconnect) < c.opts.ReconnectInterval {
			continue
		}
		lastReconnect = now
		var dead []string
		alone := true
		for _, m := range c.members.list() {
			switch {
			case m.Self:
			case m.State == StateDead:
				dead = append(dead, m.Addr)
			case m.Live():
				alone = false
			}
		}
		var try []string
		if len(dead) > 0 {
			try = append(try, dead[rand.IntN(len(dead))])
		}
		if alone {
			try = append(try, c.seeds()...)
		}
		if len(try) > 0 {
			if n, _ := c.ml.Join(try); n > 0 {
				c.log.Debug("reconnected", "tried", try)
			}
		}
	}
}
