package bench

import (
	"context"
	"fmt"
	"io"
	"time"
)

// Run performs one run as o describes: progress goes to stderr, the report
// (a table, or JSON with o.JSON) to stdout, a chart to o.Chart. The error is
// non-nil only when the run could not be attempted (bad options, workers
// that cannot be started); faults during the run are in the report, whose
// ExitCode the command should return.
func Run(ctx context.Context, o Options, stdout, stderr io.Writer) (*Report, error) {
	o.EnsureDefaults()
	if err := o.Validate(); err != nil {
		return nil, err
	}
	o.RunStart = time.Now().UnixNano()
	cpu0 := toolCPU()
	n := max(o.Workers, 1)
	agg := newAggregator(n)
	var fl fleet
	var err error
	if o.Workers > 0 {
		fl, err = startProcs(&o, agg, stderr)
	} else {
		fl, err = startLocal(ctx, &o, agg)
	}
	if err != nil {
		return nil, err
	}
	prog := newProgress(&o, stderr, agg)
	interrupted := false
	stopWatch := context.AfterFunc(ctx, func() { fl.Stop() })
	defer stopWatch()

	agg.wait(rankReady, time.Time{})
	var broker brokerSampler
	broker.pid = o.BrokerPID
	if o.Scenario == ScenarioConn {
		broker.sample(&broker.before)
	}
	start := time.Now().Add(10 * time.Millisecond)
	if o.Workers > 0 {
		start = time.Now().Add(200 * time.Millisecond) // time for the line to reach every worker
	}
	if agg.total().Connected == 0 && o.Scenario != ScenarioConn {
		fl.Stop() // nothing to run; go straight to the report
	}
	fl.Start(start)
	prog.started(start)

	switch {
	case o.Scenario == ScenarioConn:
		// RSS per idle connection: sample once everything is open and has
		// settled a little, while the connections are still held.
		agg.wait(rankConnected, time.Time{})
		settle := min(time.Second, o.Duration/2)
		agg.wait(rankDrained, time.Now().Add(settle))
		broker.sample(&broker.after)
	default:
		// CPU per delivered message: from the start of measurement to the
		// end of the drain.
		if !agg.wait(rankDrained, start.Add(o.Warmup)) {
			broker.sample(&broker.before)
		}
		if o.Workers > 0 && o.fanoutFactor() > 0 {
			drainWorkers(&o, agg, fl)
		}
		agg.wait(rankDrained, time.Time{})
		broker.sample(&broker.after)
	}
	agg.wait(rankDrained, time.Time{})
	fl.Finish()
	if !agg.wait(rankResult, time.Now().Add(2*time.Minute)) {
		fmt.Fprintln(stderr, "bench: runners did not report within 2 minutes")
	}
	fl.Wait()
	timeline := prog.finish()
	interrupted = ctx.Err() != nil

	results := make([]*Result, n)
	agg.mu.Lock()
	copy(results, agg.results)
	agg.mu.Unlock()
	rep, err := buildReport(&o, results, &agg.errs)
	if err != nil {
		return nil, err
	}
	rep.Timeline = timeline
	rep.Interrupted = interrupted
	rep.ToolCPU = (toolCPU() - cpu0).Seconds()
	rep.Broker = broker.usage(rep)
	if o.Chart != "" {
		if err := rep.WriteChartFile(o.Chart); err != nil {
			fmt.Fprintf(stderr, "bench: chart: %v\n", err)
		}
	}
	if o.JSON {
		err = rep.WriteJSON(stdout)
	} else {
		err = rep.WriteText(stdout)
	}
	return rep, err
}

// drainWorkers ends the drain of a multi-process fan-in or fan-out, where
// no worker knows what the others publish: once every publisher has
// finished, stop when the totals say everything arrived or nothing arrived
// for a second. The workers' own Drain deadline still bounds it.
func drainWorkers(o *Options, agg *aggregator, fl fleet) {
	if !agg.wait(rankPublished, time.Time{}) || agg.reached(rankDrained) {
		return
	}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	var last int64 = -1
	lastAt := time.Now()
	for range tick.C {
		if agg.reached(rankDrained) {
			return
		}
		t := agg.total()
		if t.Received >= t.Sent*o.fanoutFactor() || time.Since(lastAt) >= quietDrain {
			fl.Stop()
			return
		}
		if t.Received != last {
			last, lastAt = t.Received, time.Now()
		}
	}
}

// brokerSampler takes the /proc samples of --broker-pid.
type brokerSampler struct {
	pid           int
	before, after procSample
	err           error
}

func (b *brokerSampler) sample(into *procSample) {
	if b.pid == 0 {
		return
	}
	s, err := sampleProc(b.pid)
	if err != nil && b.err == nil {
		b.err = err
	}
	*into = s
}

func (b *brokerSampler) usage(r *Report) *BrokerUsage {
	if b.pid == 0 {
		return nil
	}
	u := &BrokerUsage{PID: b.pid, RSSBefore: b.before.RSS, RSSAfter: b.after.RSS}
	if b.err != nil {
		u.SampleFailures = b.err.Error()
	}
	if !b.before.OK || !b.after.OK {
		return u
	}
	cpu := b.after.CPU - b.before.CPU
	u.CPU = cpu.Seconds()
	if r.Scenario == ScenarioConn {
		if r.Connected > 0 {
			u.RSSPerConn = float64(b.after.RSS-b.before.RSS) / float64(r.Connected)
			u.CPUPerConnect = float64(cpu.Microseconds()) / float64(r.Connected)
		}
	} else if n := r.RecvWindow; n > 0 || r.Scenario == ScenarioPub {
		// Sampled over the same window as the deliveries counted (pub has
		// none: per message received by the broker then).
		if r.Scenario == ScenarioPub {
			n = r.SentWindow
		}
		if n > 0 {
			u.CPUPerMsg = float64(cpu.Nanoseconds()) / 1e3 / float64(n)
		}
	}
	return u
}
