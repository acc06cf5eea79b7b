package bench

import (
	"fmt"
	"io"
	"strings"
)

// WriteText prints the report as an aligned table for people. Rows appear
// only where they mean something: pub has no deliveries to count, sub
// sends nothing.
func (r *Report) WriteText(w io.Writer) error {
	var b strings.Builder
	head := fmt.Sprintf("cim bench %s  %s", r.Scenario, r.Proto)
	if r.MQTTVersion != 0 {
		head += fmt.Sprintf(" v%d", r.MQTTVersion)
	}
	head += fmt.Sprintf("  %s", r.Addr)
	switch r.Scenario {
	case ScenarioConn:
	case ScenarioChurn:
		head += fmt.Sprintf("  qos %d  %d B  %d clients churning", r.QoS, r.Size, r.Clients)
	default:
		head += fmt.Sprintf("  qos %d  %d B  %d pub → %d sub", r.QoS, r.Size, r.Pubs, r.Subs)
		if r.Groups > 0 {
			head += fmt.Sprintf(" in %d shared group(s)", r.Groups)
		}
	}
	if r.Rate0 > 0 {
		head += fmt.Sprintf("  --rate %s/s", num(int64(r.Rate0)))
	}
	if r.Workers > 0 {
		head += fmt.Sprintf("  %d workers", r.Workers)
	}
	if len(r.Agents) > 0 {
		head += fmt.Sprintf("  %d agents", len(r.Agents))
	}
	b.WriteString(head + "\n")
	row := func(k, format string, args ...any) {
		fmt.Fprintf(&b, "  %-14s %s\n", k, fmt.Sprintf(format, args...))
	}
	conn := num(r.Connected)
	if r.ConnectFailed > 0 {
		conn += fmt.Sprintf(" (%s failed)", num(r.ConnectFailed))
	}
	if r.ConnectRate > 0 {
		conn += fmt.Sprintf("   %s/s", num(int64(r.ConnectRate)))
	}
	label := "connected"
	if r.Scenario == ScenarioChurn {
		label = "cycles"
	}
	row(label, "%s", conn)
	if r.Scenario == ScenarioChurn && r.SessionPresent > 0 {
		row("session found", "%s of %s connects", num(r.SessionPresent), num(r.Connected))
	}
	if l := r.ConnectLatency; l != nil {
		row("connect µs", "%s", latLine(*l))
	}
	sends := r.Scenario != ScenarioConn && r.Scenario != ScenarioSub
	receives := r.Scenario != ScenarioConn && r.Scenario != ScenarioPub
	if sends {
		row("sent", "%s   %s msgs/s over %.2f s after warmup", num(r.Sent), num(int64(r.SendRate)), r.sendSpan())
		if r.Acked > 0 || r.AckLatency != nil {
			row("acked", "%s", num(r.Acked))
		}
	}
	if receives {
		recv := num(r.Received)
		if r.Expected >= 0 {
			recv += fmt.Sprintf(" (expected %s)", num(r.Expected))
		}
		recv += fmt.Sprintf("   %s msgs/s over %.2f s after warmup", num(int64(r.Rate)), r.Duration)
		row("received", "%s", recv)
		lost := num(r.Lost)
		if r.Expected > 0 {
			lost += fmt.Sprintf(" (%.3f%%)", 100*float64(r.Lost)/float64(r.Expected))
		} else if r.Expected < 0 {
			lost += " (gaps in the sequences that arrived)"
		}
		row("lost", "%s", lost)
		row("duplicates", "%s", num(r.Duplicates))
		row("out of order", "%s", num(r.OutOfOrder))
	}
	if r.Stale+r.Foreign > 0 {
		row("ignored", "%s stale, %s foreign", num(r.Stale), num(r.Foreign))
	}
	if receives {
		row("latency µs", "%s", latLine(r.Latency))
		if l := r.LatencyIntended; l != nil {
			row("intended µs", "%s   (from the --rate schedule)", latLine(*l))
		}
	}
	if l := r.AckLatency; l != nil {
		row("ack µs", "%s", latLine(*l))
	}
	spreadRows(row, "per sub", r.PerSubscriber, "received")
	spreadRows(row, "per pub", r.PerPublisher, "sent")
	if br := r.Broker; br != nil {
		s := fmt.Sprintf("pid %d  cpu %.2f s", br.PID, br.CPU)
		if br.CPUPerMsg > 0 {
			s += fmt.Sprintf(" = %.2f µs/msg", br.CPUPerMsg)
		}
		if br.CPUPerConnect > 0 {
			s += fmt.Sprintf(" = %.1f µs/%s", br.CPUPerConnect, r.connectUnit())
		}
		s += fmt.Sprintf("  rss %s → %s", bytesStr(br.RSSBefore), bytesStr(br.RSSAfter))
		if br.RSSPerConn != 0 {
			s += fmt.Sprintf(" = %s/conn", bytesStr(int64(br.RSSPerConn)))
		}
		if br.SampleFailures != "" {
			s += "  (" + br.SampleFailures + ")"
		}
		row("broker", "%s", s)
	}
	row("tool cpu", "%s", r.toolLine())
	for _, a := range r.Agents {
		row("agent", "%s  rtt %s µs  clock offset %s µs", a.Addr, num(a.RTTUS), num(a.ClockOffsetUS))
	}
	if len(r.Errors) == 0 {
		row("errors", "none")
	} else {
		var parts []string
		for _, k := range sortedKeys(r.Errors) {
			parts = append(parts, fmt.Sprintf("%s %s", k, num(r.Errors[k])))
		}
		row("errors", "%s", strings.Join(parts, ", "))
		for _, k := range sortedKeys(r.Errors) {
			if msg := r.ErrorSamples[k]; msg != "" {
				row("", "%s: %s", k, msg)
			}
		}
	}
	if r.Interrupted {
		row("interrupted", "yes")
	}
	row("exit", "%d", r.ExitCode)
	_, err := io.WriteString(w, b.String())
	return err
}

