package cluster

import (
	"fmt"
	"log/slog"
	"net"
	"os"
	"regexp"
	"strconv"
	"time"
)

// Options configure a Cluster. Zero fields take the documented defaults
// (EnsureDefaults); Validate names the first bad field.
type Options struct {
	// NodeName is this node's unique name in the cluster (--node-name).
	// Default: the host name. At most 128 bytes, no spaces or control
	// characters.
	NodeName string
	// ClusterName is checked on every gossip packet and stream (it is
	// memberlist's label, authenticated with the key) and in the peer-link
	// hello, so two clusters on one network never merge. Default "cim".
	// Letters, digits, '.', '_' and '-', at most 64 bytes.
	ClusterName string
	// Secret is the cluster secret, required, at least 16 bytes. The gossip
	// encryption key and the peer-link authentication key are derived from
	// it (keys.go): a node without it can neither join nor open a peer link.
	Secret string

	// BindAddr is the gossip address (UDP and TCP, --cluster-addr).
	// Default "0.0.0.0:7946"; port 0 picks a free port (see GossipAddr).
	BindAddr string
	// AdvertiseAddr is the gossip address other nodes use to reach this
	// one, "ip:port" (port 0 = the bound port). Default: the bound address,
	// or a private IP of this host when bound to 0.0.0.0.
	AdvertiseAddr string
	// Join lists seeds "host:port" (--join). They are tried in the
	// background, with backoff from JoinRetryMin to JoinRetryMax, until one
	// answers; the node works alone meanwhile. Own addresses are skipped.
	Join []string
	// JoinRetryMin and JoinRetryMax bound the join backoff. Defaults 500ms
	// and 15s.
	JoinRetryMin, JoinRetryMax time.Duration
	// ReconnectInterval: how often a dead (not left) member, or the seeds
	// when this node is alone, is retried so a healed partition merges
	// again. Default 5s.
	ReconnectInterval time.Duration
	// DeadNodeTTL: how long a dead or departed member stays in Members()
	// and keeps its ownership entries (marked not Live) before they are
	// dropped. Default 10m. See docs/cluster.md, "Node loss".
	DeadNodeTTL time.Duration
	// MinEpoch seeds the ownership clock (a value the broker saved from
	// Cluster.Epoch), so epochs stay monotonic even if the wall clock
	// went back across a restart. Default 0 (wall clock only).
	MinEpoch Epoch

	// PeerAddr is the peer-link TCP listen address (--peer-addr). Default
	// "0.0.0.0:7947"; port 0 picks a free port (see PeerAddr).
	PeerAddr string
	// PeerAdvertiseAddr is the peer-link address advertised in the
	// metadata. Default: PeerAddr's bound port on the gossip advertise IP
	// when PeerAddr's host is unspecified, else the bound address.
	PeerAdvertiseAddr string

	// MQTTAddr, NativeAddr and HTTPAddr are advertised in the node
	// metadata (for /login and GET /v1/cluster). An unspecified host
	// (":1883", "0.0.0.0:1883") is replaced by the gossip advertise IP.
	// Optional; SetMeta changes them later.
	MQTTAddr, NativeAddr, HTTPAddr string

	// Timing is the gossip timing profile. Default LANTiming(); zero
	// fields of a partial profile take LANTiming's values.
	Timing Timing
	// Link configures peer links.
	Link LinkOptions
	// Pick is the strategy of Pick. Default PickHash.
	Pick PickStrategy
	// BurstBroadcasts: when more than this many of our own gossip
	// broadcasts (each a batch of up to ~70 claims or filters) wait to be
	// sent, the node sends its full state to every member over TCP instead
	// and drops the queue. Default 8.
	BurstBroadcasts int

	// Logger receives this package's and memberlist's logs (memberlist's
	// [DEBUG] lines at Debug). Default slog.Default().
	Logger *slog.Logger

	// Delegates; each is optional. See their files for the threading rules.
	Members   MemberDelegate
	Ownership OwnershipDelegate
	Interest  InterestDelegate
	Publish   PublishDelegate
	Forwarded ForwardDelegate
	Requests  RequestDelegate

	// testGossip wraps the gossip transport (tests: partitions).
	testGossip func(addr string, stream bool) bool
	// testNow replaces time.Now for the clock (tests).
	testNow func() time.Time
}

