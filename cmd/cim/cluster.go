package main

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"

	"github.com/cimgo/cim/broker"
	"github.com/cimgo/cim/cluster"
	"github.com/prometheus/client_golang/prometheus"
)

// ClusterConfig is what `cim server` needs to join a cluster, besides
// cluster_addr, peer_addr and join (Config). A node is clustered when any
// of cluster_addr, peer_addr or join is set; it then needs the secret.
type ClusterConfig struct {
	// ClusterSecret is shared by every node (at least 16 bytes; 32 random
	// ones, base64, is the advice). The flag, the YAML key or, when both
	// are unset, the environment variable CIM_CLUSTER_SECRET. Never logged.
	ClusterSecret string `yaml:"cluster_secret"`
	// ClusterName keeps two clusters on one network apart (default cim).
	ClusterName string `yaml:"cluster_name"`
	// ClusterAdvertise is the gossip ip:port others dial (default: the
	// bound one, or a private IP of this host when bound to 0.0.0.0).
	ClusterAdvertise string `yaml:"cluster_advertise"`
	// PeerAdvertise is the peer-link host:port others dial (default: the
	// peer port on the gossip advertise IP).
	PeerAdvertise string `yaml:"peer_advertise"`
	// ClusterPick is how POST /login picks a node for a user: hash
	// (default: consistent hash on the user id), roundrobin or random.
	ClusterPick string `yaml:"cluster_pick"`
	// ClusterTiming is the failure-detection profile: lan (default: a dead
	// node is dropped within 2-7 s) or loopback (about a second; nodes on
	// one machine only).
	ClusterTiming string `yaml:"cluster_timing"`
}

// clusterSecretEnv names the environment variable of the secret.
const clusterSecretEnv = "CIM_CLUSTER_SECRET"

// clusterFlags are the flags of ClusterConfig (the others are in
// serverFlags already).
var clusterFlags = []struct{ name, usage string }{
	{"cluster-secret", "cluster `secret`, the same on every node, >= 16 bytes (or $" + clusterSecretEnv + "); never logged"},
	{"cluster-name", "cluster `name`: clusters with other names never merge (default cim)"},
	{"cluster-advertise", "gossip `ip:port` other nodes dial (default: the bound address)"},
	{"peer-advertise", "peer link `host:port` other nodes dial (default: the peer port on the gossip IP)"},
	{"cluster-pick", "how POST /login picks a node: `hash` (default: consistent hash on the user id), roundrobin or random"},
	{"cluster-timing", "failure detection `profile`: lan (default: a dead node is dropped in 2-7 s) or loopback (about 1 s; one machine only)"},
}

func init() {
	for _, f := range clusterFlags {
		serverFlags = append(serverFlags, struct {
			name, usage string
			kind        int
		}{f.name, f.usage, flagString})
	}
}

// clustered reports whether the config asks for a cluster.
func (c *Config) clustered() bool {
	return c.ClusterAddr != "" || c.PeerAddr != "" || len(c.Join) > 0
}

// checkCluster checks the cluster keys (checkConfig calls it).
func checkCluster(c *Config) []problem {
	var ps []problem
	add := func(key, format string, args ...any) { ps = append(ps, problem{key, fmt.Sprintf(format, args...)}) }
	if c.ClusterAdvertise != "" {
		host, _, err := net.SplitHostPort(c.ClusterAdvertise)
		if ip := net.ParseIP(host); err != nil || ip == nil || ip.IsUnspecified() {
			add("cluster_advertise", "want ip:port with a concrete IP such as 10.0.0.1:7946, got %q", c.ClusterAdvertise)
		} else if err := checkAddr(c.ClusterAdvertise); err != nil {
			add("cluster_advertise", "%v", err)
		}
	}
	if c.PeerAdvertise != "" {
		if err := checkAddr(c.PeerAdvertise); err != nil {
			add("peer_advertise", "%v", err)
		}
	}
	if _, err := cluster.ParsePickStrategy(c.ClusterPick); err != nil {
		add("cluster_pick", "want hash, roundrobin or random, got %q", c.ClusterPick)
	}
	switch c.ClusterTiming {
	case "", "lan", "loopback":
	default:
		add("cluster_timing", "want lan or loopback, got %q", c.ClusterTiming)
	}
	if c.ClusterName != "" {
		o := cluster.Options{NodeName: "x", ClusterName: c.ClusterName, Secret: strings.Repeat("x", cluster.MinSecretLen)}
		o.EnsureDefaults()
		if err := o.Validate(); err != nil {
			add("cluster_name", "want 1 to 64 letters, digits, '.', '_' or '-', got %q", c.ClusterName)
		}
	}
	if s := c.ClusterSecret; s != "" && len(s) < cluster.MinSecretLen {
		add("cluster_secret", "too short: want at least %d bytes (use 32 random bytes, e.g. openssl rand -base64 32)", cluster.MinSecretLen)
	}
	return ps
}

