package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	mqtt3 "github.com/eclipse/paho.mqtt.golang"
)

// Multi-process cluster tests: three `cim server` processes (this test
// binary re-run as the server, see TestMain) on loopback, killed, paused
// and restarted for real.

const procSecret = "process-test-secret-0123456789abcdef"

// procNode is one `cim server` child and what it needs to come back.
type procNode struct {
	t                          *testing.T
	name, dir                  string
	mqtt, native, gossip, peer string
	http                       string // the HTTP API's host:port
	join, secret               string
	extra                      []string // more flags
	cmd                        *exec.Cmd
	exited                     chan struct{}
}

func newProcNode(t *testing.T, name string) *procNode {
	t.Helper()
	// Each node on a loopback address of its own: the ports the kernel
	// hands out for the many outgoing connections on 127.0.0.1 cannot
	// take a port one of them is about to bind.
	ip := fmt.Sprintf("127.0.0.%d", 10+procIPs.Add(1)%240)
	n := &procNode{t: t, name: name, dir: t.TempDir(), mqtt: freeAddrOn(t, ip, false), native: freeAddrOn(t, ip, false),
		gossip: freeAddrOn(t, ip, true), peer: freeAddrOn(t, ip, false), http: freeAddrOn(t, ip, false)}
	t.Cleanup(n.kill)
	return n
}

var procIPs atomic.Int32

