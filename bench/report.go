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
	Scenario    string  `json:"scenario"`
	Proto       string  `json:"proto"`
	Addr        string  `json:"addr"`
	MQTTVersion int     `json:"mqtt_version,omitempty"`
	QoS         int     `json:"qos"`
	Size        int     `json:"size"`
	Pubs        int     `json:"pubs,omitempty"`
	Subs        int     `json:"subs,omitempty"`
	Clients     int     `json:"clients,omitempty"`     // churn
	Groups      int     `json:"groups,omitempty"`      // shared
	Rate0       float64 `json:"target_rate,omitempty"` // --rate per publisher
	Workers     int     `json:"workers"`
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
	Latency    Latency  `json:"latency"`               // publish (socket write) to delivery
	AckLatency *Latency `json:"ack_latency,omitempty"` // publish to PUBACK/PUBCOMP
	// LatencyIntended is measured from when the --rate schedule wanted
	// each message sent: it includes the time a publisher waited on a
	// broker that stalled (coordinated omission), which Latency omits.
	LatencyIntended *Latency `json:"latency_intended,omitempty"`

	Connected      int64    `json:"connected"`
	ConnectFailed  int64    `json:"connect_failed"`
	ConnectRate    float64  `json:"connect_rate"`
	ConnectLatency *Latency `json:"connect_latency,omitempty"`

	// SessionPresent counts churn connects that resumed a stored session.
	SessionPresent int64 `json:"session_present,omitempty"`

	Errors map[string]int64 `json:"errors"`
	// ErrorSamples holds the first message of each error kind.
	ErrorSamples map[string]string `json:"error_samples,omitempty"`
	Broker       *BrokerUsage      `json:"broker,omitempty"`
	ToolCPU      float64           `json:"tool_cpu_s"`
	// ToolCPUWindow is the load tool's CPU (every process, agents
	// included) over the same window as the broker's, so that the two
	// per-message figures compare.
	ToolCPUWindow     float64 `json:"tool_cpu_window_s"`
	ToolCPUPerMsg     float64 `json:"tool_cpu_per_msg_us,omitempty"`
	ToolCPUPerConnect float64 `json:"tool_cpu_per_connect_us,omitempty"`
	Interrupted       bool    `json:"interrupted,omitempty"`
	ExitCode          int     `json:"exit_code"`

	// Per-client spread: the slowest subscriber decides a fan-out.
	PerSubscriber *ClientSpread `json:"per_subscriber,omitempty"`
	PerPublisher  *ClientSpread `json:"per_publisher,omitempty"`
	// Agents that ran the clients (--agents).
	Agents []AgentInfo `json:"agents,omitempty"`
	// Series is the run second by second.
	Series []SeriesPoint `json:"series,omitempty"`

	hist *hdrhistogram.Histogram // for the chart
}

// ClientSpread is the distribution over clients of one role: rate
// (received per subscriber, sent per publisher, over the measured window)
// and p99 latency (delivery for subscribers, from the intended send time
// under --rate; acknowledgement for publishers).
type ClientSpread struct {
	Clients     int     `json:"clients"`
	Rate        Spread  `json:"msgs_per_s"`
	P99         *Spread `json:"p99_us,omitempty"`
	Slowest     string  `json:"slowest"` // the client with the lowest rate
	SlowestRate float64 `json:"slowest_msgs_per_s"`
	WorstP99    string  `json:"worst_p99,omitempty"` // the client with the highest p99
	WorstP99US  int64   `json:"worst_p99_us,omitempty"`
}