// clusterMissing is what a clustered node lacks to start (runServer checks
// it with unsupported: a config file may name the cluster's addresses and
// leave the secret to the environment).
func clusterMissing(c *Config) []problem {
	if !c.clustered() || c.ClusterSecret != "" {
		return nil
	}
	switch s := os.Getenv(clusterSecretEnv); {
	case s == "":
		return []problem{{"cluster_secret", "required to form a cluster (or set $" + clusterSecretEnv + "): the same long random string on every node"}}
	case len(s) < cluster.MinSecretLen:
		return []problem{{"cluster_secret", fmt.Sprintf("$%s too short: want at least %d bytes", clusterSecretEnv, cluster.MinSecretLen)}}
	}
	return nil
}

// clusterOptions is what broker.StartCluster gets.
func (c *Config) clusterOptions() broker.ClusterOptions {
	secret := c.ClusterSecret
	if secret == "" {
		secret = os.Getenv(clusterSecretEnv)
	}
	pick, _ := cluster.ParsePickStrategy(c.ClusterPick)
	o := cluster.Options{
		NodeName:          c.NodeName,
		ClusterName:       c.ClusterName,
		Secret:            secret,
		BindAddr:          c.ClusterAddr,
		AdvertiseAddr:     c.ClusterAdvertise,
		Join:              c.Join,
		PeerAddr:          c.PeerAddr,
		PeerAdvertiseAddr: c.PeerAdvertise,
		HTTPAddr:          c.HTTPAddr,
		Pick:              pick,
		Logger:            c.Logger,
	}
	if c.ClusterTiming == "loopback" {
		o.Timing = cluster.LoopbackTiming()
	}
	return broker.ClusterOptions{Cluster: o}
}

// mountCluster serves GET /v1/cluster on the HTTP API: the members as this
// node sees them, {"members":[{"name","state","addr",...},...]} (a node
// that is not clustered lists itself). Before serving.
func mountCluster(handle func(method, path string, h http.Handler), srv *broker.Server) {
	handle(http.MethodGet, "/v1/cluster", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(struct {
			Members []broker.ClusterMember `json:"members"`
		}{srv.ClusterMembers()})
	}))
}

// clusterCollector exports the cluster's counters on /metrics (only on a
// clustered node): members by state, ownership and interest table sizes,
// gossip bytes, and per peer link its state, queue and traffic.
type clusterCollector struct {
	srv *broker.Server

	members, ownerEntries, ownedKeys, localFilters, remoteFilters *prometheus.Desc
	gossipBytes, syncs, authFailures, parked, replayed, relayed   *prometheus.Desc
	handedOff, merged                                             *prometheus.Desc
	linkUp, linkQueued, linkUnacked, linkForwarded, linkRefused   *prometheus.Desc
	linkBytes, linkResent, linkConnects                           *prometheus.Desc
}