// freeAddrOn is a free TCP port on ip (and UDP too, for gossip).
func freeAddrOn(t *testing.T, ip string, udp bool) string {
	t.Helper()
	for range 20 {
		l, err := net.Listen("tcp", ip+":0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		ok := true
		if udp {
			u, err := net.ListenPacket("udp", addr)
			if err != nil {
				ok = false
			} else {
				u.Close()
			}
		}
		l.Close()
		if ok {
			return addr
		}
	}
	t.Fatalf("no free port on %s", ip)
	return ""
}

// start runs the node and waits until its MQTT listener accepts. A node
// restarted on its ports may find one of them still taken for a moment
// (it failed once in a rolling restart: "bind: address already in use",
// the process gone): a start whose process exits before it listens is
// tried again, a few times.
func (n *procNode) start() {
	n.t.Helper()
	for try := 1; ; try++ {
		if n.launch() {
			return
		}
		if try == 5 {
			n.t.Fatalf("%s exited before listening on %s, %d times", n.name, n.mqtt, try)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// launch starts the process and reports whether it listens (false: it
// exited first).
func (n *procNode) launch() bool {
	n.t.Helper()
	level := "error"
	if l := os.Getenv("CIM_TEST_LOG_LEVEL"); l != "" {
		level = l
	}
	args := []string{"--node-name", n.name, "--mqtt-addr", n.mqtt, "--native-addr", n.native, "--http-addr", n.http, "--data-dir", n.dir,
		"--cluster-addr", n.gossip, "--peer-addr", n.peer, "--cluster-timing", "loopback", "--log-level", level}
	if n.join != "" {
		args = append(args, "--join", n.join)
	}
	args = append(args, n.extra...)
	cmd := exec.Command(os.Args[0], args...)
	secret := procSecret
	if n.secret != "" {
		secret = n.secret
	}
	cmd.Env = append(os.Environ(), "CIM_TEST_SERVER=1", clusterSecretEnv+"="+secret)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		n.t.Fatal(err)
	}
	n.cmd, n.exited = cmd, make(chan struct{})
	go func() { _ = cmd.Wait(); close(n.exited) }()
	return waitListening(n.t, n.mqtt, n.exited)
}

// waitListening waits until addr accepts; false if exited closes first.
func waitListening(t *testing.T, addr string, exited <-chan struct{}) bool {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return true
		}
		select {
		case <-exited:
			return false
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("server on %s did not start: %v", addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (n *procNode) signal(s syscall.Signal) {
	n.t.Helper()
	if err := n.cmd.Process.Signal(s); err != nil {
		n.t.Fatalf("%s: %v", n.name, err)
	}
}

// stop ends the node gracefully (SIGTERM) and waits for it.
func (n *procNode) stop() {
	n.t.Helper()
	n.signal(syscall.SIGTERM)
	select {
	case <-n.exited:
	case <-time.After(20 * time.Second):
		n.t.Fatalf("%s did not stop", n.name)
	}
}

// kill ends the node as a crash would (SIGKILL) and waits for it.
func (n *procNode) kill() {
	if n.cmd == nil || n.cmd.Process == nil {
		return
	}
	_ = n.cmd.Process.Signal(syscall.SIGCONT) // a paused one too
	_ = n.cmd.Process.Kill()
	<-n.exited
}

// startProcCluster starts n1, n2, n3, each given every node as a seed (as
// a deployment should: a node restarted with no reachable seed stays
// alone; its own address is skipped).
func startProcCluster(t *testing.T, extra ...[]string) []*procNode {
	nodes := []*procNode{newProcNode(t, "n1"), newProcNode(t, "n2"), newProcNode(t, "n3")}
	seeds := make([]string, len(nodes))
	for i, n := range nodes {
		seeds[i] = n.gossip
	}
	for i, n := range nodes {
		n.join = strings.Join(seeds, ",")
		if i < len(extra) {
			n.extra = extra[i]
		}
		n.start()
	}
	return nodes
}

// collector is a persistent MQTT 3.1.1 subscriber that records what it got.
type collector struct {
	t    *testing.T
	id   string
	mu   sync.Mutex
	got  map[int]int
	cli  mqtt3.Client
	addr string
}

func newCollector(t *testing.T, addr, id, filter string) *collector {
	t.Helper()
	c := &collector{t: t, id: id, got: map[int]int{}, addr: addr}
	c.connect(filter)
	return c
}

func (c *collector) connect(filter string) {
	c.t.Helper()
	o := mqtt3.NewClientOptions().AddBroker("tcp://" + c.addr).SetClientID(c.id).SetCleanSession(false).
		SetAutoReconnect(false).SetConnectRetry(false).SetOrderMatters(false).
		SetDefaultPublishHandler(func(_ mqtt3.Client, m mqtt3.Message) {
			if v, err := strconv.Atoi(strings.TrimPrefix(string(m.Payload()), "m")); err == nil {
				c.mu.Lock()
				c.got[v]++
				c.mu.Unlock()
			}
		})
	c.cli = mqtt3.NewClient(o)
	must(c.t, c.cli.Connect())
	if filter != "" {
		must(c.t, c.cli.Subscribe(filter, 1, nil))
	}
}

func (c *collector) has(v int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.got[v] > 0
}

// missing lists the values of want c has not got.
func (c *collector) missing(want []int) []int {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []int
	for _, v := range want {
		if c.got[v] == 0 {
			out = append(out, v)
		}
	}
	return out
}

// waitAll waits until c has every value of want.
func (c *collector) waitAll(want []int, d time.Duration) {
	c.t.Helper()
	deadline := time.Now().Add(d)
	for {
		m := c.missing(want)
		if len(m) == 0 {
			return
		}
		if time.Now().After(deadline) {
			if len(m) > 20 {
				m = m[:20]
			}
			c.t.Fatalf("%s: %d acknowledged messages never arrived, e.g. %v", c.id, len(c.missing(want)), m)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// probe publishes on topic from pub until c has got a probe: the cluster
// carries messages from pub's node to c's.
func probe(t *testing.T, pub mqtt3.Client, topic string, c *collector, base int) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for i := base; ; i++ {
		must(t, pub.Publish(topic, 1, false, "m"+strconv.Itoa(i)))
		for w := 0; w < 10; w++ {
			if c.has(i) {
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: nothing arrives through the cluster", c.id)
		}
	}
}

// loadPublisher publishes QoS 1 messages m<from>, m<from+1>, ... on topic
// to one node after another (on a failure it moves to the next node and
// sends the unacknowledged message again), recording what was acked.
type loadPublisher struct {
	t     *testing.T
	addrs []string
	topic string

	mu    sync.Mutex
	acked []int
	stop  chan struct{}
	done  chan struct{}
}

func startLoad(t *testing.T, topic string, from int, pace time.Duration, addrs ...string) *loadPublisher {
	p := &loadPublisher{t: t, addrs: addrs, topic: topic, stop: make(chan struct{}), done: make(chan struct{})}
	go p.run(from, pace)
	t.Cleanup(p.halt)
	return p
}

func (p *loadPublisher) run(next int, pace time.Duration) {
	defer close(p.done)
	var cli mqtt3.Client
	at := 0
	for {
		select {
		case <-p.stop:
			if cli != nil {
				cli.Disconnect(50)
			}
			return
		default:
		}
		if cli == nil || !cli.IsConnectionOpen() {
			if cli != nil {
				cli.Disconnect(0)
			}
			o := mqtt3.NewClientOptions().AddBroker("tcp://" + p.addrs[at%len(p.addrs)]).SetClientID("loadpub").
				SetCleanSession(true).SetAutoReconnect(false).SetConnectTimeout(time.Second).SetWriteTimeout(5 * time.Second)
			cli = mqtt3.NewClient(o)
			if tok := cli.Connect(); !tok.WaitTimeout(2*time.Second) || tok.Error() != nil {
				cli = nil
				at++
				time.Sleep(50 * time.Millisecond)
				continue
			}
		}
		tok := cli.Publish(p.topic, 1, false, "m"+strconv.Itoa(next))
		if !tok.WaitTimeout(8*time.Second) || tok.Error() != nil {
			cli.Disconnect(0)
			cli = nil
			at++
			continue // sent again, to the next node: at least once
		}
		p.mu.Lock()
		p.acked = append(p.acked, next)
		p.mu.Unlock()
		next++
		if pace > 0 {
			time.Sleep(pace)
		}
	}
}

func (p *loadPublisher) halt() {
	select {
	case <-p.stop:
	default:
		close(p.stop)
	}
	<-p.done
}

func (p *loadPublisher) ackedSoFar() []int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]int(nil), p.acked...)
}

// waitAcked waits until at least n more messages are acknowledged.
func (p *loadPublisher) waitAcked(n int) {
	p.t.Helper()
	start := len(p.ackedSoFar())
	deadline := time.Now().Add(30 * time.Second)
	for len(p.ackedSoFar()) < start+n {
		if time.Now().After(deadline) {
			p.t.Fatalf("publishing stalled: %d acknowledged, want %d more", len(p.ackedSoFar())-start, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func pubClient(t *testing.T, addr, id string) mqtt3.Client {
	t.Helper()
	c := client(addr, id, true)
	must(t, c.Connect())
	t.Cleanup(func() { c.Disconnect(50) })
	return c
}

// TestClusterProcessesKill9UnderLoad: three processes; a persistent
// subscriber on n3 while n1 takes a stream of QoS 1 publishes; n3 is
// SIGKILLed mid-stream and restarted on its data dir; then n1, the
// publisher's node, is SIGKILLed (the publisher goes on through n2) and
// restarted. The subscriber comes back to n3 and has every message that
// was acknowledged.
func TestClusterProcessesKill9UnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns three broker processes")
	}
	nodes := startProcCluster(t)
	n1, n2, n3 := nodes[0], nodes[1], nodes[2]
	sub := newCollector(t, n3.mqtt, "k9-sub", "load/#")
	probe(t, pubClient(t, n1.mqtt, "k9-probe"), "load/p", sub, 1_000_000)
	sub.cli.Disconnect(50) // away: its messages queue on n3
	load := startLoad(t, "load/x", 0, 0, n1.mqtt, n2.mqtt)
	load.waitAcked(300)

	n3.signal(syscall.SIGKILL)
	<-n3.exited
	load.waitAcked(300) // acknowledged while n3 is dead: parked on n1
	n3.start()
	load.waitAcked(300)
	n1.signal(syscall.SIGKILL) // the publisher's node
	<-n1.exited
	load.waitAcked(300) // through n2 now
	n1.start()
	load.waitAcked(100)
	load.halt()
	acked := load.ackedSoFar()

	sub.connect("")
	sub.waitAll(acked, 30*time.Second)
	t.Logf("%d acknowledged messages, all delivered across SIGKILLs of the subscriber's and the publisher's nodes", len(acked))
}

// TestClusterProcessesRollingRestart: every node restarted in turn
// (SIGTERM, start again) under a stream of QoS 1 publishes; persistent
// subscribers on each node, connected through it all (they reconnect to
// their node when it is back), get every acknowledged message.
func TestClusterProcessesRollingRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns three broker processes")
	}
	nodes := startProcCluster(t)
	var subs []*collector
	for i, n := range nodes {
		subs = append(subs, newCollector(t, n.mqtt, fmt.Sprintf("roll-sub-%d", i+1), "roll/#"))
	}
	pub := pubClient(t, nodes[0].mqtt, "roll-probe")
	for i, s := range subs {
		probe(t, pub, "roll/p", s, 1_000_000+i*1000)
	}
	pub.Disconnect(50)
	load := startLoad(t, "roll/x", 0, time.Millisecond, nodes[0].mqtt, nodes[1].mqtt, nodes[2].mqtt)
	load.waitAcked(100)
	for i, n := range nodes {
		subs[i].cli.Disconnect(0)
		n.stop()
		load.waitAcked(50) // acknowledged while the node is away
		n.start()
		subs[i].connect("")
		load.waitAcked(50)
	}
	load.halt()
	acked := load.ackedSoFar()
	for _, s := range subs {
		s.waitAll(acked, 30*time.Second)
	}
	t.Logf("%d acknowledged messages, all delivered to 3 persistent subscribers across a rolling restart", len(acked))
}

// TestClusterProcessesPausedNodeRejoins: a node stopped with SIGSTOP past
// the suspicion timeout is declared dead; resumed, it rejoins, and what
// was published for its persistent subscriber meanwhile arrives.
func TestClusterProcessesPausedNodeRejoins(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns three broker processes")
	}
	nodes := startProcCluster(t)
	n1, n2 := nodes[0], nodes[1]
	sub := newCollector(t, n2.mqtt, "pause-sub", "pause/#")
	pub := pubClient(t, n1.mqtt, "pause-pub")
	probe(t, pub, "pause/p", sub, 1_000_000)

	n2.signal(syscall.SIGSTOP)
	var acked []int
	for i := range 50 { // the first ones wait until n2 is declared dead, then are parked
		tok := pub.Publish("pause/x", 1, false, "m"+strconv.Itoa(i))
		if !tok.WaitTimeout(20*time.Second) || tok.Error() != nil {
			t.Fatalf("publish %d while n2 is paused: %v", i, tok.Error())
		}
		acked = append(acked, i)
	}
	// The first publish was acknowledged only once n2 was declared dead
	// (then parked): it has been paused past the suspicion timeout.
	n2.signal(syscall.SIGCONT)
	for i := 50; i < 100; i++ {
		must(t, pub.Publish("pause/x", 1, false, "m"+strconv.Itoa(i)))
		acked = append(acked, i)
	}
	if !sub.cli.IsConnectionOpen() { // it may have timed out meanwhile
		sub.connect("")
	}
	sub.waitAll(acked, 30*time.Second)
	probe(t, pub, "pause/p", sub, 2_000_000) // and the cluster carries new messages again
}

// The cluster keys: a clustered node needs the secret (flag, key or
// environment), long enough; bad values name their key; the secret is
// never printed, not even at debug level.
func TestClusterConfig(t *testing.T) {
	t.Setenv(clusterSecretEnv, "")
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--cluster-addr", "127.0.0.1:0"}, "cluster_secret: required"},
		{[]string{"--join", "127.0.0.1:7946", "--cluster-secret", "short"}, "--cluster-secret (cluster_secret): too short"},
		{[]string{"--cluster-pick", "nearest"}, "--cluster-pick (cluster_pick): want hash, roundrobin or random"},
		{[]string{"--cluster-timing", "wan"}, "--cluster-timing (cluster_timing): want lan or loopback"},
		{[]string{"--cluster-advertise", "0.0.0.0:7946"}, "(cluster_advertise): want ip:port with a concrete IP"},
		{[]string{"--cluster-name", "two words"}, "(cluster_name): want 1 to 64 letters"},
	} {
		code, out := serverRun(t, append(c.args, "--memory")...)
		if code != 2 || !strings.Contains(out, c.want) {
			t.Errorf("%v: exit %d, want 2 and %q: %s", c.args, code, c.want, out)
		}
	}
	t.Setenv(clusterSecretEnv, "short")
	if code, out := serverRun(t, "--memory", "--peer-addr", "127.0.0.1:0"); code != 2 || !strings.Contains(out, "too short") {
		t.Errorf("short secret from the environment: exit %d: %s", code, out)
	}

	// A real start and stop, at debug level: the secret appears nowhere.
	secret := "a-secret-that-must-never-be-logged-0123"
	t.Setenv(clusterSecretEnv, secret)
	code, out := serverRun(t, "--memory", "--mqtt-addr", "127.0.0.1:0", "--native-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0",
		"--cluster-addr", "127.0.0.1:0", "--peer-addr", "127.0.0.1:0", "--log-level", "debug")
	if code != 0 {
		t.Fatalf("clustered start: exit %d: %s", code, out)
	}
	if !strings.Contains(out, "cluster started") {
		t.Fatalf("no cluster in the log: %s", out)
	}
	if strings.Contains(out, secret) {
		t.Fatalf("the secret is in the output: %s", out)
	}
}

// TestClusterProcessesWrongSecret: a process with another secret never
// becomes a member: a subscriber on it gets nothing published on n1, and
// it gets nothing from n1's cluster either way.
func TestClusterProcessesWrongSecret(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns broker processes")
	}
	nodes := startProcCluster(t)[:2]
	sub := newCollector(t, nodes[1].mqtt, "ok-sub", "s/#")
	pub := pubClient(t, nodes[0].mqtt, "ws-pub")
	probe(t, pub, "s/p", sub, 1_000_000) // the real cluster works
	bad := newProcNode(t, "intruder")
	bad.join = nodes[0].gossip
	bad.secret = "a-different-secret-0123456789abcdef"
	bad.start()
	intr := newCollector(t, bad.mqtt, "bad-sub", "s/#")
	for i := range 30 {
		must(t, pub.Publish("s/x", 1, false, "m"+strconv.Itoa(i)))
		time.Sleep(20 * time.Millisecond) // spread over several join attempts of the intruder
	}
	sub.waitAll([]int{29}, 10*time.Second)
	intr.mu.Lock()
	defer intr.mu.Unlock()
	if len(intr.got) != 0 {
		t.Fatalf("a node with another secret got %d messages", len(intr.got))
	}
}
