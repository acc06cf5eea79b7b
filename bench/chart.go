package bench

import (
	"fmt"
	"html"
	"io"
	"math"
	"os"
	"strings"
)

// WriteChartFile writes the report as a self-contained HTML page: a summary,
// a latency histogram (log-scaled buckets) and the rate timeline, as inline
// SVG with no scripts or external resources.
func (r *Report) WriteChartFile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := r.writeChart(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

const (
	chartW, chartH = 760, 260
	padL, padB     = 64, 36
	padT, padR     = 16, 16
)

func (r *Report) writeChart(w io.Writer) error {
	var b strings.Builder
	title := fmt.Sprintf("cim bench %s — %s %s", r.Scenario, r.Proto, r.Addr)
	fmt.Fprintf(&b, `<!doctype html><html><head><meta charset="utf-8"><title>%s</title>
<style>body{font:14px system-ui,sans-serif;margin:24px;color:#222}table{border-collapse:collapse}
td{padding:2px 12px 2px 0}svg{background:#fafafa;border:1px solid #ddd;margin:8px 0 24px}
.ax{stroke:#888;stroke-width:1}.lb{font-size:11px;fill:#555}</style></head><body>
<h2>%s</h2><table>`, html.EscapeString(title), html.EscapeString(title))
	row := func(k, v string) {
		fmt.Fprintf(&b, "<tr><td>%s</td><td>%s</td></tr>", html.EscapeString(k), html.EscapeString(v))
	}
	if r.Scenario != ScenarioConn {
		row("qos / size", fmt.Sprintf("%d / %d B", r.QoS, r.Size))
		row("publishers → subscribers", fmt.Sprintf("%d → %d", r.Pubs, r.Subs))
		row("sent", fmt.Sprintf("%s (%s/s)", num(r.Sent), num(int64(r.SendRate))))
		row("received", fmt.Sprintf("%s (%s/s)", num(r.Received), num(int64(r.Rate))))
		row("lost / duplicates / out of order", fmt.Sprintf("%s / %s / %s", num(r.Lost), num(r.Duplicates), num(r.OutOfOrder)))
		row("latency µs", latLine(r.Latency))
		if l := r.LatencyIntended; l != nil {
			row("latency µs from intended send time", latLine(*l))
		}
	}
	row("connected", fmt.Sprintf("%s (%s/s)", num(r.Connected), num(int64(r.ConnectRate))))
	if br := r.Broker; br != nil {
		row("broker cpu", fmt.Sprintf("%.2f s, %.2f µs/msg", br.CPU, br.CPUPerMsg))
		row("tool cpu", r.toolLine())
		row("broker rss", fmt.Sprintf("%s → %s", bytesStr(br.RSSBefore), bytesStr(br.RSSAfter)))
	}
	b.WriteString("</table>")
	if r.hist != nil && r.hist.TotalCount() > 0 {
		b.WriteString("<h3>Latency histogram (µs, log scale)</h3>")
		r.latencySVG(&b)
	}
	if len(r.Series) > 0 {
		if r.Scenario != ScenarioConn {
			b.WriteString("<h3>Rate over time (msgs/s)</h3>")
			r.seriesSVG(&b, []seriesLine{
				{"sent/s", "#c1884a", func(p SeriesPoint) float64 { return p.SentPerS }},
				{"received/s", "#4a7fc1", func(p SeriesPoint) float64 { return p.RecvPerS }},
			})
			b.WriteString("<h3>Latency over time (µs, per second)</h3>")
			lines := []seriesLine{
				{"p50", "#4a7fc1", func(p SeriesPoint) float64 { return float64(p.P50) }},
				{"p99", "#c14a4a", func(p SeriesPoint) float64 { return float64(p.P99) }},
			}
			if r.LatencyIntended != nil {
				lines = append(lines, seriesLine{"p99 from intended send time", "#7a4ac1", func(p SeriesPoint) float64 { return float64(p.P99CO) }})
			}
			r.seriesSVG(&b, lines)
		}
		b.WriteString("<h3>Connections and errors over time</h3>")
		r.seriesSVG(&b, []seriesLine{
			{"connections", "#4a7fc1", func(p SeriesPoint) float64 { return float64(p.Conns) }},
			{"connects/s", "#4ac17a", func(p SeriesPoint) float64 { return p.ConnsPerS }},
			{"errors", "#c14a4a", func(p SeriesPoint) float64 { return float64(p.Errors) }},
		})
	}
	b.WriteString("</body></html>\n")
	_, err := io.WriteString(w, b.String())
	return err
}

// latencySVG draws counts in 10 buckets per decade of latency.
func (r *Report) latencySVG(b *strings.Builder) {
	const perDecade = 10
	lo := math.Floor(math.Log10(float64(max(r.hist.Min(), 1))))
	hi := math.Ceil(math.Log10(float64(max(r.hist.Max(), 1)) + 1))
	if hi <= lo {
		hi = lo + 1
	}
	n := int((hi - lo) * perDecade)
	counts := make([]int64, n)
	for _, bar := range r.hist.Distribution() {
		if bar.Count == 0 {
			continue
		}
		x := math.Log10(float64(max(bar.From, 1)))
		i := min(max(int((x-lo)*perDecade), 0), n-1)
		counts[i] += bar.Count
	}
	var top int64 = 1
	for _, c := range counts {
		top = max(top, c)
	}
	pw, ph := float64(chartW-padL-padR), float64(chartH-padT-padB)
	fmt.Fprintf(b, `<svg width="%d" height="%d" xmlns="http://www.w3.org/2000/svg">`, chartW, chartH)
	bw := pw / float64(n)
	for i, c := range counts {
		if c == 0 {
			continue
		}
		h := ph * float64(c) / float64(top)
		fmt.Fprintf(b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="#4a7fc1"><title>%.0f–%.0f µs: %d</title></rect>`,
			float64(padL)+float64(i)*bw+0.5, float64(padT)+ph-h, max(bw-1, 1), h,
			math.Pow(10, lo+float64(i)/perDecade), math.Pow(10, lo+float64(i+1)/perDecade), c)
	}
	axes(b, pw, ph)
	for d := lo; d <= hi; d++ {
		x := float64(padL) + (d-lo)*perDecade*bw
		fmt.Fprintf(b, `<text class="lb" x="%.1f" y="%d" text-anchor="middle">%s</text>`, x, chartH-padB+16, num(int64(math.Pow(10, d))))
	}
	fmt.Fprintf(b, `<text class="lb" x="%d" y="%d" text-anchor="end">%s</text>`, padL-6, padT+10, num(top))
	// Percentile markers.
	for _, m := range []struct {
		name string
		v    int64
	}{{"p50", r.Latency.P50}, {"p99", r.Latency.P99}, {"p99.9", r.Latency.P999}} {
		if m.v <= 0 {
			continue
		}
		x := float64(padL) + (math.Log10(float64(m.v))-lo)*perDecade*bw
		fmt.Fprintf(b, `<line x1="%.1f" x2="%.1f" y1="%d" y2="%d" stroke="#c14a4a" stroke-dasharray="4 3"/><text class="lb" x="%.1f" y="%d">%s</text>`,
			x, x, padT, chartH-padB, x+3, padT+10, m.name)
	}
	b.WriteString("</svg>")
}

type seriesLine struct {
	name, color string
	v           func(SeriesPoint) float64
}

// seriesSVG draws lines over the time series, one scale for all.
func (r *Report) seriesSVG(b *strings.Builder, lines []seriesLine) {
	tl := r.Series
	var top, tmax float64 = 1, 1
	for _, p := range tl {
		for _, l := range lines {
			top = max(top, l.v(p))
		}
		tmax = max(tmax, p.T)
	}
	pw, ph := float64(chartW-padL-padR), float64(chartH-padT-padB)
	fmt.Fprintf(b, `<svg width="%d" height="%d" xmlns="http://www.w3.org/2000/svg">`, chartW, chartH)
	for i, l := range lines {
		var pts []string
		for _, p := range tl {
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", float64(padL)+pw*p.T/tmax, float64(padT)+ph-ph*l.v(p)/top))
		}
		fmt.Fprintf(b, `<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>`, l.color, strings.Join(pts, " "))
		fmt.Fprintf(b, `<text class="lb" x="%d" y="%d" fill="%s">%s</text>`, padL+8+i*150, padT+12, l.color, html.EscapeString(l.name))
	}
	axes(b, pw, ph)
	fmt.Fprintf(b, `<text class="lb" x="%d" y="%d" text-anchor="end">%s</text>`, padL-6, padT+10, num(int64(top)))
	fmt.Fprintf(b, `<text class="lb" x="%d" y="%d" text-anchor="end">%.0f s</text>`, chartW-padR, chartH-padB+16, tmax)
	b.WriteString("</svg>")
}

func axes(b *strings.Builder, pw, ph float64) {
	fmt.Fprintf(b, `<line class="ax" x1="%d" y1="%.1f" x2="%.1f" y2="%.1f"/><line class="ax" x1="%d" y1="%d" x2="%d" y2="%.1f"/>`,
		padL, float64(padT)+ph, float64(padL)+pw, float64(padT)+ph, padL, padT, padL, float64(padT)+ph)
}
