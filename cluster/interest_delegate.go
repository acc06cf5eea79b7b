package cluster

// InterestDelegate hears which topic filters each other node has live, so
// the broker can forward a publish only to nodes with a matching filter
// (matching is the broker's job).
//
// Every method is called on the cluster's event goroutine, one call at a
// time, in order per node, with no lock of this package held; a method may
// call any Cluster method. It should not block: while it does, every other
// membership, ownership and interest notification waits. The slices are the
// delegate's to keep.
type InterestDelegate interface {
	// NotifyInterest: on node, the filters in live went live and those in
	// dead went dead (either may be empty, not both).
	NotifyInterest(node string, live, dead []string)
	// NotifyInterestReset: node's complete set of live filters is now
	// filters; forget what was known before. Called when a node's first
	// full state arrives, and with nil when the node died or left.
	NotifyInterestReset(node string, filters []string)
}
