package cluster

import (
	"errors"
	"fmt"
)

// MaxKeyLen bounds ownership keys and interest filters (MQTT's limit on a
// topic). Keys and filters too long for one gossip packet (about
// UDPBufferSize-100 bytes) are spread by full-state exchange only.
const MaxKeyLen = 65535

// ErrNotLive: RemoveInterest of a filter that is not live here.
var ErrNotLive = errors.New("cluster: filter not live on this node")

func checkKey(what, k string) error {
	if k == "" {
		return fmt.Errorf("%w: empty %s", ErrMalformed, what)
	}
	if len(k) > MaxKeyLen {
		return fmt.Errorf("%w: %s of %d bytes", ErrTooLarge, what, len(k))
	}
	return nil
}

// Claim makes this node the owner of key (an opaque string the broker
// builds, e.g. protocol + client id) with an epoch newer than any this node
// knows for it, and gossips the claim. It returns the new owner and the
// previous one (zero if none was known); if prev names another node, the
// broker usually asks it for the session (Call). The newest claim wins on
// every node: the previous owner hears NotifyTakenOver when the claim
// reaches it. Never blocks.
func (c *Cluster) Claim(key string) (now, prev Owner, err error) {
	if err := c.usable(); err != nil {
		return Owner{}, Owner{}, err
	}
	if err := checkKey("key", key); err != nil {
		return Owner{}, Owner{}, err
	}
	now, prev = c.owners.claim(key)
	now.Live = true
	prev.Live = prev.Node != "" && c.members.live(prev.Node)
	if !c.bc.queueOwn(msgOwnership, key, now.Epoch, opClaim) {
		c.requestSync("", false)
	}
	return now, prev, nil
}

// Restore re-asserts, after a restart, this node's claim on key at the
// epoch it had (which the broker stored with the session). It returns
// false, and the newer owner, if another node claimed key since: the
// broker then drops its stored copy. It is spread by a full-state exchange
// with every member shortly after (other nodes ignore old-epoch
// broadcasts). Never blocks.
func (c *Cluster) Restore(key string, epoch Epoch) (Owner, bool, error) {
	if err := c.usable(); err != nil {
		return Owner{}, false, err
	}
	if err := checkKey("key", key); err != nil {
		return Owner{}, false, err
	}
	o, ok := c.owners.restore(key, epoch)
	o.Live = o.Node == c.self || c.members.live(o.Node)
	if ok {
		c.bc.queueOwn(msgOwnership, key, epoch, opClaim)
		c.requestSync("", false)
	}
	return o, ok, nil
}

// Release gives up this node's ownership of key (the session ended) and
// gossips it. False if this node did not own key. Never blocks.
func (c *Cluster) Release(key string) (bool, error) {
	if err := c.usable(); err != nil {
		return false, err
	}
	if err := checkKey("key", key); err != nil {
		return false, err
	}
	r, ok := c.owners.release(key)
	if ok && !c.bc.queueOwn(msgOwnership, key, r, opRelease) {
		c.requestSync("", false)
	}
	return ok, nil
}

// Lookup returns key's owner as known here; Live tells whether that node
// is alive (or suspect). Never blocks.
func (c *Cluster) Lookup(key string) (Owner, bool) {
	o, ok := c.owners.lookup(key)
	if ok {
		o.Live = o.Node == c.self || c.members.live(o.Node)
	}
	return o, ok
}

// OwnedBy lists the keys node owns as known here, sorted (e.g. the
// sessions of a dead node).
func (c *Cluster) OwnedBy(node string) []string { return c.owners.keysOf(node) }

// ForgetNode drops now, instead of after Options.DeadNodeTTL, the
// ownership entries of a node that is dead or left (the broker recovered
// or expired its sessions); they are reported with NotifyOwnerChanged. It
// refuses a live node.
func (c *Cluster) ForgetNode(node string) error {
	if err := c.usable(); err != nil {
		return err
	}
	if node == c.self || c.members.live(node) {
		return fmt.Errorf("%w: %s is live", ErrInvalidOptions, node)
	}
	c.owners.forget(node)
	return nil
}

// AddInterest counts one more local holder of filter (a subscription went
// live on this node). When the count goes from 0 to 1 the filter is
// gossiped as live. Never blocks.
func (c *Cluster) AddInterest(filter string) error {
	if err := c.usable(); err != nil {
		return err
	}
	if err := checkKey("filter", filter); err != nil {
		return err
	}
	if d, ok := c.interest.add(filter); ok {
		if !c.bc.queueOwn(msgInterest, d.filter, d.ver, 1) {
			c.requestSync("", false)
		}
	}
	return nil
}

// RemoveInterest counts one holder less; at 0 the filter is gossiped as
// dead. ErrNotLive if it was not live. Never blocks.
func (c *Cluster) RemoveInterest(filter string) error {
	if err := c.usable(); err != nil {
		return err
	}
	d, changed, known := c.interest.remove(filter)
	if !known {
		return fmt.Errorf("%w: %q", ErrNotLive, filter)
	}
	if changed && !c.bc.queueOwn(msgInterest, d.filter, d.ver, 0) {
		c.requestSync("", false)
	}
	return nil
}

// Interest returns node's live filters as known here, sorted (this node's
// own for Name()).
func (c *Cluster) Interest(node string) []string { return c.interest.of(node) }

func (c *Cluster) usable() error {
	if c.closed.Load() {
		return ErrClosed
	}
	return nil
}
