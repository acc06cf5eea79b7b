package bench

import (
	"crypto/rand"
	"encoding/hex"
	"hash/fnv"
	"net"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Scenario names, the first argument of `cim bench`.
const (
	ScenarioConn   = "conn"
	ScenarioPub    = "pub"
	ScenarioSub    = "sub"
	ScenarioFanIn  = "fanin"
	ScenarioFanOut = "fanout"
	ScenarioPairs  = "pairs"
	ScenarioChurn  = "churn"
	ScenarioShared = "shared"
)

// Scenarios lists the scenario names in the order the usage text shows them.
var Scenarios = []string{ScenarioConn, ScenarioPub, ScenarioSub, ScenarioFanIn, ScenarioFanOut, ScenarioPairs, ScenarioChurn, ScenarioShared}

// UserProperty is an MQTT 5 user property sent with every PUBLISH.
type UserProperty struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// Options configure one run. The zero value of a field means "default", as
// documented on the field and filled in by EnsureDefaults. Options travel to
// worker processes as JSON.
type Options struct {
	Scenario string `json:"scenario"`
	// Proto selects the protocol (see Register): "mqtt" or "native".
	// Default "mqtt".
	Proto string `json:"proto"`
	// Addr is the broker's host:port, or a comma-separated list of them:
	// clients are spread over the list round robin by their index within
	// their role. Default "127.0.0.1:1883", with the native protocol
	// "127.0.0.1:9000".
	Addr string `json:"addr"`
	// API is the base URL of the IM server's HTTP API, where the native
	// protocol registers the run's accounts before connecting (POST
	// /v1/accounts). Default http://<host of the first broker address>:8083.
	// Only the native protocol uses it.
	API string `json:"api,omitempty"`
	// PubAddr and SubAddr, when set, replace Addr for publishers and for
	// subscribers (lists as Addr), to put them on different cluster nodes.
	PubAddr string `json:"pub_addr,omitempty"`
	SubAddr string `json:"sub_addr,omitempty"`
	// MQTTVersion is 4 (3.1.1) or 5. Default 4.
	MQTTVersion byte `json:"mqtt_version"`
	// QoS of publishes and subscriptions, 0..2.
	QoS byte `json:"qos"`
	// Size is the payload size in bytes, at least HeaderSize. Default 64.
	Size int `json:"size"`
	// Rate is messages per second per publisher; 0 sends as fast as the
	// connection (and, for QoS > 0, the in-flight window) allows.
	Rate float64 `json:"rate"`
	// Duration of the measured part of the run (after Warmup); for conn, how
	// long connections are held once open. Default 10s. Ignored for
	// publishing when Count is set.
	Duration time.Duration `json:"duration"`
	// Count is the number of messages per publisher (pub, fanin, fanout,
	// pairs) or per subscriber (sub); 0 means run for Duration.
	Count int `json:"count"`
	// Warmup runs before the measured window: its messages count in sent,
	// received and lost, but rates, latency and broker CPU per message are
	// measured after it.
	Warmup time.Duration `json:"warmup"`
	// Topic is the topic pattern. Variables: %i the client's index within
	// its role, %c its client id, %u the user name, %rand a random number
	// below RandMax (drawn per message for publishers; in a subscription a
	// level that is only %rand becomes +, elsewhere it is drawn once). Default per scenario: pub "bench/%i", sub "bench/#",
	// fanin "bench/fanin", fanout "bench/fanout", pairs "bench/pair/%i",
	// churn "bench/churn/%i", shared "bench/shared".
	Topic string `json:"topic"`
	// RandMax bounds %rand. Default 1000.
	RandMax int `json:"rand_max"`
	// Retain sets the retain flag on every publish.
	Retain bool `json:"retain,omitempty"`
	// Payload, when set, follows the 16-byte header in every message (from
	// --payload-file) and fixes Size at HeaderSize+len(Payload).
	Payload []byte `json:"payload,omitempty"`
	// UserProperties go with every PUBLISH (MQTT 5 only).
	UserProperties []UserProperty `json:"user_properties,omitempty"`
	// Pubs and Subs are the numbers of publishers and subscribers. Defaults:
	// pub 1/0, sub 0/1, fanin 10/1, fanout 1/100 (Pubs is always 1).
	Pubs int `json:"pubs"`
	Subs int `json:"subs"`
	// Pairs is the number of publisher/subscriber pairs (pairs). Default 100.
	Pairs int `json:"pairs"`
	// Conns is the number of connections (conn). Default 1000.
	Conns int `json:"conns"`
	// Clients is the number of clients that churn (churn): each connects,
	// subscribes, publishes one message to itself, waits for it and
	// disconnects, in a loop; ConnRate bounds the cycles per second over
	// all of them and Count the cycles per client. Default 10.
	Clients int `json:"clients"`
	// Group is the shared-subscription group name (shared): subscribers
	// subscribe to $share/<Group>/<Topic>, or with Groups > 1 to
	// $share/<Group><k>/<Topic> for subscriber i, k = i mod Groups.
	// Default "bench".
	Group  string `json:"group"`
	Groups int    `json:"groups"`
	// ConnRate is connections opened per second over all workers; 0 opens
	// them as fast as possible with ConnParallel handshakes at a time.
	ConnRate float64 `json:"conn_rate"`
	// ConnParallel bounds concurrent handshakes over all workers. Default
	// 64: more overflows the accept backlog of some brokers (Mosquitto
	// listens with 100), and a dropped SYN costs a 1 s retransmit, which
	// would measure the kernel rather than the broker.
	ConnParallel int `json:"conn_parallel"`
	// Persistent asks for persistent sessions (not clean session / clean
	// start); the default is clean.
	Persistent bool `json:"persistent"`
	// SessionExpiry of persistent MQTT 5 sessions. Default 5m.
	SessionExpiry time.Duration `json:"session_expiry"`
	Username      string        `json:"username"`
	// Password is never put on a worker's command line or in its
	// environment: options reach workers on their stdin, agents over
	// their authenticated connection.
	Password string `json:"password"`
	// ClientIDPrefix starts every client id: <prefix>-<role><index>, role
	// p, s or c. Default "cb" + 8 random hex digits, so runs do not collide.
	ClientIDPrefix string `json:"client_id_prefix"`
	// KeepAlive is the keepalive interval sent to the broker. Default 60s.
	KeepAlive time.Duration `json:"keepalive"`
	// ConnectTimeout bounds dialing plus handshake. Default 10s.
	ConnectTimeout time.Duration `json:"connect_timeout"`
	// Inflight bounds unacknowledged QoS > 0 publishes per publisher.
	// Default 100.
	Inflight int `json:"inflight"`
	// Drain bounds the wait for deliveries after publishing stops; the wait
	// also ends when everything expected has arrived or nothing arrived for
	// a second. Default 5s.
	Drain time.Duration `json:"drain"`
	// Workers > 0 runs the clients in that many worker processes (per
	// agent, with Agents).
	Workers int `json:"workers"`
	// WorkerCommand is how to start a worker; the worker recognises itself
	// by its environment (see IsWorker) and reads its options from stdin.
	// Default: this executable without arguments; `cim bench` sets
	// [executable, "bench"].
	WorkerCommand []string `json:"-"`
	// Agents is a comma-separated list of `cim bench agent` addresses
	// (host:port). When set, every client runs on the agents and this
	// process only coordinates and reports.
	Agents string `json:"-"`
	// AgentToken is the secret shared with the agents (see ServeAgent).
	AgentToken string `json:"-"`
	// BrokerPID, when set, is sampled from /proc for CPU time and RSS.
	BrokerPID int `json:"-"`
	// JSON prints the report as one JSON object instead of a table.
	JSON bool `json:"-"`
	// Chart is a file to write an HTML page with latency and rate charts.
	Chart string `json:"-"`
	// CSV is a file to write the per-second time series to.
	CSV string `json:"-"`
	// Progress is "auto" (a bar on a terminal, plain lines otherwise),
	// "bar", "plain" or "none". Default "auto".
	Progress string `json:"-"`
	// RunStart is set by Run; messages stamped earlier are stale (left over
	// in a persistent session or retained from another run).
	RunStart int64 `json:"run_start"`
}

// HeaderSize is the smallest payload: send time, publisher id, sequence.
const HeaderSize = 16

// maxPayloadFile bounds --payload-file: the bytes travel to every worker
// and agent inside the options.
const maxPayloadFile = 16 << 20

// EnsureDefaults fills zero fields with their documented defaults.
func (o *Options) EnsureDefaults() {
	if o.Proto == "" {
		o.Proto = "mqtt"
	}
	if o.Addr == "" {
		o.Addr = "127.0.0.1:1883"
		if o.Proto == ProtoNative {
			o.Addr = "127.0.0.1:9000"
		}
	}
	if o.API == "" && o.Proto == ProtoNative {
		o.API = defaultAPI(o.allAddrs())
	}
	if o.MQTTVersion == 0 {
		o.MQTTVersion = 4
	}
	if o.Size == 0 {
		o.Size = 64
	}
	if len(o.Payload) > 0 {
		o.Size = HeaderSize + len(o.Payload)
	}
	if o.Duration == 0 {
		o.Duration = 10 * time.Second
	}
	if o.SessionExpiry == 0 {
		o.SessionExpiry = 5 * time.Minute
	}
	if o.KeepAlive == 0 {
		o.KeepAlive = 60 * time.Second
	}
	if o.ConnectTimeout == 0 {
		o.ConnectTimeout = 10 * time.Second
	}
	if o.Inflight == 0 {
		o.Inflight = 100
	}
	if o.Drain == 0 {
		o.Drain = 5 * time.Second
	}
	if o.ConnParallel == 0 {
		o.ConnParallel = 64
	}
	if o.RandMax == 0 {
		o.RandMax = 1000
	}
	if o.Progress == "" {
		o.Progress = "auto"
	}
	if len(o.WorkerCommand) == 0 {
		if exe, err := os.Executable(); err == nil {
			o.WorkerCommand = []string{exe}
		}
	}
	if o.ClientIDPrefix == "" {
		var b [4]byte
		_, _ = rand.Read(b[:])
		o.ClientIDPrefix = "cb" + hex.EncodeToString(b[:])
	}
	def := func(topic string) {
		if o.Topic == "" {
			o.Topic = topic
		}
	}
	switch o.Scenario {
	case ScenarioConn:
		if o.Conns == 0 {
			o.Conns = 1000
		}
	case ScenarioPub:
		if o.Pubs == 0 {
			o.Pubs = 1
		}
		def("bench/%i")
	case ScenarioSub:
		if o.Subs == 0 {
			o.Subs = 1
		}
		def("bench/#")
	case ScenarioFanIn:
		if o.Pubs == 0 {
			o.Pubs = 10
		}
		if o.Subs == 0 {
			o.Subs = 1
		}
		def("bench/fanin")
	case ScenarioFanOut:
		o.Pubs = 1
		if o.Subs == 0 {
			o.Subs = 100
		}
		def("bench/fanout")
	case ScenarioPairs:
		if o.Pairs == 0 {
			o.Pairs = 100
		}
		o.Pubs, o.Subs = o.Pairs, o.Pairs
		def("bench/pair/%i")
	case ScenarioChurn:
		if o.Clients == 0 {
			o.Clients = 10
		}
		o.Pubs, o.Subs = 0, 0
		def("bench/churn/%i")
	case ScenarioShared:
		if o.Pubs == 0 {
			o.Pubs = 1
		}
		if o.Subs == 0 {
			o.Subs = 10
		}
		if o.Group == "" {
			o.Group = "bench"
		}
		if o.Groups == 0 {
			o.Groups = 1
		}
		def("bench/shared")
	}
}

// Validate reports the first bad field as an error wrapping ErrUsage.
func (o *Options) Validate() error {
	known := false
	for _, s := range Scenarios {
		known = known || s == o.Scenario
	}
	switch {
	case o.Scenario == "":
		return usageErr("missing scenario (one of %s)", strings.Join(Scenarios, ", "))
	case !known:
		return usageErr("unknown scenario %q (one of %s)", o.Scenario, strings.Join(Scenarios, ", "))
	}
	if _, ok := lookupProto(o.Proto); !ok {
		return usageErr("--proto %q: not available (have %s)", o.Proto, strings.Join(Protos(), ", "))
	}
	for _, a := range []struct{ flag, v string }{{"--addr", o.Addr}, {"--pub-addr", o.PubAddr}, {"--sub-addr", o.SubAddr}, {"--agents", o.Agents}} {
		if a.v == "" {
			continue
		}
		for _, h := range splitList(a.v) {
			if _, _, err := net.SplitHostPort(h); err != nil {
				return usageErr("%s %q: want host:port[,host:port...]", a.flag, a.v)
			}
		}
		if len(splitList(a.v)) == 0 {
			return usageErr("%s %q: want host:port[,host:port...]", a.flag, a.v)
		}
	}
	switch {
	case o.MQTTVersion != 4 && o.MQTTVersion != 5:
		return usageErr("--mqtt-version %d: want 4 (3.1.1) or 5", o.MQTTVersion)
	case o.QoS > 2:
		return usageErr("--qos %d: want 0, 1 or 2", o.QoS)
	case o.Size < HeaderSize:
		return usageErr("--size %d: want at least %d (send time, publisher id and sequence)", o.Size, HeaderSize)
	case o.Size > 256<<20:
		return usageErr("--size %d: larger than MQTT's 256 MB", o.Size)
	case len(o.Payload) > maxPayloadFile:
		return usageErr("--payload-file: %d bytes, want at most %d", len(o.Payload), maxPayloadFile)
	case len(o.Payload) > 0 && o.Size != HeaderSize+len(o.Payload):
		return usageErr("--size %d and --payload-file of %d bytes: give one of them", o.Size, len(o.Payload))
	case o.Rate < 0:
		return usageErr("--rate %g: want >= 0", o.Rate)
	case o.Duration < 0 || o.Warmup < 0 || o.Drain < 0:
		return usageErr("--duration, --warmup and --drain must not be negative")
	case o.Count < 0:
		return usageErr("--count %d: want >= 0", o.Count)
	case o.Pubs < 0 || o.Subs < 0 || o.Pairs < 0 || o.Conns < 0 || o.Clients < 0:
		return usageErr("--pubs, --subs, --pairs, --clients and --count must not be negative")
	case o.Pubs+o.Subs+o.Conns+o.Clients > 10_000_000:
		return usageErr("more than 10,000,000 clients")
	case o.Groups < 0 || o.Groups > 100_000:
		return usageErr("--groups %d: want 1..100000", o.Groups)
	case o.RandMax < 1:
		return usageErr("--rand-max %d: want > 0", o.RandMax)
	case o.ConnParallel < 0:
		return usageErr("--conn-parallel %d: want > 0", o.ConnParallel)
	case o.ConnRate < 0:
		return usageErr("--conn-rate %g: want >= 0", o.ConnRate)
	case o.Inflight < 1 || o.Inflight > 65534:
		return usageErr("--inflight %d: want 1..65534", o.Inflight)
	case o.KeepAlive < time.Second || o.KeepAlive > 65535*time.Second:
		return usageErr("--keepalive %v: want 1s..18h", o.KeepAlive)
	case o.ConnectTimeout <= 0:
		return usageErr("--connect-timeout must be positive")
	case o.Workers < 0 || o.Workers > 250:
		return usageErr("--workers %d: want 0..250", o.Workers)
	case o.Workers > 0 && len(o.WorkerCommand) == 0:
		return usageErr("--workers: cannot find this executable to re-run")
	case o.BrokerPID < 0:
		return usageErr("--broker-pid %d: want a process id", o.BrokerPID)
	case len(o.UserProperties) > 0 && o.Proto == "mqtt" && o.MQTTVersion != 5:
		return usageErr("--user-property needs --mqtt-version 5")
	case o.Proto == ProtoNative && o.QoS > 1:
		return usageErr("--qos %d: the native protocol has QoS 0 and 1", o.QoS)
	case o.Proto == ProtoNative && o.Retain:
		return usageErr("--retain: the native protocol has no retained messages")
	case o.Proto == ProtoNative && len(o.UserProperties) > 0:
		return usageErr("--user-property: MQTT 5 only, the native protocol has none")
	case o.Agents != "" && len(o.AgentToken) < minTokenLen:
		return usageErr("--agents: the agent token (--token-file or $%s) must be at least %d characters", TokenEnv, minTokenLen)
	}
	if o.Proto == ProtoNative {
		if err := checkAPI(o.API); err != nil {
			return err
		}
	}
	for _, p := range o.UserProperties {
		if p.Key == "" || len(p.Key) > 65535 || len(p.Value) > 65535 || !utf8.ValidString(p.Key) || !utf8.ValidString(p.Value) {
			return usageErr("--user-property %q: want key=value, UTF-8, each under 64 KB", p.Key+"="+p.Value)
		}
	}
	switch o.Progress {
	case "auto", "bar", "plain", "none":
	default:
		return usageErr("progress %q: want auto, bar, plain or none", o.Progress)
	}
	if o.publishing() && o.Scenario != ScenarioSub && o.Topic != "" && strings.ContainsAny(o.Topic, "+#") {
		return usageErr("--topic %q: publishers need a topic name without wildcards", o.Topic)
	}
	if o.publishing() && strings.HasPrefix(o.Topic, "$share/") {
		return usageErr("--topic %q: publishers need a topic name (the shared scenario adds $share/<group>/ for subscribers)", o.Topic)
	}
	if len(o.Topic) > 65535 || !utf8.ValidString(o.Topic) {
		return usageErr("--topic: want UTF-8 under 64 KB")
	}
	if o.Scenario == ScenarioShared && (o.Group == "" || strings.ContainsAny(o.Group, "/+#")) {
		return usageErr("--group %q: want a name without / + #", o.Group)
	}
	if o.Scenario == ScenarioConn && o.Conns == 0 {
		return usageErr("conn: --count must be > 0")
	}
	if o.Scenario == ScenarioChurn && o.Clients == 0 {
		return usageErr("churn: --clients must be > 0")
	}
	if o.Scenario != ScenarioConn && o.Scenario != ScenarioChurn && o.Pubs+o.Subs == 0 {
		return usageErr("%s: no clients (--pubs/--subs are 0)", o.Scenario)
	}
	return nil
}

// splitList splits a comma-separated list, dropping empty items.
func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// addrFor is the broker address of the client with index i in its role:
// round robin over the role's list.
func (o *Options) addrFor(ro role, i int) string {
	list := o.Addr
	switch {
	case ro == rolePub && o.PubAddr != "":
		list = o.PubAddr
	case ro == roleSub && o.SubAddr != "":
		list = o.SubAddr
	}
	addrs := splitList(list)
	if len(addrs) == 0 {
		return list
	}
	return addrs[i%len(addrs)]
}

// allAddrs lists every broker address the run may use.
func (o *Options) allAddrs() []string {
	var out []string
	for _, l := range []string{o.Addr, o.PubAddr, o.SubAddr} {
		out = append(out, splitList(l)...)
	}
	return out
}

// clientID is the client id of the client with index i in role ro.
func (o *Options) clientID(ro role, i int) string {
	return o.ClientIDPrefix + "-" + string(ro) + strconv.Itoa(i)
}

// expandTopic replaces %i, %c and %u in a topic pattern; %rand is left
// for the caller (per message or per client).
func (o *Options) expandTopic(pattern string, ro role, i int) string {
	if !strings.Contains(pattern, "%") {
		return pattern
	}
	s := strings.ReplaceAll(pattern, "%rand", "\x00")
	s = strings.ReplaceAll(s, "%i", strconv.Itoa(i))
	s = strings.ReplaceAll(s, "%c", o.clientID(ro, i))
	s = strings.ReplaceAll(s, "%u", o.Username)
	return strings.ReplaceAll(s, "\x00", "%rand")
}

// subFilter is the subscription of subscriber i, %rand still in it.
func (o *Options) subFilter(i int) string {
	t := o.expandTopic(o.Topic, roleSub, i)
	if o.Scenario == ScenarioShared {
		g := o.Group
		if o.Groups > 1 {
			g += strconv.Itoa(i % o.Groups)
		}
		t = "$share/" + g + "/" + t
	}
	return t
}

// shareGroup is the group key of a $share filter ("" for a plain one):
// members of one group are counted together (loss, duplicates).
func shareGroup(filter string) string {
	rest, ok := strings.CutPrefix(filter, "$share/")
	if !ok {
		return ""
	}
	g, f, ok := strings.Cut(rest, "/")
	if !ok {
		return ""
	}
	return g + "\x00" + f
}

// runnerFor is the runner (of n) that holds the client with index i in
// role ro. Members of one shared-subscription group stay in one runner,
// so that it can tell a message delivered to two members (a duplicate)
// from two messages.
func (o *Options) runnerFor(ro role, i, n int) int {
	if n <= 1 {
		return 0
	}
	if ro == roleSub {
		if g := shareGroup(o.subFilter(i)); g != "" {
			h := fnv.New32a()
			_, _ = h.Write([]byte(g))
			return int(h.Sum32() % uint32(n))
		}
	}
	return i % n
}

// fanoutFactor is how many deliveries each published message should make,
// or -1 when the run cannot know (sub receives from outside publishers).
func (o *Options) fanoutFactor() int64 {
	switch o.Scenario {
	case ScenarioFanIn, ScenarioFanOut:
		return int64(o.Subs)
	case ScenarioPairs, ScenarioChurn:
		return 1
	case ScenarioShared:
		return int64(min(o.Groups, o.Subs))
	case ScenarioPub:
		return 0
	}
	return -1
}

// publishing reports whether the scenario has publishers.
func (o *Options) publishing() bool {
	return o.Scenario != ScenarioConn && o.Scenario != ScenarioSub
}

// sourceIP is the loopback address a worker with local index w (of this
// machine's Workers) binds to, or nil when a broker is not on loopback or
// there are no workers.
func (o *Options) sourceIP(w int) net.IP {
	if o.Workers == 0 {
		return nil
	}
	for _, a := range o.allAddrs() {
		host, _, err := net.SplitHostPort(a)
		if err != nil {
			return nil
		}
		ip := net.ParseIP(host)
		if host == "localhost" {
			ip = net.IPv4(127, 0, 0, 1)
		}
		if ip == nil || ip.To4() == nil || !ip.IsLoopback() {
			return nil
		}
	}
	return net.IPv4(127, 0, 0, byte(2+w))
}
