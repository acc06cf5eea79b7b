package bench

import (
	"context"
	"math"
	"math/rand/v2"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
)

// Phases a runner reports to the parent, in order.
const (
	phaseReady     = "ready"     // setup done: connected and subscribed (not conn)
	phaseConnected = "connected" // conn: every connection attempt has finished
	phasePublished = "published" // every publisher has finished
	phaseDrained   = "drained"   // publishing and draining finished; counters are final
)

// Counters are the running totals a runner ticks to the parent, for the
// progress display, the rate timeline and the parent's drain decision.
// Sent and Received include warmup; Received excludes duplicates.
type Counters struct {
	// At is when the runner took them, unix ns: rates are over the
	// runner's own clock, not over when the parent happened to look.
	At        int64 `json:"at"`
	Connected int64 `json:"connected"`
	Failed    int64 `json:"failed"`
	Alive     int64 `json:"alive"`
	Sent      int64 `json:"sent"`
	Acked     int64 `json:"acked"`
	Received  int64 `json:"received"`
	Errors    int64 `json:"errors"`
}

func (c *Counters) add(o Counters) {
	c.At = max(c.At, o.At)
	c.Connected += o.Connected
	c.Failed += o.Failed
	c.Alive += o.Alive
	c.Sent += o.Sent
	c.Acked += o.Acked
	c.Received += o.Received
	c.Errors += o.Errors
}

// Result is one runner's final account, sent to the parent as JSON.
type Result struct {
	Worker       int               `json:"worker"`
	Connected    int64             `json:"connected"`
	ConnFailed   int64             `json:"conn_failed"`
	ConnStart    int64             `json:"conn_start"`  // unix ns of the first dial, 0 if none
	ConnEnd      int64             `json:"conn_end"`    // unix ns of the last CONNACK
	Sent         int64             `json:"sent"`        // whole run
	SentWindow   int64             `json:"sent_window"` // sent after the warmup
	Acked        int64             `json:"acked"`
	Received     int64             `json:"received"`        // whole run, without duplicates
	RecvWindow   int64             `json:"received_window"` // received after the warmup
	Duplicates   int64             `json:"duplicates"`
	OutOfOrder   int64             `json:"out_of_order"`
	Gaps         int64             `json:"gaps"`    // sequences missing inside what arrived (sub)
	Stale        int64             `json:"stale"`   // stamped before this run started
	Foreign      int64             `json:"foreign"` // too short to carry our header
	LastRecv     int64             `json:"last_recv"`
	PublishEnd   int64             `json:"publish_end"`
	Errors       map[string]int64  `json:"errors"`
	ErrorSamples map[string]string `json:"error_samples,omitempty"`
	Latency      []byte            `json:"latency,omitempty"`
	LatencyCO    []byte            `json:"latency_intended,omitempty"`
	AckLatency   []byte            `json:"ack_latency,omitempty"`
	ConnLatency  []byte            `json:"conn_latency,omitempty"`
	MeasureStart int64             `json:"measure_start"`
	// SessionPresent counts churn connects that found their session.
	SessionPresent int64 `json:"session_present,omitempty"`
	// CPUWindow is this process's CPU time over the measured window (from
	// the end of the warmup to the end of the drain), CPUAll over the run.
	CPUWindow float64 `json:"cpu_window_s"`
	CPUAll    float64 `json:"cpu_s"`
	// Clients has one line per publisher and subscriber.
	Clients []ClientStat `json:"clients,omitempty"`
	// Series are the counters at each second since the start, and the
	// latency of each second (sparse logHist buckets).
	Series     []seriesSample `json:"series,omitempty"`
	SeriesHist []seriesHist   `json:"series_hist,omitempty"`
}

// ClientStat is one client's account, for the per-client spread.
type ClientStat struct {
	ID   string `json:"id"`
	Role string `json:"role"` // "pub" or "sub"
	// N is what the rate counts: messages received (sub) or sent (pub)
	// in the window.
	N int64 `json:"n"`
	// P99 is the 99th percentile of delivery latency (sub; from the
	// intended send time under --rate) or ack latency (pub), µs; -1 when
	// there was none.
	P99 int64 `json:"p99_us"`
}

