package storage

import (
	"errors"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// TestQueueIndexModel drives one queue index with random puts, acks and
// drops (mostly in broker order: append at the end, ack near the front) and
// checks it against a map after every step.
func TestQueueIndexModel(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	q := &queue{}
	model := map[uint64]uint32{}
	next := uint64(0)
	for step := range 5000 {
		switch op := r.IntN(10); {
		case op < 5: // put: usually a new seq at the end, sometimes a re-put or a gap-filler
			seq := next
			if r.IntN(10) == 0 && next > 0 {
				seq = r.Uint64N(next)
			} else {
				next += 1 + r.Uint64N(2)
			}
			size := uint32(1 + r.IntN(100))
			old, replaced := q.put(seq, size, int64(seq))
			if want, ok := model[seq]; ok != replaced || (ok && old != want) {
				t.Fatalf("step %d: put %d replaced=%v old=%d, model %v %d", step, seq, replaced, old, ok, want)
			}
			model[seq] = size
		case op < 9 && len(model) > 0: // ack: the oldest mostly, any sometimes
			seq := slices.Min(mapKeys(model))
			if r.IntN(3) == 0 {
				seq = mapKeys(model)[r.IntN(len(model))]
			}
			i, ok := q.find(seq)
			if !ok || !q.ents[i].live {
				t.Fatalf("step %d: %d not found", step, seq)
			}
			if got := q.kill(i); got != model[seq] {
				t.Fatalf("step %d: kill size %d, want %d", step, got, model[seq])
			}
			delete(model, seq)
			q.trim()
		default: // a missing seq is not found
			if i, ok := q.find(next + 5); ok && q.ents[i].live {
				t.Fatalf("step %d: found a seq never put", step)
			}
		}
		checkQueue(t, step, q, model)
	}
}

func mapKeys(m map[uint64]uint32) []uint64 {
	ks := make([]uint64, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	return ks
}

func checkQueue(t *testing.T, step int, q *queue, model map[uint64]uint32) {
	t.Helper()
	var live []uint64
	var bytes int64
	dead := 0
	for i, e := range q.ents[q.head:] {
		if i > 0 && q.ents[q.head+i-1].seq >= e.seq {
			t.Fatalf("step %d: ents out of order at %d", step, i)
		}
		if e.live {
			live = append(live, e.seq)
			bytes += int64(e.size)
			if e.deadline < q.minDeadline {
				t.Fatalf("step %d: minDeadline %d above live deadline %d", step, q.minDeadline, e.deadline)
			}
		} else {
			dead++
		}
	}
	want := mapKeys(model)
	slices.Sort(want)
	if !slices.Equal(live, want) || q.count != len(model) || q.bytes != bytes || q.dead != dead {
		t.Fatalf("step %d: live %v count %d bytes %d/%d dead %d/%d; model %v", step, live, q.count, q.bytes, bytes, q.dead, dead, want)
	}
	if q.count > 0 && !q.ents[q.head].live {
		t.Fatalf("step %d: head is a tombstone", step)
	}
	if len(q.ents)-q.head > 64 && q.dead > len(q.ents)-q.head-q.dead && q.dead > 32 {
		t.Fatalf("step %d: %d tombstones kept for %d live entries", step, q.dead, q.count)
	}
}

func TestOptionsValidate(t *testing.T) {
	for field, edit := range map[string]func(*Options){
		"Durability":      func(o *Options) { o.Durability = "sometimes" },
		"QueueFullPolicy": func(o *Options) { o.QueueFullPolicy = "drop-newest" },
		"MaxBatchOps":     func(o *Options) { o.MaxBatchOps = -1 },
		"MaxPendingBytes": func(o *Options) { o.MaxPendingBytes = -5 },
		"MemTableSize":    func(o *Options) { o.MemTableSize = 1000 },
		"CacheSize":       func(o *Options) { o.CacheSize = -1 },
	} {
		var o Options
		o.EnsureDefaults()
		edit(&o)
		err := o.Validate()
		if !errors.Is(err, ErrOptions) || !strings.Contains(err.Error(), field) {
			t.Errorf("%s: Validate() = %v", field, err)
		}
		if _, err := Open(t.TempDir(), o); !errors.Is(err, ErrOptions) {
			t.Errorf("%s: Open = %v", field, err)
		}
	}
	var o Options
	if err := o.EnsureDefaults().Validate(); err != nil {
		t.Fatalf("defaults invalid: %v", err)
	}
	if o.Durability != Sync || o.QueueTTL != DefaultQueueTTL || o.MaxQueuedPerSession != 100000 || o.QueueFullPolicy != DropOldest {
		t.Fatalf("defaults: %+v", o)
	}
	if _, err := Open("", Options{}); !errors.Is(err, ErrOptions) {
		t.Fatalf("Open(\"\") = %v", err)
	}
}
