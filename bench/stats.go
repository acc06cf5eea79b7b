package bench

import (
	"fmt"
	"sort"
	"sync"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
)

// Latencies are recorded in microseconds, 1 µs to 10 minutes, 3 significant
// digits: enough resolution for loopback and enough range for an overloaded
// broker.
const maxLatencyUS = 600_000_000

func newHist() *hdrhistogram.Histogram { return hdrhistogram.New(1, maxLatencyUS, 3) }

// latRecorder holds a runner's latencies: HDR histograms of the measured
// window (from the write time, and from the intended send time under
// --rate), and a small histogram per second of the run for the time
// series. It is sharded behind a few locks; clients record into a small
// local buffer and hand it over in batches, so a lock is taken once per
// latBatch messages and a run with 10,000 subscribers still has a handful
// of HDR histograms (each is ~170 KB).
type latRecorder struct {
	shards [8]struct {
		mu  sync.Mutex // guards h, co, sec
		h   *hdrhistogram.Histogram
		co  *hdrhistogram.Histogram
		sec map[int32]*secHist
		_   [40]byte // keep the locks on separate cache lines
	}
}

// secHist is one second of the time series.
type secHist struct{ lat, co logHist }

func newLatRecorder() *latRecorder {
	s := new(latRecorder)
	for i := range s.shards {
		s.shards[i].h = newHist()
		s.shards[i].co = newHist()
	}
	return s
}

// record takes a batch of one second (sec < 0: no time series) that is in
// the measured window or not (then only the time series gets it).
func (s *latRecorder) record(shard int, sec int32, win bool, us, co []int64) {
	sh := &s.shards[shard%len(s.shards)]
	sh.mu.Lock()
	var sh2 *secHist
	if sec >= 0 {
		if sh.sec == nil {
			sh.sec = make(map[int32]*secHist)
		}
		if sh2 = sh.sec[sec]; sh2 == nil {
			sh2 = new(secHist)
			sh.sec[sec] = sh2
		}
	}
	for i, v := range us {
		v = min(max(v, 0), maxLatencyUS)
		c := co[i]
		if win {
			_ = sh.h.RecordValue(v)
			if c >= 0 {
				_ = sh.co.RecordValue(min(c, maxLatencyUS))
			}
		}
		if sh2 != nil {
			sh2.lat.record(v)
			if c >= 0 {
				sh2.co.record(c)
			}
		}
	}
	sh.mu.Unlock()
}

// merged returns the window's histograms and the per-second ones.
func (s *latRecorder) merged() (h, co *hdrhistogram.Histogram, secs map[int32]*secHist) {
	h, co, secs = newHist(), newHist(), make(map[int32]*secHist)
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		h.Merge(sh.h)
		co.Merge(sh.co)
		for k, v := range sh.sec {
			m := secs[k]
			if m == nil {
				m = new(secHist)
				secs[k] = m
			}
			m.lat.merge(&v.lat)
			m.co.merge(&v.co)
		}
		sh.mu.Unlock()
	}
	return h, co, secs
}

const latBatch = 128

// latBuf collects one client's latencies (µs) between hand-overs; a batch
// holds one second, in or out of the window.
type latBuf struct {
	sec int32
	win bool
	n   int
	v   [latBatch]int64
	co  [latBatch]int64 // from the intended send time; -1 without --rate
}

func (b *latBuf) add(s *latRecorder, shard int, sec int32, win bool, us, co int64) {
	if b.n > 0 && (sec != b.sec || win != b.win) {
		b.flush(s, shard)
	}
	b.sec, b.win = sec, win
	b.v[b.n], b.co[b.n] = us, co
	b.n++
	if b.n == latBatch {
		b.flush(s, shard)
	}
}

func (b *latBuf) flush(s *latRecorder, shard int) {
	if b.n > 0 {
		s.record(shard, b.sec, b.win, b.v[:b.n], b.co[:b.n])
		b.n = 0
	}
}

// errCounter counts errors by kind and keeps the first message of each
// kind, so a report can say what "unreachable 11" was. Errors are rare; a
// mutex is fine.
type errCounter struct {
	mu    sync.Mutex // guards m, first
	m     map[string]int64
	first map[string]string
}

// note counts err under its kind.
func (e *errCounter) note(err error) {
	kind := errKind(err)
	e.mu.Lock()
	if e.m == nil {
		e.m, e.first = make(map[string]int64), make(map[string]string)
	}
	e.m[kind]++
	if _, ok := e.first[kind]; !ok {
		e.first[kind] = err.Error()
	}
	e.mu.Unlock()
}

func (e *errCounter) samples() map[string]string {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make(map[string]string, len(e.first))
	for k, v := range e.first {
		out[k] = v
	}
	return out
}

func (e *errCounter) snapshot() map[string]int64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make(map[string]int64, len(e.m))
	for k, v := range e.m {
		out[k] = v
	}
	return out
}

func (e *errCounter) total() int64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	var n int64
	for _, v := range e.m {
		n += v
	}
	return n
}

// Latency is the latency summary of a report, in microseconds.
type Latency struct {
	Count int64   `json:"count"`
	Min   int64   `json:"min_us"`
	Mean  float64 `json:"mean_us"`
	P50   int64   `json:"p50_us"`
	P90   int64   `json:"p90_us"`
	P99   int64   `json:"p99_us"`
	P999  int64   `json:"p999_us"`
	Max   int64   `json:"max_us"`
}

func summarize(h *hdrhistogram.Histogram) Latency {
	if h == nil || h.TotalCount() == 0 {
		return Latency{}
	}
	return Latency{
		Count: h.TotalCount(),
		Min:   h.Min(),
		Mean:  h.Mean(),
		P50:   h.ValueAtPercentile(50),
		P90:   h.ValueAtPercentile(90),
		P99:   h.ValueAtPercentile(99),
		P999:  h.ValueAtPercentile(99.9),
		Max:   h.Max(),
	}
}

// encodeHist and decodeHist carry a histogram from a worker to the parent in
// HdrHistogram's compressed V2 encoding.
func encodeHist(h *hdrhistogram.Histogram) []byte {
	if h == nil || h.TotalCount() == 0 {
		return nil
	}
	b, err := h.Encode(hdrhistogram.V2CompressedEncodingCookieBase)
	if err != nil {
		return nil
	}
	return b
}

// decodeHist decodes a runner's histogram. The bytes may come from an
// agent on another machine: whatever the decoder makes of them, the answer
// is a histogram or an error, never a panic.
func decodeHist(b []byte) (h *hdrhistogram.Histogram, err error) {
	if len(b) == 0 {
		return newHist(), nil
	}
	defer func() {
		if p := recover(); p != nil {
			h, err = nil, fmt.Errorf("%w: %v", errBadHist, p)
		}
	}()
	return hdrhistogram.Decode(b)
}

func sortedKeys(m map[string]int64) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
