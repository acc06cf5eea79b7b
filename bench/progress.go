package bench

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/term"
)

// progress shows the run as it goes, on stderr: a bar redrawn in place on a
// terminal, a plain line per second otherwise. It also records the
// per-second rate timeline for the chart, whether or not it displays.
type progress struct {
	o     *Options
	w     io.Writer
	agg   *aggregator
	bar   bool // redraw in place
	show  bool
	every time.Duration

	mu       sync.Mutex // guards start, timeline, last, lastAt
	start    time.Time  // zero until the run starts
	timeline []TimePoint
	last     Counters  // at the last timeline point
	lastAt   time.Time // time of the last timeline point

	stop chan struct{}
	done chan struct{}
}

func newProgress(o *Options, w io.Writer, agg *aggregator) *progress {
	p := &progress{o: o, w: w, agg: agg, stop: make(chan struct{}), done: make(chan struct{})}
	isTerm := false
	if f, ok := w.(*os.File); ok {
		isTerm = term.IsTerminal(int(f.Fd()))
	}
	switch o.Progress {
	case "bar":
		p.bar, p.show = true, true
	case "plain":
		p.show = true
	case "auto":
		p.bar, p.show = isTerm, true
	}
	p.every = time.Second
	if p.bar {
		p.every = 250 * time.Millisecond
	}
	go p.loop()
	return p
}

func (p *progress) started(at time.Time) {
	cur := p.agg.total()
	p.mu.Lock()
	p.start = at
	p.last, p.lastAt = cur, at
	p.mu.Unlock()
}

// finish stops the display and returns the timeline.
func (p *progress) finish() []TimePoint {
	close(p.stop)
	<-p.done
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.timeline
}

func (p *progress) loop() {
	defer close(p.done)
	// Sample 4 times a second for the timeline; draw every p.every.
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	prev, prevAt := p.agg.total(), time.Now()
	for {
		select {
		case <-p.stop:
			p.sample(time.Now(), p.agg.total(), true)
			if p.bar && p.show {
				fmt.Fprint(p.w, "\r\033[K")
			}
			return
		case now := <-tick.C:
			cur := p.agg.total()
			start := p.sample(now, cur, false)
			if !p.show || now.Sub(prevAt) < p.every-50*time.Millisecond {
				continue
			}
			dt := now.Sub(prevAt).Seconds()
			p.draw(now, start, cur, float64(cur.Sent-prev.Sent)/dt, float64(cur.Received-prev.Received)/dt)
			prev, prevAt = cur, now
		}
	}
}

// sample adds a timeline point once a second has passed since the last one
// (or at the end, if a quarter second has); it returns the start time.
func (p *progress) sample(now time.Time, cur Counters, last bool) time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.start.IsZero() || now.Before(p.start) {
		return p.start
	}
	s := now.Sub(p.lastAt).Seconds()
	if s >= 0.99 || (last && s >= 0.25) {
		p.timeline = append(p.timeline, TimePoint{
			T:        now.Sub(p.start).Seconds(),
			SendRate: float64(cur.Sent-p.last.Sent) / s,
			RecvRate: float64(cur.Received-p.last.Received) / s,
			Conns:    cur.Alive,
		})
		p.last, p.lastAt = cur, now
	}
	return p.start
}

func (p *progress) draw(now, start time.Time, c Counters, sendRate, recvRate float64) {
	o := p.o
	var frac float64
	var phase string
	total := o.Warmup + o.Duration
	switch {
	case start.IsZero() || now.Before(start):
		phase = "setup"
		if n := p.clients(); n > 0 {
			frac = float64(c.Connected+c.Failed) / float64(n)
		}
	case o.Scenario == ScenarioConn && c.Connected+c.Failed < int64(o.Conns):
		phase = "connecting"
		frac = float64(c.Connected+c.Failed) / float64(o.Conns)
	case o.Scenario == ScenarioConn:
		phase, frac = "holding", 1
	case o.Count > 0 && o.publishing():
		phase = "running"
		if want := int64(o.Count) * int64(o.Pubs); want > 0 {
			frac = float64(c.Sent) / float64(want)
		}
	default:
		el := now.Sub(start)
		phase = "running"
		if el > total {
			phase = "draining"
		}
		frac = el.Seconds() / total.Seconds()
	}
	frac = min(max(frac, 0), 1)
	line := fmt.Sprintf("%-10s conn %s/%s", phase, short(c.Alive), short(int64(p.clients())))
	if o.Scenario != ScenarioConn {
		line += fmt.Sprintf("  sent %s %s/s  recv %s %s/s", short(c.Sent), short(int64(sendRate)), short(c.Received), short(int64(recvRate)))
	}
	line += fmt.Sprintf("  err %d", c.Errors)
	if p.bar {
		const width = 24
		n := int(frac * width)
		fmt.Fprintf(p.w, "\r\033[K[%s%s] %3.0f%% %s", strings.Repeat("#", n), strings.Repeat(".", width-n), frac*100, line)
		return
	}
	fmt.Fprintf(p.w, "%6.1fs %3.0f%% %s\n", time.Since(start).Seconds()*boolf(!start.IsZero()), frac*100, line)
}

func (p *progress) clients() int {
	if p.o.Scenario == ScenarioConn {
		return p.o.Conns
	}
	return p.o.Pubs + p.o.Subs
}

func boolf(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// short formats counts compactly: 1234 -> 1.2k, 2500000 -> 2.50M.
func short(n int64) string {
	f := float64(n)
	switch {
	case n >= 1e9:
		return fmt.Sprintf("%.2fG", f/1e9)
	case n >= 1e6:
		return fmt.Sprintf("%.2fM", f/1e6)
	case n >= 1e4:
		return fmt.Sprintf("%.0fk", f/1e3)
	case n >= 1e3:
		return fmt.Sprintf("%.1fk", f/1e3)
	}
	return fmt.Sprint(n)
}