// runner runs one process's share of the clients.
type runner struct {
	o     *Options
	w, n  int // this runner's index and the number of runners over all processes and agents
	proto Proto
	emit  func(*event)
	local *net.TCPAddr

	clients    []*client
	pubs, subs []*client
	groups     map[string]*groupTrack

	startNS     atomic.Int64 // unix ns of the start; 0 before
	measureFrom atomic.Int64 // unix ns; MaxInt64 until the start
	// interval is the --rate schedule's step in ns (0 without --rate);
	// publisher i is offset by i/Pubs of a step so publishers do not all
	// send at the same instant.
	interval    float64
	lat, ackLat *latRecorder

	connMu    sync.Mutex // guards connHist, connStart, connEnd
	connHist  *hdrhistogram.Histogram
	connStart int64
	connEnd   int64

	connected, failed atomic.Int64
	alive             atomic.Int64
	sessionPresent    atomic.Int64
	allDead           chan struct{}
	deadOnce          sync.Once
	pubEnd            atomic.Int64
	errs              errCounter

	cpu0, cpuFrom, cpuTo time.Duration
	cpuMu                sync.Mutex // guards cpuFrom, samples
	samples              []seriesSample

	// prepFailed: the protocol could not set the run up (Preparer); no
	// client is dialed.
	prepFailed bool

	stop     chan struct{} // closed by Stop: end the run early
	stopOnce sync.Once
	bg       sync.WaitGroup // ticker, pinger, sampler
	bgStop   chan struct{}
}

// newRunner makes runner w of n. local is its index among the runners of
// this machine (the source address it binds with --workers).
func newRunner(o *Options, w, n, local int, emit func(*event)) (*runner, error) {
	p, ok := lookupProto(o.Proto)
	if !ok {
		return nil, usageErr("--proto %q: not available", o.Proto)
	}
	r := &runner{
		o: o, w: w, n: n, proto: p, emit: emit,
		lat: newLatRecorder(), ackLat: newLatRecorder(), connHist: newHist(),
		allDead: make(chan struct{}), stop: make(chan struct{}), bgStop: make(chan struct{}),
		cpu0: processCPU(),
	}
	r.measureFrom.Store(math.MaxInt64)
	if o.Rate > 0 && o.Scenario != ScenarioChurn {
		r.interval = 1e9 / o.Rate
	}
	if ip := o.sourceIP(local); ip != nil {
		r.local = &net.TCPAddr{IP: ip}
	}
	add := func(ro role, count int, list *[]*client) {
		for i := 0; i < count; i++ {
			if o.runnerFor(ro, i, n) != w {
				continue
			}
			c := &client{r: r, role: ro, idx: i, id: o.clientID(ro, i), addr: o.addrFor(ro, i)}
			switch ro {
			case rolePub:
				c.topic = o.expandTopic(o.Topic, ro, i)
			case roleSub:
				c.topic = randFilter(o.subFilter(i), o.RandMax)
				if g := shareGroup(c.topic); g != "" {
					if r.groups == nil {
						r.groups = make(map[string]*groupTrack)
					}
					gt := r.groups[g]
					if gt == nil {
						gt = &groupTrack{tr: tracker{window: groupWindow}}
						r.groups[g] = gt
					}
					c.grp = gt
				}
			case roleChurn:
				c.topic = o.expandTopic(o.Topic, ro, i)
				c.own = make(chan struct{}, 1)
			}
			*list = append(*list, c)
			r.clients = append(r.clients, c)
		}
	}
	switch o.Scenario {
	case ScenarioConn:
		var idle []*client
		add(roleIdle, o.Conns, &idle)
	case ScenarioChurn:
		var ch []*client
		add(roleChurn, o.Clients, &ch)
	default:
		add(roleSub, o.Subs, &r.subs)
		add(rolePub, o.Pubs, &r.pubs)
	}
	return r, nil
}

