package bench

import (
	"crypto/rand"
	"encoding/hex"
	"net"
	"os"
	"strconv"
	"strings"
	"time"
)

// Scenario names, the first argument of `cim bench`.
const (
	ScenarioConn   = "conn"
	ScenarioPub    = "pub"
	ScenarioSub    = "sub"
	ScenarioFanIn  = "fanin"
	ScenarioFanOut = "fanout"
	ScenarioPairs  = "pairs"
)

// Scenarios lists the scenario names in the order the usage text shows them.
var Scenarios = []string{ScenarioConn, ScenarioPub, ScenarioSub, ScenarioFanIn, ScenarioFanOut, ScenarioPairs}

// Options configure one run. The zero value of a field means "default", as
// documented on the field and filled in by EnsureDefaults. Options travel to
// worker processes as JSON.
type Options struct {
	Scenario string `json:"scenario"`
	// Proto selects the protocol (see Register). Default "mqtt".
	Proto string `json:"proto"`
	// Addr is the broker's host:port. Default "127.0.0.1:1883".
	Addr string `json:"addr"`
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
	// Topic is the topic pattern; %i is replaced by the client's index within
	// its role. Default per scenario: pub "bench/%i", sub "bench/#",
	// fanin "bench/fanin", fanout "bench/fanout", pairs "bench/pair/%i".
	Topic string `json:"topic"`
	// Pubs and Subs are the numbers of publishers and subscribers. Defaults:
	// pub 1/0, sub 0/1, fanin 10/1, fanout 1/100 (Pubs is always 1).
	Pubs int `json:"pubs"`
	Subs int `json:"subs"`
	// Pairs is the number of publisher/subscriber pairs (pairs). Default 100.
	Pairs int `json:"pairs"`
	// Conns is the number of connections (conn). Default 1000.
	Conns int `json:"conns"`
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
	Password      string        `json:"password"`
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
	// Workers > 0 runs the clients in that many worker processes.
	Workers int `json:"workers"`
	// WorkerCommand is how to start a worker; the worker recognises itself
	// by its environment (see IsWorker). Default: this executable with the
	// same arguments.
	WorkerCommand []string `json:"-"`
	// BrokerPID, when set, is sampled from /proc for CPU time and RSS.
	BrokerPID int `json:"-"`
	// JSON prints the report as one JSON object instead of a table.
	JSON bool `json:"-"`
	// Chart is a file to write an HTML page with latency and rate charts.
	Chart string `json:"-"`
	// Progress is "auto" (a bar on a terminal, plain lines otherwise),
	// "bar", "plain" or "none". Default "auto".
	Progress string `json:"-"`
	// RunStart is set by Run; messages stamped earlier are stale (left over
	// in a persistent session or retained from another run).
	RunStart int64 `json:"run_start"`
}

// HeaderSize is the smallest payload: send time, publisher id, sequence.
const HeaderSize = 16

// EnsureDefaults fills zero fields with their documented defaults.
func (o *Options) EnsureDefaults() {
	if o.Proto == "" {
		o.Proto = "mqtt"
	}
	if o.Addr == "" {
		o.Addr = "127.0.0.1:1883"
	}
	if o.MQTTVersion == 0 {
		o.MQTTVersion = 4
	}
	if o.Size == 0 {
		o.Size = 64
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
	if o.Progress == "" {
		o.Progress = "auto"
	}
	if o.ClientIDPrefix == "" {
		var b [4]byte
		_, _ = rand.Read(b[:])
		o.ClientIDPrefix = "cb" + hex.EncodeToString(b[:])
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
		if o.Topic == "" {
			o.Topic = "bench/%i"
		}
	case ScenarioSub:
		if o.Subs == 0 {
			o.Subs = 1
		}
		if o.Topic == "" {
			o.Topic = "bench/#"
		}
	case ScenarioFanIn:
		if o.Pubs == 0 {
			o.Pubs = 10
		}
		if o.Subs == 0 {
			o.Subs = 1
		}
		if o.Topic == "" {
			o.Topic = "bench/fanin"
		}
	case ScenarioFanOut:
		o.Pubs = 1
		if o.Subs == 0 {
			o.Subs = 100
		}
		if o.Topic == "" {
			o.Topic = "bench/fanout"
		}
	case ScenarioPairs:
		if o.Pairs == 0 {
			o.Pairs = 100
		}
		o.Pubs, o.Subs = o.Pairs, o.Pairs
		if o.Topic == "" {
			o.Topic = "bench/pair/%i"
		}
	}
	if len(o.WorkerCommand) == 0 {
		if exe, err := os.Executable(); err == nil {
			o.WorkerCommand = append([]string{exe}, os.Args[1:]...)
		}
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
	if _, _, err := net.SplitHostPort(o.Addr); err != nil {
		return usageErr("--addr %q: want host:port", o.Addr)
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
	case o.Rate < 0:
		return usageErr("--rate %g: want >= 0", o.Rate)
	case o.Duration < 0 || o.Warmup < 0 || o.Drain < 0:
		return usageErr("--duration, --warmup and --drain must not be negative")
	case o.Count < 0:
		return usageErr("--count %d: want >= 0", o.Count)
	case o.Pubs < 0 || o.Subs < 0 || o.Pairs < 0 || o.Conns < 0:
		return usageErr("--pubs, --subs, --pairs and --count must not be negative")
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
	}
	switch o.Progress {
	case "auto", "bar", "plain", "none":
	default:
		return usageErr("progress %q: want auto, bar, plain or none", o.Progress)
	}
	if o.Scenario != ScenarioConn && o.Scenario != ScenarioSub && o.Topic != "" && strings.ContainsAny(o.Topic, "+#") {
		return usageErr("--topic %q: publishers need a topic name without wildcards", o.Topic)
	}
	if o.Scenario == ScenarioConn && o.Conns == 0 {
		return usageErr("conn: --count must be > 0")
	}
	if o.Scenario != ScenarioConn && o.Pubs+o.Subs == 0 {
		return usageErr("%s: no clients (--pubs/--subs are 0)", o.Scenario)
	}
	return nil
}

// topicFor expands the topic pattern for the client with index i in its role.
func (o *Options) topicFor(i int) string {
	if !strings.Contains(o.Topic, "%i") {
		return o.Topic
	}
	return strings.ReplaceAll(o.Topic, "%i", strconv.Itoa(i))
}

// fanoutFactor is how many subscribers receive each published message, or
// -1 when the run cannot know (sub receives from outside publishers).
func (o *Options) fanoutFactor() int64 {
	switch o.Scenario {
	case ScenarioFanIn, ScenarioFanOut:
		return int64(o.Subs)
	case ScenarioPairs:
		return 1
	case ScenarioPub:
		return 0
	}
	return -1
}

// publishing reports whether the scenario has publishers.
func (o *Options) publishing() bool {
	return o.Scenario != ScenarioConn && o.Scenario != ScenarioSub
}

// sourceIP is the loopback address worker w binds to, or nil when the broker
// is not on loopback or there are no workers.
func (o *Options) sourceIP(w int) net.IP {
	if o.Workers == 0 {
		return nil
	}
	host, _, err := net.SplitHostPort(o.Addr)
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
	return net.IPv4(127, 0, 0, byte(2+w))
}
