package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestIntendedLatencyUnderStall shows coordinated omission: the
// publishers' path to the broker stops reading for 400 ms in the middle of
// a --rate run. Latency from the socket write hides the stall (a
// publisher blocked on its in-flight window writes late, and its late
// messages look fast); latency from the intended send time does not.
func TestIntendedLatencyUnderStall(t *testing.T) {
	b := startCim(t, nil)
	px := startProxy(t, b.addr)
	const stall = 400 * time.Millisecond
	go func() {
		// Once the run is well under way (~300 messages through), stall.
		deadline := time.Now().Add(10 * time.Second)
		for px.up.Load() < 300*60 && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond) // polling with a deadline
		}
		px.paused.Store(true)
		time.Sleep(stall) // the stall's length, not synchronisation
		px.paused.Store(false)
	}()
	rep, out := run(t, Options{
		Scenario: ScenarioFanIn, Addr: b.addr, PubAddr: px.addr, Pubs: 1, Subs: 1,
		QoS: 1, Inflight: 2, Rate: 500, Duration: 2 * time.Second,
	})
	if rep.Lost != 0 || rep.Received != rep.Sent {
		t.Fatalf("lost %d, sent %d received %d", rep.Lost, rep.Sent, rep.Received)
	}
	co := rep.LatencyIntended
	if co == nil {
		t.Fatalf("no intended-time latency under --rate:\n%s", out)
	}
	t.Logf("write-time %+v\nintended %+v", rep.Latency, *co)
	// ~200 of ~1000 messages were due during the stall and wait up to
	// 400 ms each: the intended-time p90 sees them, the write-time p90
	// sees only the 2 that were in flight.
	if co.P90 < int64(stall/time.Microsecond)/3 {
		t.Errorf("intended-time p90 %d µs, want > %d µs (the stall)", co.P90, stall.Microseconds()/3)
	}
	if rep.Latency.P90*3 > co.P90 {
		t.Errorf("write-time p90 %d µs not well below the intended-time p90 %d µs", rep.Latency.P90, co.P90)
	}
	if co.Max < rep.Latency.Max {
		t.Errorf("intended max %d < write-time max %d", co.Max, rep.Latency.Max)
	}
	if !strings.Contains(out, "intended µs") {
		t.Errorf("text report lacks the intended-time row:\n%s", out)
	}
}

func TestPerClientSpread(t *testing.T) {
	addr := startCim(t, nil).addr
	rep, out := run(t, Options{Scenario: ScenarioFanOut, Addr: addr, QoS: 1, Subs: 3, Count: 300, JSON: true})
	var m map[string]any
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		t.Fatal(err)
	}
	ps, ok := m["per_subscriber"].(map[string]any)
	if !ok {
		t.Fatalf("JSON lacks per_subscriber: %s", out)
	}
	for _, k := range []string{"clients", "msgs_per_s", "p99_us", "slowest", "worst_p99"} {
		if _, ok := ps[k]; !ok {
			t.Errorf("per_subscriber lacks %q", k)
		}
	}
	s := rep.PerSubscriber
	if s.Clients != 3 || s.Rate.Min <= 0 || s.Rate.Min > s.Rate.Median || s.Rate.Median > s.Rate.Max || s.P99 == nil || s.P99.Min <= 0 {
		t.Fatalf("per subscriber %+v", s)
	}
	if !strings.HasPrefix(s.Slowest, rep.clientPrefix()+"-s") || s.SlowestRate != s.Rate.Min {
		t.Fatalf("slowest %q at %v, min %v", s.Slowest, s.SlowestRate, s.Rate.Min)
	}
	// Every subscriber got all 300 in the same window: no spread in rate.
	if s.Rate.Stddev > s.Rate.Median/100 {
		t.Errorf("rate stddev %v for equal subscribers", s.Rate.Stddev)
	}
	if rep.PerPublisher == nil || rep.PerPublisher.Clients != 1 {
		t.Fatalf("per publisher %+v", rep.PerPublisher)
	}
}