// randFilter fills %rand in a subscription: a level that is only %rand
// becomes + (so fanin and fanout subscribers hear publishers that draw a
// topic per message), %rand inside a level a random number, once.
func randFilter(f string, randMax int) string {
	if !strings.Contains(f, "%rand") {
		return f
	}
	levels := strings.Split(f, "/")
	for i, l := range levels {
		if l == "%rand" {
			levels[i] = "+"
		} else {
			levels[i] = strings.ReplaceAll(l, "%rand", strconv.Itoa(rand.IntN(randMax)))
		}
	}
	return strings.Join(levels, "/")
}

// due is when the --rate schedule wants message seq of publisher pub
// sent, unix ns.
func (r *runner) due(pub, seq uint32) int64 {
	off := float64(pub%uint32(max(r.o.Pubs, 1))) / float64(max(r.o.Pubs, 1))
	return r.startNS.Load() + int64((float64(seq)+off)*r.interval)
}

// allowed is how many messages of publisher pub the schedule has due by t.
func (r *runner) allowed(pub int, t int64) int {
	off := float64(pub%max(r.o.Pubs, 1)) / float64(max(r.o.Pubs, 1))
	k := float64(t-r.startNS.Load())/r.interval - off
	if k < 0 {
		return 0
	}
	return int(k) + 1
}

// second is the time-series second a receive time falls in: 1 for the
// first second after the start.
func (r *runner) second(now int64) int32 {
	s := r.startNS.Load()
	if s == 0 || now < s {
		return 0
	}
	return int32((now-s)/int64(time.Second)) + 1
}

// Stop ends the run early (Ctrl-C); safe to call more than once.
func (r *runner) Stop() { r.stopOnce.Do(func() { close(r.stop) }) }

// Setup starts the background loops, connects and subscribes (except conn
// and churn, which connect after the start), then reports phaseReady.
func (r *runner) Setup(ctx context.Context) {
	r.bg.Add(2)
	go r.ticker()
	go r.pinger()
	if !r.prepare(ctx) {
		r.phase(phaseReady)
		return
	}
	if r.o.Scenario != ScenarioConn && r.o.Scenario != ScenarioChurn {
		r.dialAll(ctx, r.subs, 0)
		r.dialAll(ctx, r.pubs, 0)
	}
	r.phase(phaseReady)
}

// prepare lets a Preparer protocol set the run up (native: register the
// accounts); false if it failed, and then every client counts as failed
// and none is dialed.
func (r *runner) prepare(ctx context.Context) bool {
	pr, ok := r.proto.(Preparer)
	if !ok || len(r.clients) == 0 {
		return true
	}
	p := &Preparation{Options: r.o}
	for _, c := range r.clients {
		pc := PreparedClient{Name: c.id}
		switch c.role {
		case roleSub:
			pc.Filter = c.topic
		case rolePub:
			pc.Topic = c.topic
		case roleChurn: // subscribes to the topic it publishes to
			pc.Topic, pc.Filter = c.topic, c.topic
		}
		p.Clients = append(p.Clients, pc)
	}
	proto, err := pr.Prepare(ctx, p)
	if err != nil {
		if ctx.Err() == nil && !r.stopped() {
			r.failed.Add(int64(len(r.clients)))
			r.errs.note(err)
		}
		r.prepFailed = true
		return false
	}
	r.proto = proto
	return true
}

// phase reports a phase with the counters as of now, so the parent can act
// on them without waiting for the next tick.
func (r *runner) phase(p string) {
	cn := r.counters()
	r.emit(&event{Type: "phase", Phase: p, Tick: &cn})
}

