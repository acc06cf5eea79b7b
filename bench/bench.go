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
	agents := splitList(o.Agents)
	n := max(o.Workers, 1)
	if len(agents) > 0 {
		n *= len(agents)
	}
	agg := newAggregator(n)
	var fl fleet
	var err error
	var af *agentFleet
	switch {
	case len(agents) > 0:
		af, err = startAgents(ctx, &o, agents, agg)
		fl = af
	case o.Workers > 0:
		fl, err = startProcs(&o, 0, n, agg, stderr)
	default:
		fl, err = startLocal(ctx, &o, 0, 1, agg)
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
	// This process's own CPU over the window, when the clients run
	// elsewhere (workers, agents): a coordinator costs the machine too.
	var self0, self1 time.Duration
	if o.Scenario == ScenarioConn {
		broker.sample(&broker.before)
	}
	lead := 10 * time.Millisecond
	switch {
	case af != nil:
		lead = 300*time.Millisecond + 2*af.maxRTT()
	case o.Workers > 0:
		lead = 200 * time.Millisecond // time for the line to reach every worker
	}
	start := time.Now().Add(lead)
	if agg.total().Connected == 0 && o.Scenario != ScenarioConn && o.Scenario != ScenarioChurn {
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
			self0 = processCPU()
		}
		if n > 1 && o.fanoutFactor() > 0 && o.Scenario != ScenarioChurn {
			drainWorkers(&o, agg, fl)
		}
		agg.wait(rankDrained, time.Time{})
		broker.sample(&broker.after)
		if self0 > 0 {
			self1 = processCPU()
		}
	}
	agg.wait(rankDrained, time.Time{})
	fl.Finish()
	if !agg.wait(rankResult, time.Now().Add(2*time.Minute)) {
		fmt.Fprintln(stderr, "bench: runners did not report within 2 minutes")
	}
	fl.Wait()
	prog.finish()
	interrupted = ctx.Err() != nil

	results := make([]*Result, n)
	agg.mu.Lock()
	copy(results, agg.results)
	agg.mu.Unlock()
	rep, err := buildReport(&o, results, &agg.errs)
	if err != nil {
		return nil, err
	}
	if af != nil {
		rep.Agents = af.infos()
		// Agents run elsewhere: getrusage here does not see them.
		for _, r := range results {
			if r != nil {
				rep.ToolCPU += r.CPUAll
			}
		}
	}
	rep.Interrupted = interrupted
	rep.ToolCPU += (toolCPU() - cpu0).Seconds()
	if o.Workers > 0 || af != nil {
		rep.ToolCPUWindow += (self1 - self0).Seconds()
	}
	rep.Broker = broker.usage(rep)
	rep.toolPerMsg()
	if o.Chart != "" {
		if err := rep.WriteChartFile(o.Chart); err != nil {
			fmt.Fprintf(stderr, "bench: chart: %v\n", err)
		}
	}
	if o.CSV != "" {
		if err := rep.WriteCSVFile(o.CSV); err != nil {
			fmt.Fprintf(stderr, "bench: csv: %v\n", err)
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
		acked := o.QoS == 0 || t.Acked >= t.Sent // acks may trail deliveries
		if acked && t.Received >= t.Sent*o.fanoutFactor() || time.Since(lastAt) >= quietDrain {
			fl.Stop()
			return
		}
		if p := t.Received + t.Acked; p != last {
			last, lastAt = p, time.Now()
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
	if r.Scenario == ScenarioConn || r.Scenario == ScenarioChurn {
		// churn: per connect-subscribe-publish-disconnect cycle.
		if r.Connected > 0 {
			if r.Scenario == ScenarioConn {
				u.RSSPerConn = float64(b.after.RSS-b.before.RSS) / float64(r.Connected)
			}
			u.CPUPerConnect = float64(cpu.Microseconds()) / float64(r.Connected)
		}
	} else if n := r.perMsgBase(); n > 0 {
		// Sampled over the same window as the deliveries counted.
		u.CPUPerMsg = float64(cpu.Nanoseconds()) / 1e3 / float64(n)
	}
	return u
}
