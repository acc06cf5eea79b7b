package cluster

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"log"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
)

// Cluster is this node's membership in a cim cluster: gossip (memberlist),
// the ownership and interest tables, and the peer links. Every method is
// safe for concurrent use; none blocks except Call, SetMeta and Close.
type Cluster struct {
	opts        Options
	log         *slog.Logger
	self        string
	linkKey     []byte
	clock       *hlc
	incarnation uint64

	members  *memberTable
	owners   *owners
	interest *interest
	bc       *broadcaster
	events   *notifier
	links    *links

	ml          *memberlist.Memberlist
	tr          *gossipTransport
	gossipAddr  string // advertised ip:port
	advertiseIP string
	advertPort  int
	boundPort   int
	bindIP      net.IP // the gossip bind address; nil: every interface
	peerLn      net.Listener
	peerAddr    string // advertised

	metaMu    sync.Mutex // serialises SetMeta
	meta      atomic.Pointer[Meta]
	metaBytes atomic.Pointer[[]byte]

	stateMu    sync.Mutex
	stateCache []byte // REQUIRES: stateMu held

	syncMu      sync.Mutex
	syncAll     bool                // REQUIRES: syncMu held
	syncTargets map[string]struct{} // gossip addresses; REQUIRES: syncMu held
	syncDrop    bool                // REQUIRES: syncMu held
	syncWake    chan struct{}

	rr         atomic.Uint64
	syncs      atomic.Uint64
	bursts     atomic.Uint64
	malformed  atomic.Uint64
	authFailed atomic.Uint64

	stop      chan struct{}
	closed    atomic.Bool
	closeOnce sync.Once
	wg        sync.WaitGroup
}

// New starts a node: it binds the gossip and peer-link addresses, creates
// the memberlist, and joins Options.Join in the background. The node works
// alone until a seed answers.
func New(opts Options) (*Cluster, error) {
	opts.EnsureDefaults()
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	now := opts.testNow
	if now == nil {
		now = time.Now
	}
	c := &Cluster{
		opts:        opts,
		log:         opts.Logger.With("component", "cluster", "node", opts.NodeName),
		self:        opts.NodeName,
		linkKey:     deriveKey(opts.Secret, opts.ClusterName, infoLink),
		clock:       newHLC(opts.MinEpoch, now),
		members:     newMemberTable(opts.NodeName),
		events:      newNotifier(),
		syncTargets: make(map[string]struct{}),
		syncWake:    make(chan struct{}, 1),
		stop:        make(chan struct{}),
	}
	var inc [8]byte
	_, _ = rand.Read(inc[:])
	c.incarnation = binary.LittleEndian.Uint64(inc[:]) | 1
	c.owners = newOwners(c.self, c.clock)
	c.owners.emit = c.postOwnerChanges
	c.interest = newInterest(c.self, c.clock)
	c.interest.emit = c.postInterest
	c.links = newLinks(c)
	if err := c.start(); err != nil {
		c.events.stop()
		if c.peerLn != nil {
			c.peerLn.Close()
		}
		if c.tr != nil {
			c.tr.Shutdown()
		}
		return nil, err
	}
	return c, nil
}