// clientPrefix is the client id prefix the run used (from a spread).
func (r *Report) clientPrefix() string {
	if r.PerSubscriber == nil {
		return ""
	}
	p, _, _ := strings.Cut(r.PerSubscriber.Slowest, "-")
	return p
}

func TestSharedScenarioExact(t *testing.T) {
	addr := startCim(t, nil).addr
	rep, out := run(t, Options{Scenario: ScenarioShared, Addr: addr, QoS: 1, Subs: 4, Count: 400})
	if rep.Sent != 400 || rep.Expected != 400 || rep.Received != 400 || rep.Lost != 0 || rep.Duplicates != 0 {
		t.Fatalf("sent %d expected %d received %d lost %d dups %d\n%s", rep.Sent, rep.Expected, rep.Received, rep.Lost, rep.Duplicates, out)
	}
	if s := rep.PerSubscriber; s == nil || s.Clients != 4 || s.Rate.Max <= 0 {
		t.Fatalf("per member %+v", s)
	}
	rep, _ = run(t, Options{Scenario: ScenarioShared, Addr: addr, QoS: 1, Subs: 4, Groups: 2, Count: 200})
	if rep.Expected != 400 || rep.Received != 400 || rep.Lost != 0 || rep.Groups != 2 {
		t.Fatalf("2 groups: expected %d received %d lost %d groups %d", rep.Expected, rep.Received, rep.Lost, rep.Groups)
	}
}

// TestSubSharedNoFalseLoss: a sub run on a $share filter counts loss over
// the group. Each member sees gaps (the others' share); counted per member
// they used to be reported as loss.
func TestSubSharedNoFalseLoss(t *testing.T) {
	b := startCim(t, nil)
	px := startProxy(t, b.addr)
	subDone := make(chan *Report, 1)
	go func() {
		o := Options{Scenario: ScenarioSub, Addr: px.addr, QoS: 1, Subs: 3, Topic: "$share/g/bench/#", Count: 300,
			Duration: 20 * time.Second, Progress: "none", ConnectTimeout: 2 * time.Second}
		rep, err := Run(context.Background(), o, io.Discard, io.Discard)
		if err != nil {
			t.Error(err)
		}
		subDone <- rep
	}()
	waitFor(t, "3 subscriptions", func() bool { return px.subacks.Load() >= 3 })
	run(t, Options{Scenario: ScenarioPub, Addr: b.addr, QoS: 1, Pubs: 1, Count: 300})
	sub := <-subDone
	if sub == nil {
		t.Fatal("sub run failed")
	}
	if sub.Received != 300 || sub.Lost != 0 || sub.Duplicates != 0 {
		t.Fatalf("sub on $share: received %d lost %d dups %d, want 300/0/0", sub.Received, sub.Lost, sub.Duplicates)
	}
	checkNoLeaks(t)
}

// TestGroupDuplicate: a message delivered to two members of one group is
// a duplicate of the group, found even though each member saw it once.
func TestGroupDuplicate(t *testing.T) {
	o := Options{Scenario: ScenarioShared, Subs: 2, RunStart: 1}
	o.EnsureDefaults()
	r, err := newRunner(&o, 0, 1, 0, func(*event) {})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.subs) != 2 || r.subs[0].grp == nil || r.subs[0].grp != r.subs[1].grp {
		t.Fatal("members of one group do not share its tracker")
	}
	r.measureFrom.Store(0)
	r.startNS.Store(1)
	p := make([]byte, HeaderSize)
	now := time.Now().UnixNano()
	deliver := func(c *client, seq uint32) {
		putHeader(p, 0, seq)
		p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7] = byte(now>>56), byte(now>>48), byte(now>>40), byte(now>>32), byte(now>>24), byte(now>>16), byte(now>>8), byte(now)
		c.OnMessage(p, now)
	}
	a, b := r.subs[0], r.subs[1]
	deliver(a, 0)
	deliver(b, 1)
	deliver(a, 2)
	deliver(b, 2) // the broker gave seq 2 to both members
	deliver(b, 3)
	if got := a.dups.Load() + b.dups.Load(); got != 1 {
		t.Fatalf("duplicates %d, want 1", got)
	}
	if got := a.recvAll.Load() + b.recvAll.Load(); got != 4 {
		t.Fatalf("received %d, want 4", got)
	}
	res := r.Result()
	if res.Gaps != 0 || res.OutOfOrder != 0 {
		t.Fatalf("gaps %d out of order %d, want 0 (members' gaps are the others' share)", res.Gaps, res.OutOfOrder)
	}
}