// Run waits for start, runs the scenario and drains, then reports
// phaseDrained. Counters are final after Run returns.
func (r *runner) Run(ctx context.Context, start time.Time) {
	o := r.o
	// Set before sleeping: another worker's publishers may start a moment
	// before this one wakes, and their messages belong to the window.
	r.startNS.Store(start.UnixNano())
	from := start.Add(o.Warmup)
	r.measureFrom.Store(from.UnixNano())
	r.bg.Add(1)
	go r.sampler(start, from)
	defer func() {
		r.endSeries(start)
		r.phase(phaseDrained)
	}()
	if !r.sleepUntil(ctx, start) {
		return
	}
	switch o.Scenario {
	case ScenarioConn:
		r.dialAll(ctx, r.clients, o.ConnRate/float64(r.n))
		r.phase(phaseConnected)
		if r.connected.Load() > 0 {
			r.sleepUntil(ctx, time.Now().Add(o.Duration))
		}
		return
	case ScenarioChurn:
		r.churn(ctx, from.Add(o.Duration))
		r.phase(phasePublished)
		return
	case ScenarioSub:
		want := int64(o.Count) * r.receivers()
		r.waitFor(ctx, from.Add(o.Duration), func() bool {
			return want > 0 && r.sum(func(c *client) int64 { return c.recvAll.Load() }) >= want
		})
		return
	}
	if r.connected.Load() == 0 {
		return
	}
	var endAt time.Time
	if o.Count == 0 {
		endAt = from.Add(o.Duration)
	}
	r.publishAll(ctx, start, endAt)
	r.phase(phasePublished)
	r.drain(ctx)
}

// receivers is how many independent receivers this runner has: a
// shared-subscription group counts once.
func (r *runner) receivers() int64 {
	var n int64
	for _, c := range r.subs {
		if c.grp == nil {
			n++
		}
	}
	return n + int64(len(r.groups))
}

// drain waits for deliveries (or acks) still in flight: until everything
// expected has arrived, nothing arrived for a second, or Drain has passed.
// When this runner cannot know what to expect (fan-in/fan-out over several
// workers) the parent decides from the totals and sends stop.
func (r *runner) drain(ctx context.Context) {
	o := r.o
	if o.Scenario == ScenarioPub && o.QoS == 0 {
		return
	}
	local := r.n == 1 || o.Scenario == ScenarioPairs || o.Scenario == ScenarioPub
	progress := func() int64 {
		return r.sum(func(c *client) int64 { return c.recvAll.Load() + c.acked.Load() })
	}
	done := func() bool {
		sent := r.sum(func(c *client) int64 { return c.sentAll.Load() })
		// An ack may come after its message's deliveries (a native send
		// is acknowledged once stored): wait for both.
		if o.QoS > 0 && r.sum(func(c *client) int64 { return c.acked.Load() }) < sent {
			return false
		}
		return o.Scenario == ScenarioPub || r.sum(func(c *client) int64 { return c.recvAll.Load() }) >= o.fanoutFactor()*sent
	}
	deadline := time.Now().Add(o.Drain)
	last, lastAt := progress(), time.Now()
	r.waitFor(ctx, deadline, func() bool {
		if !local {
			return false
		}
		if done() {
			return true
		}
		if p := progress(); p != last {
			last, lastAt = p, time.Now()
		}
		return time.Since(lastAt) >= quietDrain
	})
}

// quietDrain ends a drain when nothing arrived for this long.
const quietDrain = time.Second

func (r *runner) stopped() bool {
	select {
	case <-r.stop:
		return true
	default:
		return false
	}
}

// sleepUntil waits for t; false if the run was stopped or everything died.
func (r *runner) sleepUntil(ctx context.Context, t time.Time) bool {
	timer := time.NewTimer(time.Until(t))
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-ctx.Done():
	case <-r.stop:
	case <-r.allDead:
	}
	return false
}

// waitFor polls cond until it holds or deadline passes (or the run stops).
func (r *runner) waitFor(ctx context.Context, deadline time.Time, cond func() bool) {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	end := time.NewTimer(time.Until(deadline))
	defer end.Stop()
	for !cond() {
		select {
		case <-tick.C:
		case <-end.C:
			return
		case <-ctx.Done():
			return
		case <-r.stop:
			return
		case <-r.allDead:
			return
		}
	}
}

func (r *runner) sum(f func(*client) int64) int64 {
	var n int64
	for _, c := range r.clients {
		n += f(c)
	}
	return n
}

