package bench

import (
	"context"
	"fmt"
	"math"
	"net"
	"strconv"
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
	Connected int64 `json:"connected"`
	Failed    int64 `json:"failed"`
	Alive     int64 `json:"alive"`
	Sent      int64 `json:"sent"`
	Acked     int64 `json:"acked"`
	Received  int64 `json:"received"`
	Errors    int64 `json:"errors"`
}

func (c *Counters) add(o Counters) {
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
	AckLatency   []byte            `json:"ack_latency,omitempty"`
	ConnLatency  []byte            `json:"conn_latency,omitempty"`
	MeasureStart int64             `json:"measure_start"`
}

type role byte

const (
	rolePub  role = 'p'
	roleSub  role = 's'
	roleIdle role = 'c'
)

// client is one connection of a runner and the Handler of its Client.
type client struct {
	r     *runner
	role  role
	idx   int // index within its role over all workers: %i, publisher id
	topic string
	cl    Client

	// sentAll and recvAll count the whole run (recvAll without duplicates);
	// sent and recv only after the warmup, for the rates.
	sentAll, sent, acked  atomic.Int64
	recvAll, recv         atomic.Int64
	dups, ooo, stale, fgn atomic.Int64
	lastRecv              atomic.Int64
	alive                 atomic.Bool

	// Touched only by the client's reader goroutine (and by the runner once
	// the client is closed).
	tr     tracker
	lat    *latBuf
	ackLat *latBuf
}

func (c *client) OnMessage(p []byte, now int64) {
	if len(p) < HeaderSize {
		c.fgn.Add(1)
		c.other(now)
		return
	}
	ts, pub, seq := readHeader(p)
	if ts < c.r.o.RunStart || ts > now+int64(time.Minute) {
		c.stale.Add(1)
		c.other(now)
		return
	}
	t := c.tr.get(pub)
	switch t.observe(seq) {
	case duplicate:
		c.dups.Add(1)
		return
	case reordered:
		c.ooo.Add(1)
	}
	t.count(seq)
	c.recvAll.Add(1)
	// Rate and latency are measured by receive time: under overload a
	// broker may still be delivering warmup messages well into the run,
	// and those deliveries are its throughput.
	if now < c.r.measureFrom.Load() {
		return
	}
	c.recv.Add(1)
	c.lastRecv.Store(now)
	if c.lat == nil {
		c.lat = new(latBuf)
	}
	c.lat.add(c.r.lat, c.idx, (now-ts)/1000)
}

// other counts a delivery that is not from this run's publishers: for the
// sub scenario, which listens to whoever publishes, it is throughput all the
// same (without latency or loss); elsewhere it is only reported.
func (c *client) other(now int64) {
	if c.r.o.Scenario != ScenarioSub {
		return
	}
	c.recvAll.Add(1)
	if now >= c.r.measureFrom.Load() {
		c.recv.Add(1)
		c.lastRecv.Store(now)
	}
}

func (c *client) OnSent(n int, at int64) {
	c.sentAll.Add(int64(n))
	if at >= c.r.measureFrom.Load() {
		c.sent.Add(int64(n))
	}
}

func (c *client) OnAck(d time.Duration) {
	c.acked.Add(1)
	if c.ackLat == nil {
		c.ackLat = new(latBuf)
	}
	c.ackLat.add(c.r.ackLat, c.idx, d.Microseconds())
}

func (c *client) OnError(err error) { c.r.errs.note(err) }

func (c *client) OnClose(err error) {
	c.r.errs.note(err)
	if c.alive.CompareAndSwap(true, false) && c.r.alive.Add(-1) == 0 {
		c.r.deadOnce.Do(func() { close(c.r.allDead) })
	}
}

// runner runs one process's share of the clients.
type runner struct {
	o     *Options
	w, n  int // this worker's index and the number of workers (1 in-process)
	proto Proto
	emit  func(*event)
	local *net.TCPAddr

	clients    []*client
	pubs, subs []*client

	measureFrom atomic.Int64 // unix ns; MaxInt64 until the start
	lat, ackLat *histShards

	connMu    sync.Mutex // guards connHist, connStart, connEnd
	connHist  *hdrhistogram.Histogram
	connStart int64
	connEnd   int64

	connected, failed atomic.Int64
	alive             atomic.Int64
	allDead           chan struct{}
	deadOnce          sync.Once
	pubEnd            atomic.Int64
	errs              errCounter

	stop     chan struct{} // closed by Stop: end the run early
	stopOnce sync.Once
	bg       sync.WaitGroup // ticker and pinger
	bgStop   chan struct{}
}