// TestAddrLists: --addr a,b spreads clients round robin; --pub-addr and
// --sub-addr replace --addr for their role.
func TestAddrLists(t *testing.T) {
	a, b := startCim(t, nil), startCim(t, nil)
	pa, pb := startProxy(t, a.addr), startProxy(t, b.addr)
	rep, _ := run(t, Options{Scenario: ScenarioPairs, Addr: pa.addr + "," + pb.addr, Pairs: 4, QoS: 1, Count: 50})
	if rep.Received != 200 || rep.Lost != 0 {
		t.Fatalf("pairs over two brokers: received %d lost %d", rep.Received, rep.Lost)
	}
	if pa.up.Load() == 0 || pb.up.Load() == 0 {
		t.Fatalf("bytes to the brokers: %d and %d, want both used", pa.up.Load(), pb.up.Load())
	}
	dead := deadAddr(t)
	rep, _ = run(t, Options{Scenario: ScenarioFanIn, Addr: dead, PubAddr: a.addr, SubAddr: a.addr, Pubs: 2, Subs: 1, QoS: 1, Count: 50})
	if rep.Received != 100 || rep.ExitCode != ExitOK {
		t.Fatalf("--pub-addr/--sub-addr: received %d exit %d errors %v", rep.Received, rep.ExitCode, rep.Errors)
	}
}

func deadAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

func TestTopicVariables(t *testing.T) {
	o := Options{Scenario: ScenarioPub, Username: "bob", ClientIDPrefix: "cb1", RandMax: 10}
	if got := o.expandTopic("t/%i/%c/%u/%rand", rolePub, 7); got != "t/7/cb1-p7/bob/%rand" {
		t.Fatalf("expandTopic = %q", got)
	}
	g := newTopicGen("r/%rand/x", 10)
	seen := map[string]bool{}
	for i := 0; i < 200; i++ {
		tp := g.next()
		n, err := strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(tp, "r/"), "/x"))
		if err != nil || n < 0 || n >= 10 {
			t.Fatalf("topic %q", tp)
		}
		seen[tp] = true
	}
	if len(seen) < 5 {
		t.Fatalf("%%rand drew only %d distinct topics in 200", len(seen))
	}
	if got := randFilter("a/%rand/b", 10); got != "a/+/b" {
		t.Fatalf("a whole-level %%rand subscribes as +: %q", got)
	}
	if got := randFilter("a/x%rand", 10); !strings.HasPrefix(got, "a/x") || strings.Contains(got, "%") || got == "a/x" {
		t.Fatalf("%%rand inside a level: %q", got)
	}
	// End to end: publishers draw a topic per message, the subscriber
	// hears them all through +.
	addr := startCim(t, nil).addr
	rep, _ := run(t, Options{Scenario: ScenarioFanIn, Addr: addr, Pubs: 2, Subs: 1, QoS: 1, Count: 100,
		Topic: "bench/%u/%rand", Username: "u", RandMax: 50})
	if rep.Received != 200 || rep.Lost != 0 {
		t.Fatalf("fanin on bench/%%u/%%rand: received %d lost %d errors %v", rep.Received, rep.Lost, rep.Errors)
	}
}

