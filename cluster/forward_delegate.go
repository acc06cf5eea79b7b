package cluster

// ForwardDelegate learns the fate of forwarded QoS 1/2 publishes.
//
// NotifyForwarded is called exactly once for every QoS 1 or 2 Publish that
// Forward accepted (returned nil): err == nil when the peer has the message
// (its PublishDelegate returned), ErrPeerGone when the peer died or left
// first, ErrClosed when this cluster closed first. id is the Publish's ID.
// It is called on the link's reader goroutine (acknowledgements), or the
// cluster's event goroutine (failures), with no lock held; it must not
// block. QoS 0 publishes are never reported.
type ForwardDelegate interface {
	NotifyForwarded(peer string, id uint64, err error)
}