func newRunner(o *Options, w, n int, emit func(*event)) (*runner, error) {
	p, ok := lookupProto(o.Proto)
	if !ok {
		return nil, usageErr("--proto %q: not available", o.Proto)
	}
	r := &runner{
		o: o, w: w, n: n, proto: p, emit: emit,
		lat: newHistShards(), ackLat: newHistShards(), connHist: newHist(),
		allDead: make(chan struct{}), stop: make(chan struct{}), bgStop: make(chan struct{}),
	}
	r.measureFrom.Store(math.MaxInt64)
	if ip := o.sourceIP(w); ip != nil {
		r.local = &net.TCPAddr{IP: ip}
	}
	add := func(ro role, count int, list *[]*client) {
		for i := w; i < count; i += n {
			c := &client{r: r, role: ro, idx: i}
			if ro != roleIdle {
				c.topic = o.topicFor(i)
			}
			*list = append(*list, c)
			r.clients = append(r.clients, c)
		}
	}
	if o.Scenario == ScenarioConn {
		var idle []*client
		add(roleIdle, o.Conns, &idle)
	} else {
		add(roleSub, o.Subs, &r.subs)
		add(rolePub, o.Pubs, &r.pubs)
	}
	return r, nil
}

// Stop ends the run early (Ctrl-C); safe to call more than once.
func (r *runner) Stop() { r.stopOnce.Do(func() { close(r.stop) }) }

// Setup starts the background loops, connects and subscribes (except conn,
// which connects at the start), then reports phaseReady.
func (r *runner) Setup(ctx context.Context) {
	r.bg.Add(2)
	go r.ticker()
	go r.pinger()
	if r.o.Scenario != ScenarioConn {
		r.dialAll(ctx, r.subs, 0)
		r.dialAll(ctx, r.pubs, 0)
	}
	r.phase(phaseReady)
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
	defer r.phase(phaseDrained)
	o := r.o
	// Set before sleeping: another worker's publishers may start a moment
	// before this one wakes, and their messages belong to the window.
	from := start.Add(o.Warmup)
	r.measureFrom.Store(from.UnixNano())
	if !r.sleepUntil(ctx, start) {
		return
	}
	if o.Scenario == ScenarioConn {
		r.dialAll(ctx, r.clients, o.ConnRate/float64(r.n))
		r.phase(phaseConnected)
		if r.connected.Load() > 0 {
			r.sleepUntil(ctx, time.Now().Add(o.Duration))
		}
		return
	}
	if o.Scenario == ScenarioSub {
		want := int64(o.Count) * int64(len(r.subs))
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

func (r *runner) publishAll(ctx context.Context, start, endAt time.Time) {
	pctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	for _, c := range r.pubs {
		if c.alive.Load() {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r.publish(pctx, c, start, endAt)
			}()
		}
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	var bound <-chan time.Time
	if !endAt.IsZero() {
		// Publishers stop at endAt by themselves. One still stuck a second
		// later (on a window the broker does not open, or in a write it does
		// not read) is stopped: what the broker already took is drained
		// below, what it did not take is lost.
		t := time.NewTimer(time.Until(endAt) + time.Second)
		defer t.Stop()
		bound = t.C
	}
	// With --count there is no end time: give up when publishing has made
	// no progress (nothing written, nothing acknowledged) for Drain.
	stall := time.NewTicker(100 * time.Millisecond)
	defer stall.Stop()
	progress := func() int64 {
		return r.sum(func(c *client) int64 { return c.sentAll.Load() + c.acked.Load() })
	}
	last, lastAt := progress(), time.Now()
wait:
	for {
		select {
		case <-done:
			return
		case <-r.stop:
			break wait
		case <-ctx.Done():
			break wait
		case <-bound:
			break wait
		case <-stall.C:
			if p := progress(); p != last {
				last, lastAt = p, time.Now()
			} else if time.Since(lastAt) >= r.o.Drain {
				r.errs.note(fmt.Errorf("%w: no publish written or acknowledged for %v", ErrStalled, r.o.Drain))
				break wait
			}
		}
	}
	cancel()
	t := time.NewTimer(time.Second)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		// Blocked in a write to a broker that does not read: dropping the
		// connections is the only way out.
		for _, c := range r.pubs {
			if c.cl != nil {
				c.cl.Abort()
			}
		}
		<-done
	}
}

// publish is one publisher's loop: stamp, send, pace.
func (r *runner) publish(ctx context.Context, c *client, start, endAt time.Time) {
	o := r.o
	defer func() {
		_ = c.cl.Flush()
		now := time.Now().UnixNano()
		for {
			old := r.pubEnd.Load()
			if now <= old || r.pubEnd.CompareAndSwap(old, now) {
				return
			}
		}
	}()
	payload := make([]byte, o.Size)
	end := int64(math.MaxInt64)
	if !endAt.IsZero() {
		end = endAt.UnixNano()
	}
	var pace *time.Timer
	allowed := 0 // messages the schedule allows so far (--rate)
	for n := 0; o.Count == 0 || n < o.Count; n++ {
		if n&255 == 0 && (ctx.Err() != nil || r.stopped()) {
			return
		}
		if o.Rate > 0 && n >= allowed {
			// Consult the clock once per batch of due messages, not per
			// message, and run up to paceSlack ahead of the schedule so that
			// fast publishers send a few messages per wakeup and syscall.
			allowed = int((time.Since(start)+paceSlack).Seconds()*o.Rate) + 1
			if n >= allowed {
				// Ahead of schedule: the loop has caught up, so send what is
				// buffered and sleep until the next message is due.
				if c.cl.Flush() != nil {
					return
				}
				wait := time.Until(start.Add(time.Duration(float64(n) / o.Rate * float64(time.Second))))
				if pace == nil {
					pace = time.NewTimer(wait)
					defer pace.Stop()
				} else {
					pace.Reset(wait)
				}
				select {
				case <-pace.C:
				case <-ctx.Done():
					return
				case <-r.stop:
					return
				}
				allowed = n + 1
			}
		}
		putHeader(payload, uint32(c.idx), uint32(n))
		at, err := c.cl.Publish(ctx, c.topic, payload, o.QoS)
		if err != nil {
			// A dead connection was counted by OnClose; ctx means we stop.
			return
		}
		if at >= end {
			return
		}
	}
}

// paceSlack is how far ahead of its --rate schedule a publisher may run.
const paceSlack = time.Millisecond

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
		if o.Scenario == ScenarioPub {
			return r.sum(func(c *client) int64 { return c.acked.Load() }) >= r.sum(func(c *client) int64 { return c.sentAll.Load() })
		}
		return r.sum(func(c *client) int64 { return c.recvAll.Load() }) >= o.fanoutFactor()*r.sum(func(c *client) int64 { return c.sentAll.Load() })
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
	sem := make(chan struct{}, max(r.o.ConnParallel/r.n, 1))
	var wg sync.WaitGroup
	t0 := time.Now()
	for i, c := range list {
		if rate > 0 {
			if wait := time.Until(t0.Add(time.Duration(float64(i) / rate * float64(time.Second)))); wait > 0 {
				if !r.sleepUntil(ctx, time.Now().Add(wait)) && (ctx.Err() != nil || r.stopped()) {
					break
				}
			}
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		case <-r.stop:
		}
		if ctx.Err() != nil || r.stopped() {
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			r.connect(ctx, c)
		}()
	}
	wg.Wait()
}

