package broker

import (
	"crypto/hkdf"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cimgo/cim/broker/topic"
	"github.com/cimgo/cim/cluster"
)

// The cluster adapter: what makes a Server one node of a cim cluster. It
// plugs the broker's seams (Owner, Interest, Forwarder) into a
// cluster.Cluster and answers that package's delegates. docs/cluster.md
// tells the whole story; the map:
//
//	cluster.go          options, start and leave, membership, the Server's cluster API
//	cluster_wire.go     what travels in peer-link publishes and requests
//	cluster_forward.go  interest (who wants what), forwarding, acks in order, shared groups
//	cluster_owner.go    ownership: claims, hand-off on takeover, merging, relays
//	cluster_park.go     messages kept for a node that is down, replayed when it returns
//	cluster_sync.go     presence, retained messages, accounts and groups cluster-wide
//
// Locks of the adapter are leaves below the broker's own (it is called with
// broker locks held: Interest, Forwarder) and are never held while it calls
// into the broker, the cluster or the trie, with one documented exception
// (ackQueue.mu, held while dones run, which only append to buffers).

// ClusterOptions configure this node's membership (StartCluster).
type ClusterOptions struct {
	// Cluster is the gossip and peer-link configuration. NodeName defaults
	// to the server's Options.NodeName and must equal it; MQTTAddr and
	// NativeAddr default to the server's listeners (their bound addresses
	// once Start ran). The delegates are the broker's own: any set here
	// are replaced.
	Cluster cluster.Options
	// ParkTTL is how long after a node died or left the other nodes keep
	// its interest and park (store) the QoS 1/2 messages it would have got,
	// to hand them over when it returns (cluster_park.go). Default:
	// Cluster.DeadNodeTTL (10 minutes). Negative: never park.
	ParkTTL time.Duration
	// RelayTTL is how long a node that handed a session to another node
	// passes on messages for it that still arrive here (gossip of the new
	// owner's interest takes a moment). Default 30s.
	RelayTTL time.Duration
	// OnFatal, if set, is called once (on a goroutine of its own) when this
	// node cannot stay in the cluster: its message-id node bits collide
	// with those of another member (ids.go). The node has left the cluster
	// by then. Default: the error is logged.
	OnFatal func(error)
}

// ErrCluster is wrapped by errors of the cluster adapter.
var ErrCluster = errors.New("broker: cluster")

// ErrNodeBits: two members would make the same message ids.
var ErrNodeBits = errors.New("broker: cluster: message-id node bits collide")

// clusterNode is the adapter. It is the Server's Owner, Interest and
// Forwarder, and every delegate of its cluster.Cluster.
type clusterNode struct {
	srv  *Server
	c    *cluster.Cluster
	self string
	log  *slog.Logger
	opts ClusterOptions

	stop    chan struct{}
	wg      sync.WaitGroup
	closed  atomic.Bool
	fatal   sync.Once
	started atomic.Bool   // the Cluster exists (c is set)
	ready   chan struct{} // closed once c is set: delegates wait for it

	interest interestTable // cluster_forward.go
	acks     ackQueues
	pending  pendingForwards
	plans    sync.Map     // *Message -> *fwdPlan, from the share planning of route to Forward
	relays   relayTable   // cluster_owner.go
	recent   recentRoutes // cluster_owner.go
	arrivals arrivals     // cluster_arrivals.go
	park     parkLots     // cluster_park.go
	presence presenceTable
	hints    hintQueue  // cluster_forward.go
	dir      dirReplica // cluster_sync.go
	cleared  clearedRetained
}

