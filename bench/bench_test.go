package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cimgo/cim/broker"
	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"
	"golang.org/x/crypto/bcrypt"
)

// The tests run against live brokers on loopback ports chosen by the OS:
// cim's own broker (package broker) where counts must be exact, and
// mochi-mqtt as a third-party reference. mochi v2.7.9 is not used for QoS > 0
// runs: its Inflight.NextImmediate takes a read lock it already holds
// (inflight.go), which deadlocks against a concurrent delivery, and with it
// the test's cleanup.

func TestMain(m *testing.M) {
	if IsWorker() {
		// The test binary doubles as the worker executable (--workers).
		os.Exit(ServeWorker(context.Background(), os.Stdin, os.Stdout))
	}
	os.Exit(m.Run())
}

// testBroker is a broker running for one test.
type testBroker struct {
	addr string
	// stop shuts the broker down; safe to call twice, and called by the
	// test's cleanup.
	stop  func()
	mochi *mochi.Server // nil for cim
}

// startCim runs cim's broker. passwords, if any, are user -> password.
func startCim(t *testing.T, passwords map[string]string) *testBroker {
	t.Helper()
	opts := broker.Options{
		MQTTAddr: "127.0.0.1:0", Loops: 2, SysInterval: -1,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	if len(passwords) > 0 {
		var b strings.Builder
		for user, pass := range passwords {
			h, err := bcrypt.GenerateFromPassword([]byte(pass), bcrypt.MinCost)
			if err != nil {
				t.Fatal(err)
			}
			b.WriteString(user + ":" + string(h) + "\n")
		}
		opts.PasswordFile = t.TempDir() + "/passwords"
		if err := os.WriteFile(opts.PasswordFile, []byte(b.String()), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	srv, err := broker.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	tb := &testBroker{
		addr: srv.Addr().String(),
		stop: func() {
			once.Do(func() {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				_ = srv.Shutdown(ctx)
			})
		},
	}
	t.Cleanup(tb.stop)
	return tb
}

// startMochi runs mochi-mqtt. ledger nil allows everyone.
func startMochi(t *testing.T, ledger *auth.Ledger) *testBroker {
	t.Helper()
	srv := mochi.New(&mochi.Options{
		InlineClient: false,
		Logger:       slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	var err error
	if ledger == nil {
		err = srv.AddHook(new(auth.AllowHook), nil)
	} else {
		err = srv.AddHook(new(auth.Hook), &auth.Options{Ledger: ledger})
	}
	if err != nil {
		t.Fatal(err)
	}
	l := listeners.NewTCP(listeners.Config{ID: "t", Address: "127.0.0.1:0"})
	if err := srv.AddListener(l); err != nil {
		t.Fatal(err)
	}
	if err := srv.Serve(); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	tb := &testBroker{
		addr: l.Address(),
		stop: func() {
			once.Do(func() {
				// Bounded: a mochi that deadlocked must not hang the suite.
				done := make(chan struct{})
				go func() { _ = srv.Close(); close(done) }()
				select {
				case <-done:
				case <-time.After(5 * time.Second):
					t.Log("mochi Close did not return")
				}
			})
		},
		mochi: srv,
	}
	t.Cleanup(tb.stop)
	return tb
}

// run performs a run with test-friendly defaults and returns the report and
// what was printed on stdout.
func run(t *testing.T, o Options) (*Report, string) {
	t.Helper()
	o.Progress = "none"
	if o.Drain == 0 {
		o.Drain = 2 * time.Second
	}
	if o.ConnectTimeout == 0 {
		o.ConnectTimeout = 2 * time.Second
	}
	if len(o.WorkerCommand) == 0 {
		o.WorkerCommand = []string{os.Args[0], "-test.run=^$"}
	}
	var out, errOut bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rep, err := Run(ctx, o, &out, &errOut)
	if err != nil {
		t.Fatalf("Run: %v\nstderr: %s", err, errOut.String())
	}
	if errOut.Len() > 0 {
		t.Logf("stderr: %s", errOut.String())
	}
	checkNoLeaks(t)
	return rep, out.String()
}

// checkNoLeaks polls until no goroutine of this package's run machinery is
// left (readers, publishers, tickers).
func checkNoLeaks(t *testing.T) {
	t.Helper()
	markers := []string{"bench.(*mqttClient)", "bench.(*nativeClient)", "bench.(*runner)", "bench.(*progress)", "bench.runLoop"}
	var stacks string
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		buf := make([]byte, 1<<20)
		stacks = string(buf[:runtime.Stack(buf, true)])
		leaked := false
		for _, m := range markers {
			leaked = leaked || strings.Contains(stacks, m)
		}
		if !leaked {
			return
		}
		time.Sleep(20 * time.Millisecond) // polling with a deadline
	}
	t.Fatalf("goroutines left after the run:\n%s", stacks)
}

func TestFanInQoS1Exact(t *testing.T) {
	addr := startCim(t, nil).addr
	rep, _ := run(t, Options{Scenario: ScenarioFanIn, Addr: addr, QoS: 1, Pubs: 3, Subs: 2, Count: 300, Size: 32})
	if rep.Sent != 900 || rep.Received != 1800 || rep.Expected != 1800 {
		t.Fatalf("sent %d received %d expected %d, want 900/1800/1800", rep.Sent, rep.Received, rep.Expected)
	}
	if rep.Lost != 0 || rep.Duplicates != 0 {
		t.Fatalf("lost %d duplicates %d, want 0", rep.Lost, rep.Duplicates)
	}
	if rep.Acked != 900 || rep.AckLatency == nil {
		t.Fatalf("acked %d (ack latency %v), want 900", rep.Acked, rep.AckLatency)
	}
	if rep.Latency.Count != 1800 || rep.Latency.P50 <= 0 || rep.Latency.Max < rep.Latency.P99 {
		t.Fatalf("latency %+v", rep.Latency)
	}
	if rep.ExitCode != ExitOK || len(rep.Errors) != 0 {
		t.Fatalf("exit %d errors %v", rep.ExitCode, rep.Errors)
	}
}

func TestPairsQoS2V5(t *testing.T) {
	addr := startCim(t, nil).addr
	rep, _ := run(t, Options{Scenario: ScenarioPairs, Addr: addr, MQTTVersion: 5, QoS: 2, Pairs: 4, Count: 100, Inflight: 10})
	if rep.Sent != 400 || rep.Received != 400 || rep.Lost != 0 || rep.Duplicates != 0 {
		t.Fatalf("sent %d received %d lost %d dups %d", rep.Sent, rep.Received, rep.Lost, rep.Duplicates)
	}
	if rep.ExitCode != ExitOK {
		t.Fatalf("exit %d errors %v", rep.ExitCode, rep.Errors)
	}
}

func TestRatedDurationQoS0(t *testing.T) {
	addr := startMochi(t, nil).addr
	rep, out := run(t, Options{Scenario: ScenarioFanOut, Addr: addr, Subs: 5, Rate: 200, Duration: 500 * time.Millisecond, Warmup: 200 * time.Millisecond})
	// 200/s for 0.2 s warmup + 0.5 s: about 140 messages; pacing is not
	// exact on a busy machine, so only bound it.
	if rep.Sent < 40 || rep.Sent > 180 {
		t.Fatalf("sent %d, want about 140", rep.Sent)
	}
	if rep.SendRate < 50 || rep.SendRate > 400 {
		t.Fatalf("send rate %.0f/s, want about 200/s", rep.SendRate)
	}
	if rep.Received != 5*rep.Sent {
		t.Fatalf("received %d, want 5 × %d (loopback, light load)", rep.Received, rep.Sent)
	}
	for _, want := range []string{"fanout", "received", "latency µs", "p99.9"} {
		if !strings.Contains(out, want) {
			t.Fatalf("text report lacks %q:\n%s", want, out)
		}
	}
}

func TestJSONShape(t *testing.T) {
	addr := startCim(t, nil).addr
	_, out := run(t, Options{Scenario: ScenarioFanIn, Addr: addr, QoS: 1, Pubs: 2, Subs: 1, Count: 50, JSON: true})
	var m map[string]any
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		t.Fatalf("not one JSON object: %v\n%s", err, out)
	}
	for _, k := range []string{"scenario", "proto", "sent", "received", "lost", "duplicates", "rate", "latency", "errors", "connected", "connect_rate"} {
		if _, ok := m[k]; !ok {
			t.Errorf("JSON lacks %q", k)
		}
	}
	lat, _ := m["latency"].(map[string]any)
	for _, k := range []string{"p50_us", "p90_us", "p99_us", "p999_us", "max_us"} {
		if _, ok := lat[k]; !ok {
			t.Errorf("JSON latency lacks %q", k)
		}
	}
	if m["scenario"] != "fanin" || m["proto"] != "mqtt" || m["received"].(float64) != 100 {
		t.Errorf("JSON values: %v", m)
	}
}

func TestConn(t *testing.T) {
	addr := startCim(t, nil).addr
	rep, _ := run(t, Options{Scenario: ScenarioConn, Addr: addr, Conns: 60, ConnRate: 600, Duration: 200 * time.Millisecond, BrokerPID: os.Getpid()})
	if rep.Connected != 60 || rep.ConnectRate <= 0 || rep.ConnectLatency == nil {
		t.Fatalf("connected %d rate %v", rep.Connected, rep.ConnectRate)
	}
	// Paced at 600/s: 60 connections take about 100 ms.
	if rep.ConnectRate > 2000 {
		t.Fatalf("connect rate %v not paced to --conn-rate 600", rep.ConnectRate)
	}
	if rep.Broker == nil || rep.Broker.RSSAfter == 0 {
		t.Fatalf("broker sample: %+v", rep.Broker)
	}
	if rep.ExitCode != ExitOK {
		t.Fatalf("exit %d errors %v", rep.ExitCode, rep.Errors)
	}
}

func TestUnreachable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there now
	rep, out := run(t, Options{Scenario: ScenarioFanIn, Addr: addr, Pubs: 2, Subs: 1, Duration: time.Second})
	if rep.ExitCode != ExitNoConnect || rep.Errors[KindUnreachable] != 3 {
		t.Fatalf("exit %d errors %v, want %d and 3 unreachable\n%s", rep.ExitCode, rep.Errors, ExitNoConnect, out)
	}
}

func TestAuth(t *testing.T) {
	for name, b := range map[string]*testBroker{
		"cim":   startCim(t, map[string]string{"u": "right"}),
		"mochi": startMochi(t, &auth.Ledger{Auth: auth.AuthRules{{Username: "u", Password: "right", Allow: true}}}),
	} {
		for _, v := range []byte{4, 5} {
			rep, _ := run(t, Options{Scenario: ScenarioConn, Addr: b.addr, MQTTVersion: v, Conns: 3, Duration: 10 * time.Millisecond, Username: "u", Password: "wrong"})
			if rep.ExitCode != ExitAuth || rep.Errors[KindAuth] != 3 {
				t.Fatalf("%s v%d: exit %d errors %v, want %d and 3 auth", name, v, rep.ExitCode, rep.Errors, ExitAuth)
			}
		}
		rep, _ := run(t, Options{Scenario: ScenarioConn, Addr: b.addr, Conns: 3, Duration: 10 * time.Millisecond, Username: "u", Password: "right"})
		if rep.ExitCode != ExitOK || rep.Connected != 3 {
			t.Fatalf("%s, right password: exit %d connected %d errors %v", name, rep.ExitCode, rep.Connected, rep.Errors)
		}
	}
}

func TestBrokerDiesMidRun(t *testing.T) {
	for _, v := range []byte{4, 5} {
		b := startCim(t, nil)
		px := startProxy(t, b.addr)
		go func() {
			// Stop the broker once messages flow (50 publishes of 64 B
			// have gone through the proxy).
			deadline := time.Now().Add(10 * time.Second)
			for time.Now().Before(deadline) && px.up.Load() < 50*70 {
				time.Sleep(10 * time.Millisecond) // polling with a deadline
			}
			b.stop()
		}()
		t0 := time.Now()
		rep, _ := run(t, Options{Scenario: ScenarioFanIn, Addr: px.addr, MQTTVersion: v, Pubs: 2, Subs: 1, Rate: 500, Duration: 20 * time.Second})
		if time.Since(t0) > 10*time.Second {
			t.Fatalf("v%d: run took %v after the broker died; want it to end early", v, time.Since(t0))
		}
		t.Logf("v%d after broker death: sent %d received %d errors %v", v, rep.Sent, rep.Received, rep.Errors)
		if rep.ExitCode != ExitErrors || rep.Errors[KindClosed]+rep.Errors[KindDisconnect] == 0 {
			t.Fatalf("v%d: exit %d errors %v, want %d and closed connections", v, rep.ExitCode, rep.Errors, ExitErrors)
		}
	}
}

func TestWorkers(t *testing.T) {
	for _, ip := range []string{"127.0.0.2", "127.0.0.3"} {
		l, err := net.Listen("tcp", ip+":0")
		if err != nil {
			t.Skipf("cannot bind %s: %v", ip, err)
		}
		l.Close()
	}
	rep, _ := run(t, Options{Scenario: ScenarioFanIn, Addr: startCim(t, nil).addr, QoS: 1, Pubs: 3, Subs: 2, Count: 100, Workers: 2})
	if rep.Sent != 300 || rep.Received != 600 || rep.Duplicates != 0 || rep.Workers != 2 {
		t.Fatalf("sent %d received %d dups %d workers %d", rep.Sent, rep.Received, rep.Duplicates, rep.Workers)
	}
	if rep.Latency.Count != 600 {
		t.Fatalf("merged latency count %d, want 600", rep.Latency.Count)
	}
	// Each worker binds its own source address: watch the broker's clients
	// while a conn run holds its connections (mochi lists them).
	m := startMochi(t, nil)
	addr, srv := m.addr, m.mochi
	seen := make(chan map[string]bool, 1)
	go func() {
		hosts := map[string]bool{}
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) && len(hosts) < 2 {
			for _, cl := range srv.Clients.GetAll() {
				host, _, _ := net.SplitHostPort(cl.Net.Remote)
				hosts[host] = true
			}
			time.Sleep(10 * time.Millisecond) // polling with a deadline
		}
		seen <- hosts
	}()
	rep, _ = run(t, Options{Scenario: ScenarioConn, Addr: addr, Conns: 40, Workers: 2, Duration: 2 * time.Second})
	if rep.Connected != 40 || rep.ExitCode != ExitOK {
		t.Fatalf("conn with workers: connected %d exit %d errors %v", rep.Connected, rep.ExitCode, rep.Errors)
	}
	if hosts := <-seen; !hosts["127.0.0.2"] || !hosts["127.0.0.3"] {
		t.Fatalf("source addresses seen by the broker: %v, want 127.0.0.2 and 127.0.0.3", hosts)
	}
}

func TestWorkerSourceAddresses(t *testing.T) {
	o := Options{Addr: "127.0.0.1:1883", Workers: 2}
	if ip := o.sourceIP(0); ip.String() != "127.0.0.2" {
		t.Fatalf("worker 0 binds %v", ip)
	}
	if ip := o.sourceIP(1); ip.String() != "127.0.0.3" {
		t.Fatalf("worker 1 binds %v", ip)
	}
	o.Addr = "10.1.2.3:1883"
	if ip := o.sourceIP(0); ip != nil {
		t.Fatalf("remote broker: worker binds %v, want any", ip)
	}
	o.Addr, o.Workers = "127.0.0.1:1883", 0
	if ip := o.sourceIP(0); ip != nil {
		t.Fatalf("no workers: binds %v", ip)
	}
}

func TestBadOptions(t *testing.T) {
	for name, o := range map[string]Options{
		"no scenario":    {},
		"unknown":        {Scenario: "nope"},
		"qos":            {Scenario: ScenarioFanIn, QoS: 3},
		"small payload":  {Scenario: ScenarioFanIn, Size: 8},
		"version":        {Scenario: ScenarioFanIn, MQTTVersion: 3},
		"proto":          {Scenario: ScenarioFanIn, Proto: "carrier-pigeon"},
		"addr":           {Scenario: ScenarioFanIn, Addr: "nohost"},
		"wildcard topic": {Scenario: ScenarioFanIn, Topic: "a/+"},
	} {
		_, err := Run(context.Background(), o, io.Discard, io.Discard)
		if err == nil || !isUsage(err) {
			t.Errorf("%s: err %v, want ErrUsage", name, err)
		}
	}
}

func isUsage(err error) bool { return err != nil && strings.HasPrefix(err.Error(), ErrUsage.Error()) }

func TestChart(t *testing.T) {
	addr := startMochi(t, nil).addr
	path := t.TempDir() + "/chart.html"
	run(t, Options{Scenario: ScenarioPairs, Addr: addr, Pairs: 2, Rate: 1000, Duration: 1200 * time.Millisecond, Chart: path})
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	for _, want := range []string{"<svg", "Latency histogram", "Rate over time", "<polyline"} {
		if !strings.Contains(s, want) {
			t.Errorf("chart lacks %q", want)
		}
	}
	if strings.Contains(s, "<script") || strings.Contains(s, "http://") && !strings.Contains(s, "http://www.w3.org/2000/svg") {
		t.Errorf("chart is not self-contained")
	}
}

// TestPubAndSub runs the two halves separately: sub listens on bench/#
// until it has 200 messages, pub sends 2 × 100 at QoS 1.
func TestPubAndSub(t *testing.T) {
	b := startCim(t, nil)
	px := startProxy(t, b.addr)
	addr := b.addr
	subDone := make(chan *Report, 1)
	go func() {
		o := Options{Scenario: ScenarioSub, Addr: px.addr, QoS: 1, Count: 200, Duration: 20 * time.Second, Progress: "none", ConnectTimeout: 2 * time.Second}
		rep, err := Run(context.Background(), o, io.Discard, io.Discard)
		if err != nil {
			t.Error(err)
		}
		subDone <- rep
	}()
	waitFor(t, "the subscription", func() bool { return px.subacks.Load() >= 1 })
	pub, _ := run(t, Options{Scenario: ScenarioPub, Addr: addr, QoS: 1, Pubs: 2, Count: 100})
	if pub.Sent != 200 || pub.Acked != 200 || pub.Rate <= 0 || pub.ExitCode != ExitOK {
		t.Fatalf("pub: sent %d acked %d rate %v exit %d errors %v", pub.Sent, pub.Acked, pub.Rate, pub.ExitCode, pub.Errors)
	}
	sub := <-subDone
	if sub == nil {
		t.Fatal("sub run failed")
	}
	if sub.Received != 200 || sub.Lost != 0 || sub.Expected != -1 || sub.Latency.Count != 200 {
		t.Fatalf("sub: received %d lost %d expected %d latency n %d", sub.Received, sub.Lost, sub.Expected, sub.Latency.Count)
	}
	checkNoLeaks(t)
}

func TestPersistentV5(t *testing.T) {
	addr := startCim(t, nil).addr
	rep, _ := run(t, Options{Scenario: ScenarioFanOut, Addr: addr, MQTTVersion: 5, QoS: 1, Subs: 3, Count: 50, Persistent: true})
	if rep.Received != 150 || rep.Duplicates != 0 || rep.ExitCode != ExitOK {
		t.Fatalf("received %d dups %d exit %d errors %v", rep.Received, rep.Duplicates, rep.ExitCode, rep.Errors)
	}
}
