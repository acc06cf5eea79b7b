package broker

import (
	"context"
	"time"
)

// Owner settles which node owns a session before a login attaches it here
// (a cluster: this node claims it, and the node that had it hands it over).
// Without an Owner every session is local.
//
// The broker calls Acquire off the event loops (the login waits, its input
// buffered: offloop.go), once per login, and may call it for many logins at
// once. It may block on the network until ctx is done. It returns the
// session as the previous owner handed it over, or nil when no other node
// had it; an error refuses the login (MQTT: CONNACK "server unavailable").
// The Snapshot is the broker's from then on.
type Owner interface {
	Acquire(ctx context.Context, protocol byte, id string) (*Snapshot, error)
}

// ownerTimeout bounds how long a login waits for its session's owner.
const ownerTimeout = 5 * time.Second

type ownerResult struct {
	snap *Snapshot
	err  error
}

// acquire asks o for key with a deadline. Off the loops only.
func acquire(o Owner, key skey) ownerResult {
	ctx, cancel := context.WithTimeout(context.Background(), ownerTimeout)
	defer cancel()
	snap, err := o.Acquire(ctx, key.proto, key.id)
	return ownerResult{snap, err}
}