// StartCluster makes this server a node of a cluster: it joins with o
// (in the background: the node serves alone until a seed answers), and
// from then on sessions are owned cluster-wide, publishes are forwarded to
// the nodes that want them, and the IM directory, presence and retained
// messages are shared. Call it after New and before Start; stop with
// LeaveCluster after Shutdown.
func (s *Server) StartCluster(o ClusterOptions) error {
	if s.clusterNode() != nil {
		return fmt.Errorf("%w: already started", ErrCluster)
	}
	co := o.Cluster
	if co.NodeName == "" {
		co.NodeName = s.opts.NodeName
	}
	if co.NodeName != s.opts.NodeName {
		return fmt.Errorf("%w: cluster node name %q is not the server's %q", ErrOptions, co.NodeName, s.opts.NodeName)
	}
	if co.MQTTAddr == "" {
		co.MQTTAddr = s.advertisable(ProtocolMQTT, s.opts.MQTTAddr)
	}
	if co.NativeAddr == "" && s.opts.NativeAddr != "" {
		co.NativeAddr = s.advertisable(ProtocolNative, s.opts.NativeAddr)
	}
	if co.Logger == nil {
		co.Logger = s.log
	}
	if o.ParkTTL == 0 {
		o.ParkTTL = co.DeadNodeTTL
		if o.ParkTTL == 0 {
			o.ParkTTL = 10 * time.Minute
		}
	}
	if o.RelayTTL <= 0 {
		o.RelayTTL = 30 * time.Second
	}
	cn := &clusterNode{srv: s, self: co.NodeName, log: s.log.With("component", "cluster-broker"), opts: o,
		stop: make(chan struct{}), ready: make(chan struct{})}
	cn.interest.init(cn)
	cn.relays.init(cn.srv)
	cn.presence.init()
	cn.pending.m = make(map[fwdKey][]func(error))
	cn.hints.wake = make(chan struct{}, 1)
	cn.acks.m = make(map[string]*ackQueue)
	// A native login token from one node must open a session on any: the
	// token key is derived from the cluster secret (tokens signed with a
	// node's own key before it joined stop working; the password does).
	if co.Secret != "" {
		salt := co.ClusterName
		if salt == "" {
			salt = "cim" // cluster.Options' default
		}
		key, err := hkdf.Key(sha256.New, []byte(co.Secret), []byte(salt), "cim native login tokens", 32)
		if err != nil {
			return fmt.Errorf("%w: token key: %w", ErrCluster, err)
		}
		s.im.tokens = newTokenSigner(key, s.opts.TokenTTL)
	}
	// Sessions recovered from the store are this node's until the cluster
	// says otherwise; parking lots recovered with them are not sessions.
	cn.park.recover(cn)
	co.Members, co.Ownership, co.Interest = cn, cn, cn
	co.Publish, co.Forwarded, co.Requests = cn, cn, cn
	// Hooks go in before the Cluster starts: its delegates may run at once.
	s.opts.Owner, s.opts.Interest, s.opts.Forwarder = cn, cn, cn
	c, err := cluster.New(co)
	if err != nil {
		s.opts.Owner, s.opts.Interest, s.opts.Forwarder = nil, nil, nil
		close(cn.stop)
		close(cn.ready)
		return fmt.Errorf("%w: %w", ErrCluster, err)
	}
	cn.c = c
	cn.started.Store(true)
	close(cn.ready)
	// Filters that went live before (recovery) are announced now.
	for _, f := range s.LiveFilters() {
		cn.FilterLive(f)
	}
	cn.restoreOwnership()
	s.im.dir.onPresence = cn.presenceChanged
	cn.wg.Add(2)
	go cn.maintain()
	go cn.hints.run(cn)
	return nil
}

// advertisable is the address of a listener as others should dial it: the
// bound one once listening, else the configured one.
func (s *Server) advertisable(proto, configured string) string {
	if a := s.ListenerAddr(proto); a != nil {
		return a.String()
	}
	return configured
}

// listening is told by Start that the listeners are bound: their real
// addresses (port 0 resolved) go into the node's metadata.
func (cn *clusterNode) listening() {
	if !cn.started.Load() {
		return
	}
	mqtt := cn.srv.advertisable(ProtocolMQTT, cn.srv.opts.MQTTAddr)
	native := ""
	if cn.srv.opts.NativeAddr != "" {
		native = cn.srv.advertisable(ProtocolNative, cn.srv.opts.NativeAddr)
	}
	meta := cn.c.Meta()
	if sameHostPort(meta.MQTT, mqtt) && sameHostPort(meta.Native, native) {
		return
	}
	httpAddr := cn.opts.Cluster.HTTPAddr
	go func() {
		if err := cn.c.SetMeta(mqtt, native, httpAddr, 2*time.Second); err != nil && !errors.Is(err, cluster.ErrClosed) {
			cn.log.Warn("advertising the listeners", "err", err)
		}
	}()
}