func newClusterCollector(srv *broker.Server) *clusterCollector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("cim_cluster_"+name, help, labels, nil)
	}
	return &clusterCollector{srv: srv,
		members:       d("members", "Members as this node sees them, by state.", "state"),
		ownerEntries:  d("owner_entries", "Session ownership entries known (every node's)."),
		ownedKeys:     d("owned_keys", "Sessions this node owns."),
		localFilters:  d("local_filters", "Distinct subscription filters live here."),
		remoteFilters: d("remote_filters", "Subscription filters live on other nodes, summed."),
		gossipBytes:   d("gossip_bytes_total", "Gossip bytes through the transport.", "proto", "dir"),
		syncs:         d("syncs_total", "Full-state exchanges started outside memberlist's schedule."),
		authFailures:  d("auth_failures_total", "Peer-link handshakes refused (wrong secret or cluster)."),
		parked:        d("parked_total", "QoS 1/2 messages parked for nodes that were down."),
		replayed:      d("replayed_total", "Parked messages handed to a node that came back."),
		relayed:       d("relayed_total", "Messages passed on to a session's new node after a hand-off."),
		handedOff:     d("handed_off_total", "Sessions handed to another node on takeover."),
		merged:        d("merged_total", "Stale sessions merged into their new owner."),
		linkUp:        d("link_up", "1 while the peer link is connected.", "peer"),
		linkQueued:    d("link_queued_bytes", "Bytes queued or unacknowledged on the peer link.", "peer"),
		linkUnacked:   d("link_unacked", "QoS 1/2 publishes written and not acknowledged yet.", "peer"),
		linkForwarded: d("link_forwarded_total", "Publishes accepted for the peer.", "peer"),
		linkRefused:   d("link_refused_total", "Publishes refused by back-pressure (queue full).", "peer"),
		linkBytes:     d("link_bytes_total", "Bytes on the peer link.", "peer", "dir"),
		linkResent:    d("link_resent_total", "Unacknowledged publishes written again after a reconnect.", "peer"),
		linkConnects:  d("link_connects_total", "Connections of the peer link.", "peer"),
	}
}

func (c *clusterCollector) Describe(ch chan<- *prometheus.Desc) { prometheus.DescribeByCollect(c, ch) }

func (c *clusterCollector) Collect(ch chan<- prometheus.Metric) {
	st, ok := c.srv.ClusterStats()
	if !ok {
		return
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	states := map[string]int{"alive": 0, "suspect": 0, "dead": 0, "left": 0}
	for _, m := range c.srv.ClusterMembers() {
		states[m.State]++
	}
	for s, n := range states {
		gauge(c.members, float64(n), s)
	}
	gauge(c.ownerEntries, float64(st.OwnerEntries))
	gauge(c.ownedKeys, float64(st.OwnedKeys))
	gauge(c.localFilters, float64(st.LocalFilters))
	gauge(c.remoteFilters, float64(st.RemoteFilters))
	counter(c.gossipBytes, st.GossipUDPIn, "udp", "in")
	counter(c.gossipBytes, st.GossipUDPOut, "udp", "out")
	counter(c.gossipBytes, st.GossipTCPIn, "tcp", "in")
	counter(c.gossipBytes, st.GossipTCPOut, "tcp", "out")
	counter(c.syncs, st.Syncs)
	counter(c.authFailures, st.AuthFailures)
	counter(c.parked, st.Parked)
	counter(c.replayed, st.Replayed)
	counter(c.relayed, st.Relayed)
	counter(c.handedOff, st.HandedOff)
	counter(c.merged, st.Merged)
	for _, l := range st.Links {
		up := 0.0
		if l.Connected {
			up = 1
		}
		gauge(c.linkUp, up, l.Peer)
		gauge(c.linkQueued, float64(l.QueuedBytes), l.Peer)
		gauge(c.linkUnacked, float64(l.Unacked), l.Peer)
		counter(c.linkForwarded, l.Forwarded, l.Peer)
		counter(c.linkRefused, l.Refused, l.Peer)
		counter(c.linkBytes, l.SentBytes, l.Peer, "out")
		counter(c.linkBytes, l.ReceivedBytes, l.Peer, "in")
		counter(c.linkResent, l.Resent, l.Peer)
		counter(c.linkConnects, l.Connects, l.Peer)
	}
}