func (r *runner) connect(ctx context.Context, c *client) {
	o := r.o
	cfg := &ClientConfig{
		Addr: o.Addr, LocalAddr: r.local,
		ClientID: o.ClientIDPrefix + "-" + string(c.role) + strconv.Itoa(c.idx),
		Username: o.Username, Password: o.Password,
		Clean: !o.Persistent, SessionExpiry: o.SessionExpiry,
		KeepAlive: o.KeepAlive, ConnectTimeout: o.ConnectTimeout,
		Version: o.MQTTVersion,
	}
	switch c.role {
	case rolePub:
		cfg.ReadBuffer, cfg.WriteBuffer = 4<<10, 8<<10
		if o.QoS > 0 {
			cfg.Inflight = o.Inflight
		}
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
		return
	}
	c.cl = cl
	c.alive.Store(true)
	r.alive.Add(1)
	r.connected.Add(1)
	if c.role == roleSub {
		sctx, cancel := context.WithTimeout(ctx, o.ConnectTimeout)
		err := cl.Subscribe(sctx, c.topic, o.QoS)
		cancel()
		if err != nil && c.alive.Load() {
			r.errs.note(err)
		}
	}
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
}

// Result totals the run. REQUIRES: Close has returned (no reader goroutine
// still touches the clients' trackers and buffers).
func (r *runner) Result() *Result {
	res := &Result{
		Worker: r.w, Connected: r.connected.Load(), ConnFailed: r.failed.Load(),
		PublishEnd: r.pubEnd.Load(), Errors: r.errs.snapshot(), ErrorSamples: r.errs.samples(),
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
		res.Gaps += c.tr.gaps()
		res.LastRecv = max(res.LastRecv, c.lastRecv.Load())
	}
	r.connMu.Lock()
	res.ConnStart, res.ConnEnd = r.connStart, r.connEnd
	res.ConnLatency = encodeHist(r.connHist)
	r.connMu.Unlock()
	res.Latency = encodeHist(r.lat.merged())
	res.AckLatency = encodeHist(r.ackLat.merged())
	return res
}
