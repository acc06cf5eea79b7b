package cluster

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"
)

const testSecret = "test-secret-0123456789abcdef"

// testLogger is silent unless CLUSTER_TEST_LOG is set.
func testLogger() *slog.Logger {
	if lv := os.Getenv("CLUSTER_TEST_LOG"); lv != "" {
		level := slog.LevelInfo
		if lv == "debug" {
			level = slog.LevelDebug
		}
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// testOptions are loopback options with ephemeral ports and fast timing.
func testOptions(name string) Options {
	return Options{
		NodeName:          name,
		ClusterName:       "test",
		Secret:            testSecret,
		BindAddr:          "127.0.0.1:0",
		PeerAddr:          "127.0.0.1:0",
		MQTTAddr:          "127.0.0.1:1883",
		Timing:            LoopbackTiming(),
		ReconnectInterval: 300 * time.Millisecond,
		JoinRetryMin:      50 * time.Millisecond,
		JoinRetryMax:      300 * time.Millisecond,
		Logger:            testLogger(),
		Link: LinkOptions{
			PingInterval: 200 * time.Millisecond,
			BackoffMin:   20 * time.Millisecond,
			BackoffMax:   200 * time.Millisecond,
		},
	}
}

type node struct {
	*Cluster
	rec *recorder
}

// startNode starts a node with a recorder as every delegate; mod may edit
// the options. It is closed at test cleanup.
func startNode(t testing.TB, name string, mod func(*Options)) *node {
	t.Helper()
	rec := newRecorder()
	o := testOptions(name)
	o.Members, o.Ownership, o.Interest, o.Publish, o.Forwarded, o.Requests = rec, rec, rec, rec, rec, rec
	if mod != nil {
		mod(&o)
	}
	c, err := New(o)
	if err != nil {
		t.Fatalf("New(%s): %v", name, err)
	}
	n := &node{Cluster: c, rec: rec}
	t.Cleanup(func() { c.Close(time.Second) })
	return n
}

// startCluster starts n nodes named n1..nN, each joining n1.
func startCluster(t testing.TB, count int, mod func(*Options)) []*node {
	t.Helper()
	nodes := []*node{startNode(t, "n1", mod)}
	for i := 2; i <= count; i++ {
		nodes = append(nodes, startNode(t, "n"+strconv.Itoa(i), func(o *Options) {
			o.Join = []string{nodes[0].GossipAddr()}
			if mod != nil {
				mod(o)
			}
		}))
	}
	waitConverged(t, nodes, 15*time.Second)
	return nodes
}

// waitFor polls cond every 10ms until it holds or timeout passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// aliveNames lists the alive members n sees.
func aliveNames(c *Cluster) []string {
	var out []string
	for _, m := range c.Members() {
		if m.State == StateAlive {
			out = append(out, m.Name)
		}
	}
	return out
}

func waitConverged(t testing.TB, nodes []*node, timeout time.Duration) {
	t.Helper()
	var want []string
	for _, n := range nodes {
		want = append(want, n.Name())
	}
	sort.Strings(want)
	waitFor(t, timeout, "membership to converge", func() bool {
		for _, n := range nodes {
			if !slices.Equal(aliveNames(n.Cluster), want) {
				return false
			}
		}
		return true
	})
}

// recorder implements every delegate and records what it heard.
type recorder struct {
	mu        sync.Mutex
	joins     []string
	leaves    map[string]State
	takenOver map[string]Owner
	owners    map[string]Owner // from NotifyOwnerChanged
	interest  map[string]map[string]bool
	resets    map[string]int
	pubs      map[string][]*Publish // by sender node
	pubIDs    map[string]map[uint64]int
	acks      map[uint64]int
	ackErrs   map[uint64]error
	handler   func(from string, body []byte, r Reply)
	log       []string
	onPublish func(from string, p *Publish)
}

func newRecorder() *recorder {
	return &recorder{
		leaves: map[string]State{}, takenOver: map[string]Owner{}, owners: map[string]Owner{},
		interest: map[string]map[string]bool{}, resets: map[string]int{},
		pubs: map[string][]*Publish{}, pubIDs: map[string]map[uint64]int{},
		acks: map[uint64]int{}, ackErrs: map[uint64]error{},
	}
}

func (r *recorder) NotifyJoin(m Member) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.joins = append(r.joins, m.Name)
	delete(r.leaves, m.Name)
}
func (r *recorder) NotifyUpdate(Member) {}
func (r *recorder) NotifyLeave(m Member) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.leaves[m.Name] = m.State
}
func (r *recorder) NotifyTakenOver(key string, by Owner) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.takenOver[key] = by
}
func (r *recorder) NotifyOwnerChanged(key string, old, new Owner) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if new.IsZero() {
		delete(r.owners, key)
	} else {
		r.owners[key] = new
	}
}
func (r *recorder) NotifyInterest(node string, live, dead []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.log = append(r.log, fmt.Sprintf("delta %s live=%v dead=%v", node, live, dead))
	s := r.interest[node]
	if s == nil {
		s = map[string]bool{}
		r.interest[node] = s
	}
	for _, f := range live {
		s[f] = true
	}
	for _, f := range dead {
		delete(s, f)
	}
}
func (r *recorder) NotifyInterestReset(node string, filters []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.resets[node]++
	r.log = append(r.log, fmt.Sprintf("reset %s %v", node, filters))
	s := map[string]bool{}
	for _, f := range filters {
		s[f] = true
	}
	r.interest[node] = s
}
func (r *recorder) HandlePublish(from string, p *Publish) {
	r.mu.Lock()
	cp := p.Clone() // p is the reader's (PublishDelegate)
	r.pubs[from] = append(r.pubs[from], &cp)
	m := r.pubIDs[from]
	if m == nil {
		m = map[uint64]int{}
		r.pubIDs[from] = m
	}
	m[p.ID]++
	f := r.onPublish
	r.mu.Unlock()
	if f != nil {
		f(from, p)
	}
}
func (r *recorder) NotifyForwarded(peer string, id uint64, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.acks[id]++
	if err != nil {
		r.ackErrs[id] = err
	}
}
func (r *recorder) HandleRequest(from string, body []byte, rep Reply) {
	r.mu.Lock()
	h := r.handler
	r.mu.Unlock()
	if h != nil {
		h(from, body, rep)
		return
	}
	rep.Respond(append([]byte("echo:"), body...))
}

func (r *recorder) interestOf(node string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for f := range r.interest[node] {
		out = append(out, f)
	}
	sort.Strings(out)
	return out
}

func (r *recorder) count(f func(r *recorder) int) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return f(r)
}