// Timing is the memberlist timing profile. See docs/cluster.md for what
// each value means for failure detection and convergence.
type Timing struct {
	// ProbeInterval: each node probes one other node this often (UDP ping,
	// indirect pings through IndirectChecks others, then TCP).
	ProbeInterval time.Duration
	// ProbeTimeout: how long a probe waits for an ack. Must be below
	// ProbeInterval.
	ProbeTimeout time.Duration
	// IndirectChecks: nodes asked to ping a node that did not answer.
	IndirectChecks int
	// SuspicionMult scales the time a failed node stays suspect before it
	// is declared dead: SuspicionMult × max(1, log10 n) × ProbeInterval at
	// least, SuspicionMaxTimeoutMult times that at most (the timeout
	// shrinks as other nodes confirm the suspicion).
	SuspicionMult, SuspicionMaxTimeoutMult int
	// GossipInterval and GossipNodes: every GossipInterval, queued
	// broadcasts go to GossipNodes random nodes in one UDP packet each.
	GossipInterval time.Duration
	GossipNodes    int
	// RetransmitMult: each broadcast is sent RetransmitMult × ceil(log10(n+1))
	// times by its origin (relays send it half as often).
	RetransmitMult int
	// PushPullInterval: a full-state exchange with one random node this
	// often (memberlist scales it up past 32 nodes).
	PushPullInterval time.Duration
	// TCPTimeout bounds a push/pull or TCP-ping stream.
	TCPTimeout time.Duration
	// GossipToTheDeadTime: dead nodes still receive gossip this long, so a
	// node that was wrongly declared dead hears it and refutes.
	GossipToTheDeadTime time.Duration
	// UDPBufferSize is the largest gossip packet; keep it under the path
	// MTU (1400 on Ethernet; loopback can take up to 65000).
	UDPBufferSize int
}

// LANTiming is the default profile, for nodes on one LAN (sub-millisecond
// round trips): a dead node is suspected within ~1 s and declared dead
// 1.5–6 s later; a broadcast reaches every node of a small cluster within a
// few gossip rounds (50 ms each).
func LANTiming() Timing {
	return Timing{
		ProbeInterval:           500 * time.Millisecond,
		ProbeTimeout:            250 * time.Millisecond,
		IndirectChecks:          3,
		SuspicionMult:           3,
		SuspicionMaxTimeoutMult: 4,
		GossipInterval:          50 * time.Millisecond,
		GossipNodes:             3,
		RetransmitMult:          3,
		PushPullInterval:        10 * time.Second,
		TCPTimeout:              2 * time.Second,
		GossipToTheDeadTime:     30 * time.Second,
		UDPBufferSize:           1400,
	}
}

// LoopbackTiming is a fast profile for nodes on one machine (tests, local
// demos): failure detection within about a second, push/pull every 500 ms.
// Too tight for a real network, or for a heavily loaded machine.
func LoopbackTiming() Timing {
	return Timing{
		ProbeInterval:           200 * time.Millisecond,
		ProbeTimeout:            100 * time.Millisecond,
		IndirectChecks:          2,
		SuspicionMult:           2,
		SuspicionMaxTimeoutMult: 3,
		GossipInterval:          20 * time.Millisecond,
		GossipNodes:             3,
		RetransmitMult:          3,
		PushPullInterval:        500 * time.Millisecond,
		TCPTimeout:              time.Second,
		GossipToTheDeadTime:     5 * time.Second,
		UDPBufferSize:           1400,
	}
}

// LinkOptions configure peer links.
type LinkOptions struct {
	// QueueBytes bounds the bytes a link holds for its peer: frames queued
	// and forwarded QoS 1/2 publishes not yet acknowledged. Past it Forward
	// and Request return ErrQueueFull. Default 8 MiB.
	QueueBytes int
	// QueueFrames bounds the same frames by count. Default 65536.
	QueueFrames int
	// MaxFrameSize is the largest frame sent or accepted. Default 16 MiB.
	MaxFrameSize int
	// WriteBatchBytes: the writer coalesces queued frames into writes of
	// about this size. Default 256 KiB.
	WriteBatchBytes int
	// WriteTimeout: a write blocked this long (the peer stopped reading)
	// drops the connection, which then reconnects. Default 10s.
	WriteTimeout time.Duration
	// PingInterval: an idle link sends a ping this often; a link that
	// received nothing for 3 × PingInterval is dropped. Default 1s.
	PingInterval time.Duration
	// HandshakeTimeout bounds connect + hello + auth. Default 5s.
	HandshakeTimeout time.Duration
	// BackoffMin and BackoffMax bound the reconnect backoff (full jitter,
	// doubling). Defaults 50ms and 3s.
	BackoffMin, BackoffMax time.Duration
	// RequestTimeout is Call's timeout when its context has no deadline,
	// and Request's when given 0. Default 10s.
	RequestTimeout time.Duration
}