// dialAll connects clients, rate per second (0: as fast as ConnParallel
// concurrent handshakes allow), and subscribes subscribers.
func (r *runner) dialAll(ctx context.Context, list []*client, rate float64) {
	if r.prepFailed {
		return
	}
	// A fixed set of dialers takes the clients in turn, rather than a
	// goroutine per client: each dialer's stack grows once, not once per
	// connection (goroutine starts and stack growth were ~8% of a worker's
	// CPU in a perf profile of `cim bench conn --count 19000 --workers 2`).
	next := make(chan *client)
	var wg sync.WaitGroup
	for range max(r.o.ConnParallel/r.n, 1) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for c := range next {
				r.connect(ctx, c)
			}
		}()
	}
	t0 := time.Now()
	for i, c := range list {
		if rate > 0 {
			if wait := time.Until(t0.Add(time.Duration(float64(i) / rate * float64(time.Second)))); wait > 0 {
				if !r.sleepUntil(ctx, time.Now().Add(wait)) && (ctx.Err() != nil || r.stopped()) {
					break
				}
			}
		}
		if ctx.Err() != nil || r.stopped() {
			break
		}
		select {
		case next <- c:
		case <-ctx.Done():
		case <-r.stop:
		}
	}
	close(next)
	wg.Wait()
}

func (r *runner) connect(ctx context.Context, c *client) {
	cl, err := r.dial(ctx, c)
	if err != nil {
		return
	}
	c.cl = cl
	c.alive.Store(true)
	r.alive.Add(1)
	if c.role == roleSub {
		sctx, cancel := context.WithTimeout(ctx, r.o.ConnectTimeout)
		err := cl.Subscribe(sctx, c.topic, r.o.QoS)
		cancel()
		if err != nil && c.alive.Load() {
			r.errs.note(err)
		}
	}
}

// dial opens one connection for c and accounts for it (connect latency,
// failures); the caller marks it alive.
func (r *runner) dial(ctx context.Context, c *client) (Client, error) {
	o := r.o
	cfg := &ClientConfig{
		Addr: c.addr, LocalAddr: r.local,
		ClientID: c.id, Username: o.Username, Password: o.Password,
		Clean: !o.Persistent, SessionExpiry: o.SessionExpiry,
		KeepAlive: o.KeepAlive, ConnectTimeout: o.ConnectTimeout,
		Version: o.MQTTVersion,
	}
	switch c.role {
	case rolePub, roleChurn:
		cfg.ReadBuffer, cfg.WriteBuffer = 4<<10, 8<<10
		if o.QoS > 0 {
			cfg.Inflight = o.Inflight
		}
		cfg.Retain, cfg.UserProperties = o.Retain, o.UserProperties
	case roleSub:
		cfg.ReadBuffer, cfg.WriteBuffer = 64<<10, 16<<10
	default:
		// Idle connections: tiny buffers so the tool itself scales.
		cfg.ReadBuffer, cfg.WriteBuffer = 64, 64
	}
	t0 := time.Now()
	cl, err := r.proto.Dial(ctx, cfg, c)
	t1 := time.Now()
	r.connMu.Lock()
	if r.connStart == 0 || t0.UnixNano() < r.connStart {
		r.connStart = t0.UnixNano()
	}
	if err == nil {
		r.connEnd = max(r.connEnd, t1.UnixNano())
		_ = r.connHist.RecordValue(min(t1.Sub(t0).Microseconds(), maxLatencyUS))
	}
	r.connMu.Unlock()
	if err != nil {
		if ctx.Err() == nil && !r.stopped() {
			r.failed.Add(1)
			r.errs.note(err)
		}
		return nil, err
	}
	r.connected.Add(1)
	return cl, nil
}

// ticker reports counters ~4 times a second.
func (r *runner) ticker() {
	defer r.bg.Done()
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			cn := r.counters()
			r.emit(&event{Type: "tick", Tick: &cn})
		case <-r.bgStop:
			return
		}
	}
}

// pinger keeps idle connections alive; one goroutine for all of them.
func (r *runner) pinger() {
	defer r.bg.Done()
	if r.o.Scenario == ScenarioChurn {
		return // short-lived connections; and the churn loop owns c.cl
	}
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case now := <-t.C:
			for _, c := range r.clients {
				if c.alive.Load() {
					c.cl.Ping(now)
				}
			}
		case <-r.bgStop:
			return
		}
	}
}

