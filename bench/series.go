package bench

import (
	"fmt"
	"io"
	"os"
	"sort"
	"time"
)

// The time series: every runner samples its counters at each whole second
// after the agreed start (and once more when it finishes, for the last
// partial second), and records each delivery's latency into a small
// histogram of its receive second. The parent sums the counters of all
// runners second by second (a runner that finished early contributes its
// final counters), merges the histograms, and turns both into per-second
// rates and percentiles.

// seriesSample is a runner's counters at the end of second K.
type seriesSample struct {
	K int32 `json:"k"`
	// Dur is the length of the second in seconds: 1, less for the last.
	Dur float64 `json:"dur"`
	Counters
}

// seriesHist is the latency of one receive second, as sparse buckets.
type seriesHist struct {
	K   int32       `json:"k"`
	Lat [][2]uint32 `json:"lat"`
	CO  [][2]uint32 `json:"co,omitempty"`
}

// SeriesPoint is one second of a run, in the report, --json and --csv.
type SeriesPoint struct {
	T          float64 `json:"t"` // seconds since the start, end of the interval
	SentPerS   float64 `json:"sent_per_s"`
	RecvPerS   float64 `json:"received_per_s"`
	P50        int64   `json:"p50_us"`
	P99        int64   `json:"p99_us"`
	P99CO      int64   `json:"p99_intended_us,omitempty"`
	Conns      int64   `json:"conns"`
	ConnsPerS  float64 `json:"connects_per_s"`
	Errors     int64   `json:"errors"` // errors counted in this interval
	Duplicates int64   `json:"-"`
}

// sampler records the counters at each second after start, and the CPU
// time at the start of the measured window.
func (r *runner) sampler(start, from time.Time) {
	defer r.bg.Done()
	cpuAt := time.NewTimer(time.Until(from))
	defer cpuAt.Stop()
	tick := time.NewTimer(time.Until(start.Add(time.Second)))
	defer tick.Stop()
	r.addSample(0, 0) // the baseline: connects made during setup are not second 1's
	k := int32(1)
	for {
		select {
		case <-cpuAt.C:
			c := processCPU()
			r.cpuMu.Lock()
			if r.cpuFrom == 0 {
				r.cpuFrom = c
			}
			r.cpuMu.Unlock()
		case <-tick.C:
			r.addSample(k, 1)
			k++
			tick.Reset(time.Until(start.Add(time.Duration(k) * time.Second)))
		case <-r.bgStop:
			return
		}
	}
}

// addSample appends the counters as second k, unless the series has ended
// or already has it. dur < 0 ends the series.
func (r *runner) addSample(k int32, dur float64) {
	cn := r.counters()
	r.cpuMu.Lock()
	defer r.cpuMu.Unlock()
	if r.cpuTo != 0 {
		return // ended
	}
	if n := len(r.samples); n > 0 && r.samples[n-1].K >= k {
		return
	}
	r.samples = append(r.samples, seriesSample{K: k, Dur: dur, Counters: cn})
}

// endSeries takes the last (partial) sample and the CPU time at the end of
// the measured window.
func (r *runner) endSeries(start time.Time) {
	el := time.Since(start)
	if el > 0 {
		k := int32(el / time.Second)
		part := el - time.Duration(k)*time.Second
		if part > 10*time.Millisecond {
			r.addSample(k+1, part.Seconds())
		}
	}
	c := processCPU()
	r.cpuMu.Lock()
	r.cpuTo = c
	r.cpuMu.Unlock()
}

func encodeSeriesHist(secs map[int32]*secHist) []seriesHist {
	out := make([]seriesHist, 0, len(secs))
	for k, h := range secs {
		if h.lat.n == 0 || k <= 0 {
			continue
		}
		out = append(out, seriesHist{K: k, Lat: h.lat.sparse(), CO: h.co.sparse()})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].K < out[j].K })
	return out
}

