package broker

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cimgo/cim/cluster"
	"github.com/cimgo/cim/storage"
	"github.com/cockroachdb/pebble/vfs"
)

const clusterTestSecret = "cluster-test-secret-0123456789"

// cnode is one node of an in-process test cluster.
type cnode struct {
	t    testing.TB
	name string
	srv  *Server
	db   *storage.DB
	fs   vfs.FS
	opts Options
	co   ClusterOptions

	mu      sync.Mutex
	stopped bool
}

func clusterTestLogger() *slog.Logger {
	if os.Getenv("CIM_TEST_DEBUG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	if os.Getenv("CIM_TEST_CLUSTER_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// testClusterOptions are loopback options with fast timing; join lists
// seeds.
func testClusterOptions(join ...string) ClusterOptions {
	return ClusterOptions{Cluster: cluster.Options{
		ClusterName:       "test",
		Secret:            clusterTestSecret,
		BindAddr:          "127.0.0.1:0",
		PeerAddr:          "127.0.0.1:0",
		Join:              join,
		Timing:            cluster.LoopbackTiming(),
		ReconnectInterval: 300 * time.Millisecond,
		JoinRetryMin:      50 * time.Millisecond,
		JoinRetryMax:      300 * time.Millisecond,
		Link: cluster.LinkOptions{
			PingInterval: 200 * time.Millisecond,
			BackoffMin:   20 * time.Millisecond,
			BackoffMax:   200 * time.Millisecond,
		},
	}}
}

// newCNode builds (and starts) a node with its own in-memory store, which
// outlives a stop of the node (restart keeps its data).
func newCNode(t testing.TB, name string, fs vfs.FS, mod func(*Options, *ClusterOptions), join ...string) *cnode {
	t.Helper()
	if fs == nil {
		fs = vfs.NewMem()
	}
	n := &cnode{t: t, name: name, fs: fs}
	n.opts = Options{NodeName: name, MQTTAddr: "127.0.0.1:0", NativeAddr: "127.0.0.1:0", SysInterval: -1,
		Logger: clusterTestLogger(), Loops: 2}
	n.co = testClusterOptions(join...)
	if mod != nil {
		mod(&n.opts, &n.co)
	}
	n.start()
	t.Cleanup(n.stop)
	return n
}

func (n *cnode) start() {
	n.t.Helper()
	db, err := storage.Open("data", storage.Options{FS: n.fs, SweepInterval: -1, Logger: n.opts.Logger})
	if err != nil {
		n.t.Fatal(err)
	}
	n.db = db
	o := n.opts
	o.Store = db
	s, err := New(o)
	if err != nil {
		n.t.Fatal(err)
	}
	if err := s.StartCluster(n.co); err != nil {
		n.t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		n.t.Fatal(err)
	}
	n.mu.Lock()
	n.srv, n.stopped = s, false
	n.mu.Unlock()
}

// stop shuts the node down gracefully (leave announced): clients are
// closed, then the peer links drain, then the store closes.
func (n *cnode) stop() {
	n.mu.Lock()
	if n.stopped || n.srv == nil {
		n.mu.Unlock()
		return
	}
	n.stopped = true
	s := n.srv
	n.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		n.t.Errorf("%s shutdown: %v", n.name, err)
	}
	if err := s.LeaveCluster(2 * time.Second); err != nil {
		n.t.Logf("%s leave: %v", n.name, err)
	}
	if err := n.db.Close(); err != nil {
		n.t.Errorf("%s store close: %v", n.name, err)
	}
}

func (n *cnode) cn() *clusterNode { return n.srv.clusterNode() }

func (n *cnode) gossip() string { return n.cn().c.GossipAddr() }

func (n *cnode) nativeAddr() string { return n.srv.ListenerAddr(ProtocolNative).String() }

// startTestCluster starts count nodes n1..n<count>, all joining n1, and
// waits until every node sees every other alive with a peer link up.
func startTestCluster(t testing.TB, count int, mod func(*Options, *ClusterOptions)) []*cnode {
	t.Helper()
	nodes := []*cnode{newCNode(t, "n1", nil, mod)}
	for i := 2; i <= count; i++ {
		nodes = append(nodes, newCNode(t, fmt.Sprintf("n%d", i), nil, mod, nodes[0].gossip()))
	}
	waitClusterUp(t, nodes)
	return nodes
}

// waitClusterUp waits until every node sees every other node alive with
// a connected peer link.
func waitClusterUp(t testing.TB, nodes []*cnode) {
	t.Helper()
	waitFor15(t, "cluster membership and links", func() bool {
		for _, a := range nodes {
			for _, b := range nodes {
				if a == b {
					continue
				}
				m, ok := a.cn().c.Member(b.name)
				if !ok || m.State != cluster.StateAlive {
					return false
				}
				if _, up := a.cn().linkUp(b.name); !up {
					return false
				}
			}
		}
		return true
	})
}

// waitFor15 is waitFor with a deadline that suits gossip on a busy machine.
func waitFor15(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// seesInterest reports whether n knows that node holds filter.
func (n *cnode) seesInterest(node, filter string) bool {
	t := &n.cn().interest
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.byNode[node][filter]
}

// waitInterest waits until every node in nodes knows node holds filter.
func waitInterest(t testing.TB, nodes []*cnode, node, filter string) {
	t.Helper()
	waitFor15(t, node+" holding "+filter, func() bool {
		for _, n := range nodes {
			if n.name != node && !n.seesInterest(node, filter) {
				return false
			}
		}
		return true
	})
}

// ackedStream sends messages 0, 1, 2, ... one at a time until stopped,
// counting those acknowledged; send says whether message i was.
type ackedStream struct {
	t     testing.TB
	acked atomic.Int64 // messages 0..acked-1 are acknowledged
	stop  chan struct{}
	done  chan error
}

func startAckedStream(t testing.TB, send func(i int) error) *ackedStream {
	s := &ackedStream{t: t, stop: make(chan struct{}), done: make(chan error, 1)}
	go func() {
		for i := 0; ; i++ {
			select {
			case <-s.stop:
				s.done <- nil
				return
			default:
			}
			if err := send(i); err != nil {
				s.done <- fmt.Errorf("message %d: %w", i, err)
				return
			}
			s.acked.Add(1)
		}
	}()
	return s
}

// waitMore waits for n more acknowledgements.
func (s *ackedStream) waitMore(n int64) {
	s.t.Helper()
	want := s.acked.Load() + n
	deadline := time.Now().Add(e2eWait)
	for s.acked.Load() < want {
		if time.Now().After(deadline) {
			s.t.Fatalf("%d of %d messages acknowledged", s.acked.Load(), want)
		}
		time.Sleep(time.Millisecond)
	}
}

// end stops the stream and returns how many messages were acknowledged.
func (s *ackedStream) end() int {
	s.t.Helper()
	close(s.stop)
	if err := <-s.done; err != nil {
		s.t.Fatal(err)
	}
	return int(s.acked.Load())
}

// expectEvery fails unless each of the messages 0..total-1 (body: its
// number) is among what the closed connections' channels hold, or comes on
// last within e2eWait. Duplicates are allowed (QoS 1).
func expectEvery[M any](t testing.TB, total int, body func(M) []byte, closed []chan M, last chan M) {
	t.Helper()
	got := make([]bool, total)
	left := total
	take := func(m M) {
		if i, err := strconv.Atoi(string(body(m))); err == nil && i < total && !got[i] {
			got[i] = true
			left--
		}
	}
	for _, c := range closed {
		for drained := false; !drained; {
			select {
			case m := <-c:
				take(m)
			default:
				drained = true
			}
		}
	}
	deadline := time.After(e2eWait)
	for left > 0 {
		select {
		case m := <-last:
			take(m)
		case <-deadline:
			var lost []int
			for i, ok := range got {
				if !ok {
					lost = append(lost, i)
				}
			}
			t.Fatalf("%d of %d acknowledged messages lost: %v", len(lost), total, lost)
		}
	}
}

// leaveSubscribed leaves client id a persistent session (expiry seconds)
// on node n, subscribed to filter at QoS 1, once every node knows n's
// interest in it; the client disconnects.
func leaveSubscribed(t testing.TB, nodes []*cnode, n *cnode, id, filter string, expiry uint32) {
	t.Helper()
	c := connectV5(t, n.srv, id, persistent(expiry))
	c.subscribe(filter, 1)
	waitInterest(t, nodes, n.name, filter)
	c.disconnect()
}