func (r *Report) connectUnit() string {
	if r.Scenario == ScenarioChurn {
		return "cycle"
	}
	return "connect"
}

// sendSpan is the span of the send rate, from the rates.
func (r *Report) sendSpan() float64 {
	if r.SendRate > 0 {
		return float64(r.SentWindow) / r.SendRate
	}
	return 0
}

// toolLine puts the tool's CPU beside the broker's, per message or
// connect: whether the load generator, not the broker, was the limit.
func (r *Report) toolLine() string {
	s := fmt.Sprintf("%.2f s", r.ToolCPU)
	switch {
	case r.ToolCPUPerConnect > 0:
		s += fmt.Sprintf(" = %.1f µs/%s", r.ToolCPUPerConnect, r.connectUnit())
		if br := r.Broker; br != nil && br.CPUPerConnect > 0 {
			s += fmt.Sprintf("  (%.2f× the broker's)", r.ToolCPUPerConnect/br.CPUPerConnect)
		}
	case r.ToolCPUPerMsg > 0:
		s += fmt.Sprintf(", %.2f s in the window = %.2f µs/msg", r.ToolCPUWindow, r.ToolCPUPerMsg)
		if br := r.Broker; br != nil && br.CPUPerMsg > 0 {
			s += fmt.Sprintf("  (%.2f× the broker's)", r.ToolCPUPerMsg/br.CPUPerMsg)
		}
	}
	return s
}

func spreadRows(row func(k, format string, args ...any), label string, cs *ClientSpread, what string) {
	if cs == nil {
		return
	}
	row(label, "%s msgs/s min %s  median %s  max %s  sd %s   slowest %s (%s/s)", what,
		num(int64(cs.Rate.Min)), num(int64(cs.Rate.Median)), num(int64(cs.Rate.Max)), num(int64(cs.Rate.Stddev)),
		cs.Slowest, num(int64(cs.SlowestRate)))
	if p := cs.P99; p != nil {
		row("", "p99 µs min %s  median %s  max %s  sd %s   worst %s (%s)",
			num(int64(p.Min)), num(int64(p.Median)), num(int64(p.Max)), num(int64(p.Stddev)),
			cs.WorstP99, num(cs.WorstP99US))
	}
}
