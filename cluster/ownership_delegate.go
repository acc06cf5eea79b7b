package cluster

// OwnershipDelegate hears ownership changes caused by other nodes (claims,
// releases and full states they gossiped, and expiry of a dead node's
// entries). Changes made by this node's own Claim, Release and Restore are
// not reported back.
//
// Every method is called on the cluster's event goroutine, one call at a
// time, in order, with no lock of this package held; a method may call any
// Cluster method. It should not block: while it does, every other
// membership, ownership and interest notification waits. Strings are the
// delegate's to keep.
type OwnershipDelegate interface {
	// NotifyTakenOver: key was owned by this node and is now owned by
	// another node with a newer epoch (the broker closes the local
	// connection: "session taken over"). NotifyOwnerChanged is called too.
	NotifyTakenOver(key string, by Owner)
	// NotifyOwnerChanged: key's owner changed from old to new. A zero
	// Owner (Node == "") means none: the entry was released, or dropped
	// DeadNodeTTL after its node died or left.
	NotifyOwnerChanged(key string, old, new Owner)
}