func (c *Cluster) start() error {
	o := &c.opts
	var err error
	if c.peerLn, err = net.Listen("tcp", o.PeerAddr); err != nil {
		return fmt.Errorf("cluster: peer link listen %s: %w", o.PeerAddr, err)
	}

	host, port, _ := splitHostPort(o.BindAddr)
	if host == "" {
		host = "0.0.0.0"
	}
	nc := &memberlist.NetTransportConfig{BindAddrs: []string{host}, BindPort: port, Logger: c.mlLogger()}
	var nt *memberlist.NetTransport
	for try := 0; ; try++ {
		nt, err = memberlist.NewNetTransport(nc)
		// With port 0 the TCP and UDP ports must match: retry a few.
		if err == nil || port != 0 || try == 9 {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("cluster: gossip bind %s: %w", o.BindAddr, err)
	}
	c.tr = newGossipTransport(nt, o.testGossip)
	c.boundPort = nt.GetAutoBindPort()
	if ip := net.ParseIP(host); ip != nil && !ip.IsUnspecified() {
		c.bindIP = ip
	}

	advIP, advPort := "", 0
	if o.AdvertiseAddr != "" {
		advIP, advPort, _ = splitHostPort(o.AdvertiseAddr)
		if advPort == 0 {
			advPort = c.boundPort
		}
	}
	ip, p, err := c.tr.FinalAdvertiseAddr(advIP, advPort)
	if err != nil {
		return fmt.Errorf("cluster: advertise address: %w", err)
	}
	c.advertiseIP, c.advertPort = ip.String(), p
	c.gossipAddr = net.JoinHostPort(c.advertiseIP, strconv.Itoa(p))

	c.peerAddr = o.PeerAdvertiseAddr
	if c.peerAddr == "" {
		c.peerAddr = c.advertised(c.peerLn.Addr().String())
	}
	m := Meta{Version: MetaVersion, MQTT: c.advertised(o.MQTTAddr), Native: c.advertised(o.NativeAddr),
		HTTP: c.advertised(o.HTTPAddr), Peer: c.peerAddr}
	b, err := m.encode()
	if err != nil {
		return err
	}
	c.meta.Store(&m)
	c.metaBytes.Store(&b)

	t := &o.Timing
	maxMsg := t.UDPBufferSize - 64 - len(o.ClusterName)
	c.bc = newBroadcaster(c.self, maxMsg, t.RetransmitMult, o.BurstBroadcasts, c.numMembers, c.burst)

	conf := memberlist.DefaultLANConfig()
	conf.Name = c.self
	conf.Transport = c.tr
	conf.BindAddr, conf.BindPort = host, c.boundPort
	conf.AdvertiseAddr, conf.AdvertisePort = c.advertiseIP, p
	conf.Label = o.ClusterName
	conf.Keyring, err = memberlist.NewKeyring(nil, deriveKey(o.Secret, o.ClusterName, infoGossip))
	if err != nil {
		return fmt.Errorf("cluster: keyring: %w", err)
	}
	conf.GossipVerifyIncoming, conf.GossipVerifyOutgoing = true, true
	conf.ProbeInterval, conf.ProbeTimeout = t.ProbeInterval, t.ProbeTimeout
	conf.IndirectChecks = t.IndirectChecks
	conf.SuspicionMult, conf.SuspicionMaxTimeoutMult = t.SuspicionMult, t.SuspicionMaxTimeoutMult
	conf.GossipInterval, conf.GossipNodes = t.GossipInterval, t.GossipNodes
	conf.RetransmitMult = t.RetransmitMult
	conf.PushPullInterval = t.PushPullInterval
	conf.TCPTimeout = t.TCPTimeout
	conf.GossipToTheDeadTime = t.GossipToTheDeadTime
	conf.UDPBufferSize = t.UDPBufferSize
	// A node restarted on another address may take its name back soon.
	conf.DeadNodeReclaimTime = 2 * t.ProbeInterval
	conf.Delegate = (*mlDelegate)(c)
	conf.Events = (*mlEvents)(c)
	conf.Alive = (*mlAlive)(c)
	conf.Ping = (*mlPing)(c)
	conf.Conflict = (*mlConflict)(c)
	conf.Logger = c.mlLogger()
	conf.LogOutput = nil
	if c.ml, err = memberlist.Create(conf); err != nil {
		return fmt.Errorf("cluster: memberlist: %w", err)
	}

	c.wg.Add(3)
	go c.acceptLoop()
	go c.syncLoop()
	go c.maintainLoop()
	seeds := c.seeds()
	if len(seeds) > 0 {
		c.wg.Add(1)
		go c.joinLoop(seeds)
	}
	c.log.Info("cluster started", "cluster", o.ClusterName, "gossip", c.gossipAddr, "peer", c.peerAddr, "seeds", seeds)
	return nil
}

func (c *Cluster) mlLogger() *log.Logger {
	return log.New(&mlLog{log: c.opts.Logger.With("node", c.opts.NodeName), suspect: func(n string) {
		c.members.setSuspect(n, true, time.Now())
	}}, "", 0)
}

// advertised replaces an unspecified host in addr by the gossip advertise
// IP ("" stays "").
func (c *Cluster) advertised(addr string) string {
	if addr == "" {
		return ""
	}
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if ip := net.ParseIP(h); h == "" || (ip != nil && ip.IsUnspecified()) {
		h = c.advertiseIP
	}
	return net.JoinHostPort(h, p)
}

// numMembers sizes the broadcast retransmit limits. It reads our own
// table, not memberlist (which calls it, and may before c.ml is set).
func (c *Cluster) numMembers() int { return max(1, c.members.liveCount()) }

// Name is this node's name.
func (c *Cluster) Name() string { return c.self }

// GossipAddr is the advertised gossip address (give it to other nodes'
// Options.Join).
func (c *Cluster) GossipAddr() string { return c.gossipAddr }

// PeerAddr is the advertised peer-link address.
func (c *Cluster) PeerAddr() string { return c.peerAddr }

// Meta is this node's current metadata.
func (c *Cluster) Meta() Meta { return *c.meta.Load() }

// SetMeta replaces the MQTT, native and HTTP addresses this node
// advertises (Version and Peer are kept) and gossips the change. It blocks
// until the update is broadcast, at most timeout.
func (c *Cluster) SetMeta(mqtt, native, http string, timeout time.Duration) error {
	if c.closed.Load() {
		return ErrClosed
	}
	for _, a := range []string{mqtt, native, http} {
		if a != "" {
			if err := validHostPort(a); err != nil {
				return fmt.Errorf("%w: meta address: %v", ErrInvalidOptions, err)
			}
		}
	}
	c.metaMu.Lock()
	defer c.metaMu.Unlock()
	m := Meta{Version: MetaVersion, MQTT: c.advertised(mqtt), Native: c.advertised(native), HTTP: c.advertised(http), Peer: c.peerAddr}
	b, err := m.encode()
	if err != nil {
		return err
	}
	c.meta.Store(&m)
	c.metaBytes.Store(&b)
	return c.ml.UpdateNode(timeout)
}

// Members returns every known member sorted by name: alive and suspect
// ones, and dead or departed ones for Options.DeadNodeTTL.
func (c *Cluster) Members() []Member { return c.members.list() }

// Member returns one member.
func (c *Cluster) Member(name string) (Member, bool) { return c.members.get(name) }

// Epoch is the highest epoch this node issued or observed; a broker that
// stores it may pass it back as Options.MinEpoch after a restart.
func (c *Cluster) Epoch() Epoch { return c.clock.Last() }

// Observe moves this node's clock to at least e, an epoch a peer told the
// broker itself (e.g. with a session it handed over), so that the next
// Claim here wins over every claim that peer had made: causality the
// gossip has not carried yet. Any goroutine; never blocks.
func (c *Cluster) Observe(e Epoch) { c.clock.Observe(e) }

// Close leaves the cluster gracefully: it waits (up to timeout) for the
// peer links to write and get acknowledged what they hold, announces the
// leave (the others see StateLeft), stops every link (failing what remains
// with ErrClosed) and every goroutine. No delegate is called after Close
// returns. Do not call it from a delegate.
func (c *Cluster) Close(timeout time.Duration) error { return c.shutdown(timeout, true) }

// shutdown stops the node; graceful=false stops it as a crash would (tests).
func (c *Cluster) shutdown(timeout time.Duration, graceful bool) error {
	var err error
	c.closeOnce.Do(func() {
		deadline := time.Now().Add(timeout)
		if graceful {
			c.links.drain(time.Now().Add(timeout / 2))
			m := *c.meta.Load()
			m.Leaving = true
			if b, e := m.encode(); e == nil {
				c.meta.Store(&m)
				c.metaBytes.Store(&b)
				if e := c.ml.UpdateNode(time.Until(deadline) / 2); e != nil {
					c.log.Debug("leave announcement", "err", e)
				}
			}
		}
		c.closed.Store(true)
		close(c.stop)
		if graceful {
			if e := c.ml.Leave(time.Until(deadline)); e != nil {
				err = fmt.Errorf("cluster: leave: %w", e)
			}
		}
		c.peerLn.Close()
		c.links.closeAll(ErrClosed)
		if e := c.ml.Shutdown(); e != nil && err == nil {
			err = fmt.Errorf("cluster: shutdown: %w", e)
		}
		c.wg.Wait()
		c.events.stop()
		c.log.Info("cluster stopped", "graceful", graceful)
	})
	return err
}

// linkFor returns the link to peer.
func (c *Cluster) linkFor(peer string) (*link, error) {
	if c.closed.Load() {
		return nil, ErrClosed
	}
	if peer == c.self {
		return nil, ErrSelf
	}
	l := c.links.get(peer)
	if l == nil {
		return nil, fmt.Errorf("%w: %s", ErrUnknownPeer, peer)
	}
	return l, nil
}

// Forward queues p for peer over the peer link and returns at once: p is
// encoded into the link's queue before Forward returns (the caller may
// reuse p and its slices at once), and the writer goroutine sends it. An
// empty Origin is sent as this node. For QoS
// 1/2 the ForwardDelegate hears the outcome exactly once; for QoS 0
// nothing is reported and a frame lost with its connection is not resent.
// Errors: ErrQueueFull (back-pressure, counted), ErrUnknownPeer, ErrSelf,
// ErrPeerGone, ErrClosed, ErrTooLarge, ErrMalformed (QoS above 2).
func (c *Cluster) Forward(peer string, p *Publish) error {
	if p.QoS > 2 {
		return fmt.Errorf("%w: QoS %d", ErrMalformed, p.QoS)
	}
	l, err := c.linkFor(peer)
	if err != nil {
		return err
	}
	size := p.size()
	if size > c.opts.Link.MaxFrameSize {
		return fmt.Errorf("%w: publish of %d bytes, frame limit %d", ErrTooLarge, size, c.opts.Link.MaxFrameSize)
	}
	return l.enqueuePublish(p, size)
}

// forwardDone reports the outcome of reliable publishes.
func (c *Cluster) forwardDone(peer string, ids []uint64, err error) {
	d := c.opts.Forwarded
	if d == nil {
		return
	}
	for _, id := range ids {
		d.NotifyForwarded(peer, id, err)
	}
}

// Links lists the peer links' counters, by peer name.
func (c *Cluster) Links() []LinkStats {
	ls := c.links.list()
	out := make([]LinkStats, len(ls))
	for i, l := range ls {
		out[i] = l.stats()
	}
	return out
}

// Stats are this node's cluster counters.
type Stats struct {
	Members, Live int
	// OwnerEntries in the table, OwnedKeys by this node.
	OwnerEntries, OwnedKeys int
	// LocalFilters live here; RemoteFilters live on other nodes (summed).
	LocalFilters, RemoteFilters int
	// Gossip traffic through the transport (after memberlist's
	// compression and encryption): UDP and TCP (push/pull) bytes.
	GossipUDPIn, GossipUDPOut, GossipTCPIn, GossipTCPOut uint64
	GossipPacketsIn, GossipPacketsOut                    uint64
	// BroadcastQueue and RelayQueue: gossip batches waiting.
	BroadcastQueue, RelayQueue int
	// Syncs: full-state exchanges started by this node outside
	// memberlist's own schedule (join, bursts, a member's return); Bursts
	// among them were caused by a broadcast backlog.
	Syncs, Bursts uint64
	// Malformed gossip messages dropped; AuthFailures of peer-link
	// handshakes (either direction).
	Malformed, AuthFailures uint64
	Links                   []LinkStats
}

// Stats returns the counters.
func (c *Cluster) Stats() Stats {
	var s Stats
	for _, m := range c.members.list() {
		s.Members++
		if m.Live() {
			s.Live++
		}
	}
	s.OwnerEntries, s.OwnedKeys = c.owners.counts()
	s.LocalFilters, s.RemoteFilters = c.interest.counts()
	s.GossipUDPIn, s.GossipUDPOut = c.tr.udpIn.Load(), c.tr.udpOut.Load()
	s.GossipTCPIn, s.GossipTCPOut = c.tr.tcpIn.Load(), c.tr.tcpOut.Load()
	s.GossipPacketsIn, s.GossipPacketsOut = c.tr.pktIn.Load(), c.tr.pktOut.Load()
	s.BroadcastQueue, s.RelayQueue = c.bc.queued()
	s.Syncs, s.Bursts = c.syncs.Load(), c.bursts.Load()
	s.Malformed, s.AuthFailures = c.malformed.Load(), c.authFailed.Load()
	s.Links = c.Links()
	return s
}

// seeds returns Options.Join without this node's own addresses.
func (c *Cluster) seeds() []string {
	var out []string
	for _, s := range c.opts.Join {
		if !c.isSelfAddr(s) {
			out = append(out, s)
		}
	}
	return out
}

// isSelfAddr reports whether a seed is this node: its advertised address,
// or its bound one (any local address on the bound port when bound to
// every interface). Other nodes on this machine share the port only on
// other addresses (127.0.0.2:7946, 127.0.0.3:7946, ...). A host name is
// not resolved: joining oneself is harmless.
func (c *Cluster) isSelfAddr(addr string) bool {
	h, p, err := splitHostPort(addr)
	if err != nil {
		return false
	}
	if strings.EqualFold(h, "localhost") {
		h = "127.0.0.1"
	}
	ip := net.ParseIP(h)
	if ip == nil {
		return false
	}
	if p == c.advertPort && ip.String() == c.advertiseIP {
		return true
	}
	if p != c.boundPort {
		return false
	}
	if c.bindIP != nil {
		return ip.Equal(c.bindIP)
	}
	if ip.IsLoopback() || ip.IsUnspecified() {
		return true
	}
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.Equal(ip) {
			return true
		}
	}
	return false
}