// sameHostPort: b is a (so far as its port goes: an unspecified host is
// advertised as the gossip IP).
func sameHostPort(a, b string) bool {
	_, pa, _ := net.SplitHostPort(a)
	_, pb, _ := net.SplitHostPort(b)
	return pa == pb && pa != "0"
}

// LeaveCluster leaves the cluster gracefully: the peer links deliver what
// they hold (up to timeout), the others see this node leave, and it is a
// single node again. Call it after Shutdown (so that the wills of the last
// clients still reach the other nodes) and before closing the store.
func (s *Server) LeaveCluster(timeout time.Duration) error {
	cn := s.clusterNode()
	if cn == nil || !cn.closed.CompareAndSwap(false, true) {
		return nil
	}
	close(cn.stop)
	err := cn.c.Close(timeout)
	cn.wg.Wait()
	return err
}

// clusterNode is the adapter, or nil when the server is not clustered.
func (s *Server) clusterNode() *clusterNode {
	cn, _ := s.opts.Forwarder.(*clusterNode)
	return cn
}

// ClusterMember is one node of the cluster (GET /v1/cluster).
type ClusterMember struct {
	Name  string `json:"name"`
	State string `json:"state"` // alive, suspect, dead or left
	// Addr is the gossip address; MQTT, Native and HTTP what clients dial.
	Addr   string    `json:"addr"`
	MQTT   string    `json:"mqtt,omitempty"`
	Native string    `json:"native,omitempty"`
	HTTP   string    `json:"http,omitempty"`
	Peer   string    `json:"peer,omitempty"`
	Self   bool      `json:"self,omitempty"`
	Since  time.Time `json:"since"`
}

func memberOf(m cluster.Member) ClusterMember {
	return ClusterMember{Name: m.Name, State: m.State.String(), Addr: m.Addr, MQTT: m.Meta.MQTT,
		Native: m.Meta.Native, HTTP: m.Meta.HTTP, Peer: m.Meta.Peer, Self: m.Self, Since: m.Since}
}

// ClusterMembers lists the members as this node sees them, by name (dead
// and departed ones for a while). A server that is not clustered lists
// itself alone.
func (s *Server) ClusterMembers() []ClusterMember {
	cn := s.clusterNode()
	if cn == nil {
		return []ClusterMember{s.selfMember()}
	}
	ms := cn.c.Members()
	out := make([]ClusterMember, len(ms))
	for i, m := range ms {
		out[i] = memberOf(m)
	}
	return out
}

func (s *Server) selfMember() ClusterMember {
	m := ClusterMember{Name: s.opts.NodeName, State: "alive", Self: true, Since: s.started,
		MQTT: s.advertisable(ProtocolMQTT, s.opts.MQTTAddr)}
	if s.opts.NativeAddr != "" {
		m.Native = s.advertisable(ProtocolNative, s.opts.NativeAddr)
	}
	return m
}

// ErrNoNode: no live node to send a client to.
var ErrNoNode = errors.New("broker: no live node")

// PickNode chooses the node a user should connect to (cim's POST /login):
// by the cluster's strategy (consistent hash on the user id by default,
// round robin or random), among live nodes. A server that is not clustered
// answers itself.
func (s *Server) PickNode(userID uint64) (ClusterMember, error) {
	cn := s.clusterNode()
	if cn == nil {
		return s.selfMember(), nil
	}
	m, err := cn.c.Pick(fmt.Sprint(userID))
	if err != nil {
		return ClusterMember{}, fmt.Errorf("%w: %w", ErrNoNode, err)
	}
	return memberOf(m), nil
}

// ClusterStats are the adapter's counters with the cluster's own.
type ClusterStats struct {
	cluster.Stats
	// Parked: QoS 1/2 messages kept for nodes that are down; Replayed:
	// parked messages handed to a node that came back.
	Parked, Replayed uint64
	// Relayed: messages passed on to a session's new node after a hand-off.
	Relayed uint64
	// HandedOff and Merged: sessions given to another node on takeover,
	// and stale sessions merged into their new owner.
	HandedOff, Merged uint64
}

