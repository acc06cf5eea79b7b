package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
)

// Report is the outcome of a run; --json prints it as is.
type Report struct {
	Scenario    string `json:"scenario"`
	Proto       string `json:"proto"`
	Addr        string `json:"addr"`
	MQTTVersion int    `json:"mqtt_version,omitempty"`
	QoS         int    `json:"qos"`
	Size        int    `json:"size"`
	Pubs        int    `json:"pubs,omitempty"`
	Subs        int    `json:"subs,omitempty"`
	Workers     int    `json:"workers"`
	// Duration is the measurement window: from the end of the warmup to the
	// last delivery (or the end of publishing), the span of the rates.
	Duration float64 `json:"duration_s"`

	// Counts cover the whole run, warmup included, so that
	// lost = expected - received holds.
	Sent       int64 `json:"sent"`
	Received   int64 `json:"received"`
	Expected   int64 `json:"expected"` // sent × subscribers per message; -1 when unknown (sub)
	Lost       int64 `json:"lost"`
	Duplicates int64 `json:"duplicates"`
	OutOfOrder int64 `json:"out_of_order"`
	Stale      int64 `json:"stale,omitempty"`
	Foreign    int64 `json:"foreign,omitempty"`
	Acked      int64 `json:"acked,omitempty"`

	// Rates and latency are measured after the warmup, by receive time.
	RecvWindow int64    `json:"received_window"`       // deliveries in the window
	SentWindow int64    `json:"sent_window"`           // publishes in the window
	Rate       float64  `json:"rate"`                  // deliveries per second (pub: publishes)
	SendRate   float64  `json:"send_rate"`             // publishes per second, all publishers
	Latency    Latency  `json:"latency"`               // publish to delivery
	AckLatency *Latency `json:"ack_latency,omitempty"` // publish to PUBACK/PUBCOMP

	Connected      int64    `json:"connected"`
	ConnectFailed  int64    `json:"connect_failed"`
	ConnectRate    float64  `json:"connect_rate"`
	ConnectLatency *Latency `json:"connect_latency,omitempty"`

	Errors map[string]int64 `json:"errors"`
	// ErrorSamples holds the first message of each error kind.
	ErrorSamples map[string]string `json:"error_samples,omitempty"`
	Broker       *BrokerUsage      `json:"broker,omitempty"`
	ToolCPU      float64           `json:"tool_cpu_s"`
	Interrupted  bool              `json:"interrupted,omitempty"`
	ExitCode     int               `json:"exit_code"`

	Timeline []TimePoint             `json:"-"`
	hist     *hdrhistogram.Histogram // for the chart
}

// BrokerUsage is what /proc said about the broker (--broker-pid).
type BrokerUsage struct {
	PID            int     `json:"pid"`
	CPU            float64 `json:"cpu_s"`
	CPUPerMsg      float64 `json:"cpu_per_msg_us,omitempty"`
	RSSBefore      int64   `json:"rss_before_bytes"`
	RSSAfter       int64   `json:"rss_after_bytes"`
	RSSPerConn     float64 `json:"rss_per_conn_bytes,omitempty"`
	CPUPerConnect  float64 `json:"cpu_per_connect_us,omitempty"`
	SampleFailures string  `json:"sample_error,omitempty"`
}

// TimePoint is one second of the rate timeline.
type TimePoint struct {
	T        float64 `json:"t"` // seconds since start
	SendRate float64 `json:"send_rate"`
	RecvRate float64 `json:"recv_rate"`
	Conns    int64   `json:"conns"`
}

// buildReport merges the runners' results.
func buildReport(o *Options, results []*Result, extra *errCounter) (*Report, error) {
	rep := &Report{
		Scenario: o.Scenario, Proto: o.Proto, Addr: o.Addr, QoS: int(o.QoS), Size: o.Size,
		Pubs: o.Pubs, Subs: o.Subs, Workers: o.Workers, Errors: map[string]int64{},
		ErrorSamples: map[string]string{},
	}
	sample := func(m map[string]string) {
		for k, v := range m {
			if _, ok := rep.ErrorSamples[k]; !ok {
				rep.ErrorSamples[k] = v
			}
		}
	}
	if o.Proto == "mqtt" {
		rep.MQTTVersion = int(o.MQTTVersion)
	}
	if o.Scenario == ScenarioConn {
		rep.Pubs, rep.Subs = 0, 0
	}
	lat, ack, conn := newHist(), newHist(), newHist()
	var connStart, connEnd, lastRecv, pubEnd, measure, gaps, sentWin, recvWin int64
	for _, r := range results {
		if r == nil {
			continue
		}
		rep.Sent += r.Sent
		rep.Received += r.Received
		sentWin += r.SentWindow
		recvWin += r.RecvWindow
		rep.Duplicates += r.Duplicates
		rep.OutOfOrder += r.OutOfOrder
		rep.Stale += r.Stale
		rep.Foreign += r.Foreign
		rep.Acked += r.Acked
		rep.Connected += r.Connected
		rep.ConnectFailed += r.ConnFailed
		gaps += r.Gaps
		for k, v := range r.Errors {
			rep.Errors[k] += v
		}
		sample(r.ErrorSamples)
		if r.ConnStart != 0 && (connStart == 0 || r.ConnStart < connStart) {
			connStart = r.ConnStart
		}
		connEnd = max(connEnd, r.ConnEnd)
		lastRecv = max(lastRecv, r.LastRecv)
		pubEnd = max(pubEnd, r.PublishEnd)
		measure = max(measure, r.MeasureStart)
		for _, m := range []struct {
			dst *hdrhistogram.Histogram
			b   []byte
		}{{lat, r.Latency}, {ack, r.AckLatency}, {conn, r.ConnLatency}} {
			h, err := decodeHist(m.b)
			if err != nil {
				return nil, fmt.Errorf("bench: worker %d histogram: %w", r.Worker, err)
			}
			m.dst.Merge(h)
		}
	}
	for k, v := range extra.snapshot() {
		rep.Errors[k] += v
	}
	sample(extra.samples())
	rep.hist = lat
	rep.RecvWindow, rep.SentWindow = recvWin, sentWin
	rep.Latency = summarize(lat)
	if ack.TotalCount() > 0 {
		l := summarize(ack)
		rep.AckLatency = &l
	}
	if conn.TotalCount() > 0 {
		l := summarize(conn)
		rep.ConnectLatency = &l
	}
	if connEnd > connStart && rep.Connected > 0 {
		rep.ConnectRate = float64(rep.Connected) / time.Duration(connEnd-connStart).Seconds()
	}
	switch f := o.fanoutFactor(); {
	case f < 0:
		rep.Expected = -1
		rep.Lost = gaps
	default:
		rep.Expected = rep.Sent * f
		rep.Lost = max(rep.Expected-rep.Received, 0)
	}
	if measure > 0 {
		if pubEnd > measure {
			rep.SendRate = float64(sentWin) / time.Duration(pubEnd-measure).Seconds()
			rep.Duration = time.Duration(pubEnd - measure).Seconds()
		}
		if lastRecv > measure {
			span := time.Duration(lastRecv - measure).Seconds()
			if o.Scenario == ScenarioSub {
				span = max(span, o.Duration.Seconds())
			}
			rep.Rate = float64(recvWin) / span
			rep.Duration = max(rep.Duration, span)
		}
	}
	if o.Scenario == ScenarioPub {
		rep.Rate = rep.SendRate // nothing is delivered; the broker's intake is the rate
	}
	rep.ExitCode = rep.exitCode(o)
	return rep, nil
}