// TestRetainPayloadUserProps: the retain flag reaches the broker (a later
// subscriber gets the message, as stale: it is from an earlier run), the
// payload file's bytes follow the header, and MQTT 5 user properties are
// accepted.
func TestRetainPayloadUserProps(t *testing.T) {
	b := startCim(t, nil)
	body := []byte(`{"temp":21.5}`)
	rep, _ := run(t, Options{Scenario: ScenarioFanIn, Addr: b.addr, MQTTVersion: 5, Pubs: 1, Subs: 1, QoS: 1, Count: 20,
		Retain: true, Payload: body, UserProperties: []UserProperty{{"k", "v"}}, Topic: "bench/retained"})
	if rep.Received != 20 || rep.Size != HeaderSize+len(body) || rep.ExitCode != ExitOK {
		t.Fatalf("received %d size %d exit %d errors %v", rep.Received, rep.Size, rep.ExitCode, rep.Errors)
	}
	sub, _ := run(t, Options{Scenario: ScenarioSub, Addr: b.addr, Subs: 1, Topic: "bench/retained", Count: 1, Duration: 5 * time.Second})
	if sub.Stale != 1 {
		t.Fatalf("a later subscriber saw %d stale (retained) messages, want 1", sub.Stale)
	}
	got := appendPublishProps(nil, 5, "t", []byte{0xAA}, 0, 0, true, []byte{0x26, 0, 1, 'k', 0, 1, 'v'})
	want := []byte{
		0x31,            // PUBLISH, QoS 0, retain
		0x0C,            // remaining length: 3 topic, 1+7 props, 1 payload
		0x00, 0x01, 't', // topic name
		0x07,                       // property length
		0x26, 0, 1, 'k', 0, 1, 'v', // user property k=v
		0xAA, // payload
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("PUBLISH with retain and a user property:\n got % x\nwant % x", got, want)
	}
}

// TestPasswordNotOnWorkerCommandLine: a worker's command line and
// environment, readable by other users in /proc, never hold the password.
func TestPasswordNotOnWorkerCommandLine(t *testing.T) {
	const secret = "s3cret-on-stdin-only"
	b := startCim(t, map[string]string{"u": secret})
	found := make(chan []string, 1)
	stopScan := make(chan struct{})
	go func() {
		var leaks []string
		seen := 0
		for {
			select {
			case <-stopScan:
				found <- append(leaks, strconv.Itoa(seen))
				return
			default:
			}
			for _, pid := range childPIDs() {
				seen++
				for _, f := range []string{"cmdline", "environ"} {
					data, _ := os.ReadFile("/proc/" + pid + "/" + f)
					if bytes.Contains(data, []byte(secret)) {
						leaks = append(leaks, pid+"/"+f)
					}
				}
			}
			time.Sleep(5 * time.Millisecond) // polling
		}
	}()
	rep, _ := run(t, Options{Scenario: ScenarioConn, Addr: b.addr, Conns: 4, Workers: 1, Duration: 500 * time.Millisecond, Username: "u", Password: secret})
	close(stopScan)
	res := <-found
	if rep.Connected != 4 || rep.ExitCode != ExitOK {
		t.Fatalf("connected %d exit %d errors %v", rep.Connected, rep.ExitCode, rep.Errors)
	}
	if res[len(res)-1] == "0" {
		t.Fatal("never saw the worker process")
	}
	if leaks := res[:len(res)-1]; len(leaks) > 0 {
		t.Fatalf("password visible in %v", leaks)
	}
}

// childPIDs lists the processes whose parent is this one.
func childPIDs() []string {
	ents, _ := os.ReadDir("/proc")
	me := strconv.Itoa(os.Getpid())
	var out []string
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		st, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		i := bytes.LastIndexByte(st, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(st[i+1:]))
		if len(f) > 1 && f[1] == me {
			out = append(out, e.Name())
		}
	}
	return out
}