// AgentInfo is what the coordinator saw of one agent.
type AgentInfo struct {
	Addr string `json:"addr"`
	// ClockOffset is the agent's wall clock minus ours, estimated at the
	// handshake (±RTT/2): latencies between clients on different machines
	// are off by the difference of their clocks.
	ClockOffsetUS int64 `json:"clock_offset_us"`
	RTTUS         int64 `json:"rtt_us"`
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

// buildReport merges the runners' results.
func buildReport(o *Options, results []*Result, extra *errCounter) (*Report, error) {
	rep := &Report{
		Scenario: o.Scenario, Proto: o.Proto, Addr: o.Addr, QoS: int(o.QoS), Size: o.Size,
		Pubs: o.Pubs, Subs: o.Subs, Workers: o.Workers, Errors: map[string]int64{},
		ErrorSamples: map[string]string{}, Rate0: o.Rate,
	}
	switch o.Scenario {
	case ScenarioChurn:
		rep.Clients = o.Clients
	case ScenarioShared:
		rep.Groups = min(o.Groups, o.Subs)
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
	lat, latCO, ack, conn := newHist(), newHist(), newHist(), newHist()
	var clients []ClientStat
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
		rep.SessionPresent += r.SessionPresent
		rep.ToolCPUWindow += r.CPUWindow
		clients = append(clients, r.Clients...)
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
		}{{lat, r.Latency}, {latCO, r.LatencyCO}, {ack, r.AckLatency}, {conn, r.ConnLatency}} {
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
	if latCO.TotalCount() > 0 {
		l := summarize(latCO)
		rep.LatencyIntended = &l
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
	rep.PerSubscriber = spreadClients(clients, "sub", rep.recvSpan(measure, lastRecv, o))
	rep.PerPublisher = spreadClients(clients, "pub", time.Duration(pubEnd-measure).Seconds())
	series, err := mergeSeries(results)
	if err != nil {
		return nil, err
	}
	rep.Series = series
	rep.ExitCode = rep.exitCode(o)
	return rep, nil
}

// recvSpan is the time the receive rates are over.
func (r *Report) recvSpan(measure, lastRecv int64, o *Options) float64 {
	if measure == 0 || lastRecv <= measure {
		if o.Scenario == ScenarioSub {
			return o.Duration.Seconds()
		}
		return 0
	}
	span := time.Duration(lastRecv - measure).Seconds()
	if o.Scenario == ScenarioSub {
		span = max(span, o.Duration.Seconds())
	}
	return span
}

// spreadClients is the distribution over the clients of one role; nil when
// there are none or no span to rate them over.
func spreadClients(all []ClientStat, role string, span float64) *ClientSpread {
	var rates, p99s []float64
	cs := &ClientSpread{}
	slowest, worst := -1.0, int64(-1)
	for _, c := range all {
		if c.Role != role {
			continue
		}
		cs.Clients++
		rate := 0.0
		if span > 0 {
			rate = float64(c.N) / span
		}
		rates = append(rates, rate)
		if slowest < 0 || rate < slowest {
			slowest, cs.Slowest = rate, c.ID
		}
		if c.P99 >= 0 {
			p99s = append(p99s, float64(c.P99))
			if c.P99 > worst {
				worst, cs.WorstP99 = c.P99, c.ID
			}
		}
	}
	if cs.Clients == 0 || span <= 0 {
		return nil
	}
	cs.Rate, cs.SlowestRate = spreadOf(rates), slowest
	if len(p99s) > 0 {
		p := spreadOf(p99s)
		cs.P99, cs.WorstP99US = &p, worst
	}
	return cs
}

// perMsgBase is what CPU per message divides by: deliveries in the window,
// or for pub (nothing delivered) the publishes the broker took.
func (r *Report) perMsgBase() int64 {
	if r.Scenario == ScenarioPub {
		return r.SentWindow
	}
	return r.RecvWindow
}

// toolPerMsg fills the tool's per-message (or per-connect) CPU.
func (r *Report) toolPerMsg() {
	switch r.Scenario {
	case ScenarioConn:
		if r.Connected > 0 {
			r.ToolCPUPerConnect = r.ToolCPU * 1e6 / float64(r.Connected)
		}
		return
	case ScenarioChurn:
		if r.Connected > 0 {
			r.ToolCPUPerConnect = r.ToolCPUWindow * 1e6 / float64(r.Connected)
		}
		return
	}
	if n := r.perMsgBase(); n > 0 {
		r.ToolCPUPerMsg = r.ToolCPUWindow * 1e6 / float64(n)
	}
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