func (r *Report) exitCode(o *Options) int {
	if r.Connected == 0 {
		if len(r.Errors) == 1 && r.Errors[KindAuth] > 0 {
			return ExitAuth
		}
		return ExitNoConnect
	}
	for _, n := range r.Errors {
		if n > 0 {
			return ExitErrors
		}
	}
	return ExitOK
}

// WriteJSON prints the report as one JSON object and a newline.
func (r *Report) WriteJSON(w io.Writer) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

// WriteText prints the report as an aligned table for people.
func (r *Report) WriteText(w io.Writer) error {
	var b strings.Builder
	head := fmt.Sprintf("cim bench %s  %s", r.Scenario, r.Proto)
	if r.MQTTVersion != 0 {
		head += fmt.Sprintf(" v%d", r.MQTTVersion)
	}
	head += fmt.Sprintf("  %s", r.Addr)
	if r.Scenario != ScenarioConn {
		head += fmt.Sprintf("  qos %d  %d B", r.QoS, r.Size)
		head += fmt.Sprintf("  %d pub → %d sub", r.Pubs, r.Subs)
	}
	if r.Workers > 0 {
		head += fmt.Sprintf("  %d workers", r.Workers)
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
	row("connected", "%s", conn)
	if l := r.ConnectLatency; l != nil {
		row("connect µs", "%s", latLine(*l))
	}
	if r.Scenario != ScenarioConn {
		row("sent", "%s", num(r.Sent))
		recv := num(r.Received)
		if r.Expected >= 0 {
			recv += fmt.Sprintf("   (expected %s)", num(r.Expected))
		}
		row("received", "%s", recv)
		row("rate", "%s msgs/s received, %s msgs/s sent   (over %.2f s after warmup)", num(int64(r.Rate)), num(int64(r.SendRate)), r.Duration)
		lost := num(r.Lost)
		if r.Expected > 0 {
			lost += fmt.Sprintf(" (%.3f%%)", 100*float64(r.Lost)/float64(r.Expected))
		}
		row("lost", "%s", lost)
		row("duplicates", "%s", num(r.Duplicates))
		row("out of order", "%s", num(r.OutOfOrder))
		if r.Stale+r.Foreign > 0 {
			row("ignored", "%s stale, %s foreign", num(r.Stale), num(r.Foreign))
		}
		row("latency µs", "%s", latLine(r.Latency))
		if l := r.AckLatency; l != nil {
			row("ack µs", "%s", latLine(*l))
		}
	}
	if br := r.Broker; br != nil {
		s := fmt.Sprintf("pid %d  cpu %.2f s", br.PID, br.CPU)
		if br.CPUPerMsg > 0 {
			s += fmt.Sprintf(" = %.2f µs/msg", br.CPUPerMsg)
		}
		if br.CPUPerConnect > 0 {
			s += fmt.Sprintf(" = %.1f µs/connect", br.CPUPerConnect)
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
	row("tool cpu", "%.2f s", r.ToolCPU)
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

func latLine(l Latency) string {
	if l.Count == 0 {
		return "-"
	}
	return fmt.Sprintf("p50 %s  p90 %s  p99 %s  p99.9 %s  max %s  (n %s)",
		num(l.P50), num(l.P90), num(l.P99), num(l.P999), num(l.Max), num(l.Count))
}

// num formats with thousands separators: 1234567 -> 1,234,567.
func num(n int64) string {
	s := fmt.Sprint(n)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

func bytesStr(n int64) string {
	f := float64(n)
	switch {
	case n < 0:
		return "-" + bytesStr(-n)
	case f >= 1<<30:
		return fmt.Sprintf("%.2f GB", f/(1<<30))
	case f >= 1<<20:
		return fmt.Sprintf("%.1f MB", f/(1<<20))
	case f >= 1<<10:
		return fmt.Sprintf("%.1f KB", f/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