func TestChurn(t *testing.T) {
	addr := startCim(t, nil).addr
	rep, out := run(t, Options{Scenario: ScenarioChurn, Addr: addr, Clients: 3, Count: 5, QoS: 1})
	if rep.Connected != 15 || rep.Sent != 15 || rep.Received != 15 || rep.Lost != 0 || rep.ExitCode != ExitOK {
		t.Fatalf("cycles %d sent %d received %d lost %d exit %d errors %v\n%s", rep.Connected, rep.Sent, rep.Received, rep.Lost, rep.ExitCode, rep.Errors, out)
	}
	if rep.SessionPresent != 0 {
		t.Fatalf("clean sessions: %d found their session", rep.SessionPresent)
	}
	if !strings.Contains(out, "cycles") || rep.ConnectLatency == nil || rep.ConnectLatency.Count != 15 {
		t.Fatalf("report:\n%s", out)
	}
	// Persistent: every connect after a client's first resumes its session,
	// which kept the subscription (the cycle does not subscribe again).
	rep, _ = run(t, Options{Scenario: ScenarioChurn, Addr: addr, MQTTVersion: 5, Clients: 3, Count: 4, QoS: 1, Persistent: true})
	// (QoS 1 is at least once: a reconnect that overtakes the previous
	// connection's last PUBACK on the broker — the two sockets are served
	// by different event loops — gets that message again, so each resumed
	// cycle may see one duplicate; on a loaded machine many do. It is
	// counted as a duplicate, never as received twice.)
	if rep.Connected != 12 || rep.SessionPresent != 9 || rep.Received != 12 || rep.Lost != 0 || rep.Duplicates > rep.SessionPresent {
		t.Fatalf("persistent: cycles %d session present %d received %d lost %d duplicates %d errors %v", rep.Connected, rep.SessionPresent, rep.Received, rep.Lost, rep.Duplicates, rep.Errors)
	}
	// Paced by --conn-rate over --duration.
	rep, _ = run(t, Options{Scenario: ScenarioChurn, Addr: addr, Clients: 4, ConnRate: 50, Duration: time.Second})
	if rep.Connected < 20 || rep.Connected > 80 {
		t.Fatalf("50 cycles/s for 1 s: %d cycles", rep.Connected)
	}
}

func TestSeriesJSONAndCSV(t *testing.T) {
	addr := startCim(t, nil).addr
	csv := t.TempDir() + "/series.csv"
	rep, out := run(t, Options{Scenario: ScenarioPairs, Addr: addr, Pairs: 2, Rate: 400, Duration: 2200 * time.Millisecond, CSV: csv, JSON: true})
	var m struct {
		Received int64         `json:"received"`
		Series   []SeriesPoint `json:"series"`
	}
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		t.Fatal(err)
	}
	if len(m.Series) < 2 || len(m.Series) != len(rep.Series) {
		t.Fatalf("series of %d points: %+v", len(m.Series), m.Series)
	}
	var recv float64
	for i, p := range m.Series[:2] {
		// 2 pairs × 400/s: every whole second sends and receives ~800.
		if p.SentPerS < 400 || p.RecvPerS < 400 || p.P50 <= 0 || p.P99 < p.P50 || p.Conns != 4 || p.P99CO < p.P99 {
			t.Errorf("second %d: %+v", i+1, p)
		}
	}
	prev := 0.0
	for _, p := range m.Series {
		dt := p.T - prev
		prev = p.T
		recv += p.RecvPerS * dt
	}
	if d := recv - float64(m.Received); d > 2 || d < -2 {
		t.Errorf("series adds up to %.0f received, report says %d", recv, m.Received)
	}
	b, err := os.ReadFile(csv)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) != len(m.Series)+1 || !strings.HasPrefix(lines[0], "t_s,sent_per_s,received_per_s,p50_us,p99_us") {
		t.Fatalf("csv:\n%s", b)
	}
}

// TestReportLabels: pub with no subscribers does not talk about receiving,
// sub does not talk about sending.
func TestReportLabels(t *testing.T) {
	addr := startCim(t, nil).addr
	_, out := run(t, Options{Scenario: ScenarioPub, Addr: addr, Count: 100})
	for _, bad := range []string{"received", "lost", "latency µs", "duplicates"} {
		if strings.Contains(out, bad) {
			t.Errorf("pub report says %q:\n%s", bad, out)
		}
	}
	for _, want := range []string{"sent", "tool cpu"} {
		if !strings.Contains(out, want) {
			t.Errorf("pub report lacks %q:\n%s", want, out)
		}
	}
	_, out = run(t, Options{Scenario: ScenarioSub, Addr: addr, Duration: 200 * time.Millisecond})
	if strings.Contains(out, "  sent ") || !strings.Contains(out, "received") {
		t.Errorf("sub report:\n%s", out)
	}
}