// EnsureDefaults fills zero fields with their defaults.
func (o *Options) EnsureDefaults() {
	if o.NodeName == "" {
		o.NodeName, _ = os.Hostname()
	}
	if o.ClusterName == "" {
		o.ClusterName = "cim"
	}
	if o.BindAddr == "" {
		o.BindAddr = "0.0.0.0:7946"
	}
	if o.PeerAddr == "" {
		o.PeerAddr = "0.0.0.0:7947"
	}
	if o.JoinRetryMin == 0 {
		o.JoinRetryMin = 500 * time.Millisecond
	}
	if o.JoinRetryMax == 0 {
		o.JoinRetryMax = 15 * time.Second
	}
	if o.ReconnectInterval == 0 {
		o.ReconnectInterval = 5 * time.Second
	}
	if o.DeadNodeTTL == 0 {
		o.DeadNodeTTL = 10 * time.Minute
	}
	if o.BurstBroadcasts == 0 {
		o.BurstBroadcasts = 8
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	o.Timing.ensureDefaults()
	o.Link.ensureDefaults()
}

func (t *Timing) ensureDefaults() {
	d := LANTiming()
	if t.ProbeInterval == 0 {
		t.ProbeInterval = d.ProbeInterval
	}
	if t.ProbeTimeout == 0 {
		t.ProbeTimeout = d.ProbeTimeout
	}
	if t.IndirectChecks == 0 {
		t.IndirectChecks = d.IndirectChecks
	}
	if t.SuspicionMult == 0 {
		t.SuspicionMult = d.SuspicionMult
	}
	if t.SuspicionMaxTimeoutMult == 0 {
		t.SuspicionMaxTimeoutMult = d.SuspicionMaxTimeoutMult
	}
	if t.GossipInterval == 0 {
		t.GossipInterval = d.GossipInterval
	}
	if t.GossipNodes == 0 {
		t.GossipNodes = d.GossipNodes
	}
	if t.RetransmitMult == 0 {
		t.RetransmitMult = d.RetransmitMult
	}
	if t.PushPullInterval == 0 {
		t.PushPullInterval = d.PushPullInterval
	}
	if t.TCPTimeout == 0 {
		t.TCPTimeout = d.TCPTimeout
	}
	if t.GossipToTheDeadTime == 0 {
		t.GossipToTheDeadTime = d.GossipToTheDeadTime
	}
	if t.UDPBufferSize == 0 {
		t.UDPBufferSize = d.UDPBufferSize
	}
}

func (l *LinkOptions) ensureDefaults() {
	if l.QueueBytes == 0 {
		l.QueueBytes = 8 << 20
	}
	if l.QueueFrames == 0 {
		l.QueueFrames = 65536
	}
	if l.MaxFrameSize == 0 {
		l.MaxFrameSize = 16 << 20
	}
	if l.WriteBatchBytes == 0 {
		l.WriteBatchBytes = 256 << 10
	}
	if l.WriteTimeout == 0 {
		l.WriteTimeout = 10 * time.Second
	}
	if l.PingInterval == 0 {
		l.PingInterval = time.Second
	}
	if l.HandshakeTimeout == 0 {
		l.HandshakeTimeout = 5 * time.Second
	}
	if l.BackoffMin == 0 {
		l.BackoffMin = 50 * time.Millisecond
	}
	if l.BackoffMax == 0 {
		l.BackoffMax = 3 * time.Second
	}
	if l.RequestTimeout == 0 {
		l.RequestTimeout = 10 * time.Second
	}
}

var clusterNameRE = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

// MinSecretLen is the shortest Secret Validate accepts.
const MinSecretLen = 16

func invalid(field, format string, args ...any) error {
	return fmt.Errorf("%w: %s: %s", ErrInvalidOptions, field, fmt.Sprintf(format, args...))
}

// Validate reports the first invalid field. Call EnsureDefaults first.
func (o *Options) Validate() error {
	if err := validName(o.NodeName); err != nil {
		return invalid("NodeName", "%v", err)
	}
	if !clusterNameRE.MatchString(o.ClusterName) {
		return invalid("ClusterName", "%q: want 1-64 letters, digits, '.', '_' or '-'", o.ClusterName)
	}
	if len(o.Secret) < MinSecretLen {
		return invalid("Secret", "at least %d bytes required (use 32 random bytes)", MinSecretLen)
	}
	if err := validHostPort(o.BindAddr); err != nil {
		return invalid("BindAddr", "%v", err)
	}
	if o.AdvertiseAddr != "" {
		h, _, err := splitHostPort(o.AdvertiseAddr)
		if err != nil {
			return invalid("AdvertiseAddr", "%v", err)
		}
		if ip := net.ParseIP(h); ip == nil || ip.IsUnspecified() {
			return invalid("AdvertiseAddr", "%q: want a concrete IP address", o.AdvertiseAddr)
		}
	}
	for i, j := range o.Join {
		if j == "" {
			return invalid(fmt.Sprintf("Join[%d]", i), "empty address")
		}
		if err := validHostPort(j); err != nil {
			return invalid(fmt.Sprintf("Join[%d]", i), "%v", err)
		}
	}
	if err := validHostPort(o.PeerAddr); err != nil {
		return invalid("PeerAddr", "%v", err)
	}
	if o.PeerAdvertiseAddr != "" {
		if err := validHostPort(o.PeerAdvertiseAddr); err != nil {
			return invalid("PeerAdvertiseAddr", "%v", err)
		}
	}
	for _, f := range []struct{ name, v string }{{"MQTTAddr", o.MQTTAddr}, {"NativeAddr", o.NativeAddr}, {"HTTPAddr", o.HTTPAddr}} {
		if f.v != "" {
			if err := validHostPort(f.v); err != nil {
				return invalid(f.name, "%v", err)
			}
		}
	}
	if o.JoinRetryMin < 0 || o.JoinRetryMax < o.JoinRetryMin {
		return invalid("JoinRetryMax", "must be >= JoinRetryMin > 0")
	}
	if o.ReconnectInterval < 0 {
		return invalid("ReconnectInterval", "negative")
	}
	if o.DeadNodeTTL < 0 {
		return invalid("DeadNodeTTL", "negative")
	}
	if o.BurstBroadcasts < 0 {
		return invalid("BurstBroadcasts", "negative")
	}
	if o.Pick < PickHash || o.Pick > PickRandom {
		return invalid("Pick", "unknown strategy %d", o.Pick)
	}
	if err := o.Timing.validate(); err != nil {
		return err
	}
	return o.Link.validate()
}

func (t *Timing) validate() error {
	pos := []struct {
		name string
		v    time.Duration
	}{
		{"ProbeInterval", t.ProbeInterval}, {"ProbeTimeout", t.ProbeTimeout},
		{"GossipInterval", t.GossipInterval}, {"PushPullInterval", t.PushPullInterval},
		{"TCPTimeout", t.TCPTimeout}, {"GossipToTheDeadTime", t.GossipToTheDeadTime},
	}
	for _, p := range pos {
		if p.v <= 0 {
			return invalid("Timing."+p.name, "must be > 0")
		}
	}
	if t.ProbeTimeout >= t.ProbeInterval {
		return invalid("Timing.ProbeTimeout", "must be below ProbeInterval")
	}
	for _, p := range []struct {
		name string
		v    int
	}{
		{"IndirectChecks", t.IndirectChecks}, {"SuspicionMult", t.SuspicionMult},
		{"SuspicionMaxTimeoutMult", t.SuspicionMaxTimeoutMult}, {"GossipNodes", t.GossipNodes},
		{"RetransmitMult", t.RetransmitMult},
	} {
		if p.v <= 0 {
			return invalid("Timing."+p.name, "must be > 0")
		}
	}
	if t.UDPBufferSize < 576 || t.UDPBufferSize > 65000 {
		return invalid("Timing.UDPBufferSize", "%d: want 576..65000", t.UDPBufferSize)
	}
	return nil
}

func (l *LinkOptions) validate() error {
	if l.QueueBytes <= 0 {
		return invalid("Link.QueueBytes", "must be > 0")
	}
	if l.QueueFrames <= 0 {
		return invalid("Link.QueueFrames", "must be > 0")
	}
	if l.MaxFrameSize < 4096 {
		return invalid("Link.MaxFrameSize", "%d: want at least 4096", l.MaxFrameSize)
	}
	if l.WriteBatchBytes <= 0 {
		return invalid("Link.WriteBatchBytes", "must be > 0")
	}
	for _, p := range []struct {
		name string
		v    time.Duration
	}{
		{"WriteTimeout", l.WriteTimeout}, {"PingInterval", l.PingInterval},
		{"HandshakeTimeout", l.HandshakeTimeout}, {"BackoffMin", l.BackoffMin},
		{"BackoffMax", l.BackoffMax}, {"RequestTimeout", l.RequestTimeout},
	} {
		if p.v <= 0 {
			return invalid("Link."+p.name, "must be > 0")
		}
	}
	if l.BackoffMax < l.BackoffMin {
		return invalid("Link.BackoffMax", "below BackoffMin")
	}
	return nil
}

func validName(s string) error {
	if s == "" {
		return fmt.Errorf("empty")
	}
	if len(s) > 128 {
		return fmt.Errorf("%d bytes, at most 128", len(s))
	}
	for _, r := range s {
		if r <= ' ' || r == 0x7f {
			return fmt.Errorf("%q contains a space or control character", s)
		}
	}
	return nil
}

func splitHostPort(s string) (string, int, error) {
	h, p, err := net.SplitHostPort(s)
	if err != nil {
		return "", 0, err
	}
	n, err := strconv.Atoi(p)
	if err != nil || n < 0 || n > 65535 {
		return "", 0, fmt.Errorf("%q: bad port", s)
	}
	return h, n, nil
}

func validHostPort(s string) error {
	_, _, err := splitHostPort(s)
	return err
}
