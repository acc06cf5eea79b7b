package bench

import (
	"sort"
	"sync"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
)

// Latencies are recorded in microseconds, 1 µs to 10 minutes, 3 significant
// digits: enough resolution for loopback and enough range for an overloaded
// broker.
const maxLatencyUS = 600_000_000

func newHist() *hdrhistogram.Histogram { return hdrhistogram.New(1, maxLatencyUS, 3) }

// histShards are a few histograms behind their own locks. Clients record
// into a small local buffer and hand it over in batches, so a lock is taken
// once per latBatch messages and a run with 10,000 subscribers still has a
// handful of histograms (each is ~170 KB).
type histShards struct {
	shards [8]struct {
		mu sync.Mutex // guards h
		h  *hdrhistogram.Histogram
		_  [48]byte // keep the locks on separate cache lines
	}
}

func newHistShards() *histShards {
	s := new(histShards)
	for i := range s.shards {
		s.shards[i].h = newHist()
	}
	return s
}

func (s *histShards) record(shard int, us []int64) {
	sh := &s.shards[shard%len(s.shards)]
	sh.mu.Lock()
	for _, v := range us {
		_ = sh.h.RecordValue(min(max(v, 0), maxLatencyUS))
	}
	sh.mu.Unlock()
}

func (s *histShards) merged() *hdrhistogram.Histogram {
	h := newHist()
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		h.Merge(sh.h)
		sh.mu.Unlock()
	}
	return h
}

const latBatch = 128

// latBuf collects one client's latencies (µs) between hand-overs.
type latBuf struct {
	n int
	v [latBatch]int64
}

func (b *latBuf) add(s *histShards, shard int, us int64) {
	b.v[b.n] = us
	b.n++
	if b.n == latBatch {
		s.record(shard, b.v[:])
		b.n = 0
	}
}

func (b *latBuf) flush(s *histShards, shard int) {
	if b.n > 0 {
		s.record(shard, b.v[:b.n])
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

func decodeHist(b []byte) (*hdrhistogram.Histogram, error) {
	if len(b) == 0 {
		return newHist(), nil
	}
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