// TestProgressNeverStaleZero: the bar redraws every 250 ms while runners
// report every 250 ms and publishers write in batches; the rates shown
// are over a second of samples, so a steady run never shows 0/s.
func TestProgressNeverStaleZero(t *testing.T) {
	addr := startCim(t, nil).addr
	o := Options{Scenario: ScenarioPairs, Addr: addr, Pairs: 2, Rate: 300, Duration: 2 * time.Second,
		ConnectTimeout: 2 * time.Second, Drain: time.Second}
	o.Progress = "bar"
	var out, errOut bytes.Buffer
	w := &lockedWriter{w: &errOut}
	if _, err := Run(context.Background(), o, &out, w); err != nil {
		t.Fatal(err)
	}
	draws := 0
	for _, frame := range strings.Split(errOut.String(), "\r") {
		if !strings.Contains(frame, "running") || strings.Contains(frame, "  0%") {
			continue
		}
		draws++
		if strings.Contains(frame, " 0/s") {
			t.Errorf("stale zero rate in %q", frame)
		}
	}
	if draws < 4 {
		t.Fatalf("only %d progress frames while running:\n%q", draws, errOut.String())
	}
}

func TestToolCPUPerMessage(t *testing.T) {
	addr := startCim(t, nil).addr
	rep, out := run(t, Options{Scenario: ScenarioFanIn, Addr: addr, Pubs: 2, Subs: 1, Rate: 2000, Duration: time.Second, BrokerPID: os.Getpid()})
	if rep.ToolCPUWindow <= 0 || rep.ToolCPUPerMsg <= 0 || rep.Broker == nil || rep.Broker.CPUPerMsg <= 0 {
		t.Fatalf("tool window %v per msg %v broker %+v", rep.ToolCPUWindow, rep.ToolCPUPerMsg, rep.Broker)
	}
	if !strings.Contains(out, "µs/msg  (") || !strings.Contains(out, "the broker's") {
		t.Fatalf("tool line does not compare with the broker:\n%s", out)
	}
}

func TestLogHist(t *testing.T) {
	var h logHist
	for v := int64(1); v <= 100000; v++ {
		h.record(v)
	}
	for _, q := range []float64{0.5, 0.9, 0.99} {
		exact := float64(q * 100000)
		got := float64(h.quantile(q))
		if got < exact || got > exact*1.04 {
			t.Errorf("q%.2f = %.0f, want %.0f..+4%%", q, got, exact)
		}
	}
	h2, err := fromSparse(h.sparse())
	if err != nil || h2.n != h.n || h2.quantile(0.99) != h.quantile(0.99) {
		t.Fatalf("sparse round trip: %v n %d", err, h2.n)
	}
	if _, err := fromSparse([][2]uint32{{logBuckets, 1}}); err == nil {
		t.Fatal("bucket out of range accepted")
	}
	h.record(1 << 40) // past the range: clamped, not a panic
	if s := spreadOf([]float64{4, 1, 3, 2}); s.Min != 1 || s.Max != 4 || s.Median != 2.5 {
		t.Fatalf("spread %+v", s)
	}
}