// ClusterStats returns the counters, or false when not clustered.
func (s *Server) ClusterStats() (ClusterStats, bool) {
	cn := s.clusterNode()
	if cn == nil {
		return ClusterStats{}, false
	}
	return ClusterStats{Stats: cn.c.Stats(), Parked: cn.park.parked.Load(), Replayed: cn.park.replayed.Load(),
		Relayed: cn.relays.relayed.Load(), HandedOff: cn.relays.handedOff.Load(), Merged: cn.relays.merged.Load()}, true
}

// --- membership (cluster.MemberDelegate) ---

// NotifyJoin: a node came (back). A node whose message ids would collide
// with ours makes one of the two leave: the one with the greater name.
func (cn *clusterNode) NotifyJoin(m cluster.Member) {
	if !cn.await() || m.Self {
		return
	}
	if nodeBits(m.Name) == nodeBits(cn.self) {
		err := fmt.Errorf("%w: node %q and node %q both hash to node bits %d: rename one (--node-name)", ErrNodeBits, cn.self, m.Name, nodeBits(cn.self))
		if cn.self > m.Name {
			cn.fail(err)
			return
		}
		cn.log.Error("a member would make the same message ids; it leaves", "member", m.Name, "err", err)
		return
	}
	cn.interest.up(m.Name)
	cn.presence.joined(cn, m.Name)
	cn.park.joined(cn, m.Name)
	cn.syncJoined(m.Name)
}

func (cn *clusterNode) NotifyUpdate(cluster.Member) {}

// NotifyLeave: a node died or left. Its interest is kept, marked down, so
// that what it would have got is parked (cluster_park.go); its presence
// goes.
func (cn *clusterNode) NotifyLeave(m cluster.Member) {
	if !cn.await() {
		return
	}
	cn.interest.down(m.Name)
	cn.presence.left(m.Name)
}

// await waits until the Cluster is set (its delegates may be called from
// inside cluster.New); false if it never will be.
func (cn *clusterNode) await() bool {
	<-cn.ready
	return cn.c != nil
}

// fail takes this node out of the cluster for good (a collision of node
// bits): it leaves, and OnFatal hears why.
func (cn *clusterNode) fail(err error) {
	cn.fatal.Do(func() {
		cn.log.Error("leaving the cluster", "err", err)
		go func() {
			_ = cn.srv.LeaveCluster(2 * time.Second)
			if f := cn.opts.OnFatal; f != nil {
				f(err)
			}
		}()
	})
}

// maintain runs the adapter's timers: expiring relays, parked interest of
// nodes gone too long, presence batches.
func (cn *clusterNode) maintain() {
	defer cn.wg.Done()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	slow := 0
	for {
		select {
		case <-cn.stop:
			return
		case <-tick.C:
		}
		cn.presence.flush(cn)
		if slow++; slow%50 == 0 { // once a second
			now := time.Now()
			cn.relays.expire(now)
			cn.expireArrivals(now)
			cn.recent.expire(now, cn.opts.RelayTTL)
			cn.interest.expireDown(now, cn.opts.ParkTTL)
			cn.park.retry(cn)
		}
	}
}

// topicShared reports whether filter is a $share one.
func topicShared(filter string) bool {
	_, _, shared := topic.ParseShare(filter)
	return shared
}

// The adapter is every delegate of the cluster, the publish one in its
// asynchronous form.
var (
	_ cluster.MemberDelegate       = (*clusterNode)(nil)
	_ cluster.OwnershipDelegate    = (*clusterNode)(nil)
	_ cluster.InterestDelegate     = (*clusterNode)(nil)
	_ cluster.AsyncPublishDelegate = (*clusterNode)(nil)
	_ cluster.ForwardDelegate      = (*clusterNode)(nil)
	_ cluster.RequestDelegate      = (*clusterNode)(nil)
	_ Owner                        = (*clusterNode)(nil)
	_ Interest                     = (*clusterNode)(nil)
	_ Forwarder                    = (*clusterNode)(nil)
)
