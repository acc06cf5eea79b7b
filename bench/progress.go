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
// terminal, a plain line per second otherwise. Rates are over the last
// second or more of samples, never between two samples of the same
// counters: runners report every 250 ms and publishers write in batches,
// so a shorter window would show a stale 0/s.
type progress struct {
	o     *Options
	w     io.Writer
	agg   *aggregator
	bar   bool // redraw in place
	show  bool
	every time.Duration

	mu    sync.Mutex // guards start
	start time.Time  // zero until the run starts

	stop chan struct{}
	done chan struct{}
}

// rateWindow is the span live rates are computed over.
const rateWindow = time.Second

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
	p.mu.Lock()
	p.start = at
	p.mu.Unlock()
}

// finish stops the display.
func (p *progress) finish() {
	close(p.stop)
	<-p.done
}

func (p *progress) loop() {
	defer close(p.done)
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	lastDraw := time.Now()
	for {
		select {
		case <-p.stop:
			if p.bar && p.show {
				fmt.Fprint(p.w, "\r\033[K")
			}
			return
		case now := <-tick.C:
			if !p.show || now.Sub(lastDraw) < p.every-50*time.Millisecond {
				continue
			}
			lastDraw = now
			p.mu.Lock()
			start := p.start
			p.mu.Unlock()
			var since int64
			if !start.IsZero() {
				since = start.UnixNano()
			}
			send, recv, ok := p.agg.rates(since)
			if !ok {
				send, recv = -1, -1 // nothing measured yet: say so, not 0/s
			}
			p.draw(now, start, p.agg.total(), send, recv)
		}
	}
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
	if o.Scenario == ScenarioChurn {
		line += fmt.Sprintf("  cycles %s", short(c.Connected))
	}
	if o.Scenario != ScenarioConn && o.Scenario != ScenarioSub {
		line += fmt.Sprintf("  sent %s %s/s", short(c.Sent), rateStr(sendRate))
	}
	if o.Scenario != ScenarioConn && o.Scenario != ScenarioPub {
		line += fmt.Sprintf("  recv %s %s/s", short(c.Received), rateStr(recvRate))
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
	switch p.o.Scenario {
	case ScenarioConn:
		return p.o.Conns
	case ScenarioChurn:
		return p.o.Clients
	}
	return p.o.Pubs + p.o.Subs
}

func boolf(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// rateStr is a live rate, "-" while none is known.
func rateStr(r float64) string {
	if r < 0 {
		return "-"
	}
	return short(int64(r))
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