func TestSeriesMergeBadInput(t *testing.T) {
	for _, r := range []*Result{
		{Series: []seriesSample{{K: -1, Dur: 1}}},
		{Series: []seriesSample{{K: 1 << 30, Dur: 1}}},
		{Series: []seriesSample{{K: 1, Dur: 1}}, SeriesHist: []seriesHist{{K: 1, Lat: [][2]uint32{{99999, 1}}}}},
	} {
		if _, err := mergeSeries([]*Result{r}); err == nil {
			t.Errorf("bad series %+v accepted", r)
		}
	}
	// Two runners, one ending a second early, add up second by second.
	a := &Result{Series: []seriesSample{{K: 1, Dur: 1, Counters: Counters{Sent: 10}}, {K: 2, Dur: 1, Counters: Counters{Sent: 30}}}}
	b := &Result{Series: []seriesSample{{K: 1, Dur: 1, Counters: Counters{Sent: 5}}}}
	pts, err := mergeSeries([]*Result{a, b})
	if err != nil || len(pts) != 2 || pts[0].SentPerS != 15 || pts[1].SentPerS != 20 {
		t.Fatalf("merged %+v %v", pts, err)
	}
}

func TestBadOptionsV2(t *testing.T) {
	for name, o := range map[string]Options{
		"addr list":        {Scenario: ScenarioFanIn, Addr: "127.0.0.1:1,nohost"},
		"pub addr":         {Scenario: ScenarioFanIn, PubAddr: "x"},
		"user prop on v4":  {Scenario: ScenarioFanIn, UserProperties: []UserProperty{{"k", "v"}}},
		"empty prop key":   {Scenario: ScenarioFanIn, MQTTVersion: 5, UserProperties: []UserProperty{{"", "v"}}},
		"groups":           {Scenario: ScenarioShared, Groups: -1},
		"group name":       {Scenario: ScenarioShared, Group: "a/b"},
		"share as publish": {Scenario: ScenarioFanIn, Topic: "$share/g/t"},
		"rand max":         {Scenario: ScenarioFanIn, RandMax: -1},
		"payload too big":  {Scenario: ScenarioFanIn, Payload: make([]byte, maxPayloadFile+1)},
		"agents no token":  {Scenario: ScenarioFanIn, Agents: "127.0.0.1:1"},
		"agents short tok": {Scenario: ScenarioFanIn, Agents: "127.0.0.1:1", AgentToken: "short"},
	} {
		_, err := Run(context.Background(), o, io.Discard, io.Discard)
		if err == nil || !isUsage(err) {
			t.Errorf("%s: err %v, want ErrUsage", name, err)
		}
	}
}

// readAll drains a reader line by line (helper for agent tests).
func readLines(r io.Reader) []string {
	var out []string
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		out = append(out, sc.Text())
	}
	return out
}

func TestSecretsAndPayloadFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(name, s string) string {
		p := dir + "/" + name
		if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	if s, err := ReadSecretFile(write("pw", "hunter2\r\nignored\n")); err != nil || s != "hunter2" {
		t.Fatalf("secret %q %v", s, err)
	}
	if _, err := ReadSecretFile(write("empty", "\nx")); err == nil {
		t.Fatal("empty first line accepted")
	}
	if _, err := ReadSecretFile(dir + "/missing"); err == nil {
		t.Fatal("missing file accepted")
	}
	if b, err := ReadPayloadFile(write("body", "{}")); err != nil || string(b) != "{}" {
		t.Fatalf("payload %q %v", b, err)
	}
	if _, err := ReadPayloadFile(write("none", "")); err == nil {
		t.Fatal("empty payload file accepted")
	}
	t.Setenv(TokenEnv, "from-the-environment")
	if tok, err := AgentToken(""); err != nil || tok != "from-the-environment" {
		t.Fatalf("token %q %v", tok, err)
	}
	if tok, err := AgentToken(write("tok", "from-a-file\n")); err != nil || tok != "from-a-file" {
		t.Fatalf("token file %q %v", tok, err)
	}
	t.Setenv(TokenEnv, "")
	if _, err := AgentToken(""); err == nil {
		t.Fatal("no token accepted")
	}
	if p, err := ParseUserProperty("k=v=w"); err != nil || p.Key != "k" || p.Value != "v=w" {
		t.Fatalf("user property %+v %v", p, err)
	}
	for _, bad := range []string{"novalue", "=v"} {
		if _, err := ParseUserProperty(bad); err == nil {
			t.Errorf("user property %q accepted", bad)
		}
	}
}
