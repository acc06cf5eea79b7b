package bench

import (
	"sync"
	"sync/atomic"
	"time"
)

type role byte

const (
	rolePub   role = 'p'
	roleSub   role = 's'
	roleIdle  role = 'c'
	roleChurn role = 'h'
)

// client is one connection of a runner and the Handler of its Client.
type client struct {
	r     *runner
	role  role
	idx   int // index within its role over all runners: %i, publisher id
	id    string
	addr  string
	topic string // publish topic pattern, or the subscription filter
	cl    Client

	// sentAll and recvAll count the whole run (recvAll without duplicates);
	// sent and recv only after the warmup, for the rates.
	sentAll, sent, acked  atomic.Int64
	recvAll, recv         atomic.Int64
	dups, ooo, stale, fgn atomic.Int64
	lastRecv              atomic.Int64
	alive                 atomic.Bool

	// grp is the shared-subscription group this subscriber belongs to:
	// duplicates and loss are counted over the group, order per member.
	grp *groupTrack
	// own is notified when a churn client's own message comes back.
	own chan struct{}

	// Touched only by the client's reader goroutine (and by the runner once
	// the client is closed).
	tr     tracker
	lat    *latBuf
	ackLat *latBuf
	hist   logHist // this client's latency (subscriber) or ack latency (publisher)
}

// groupTrack counts the deliveries to the members of one shared
// subscription group, whose readers race: hence the lock and the wide
// window.
type groupTrack struct {
	mu sync.Mutex // guards tr
	tr tracker
}

func (c *client) OnMessage(p []byte, now int64) {
	r := c.r
	if len(p) < HeaderSize {
		c.fgn.Add(1)
		c.other(now)
		return
	}
	ts, pub, seq := readHeader(p)
	if ts < r.o.RunStart || ts > now+int64(time.Minute) {
		c.stale.Add(1)
		c.other(now)
		return
	}
	if g := c.grp; g != nil {
		g.mu.Lock()
		t := g.tr.get(pub)
		v := t.observe(seq)
		if v != duplicate {
			t.count(seq)
		}
		g.mu.Unlock()
		if v == duplicate {
			c.dups.Add(1)
			return
		}
		// Each member sees its share of the sequence in order; gaps are
		// the other members' share, so only order is checked here.
		if c.tr.get(pub).observe(seq) == reordered {
			c.ooo.Add(1)
		}
	} else {
		t := c.tr.get(pub)
		switch t.observe(seq) {
		case duplicate:
			c.dups.Add(1)
			return
		case reordered:
			c.ooo.Add(1)
		}
		t.count(seq)
	}
	c.recvAll.Add(1)
	if c.own != nil && int(pub) == c.idx {
		select {
		case c.own <- struct{}{}:
		default:
		}
	}
	us := (now - ts) / 1000
	co := int64(-1)
	if r.interval > 0 {
		// Coordinated omission: latency from when the schedule wanted the
		// message sent, not from when a stalled publisher got to write it.
		// A message written up to paceSlack early counts from its write.
		co = (now - min(r.due(pub, seq), ts)) / 1000
	}
	// Rate and latency are measured by receive time: under overload a
	// broker may still be delivering warmup messages well into the run,
	// and those deliveries are its throughput.
	win := now >= r.measureFrom.Load()
	if win {
		c.recv.Add(1)
		c.lastRecv.Store(now)
		c.hist.record(max(co, us))
	}
	if c.lat == nil {
		c.lat = new(latBuf)
	}
	c.lat.add(r.lat, c.idx, r.second(now), win, us, co)
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
	us := d.Microseconds()
	c.hist.record(us)
	c.ackLat.add(c.r.ackLat, c.idx, -1, true, us, -1)
}

func (c *client) OnError(err error) { c.r.errs.note(err) }

func (c *client) OnClose(err error) {
	c.r.errs.note(err)
	c.down()
}

// down marks the connection gone; the last one gone ends a run that has
// nobody left (not churn, whose connections come and go).
func (c *client) down() {
	r := c.r
	if c.alive.CompareAndSwap(true, false) && r.alive.Add(-1) == 0 && r.o.Scenario != ScenarioChurn {
		r.deadOnce.Do(func() { close(r.allDead) })
	}
}