func (r *runner) counters() Counters {
	cn := Counters{
		At:        time.Now().UnixNano(),
		Connected: r.connected.Load(), Failed: r.failed.Load(), Alive: r.alive.Load(),
		Errors: r.errs.total(),
	}
	for _, c := range r.clients {
		cn.Sent += c.sentAll.Load()
		cn.Acked += c.acked.Load()
		cn.Received += c.recvAll.Load()
	}
	return cn
}

// Close stops the background loops and closes every connection, in
// parallel because a few thousand sequential goodbyes take a while.
func (r *runner) Close() {
	close(r.bgStop)
	r.bg.Wait()
	var wg sync.WaitGroup
	sem := make(chan struct{}, 64)
	for _, c := range r.clients {
		if c.cl == nil {
			continue
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			c.alive.Store(false)
			_ = c.cl.Close()
		}()
	}
	wg.Wait()
	if f, ok := r.proto.(Finisher); ok && !r.prepFailed {
		ctx, cancel := context.WithTimeout(context.Background(), finishWait)
		if err := f.Finish(ctx); err != nil {
			r.errs.note(err)
		}
		cancel()
	}
}

// finishWait bounds a Finisher's clean-up after the run.
const finishWait = 30 * time.Second

// Result totals the run. REQUIRES: Close has returned (no reader goroutine
// still touches the clients' trackers and buffers).
func (r *runner) Result() *Result {
	res := &Result{
		Worker: r.w, Connected: r.connected.Load(), ConnFailed: r.failed.Load(),
		PublishEnd: r.pubEnd.Load(), Errors: r.errs.snapshot(), ErrorSamples: r.errs.samples(),
		SessionPresent: r.sessionPresent.Load(),
	}
	if m := r.measureFrom.Load(); m != math.MaxInt64 {
		res.MeasureStart = m
	}
	for _, c := range r.clients {
		if c.lat != nil {
			c.lat.flush(r.lat, c.idx)
		}
		if c.ackLat != nil {
			c.ackLat.flush(r.ackLat, c.idx)
		}
		res.Sent += c.sentAll.Load()
		res.SentWindow += c.sent.Load()
		res.Acked += c.acked.Load()
		res.Received += c.recvAll.Load()
		res.RecvWindow += c.recv.Load()
		res.Duplicates += c.dups.Load()
		res.OutOfOrder += c.ooo.Load()
		res.Stale += c.stale.Load()
		res.Foreign += c.fgn.Load()
		if c.grp == nil {
			res.Gaps += c.tr.gaps()
		}
		res.LastRecv = max(res.LastRecv, c.lastRecv.Load())
		switch c.role {
		case roleSub:
			res.Clients = append(res.Clients, ClientStat{ID: c.id, Role: "sub", N: c.recv.Load(), P99: p99(&c.hist)})
		case rolePub:
			res.Clients = append(res.Clients, ClientStat{ID: c.id, Role: "pub", N: c.sent.Load(), P99: p99(&c.hist)})
		}
	}
	for _, g := range r.groups {
		res.Gaps += g.tr.gaps()
	}
	r.connMu.Lock()
	res.ConnStart, res.ConnEnd = r.connStart, r.connEnd
	res.ConnLatency = encodeHist(r.connHist)
	r.connMu.Unlock()
	h, co, secs := r.lat.merged()
	res.Latency, res.LatencyCO = encodeHist(h), encodeHist(co)
	ack, _, _ := r.ackLat.merged()
	res.AckLatency = encodeHist(ack)
	r.cpuMu.Lock()
	res.Series = append([]seriesSample(nil), r.samples...)
	if r.cpuTo > r.cpuFrom && r.cpuFrom > 0 {
		res.CPUWindow = (r.cpuTo - r.cpuFrom).Seconds()
	}
	r.cpuMu.Unlock()
	res.CPUAll = (processCPU() - r.cpu0).Seconds()
	res.SeriesHist = encodeSeriesHist(secs)
	return res
}

func p99(h *logHist) int64 {
	if h.n == 0 {
		return -1
	}
	return h.quantile(0.99)
}
