package cluster

// MemberDelegate hears membership changes.
//
// Every method is called on the cluster's event goroutine, one call at a
// time, in the order the changes happened, never while a lock of this
// package is held (a method may call any Cluster method). A method may block
// briefly; while it does, every other membership, ownership and interest
// notification waits. The Member is a copy the delegate may keep.
type MemberDelegate interface {
	// NotifyJoin: m became alive (a new node, or one that was dead or left
	// and came back). Also called once for this node itself at Start.
	NotifyJoin(m Member)
	// NotifyUpdate: m's metadata changed.
	NotifyUpdate(m Member)
	// NotifyLeave: m was declared dead (m.State == StateDead) or left
	// (StateLeft). Its peer link is already stopped: forwards still queued
	// for it were failed with ErrPeerGone (ForwardDelegate) and its
	// interest was reset. Its ownership entries stay, not Live, until it
	// returns or Options.DeadNodeTTL passes.
	NotifyLeave(m Member)
}
