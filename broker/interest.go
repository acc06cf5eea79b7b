package broker

// Interest hears which topic filters this node's sessions hold: a filter
// goes live when its first local subscriber arrives and dead when its last
// one leaves (a shared subscription counts under its whole
// "$share/<group>/<filter>" string). A cluster gossips these so that other
// nodes forward only what someone here wants.
//
// The broker calls it from whichever goroutine changed the subscription
// (an event loop, the deadline ticker, recovery) with broker locks held,
// in the order the changes happened: implementations must only record or
// enqueue, never block, and never call back into the Server. filter is
// owned by the broker and never changes; it may be kept.
type Interest interface {
	FilterLive(filter string)
	FilterDead(filter string)
}
