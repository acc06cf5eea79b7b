package bench

import (
	"math"
	"math/bits"
	"sort"
)

// logHist is a small latency histogram for where an HDR histogram (~170 KB)
// is too big: one per subscriber and one per second of the time series.
// Values (µs) below 64 are exact; above, each power of two is cut into 32
// buckets, so a percentile is off by at most 1/32 (3%). 864 buckets (3.4 KB)
// cover up to 2^31 µs (35 minutes); larger values land in the last one.
//
// Buckets are allocated on the first record. Not safe for concurrent use.
type logHist struct {
	n int64
	c []uint32
}

const (
	logSub     = 32
	logBuckets = 26*logSub + logSub // shifts 0..25, then the exact range
)

func logIndex(v int64) int {
	if v < 2*logSub {
		return int(max(v, 0))
	}
	shift := bits.Len64(uint64(v)) - 6 // v>>shift is in [32, 64)
	i := shift*logSub + int(v>>shift)
	return min(i, logBuckets-1)
}

// logValue is the upper bound of bucket i: a percentile never under-reports.
func logValue(i int) int64 {
	if i < 2*logSub {
		return int64(i)
	}
	shift := i/logSub - 1
	m := int64(i%logSub + logSub)
	return (m+1)<<shift - 1
}

func (h *logHist) record(us int64) {
	if h.c == nil {
		h.c = make([]uint32, logBuckets)
	}
	i := logIndex(us)
	if h.c[i] < math.MaxUint32 {
		h.c[i]++
		h.n++
	}
}

func (h *logHist) merge(o *logHist) {
	if o == nil || o.n == 0 {
		return
	}
	if h.c == nil {
		h.c = make([]uint32, logBuckets)
	}
	for i, v := range o.c {
		h.c[i] = uint32(min(uint64(h.c[i])+uint64(v), math.MaxUint32))
	}
	h.n += o.n
}

// quantile returns the value at fraction q (0..1), 0 when empty.
func (h *logHist) quantile(q float64) int64 {
	if h.n == 0 {
		return 0
	}
	want := int64(math.Ceil(q * float64(h.n)))
	want = min(max(want, 1), h.n)
	var seen int64
	for i, v := range h.c {
		seen += int64(v)
		if seen >= want {
			return logValue(i)
		}
	}
	return logValue(logBuckets - 1)
}

// sparse is the histogram as (bucket, count) pairs, for JSON: a second or
// a client touches few buckets.
func (h *logHist) sparse() [][2]uint32 {
	var out [][2]uint32
	for i, v := range h.c {
		if v != 0 {
			out = append(out, [2]uint32{uint32(i), v})
		}
	}
	return out
}

// fromSparse rebuilds a histogram; bad bucket numbers (from a broken or
// hostile peer) are an error, not a panic.
func fromSparse(pairs [][2]uint32) (*logHist, error) {
	h := &logHist{}
	if len(pairs) == 0 {
		return h, nil
	}
	h.c = make([]uint32, logBuckets)
	for _, p := range pairs {
		if p[0] >= logBuckets {
			return nil, errBadHist
		}
		h.c[p[0]] = uint32(min(uint64(h.c[p[0]])+uint64(p[1]), math.MaxUint32))
		h.n += int64(p[1])
	}
	return h, nil
}

// spread summarizes values: min, median, max and standard deviation.
type Spread struct {
	Min    float64 `json:"min"`
	Median float64 `json:"median"`
	Max    float64 `json:"max"`
	Stddev float64 `json:"stddev"`
}

func spreadOf(v []float64) Spread {
	if len(v) == 0 {
		return Spread{}
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	med := s[len(s)/2]
	if len(s)%2 == 0 {
		med = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	var sum, sq float64
	for _, x := range s {
		sum += x
	}
	mean := sum / float64(len(s))
	for _, x := range s {
		sq += (x - mean) * (x - mean)
	}
	return Spread{Min: s[0], Median: med, Max: s[len(s)-1], Stddev: math.Sqrt(sq / float64(len(s)))}
}