// maxSeconds bounds a series from a peer: a run of a day.
const maxSeconds = 86400

// mergeSeries turns the runners' samples and histograms into the report's
// time series.
func mergeSeries(results []*Result) ([]SeriesPoint, error) {
	var maxK int32
	for _, r := range results {
		if r == nil {
			continue
		}
		for _, s := range r.Series {
			if s.K < 0 || s.K > maxSeconds || (s.K > 0 && s.Dur <= 0) || s.Dur < 0 || s.Dur > 1.001 {
				return nil, fmt.Errorf("%w: worker %d: bad series sample (second %d)", errBadHist, r.Worker, s.K)
			}
			maxK = max(maxK, s.K)
		}
	}
	if maxK == 0 {
		return nil, nil
	}
	cum := make([]Counters, maxK+1)
	dur := make([]float64, maxK+1)
	for _, r := range results {
		if r == nil {
			continue
		}
		var last Counters
		j := 0
		if len(r.Series) > 0 && r.Series[0].K == 0 {
			last = r.Series[0].Counters
			cum[0].add(last)
			j = 1
		}
		for k := int32(1); k <= maxK; k++ {
			for j < len(r.Series) && r.Series[j].K <= k {
				if r.Series[j].K == k {
					dur[k] = max(dur[k], r.Series[j].Dur)
				}
				last = r.Series[j].Counters
				j++
			}
			cum[k].add(last)
		}
	}
	hists := make([]*secHist, maxK+1)
	for _, r := range results {
		if r == nil {
			continue
		}
		for _, sh := range r.SeriesHist {
			if sh.K <= 0 || sh.K > maxSeconds {
				return nil, fmt.Errorf("%w: worker %d: bad series second %d", errBadHist, r.Worker, sh.K)
			}
			if sh.K > maxK {
				continue // received after the last sample: in the totals only
			}
			lat, err := fromSparse(sh.Lat)
			if err != nil {
				return nil, err
			}
			co, err := fromSparse(sh.CO)
			if err != nil {
				return nil, err
			}
			if hists[sh.K] == nil {
				hists[sh.K] = new(secHist)
			}
			hists[sh.K].lat.merge(lat)
			hists[sh.K].co.merge(co)
		}
	}
	out := make([]SeriesPoint, 0, maxK)
	var t float64
	for k := int32(1); k <= maxK; k++ {
		d := dur[k]
		if d == 0 {
			d = 1
		}
		t += d
		prev := cum[k-1]
		cur := cum[k]
		p := SeriesPoint{
			T:         t,
			SentPerS:  float64(cur.Sent-prev.Sent) / d,
			RecvPerS:  float64(cur.Received-prev.Received) / d,
			Conns:     cur.Alive,
			ConnsPerS: float64(cur.Connected-prev.Connected) / d,
			Errors:    cur.Errors - prev.Errors,
		}
		if h := hists[k]; h != nil {
			p.P50, p.P99 = h.lat.quantile(0.5), h.lat.quantile(0.99)
			if h.co.n > 0 {
				p.P99CO = h.co.quantile(0.99)
			}
		}
		out = append(out, p)
	}
	return out, nil
}

// WriteCSVFile writes the time series as CSV, one line per second.
func (r *Report) WriteCSVFile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := r.writeCSV(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func (r *Report) writeCSV(w io.Writer) error {
	if _, err := fmt.Fprintln(w, "t_s,sent_per_s,received_per_s,p50_us,p99_us,p99_intended_us,conns,connects_per_s,errors"); err != nil {
		return err
	}
	for _, p := range r.Series {
		if _, err := fmt.Fprintf(w, "%.3f,%.0f,%.0f,%d,%d,%d,%d,%.0f,%d\n",
			p.T, p.SentPerS, p.RecvPerS, p.P50, p.P99, p.P99CO, p.Conns, p.ConnsPerS, p.Errors); err != nil {
			return err
		}
	}
	return nil
}
