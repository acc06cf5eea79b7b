package cluster

import (
	"encoding/binary"
	"errors"
	"sync"
	"testing"
	"time"
)

// A stream of QoS 0 publishes from several goroutines, with small write
// batches (so the writer's arenas swap and a grown one is dropped, and
// Forwards that find the link idle write directly), arrives whole, in each
// goroutine's order, each once: no frame's bytes are overwritten before
// they are written.
func TestForwardQoS0StreamIntact(t *testing.T) {
	a, b, _ := linkPair(t, func(o *Options) { o.Link.WriteBatchBytes = 1024 })
	const senders, each = 4, 20000
	var wg sync.WaitGroup
	for s := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; {
				payload := binary.BigEndian.AppendUint32([]byte{byte(s)}, uint32(i))
				err := a.Forward("b", &Publish{Topic: "t", Payload: append(payload, make([]byte, i%200)...), ID: uint64(i)})
				if errors.Is(err, ErrQueueFull) {
					time.Sleep(100 * time.Microsecond)
					continue
				}
				if err != nil {
					t.Error(err)
					return
				}
				i++
				if i%500 == 0 {
					time.Sleep(time.Millisecond) // let the link go idle now and then: direct writes
				}
			}
		}()
	}
	wg.Wait()
	waitFor(t, 20*time.Second, "all publishes", func() bool {
		return b.rec.count(func(r *recorder) int { return len(r.pubs["a"]) }) >= senders*each
	})
	next := make([]uint32, senders)
	b.rec.mu.Lock()
	defer b.rec.mu.Unlock()
	if n := len(b.rec.pubs["a"]); n != senders*each {
		t.Fatalf("got %d publishes, want %d", n, senders*each)
	}
	for _, p := range b.rec.pubs["a"] {
		s, i := p.Payload[0], binary.BigEndian.Uint32(p.Payload[1:5])
		if int(s) >= senders || i != next[s] || uint64(i) != p.ID || len(p.Payload) != 5+int(i)%200 || p.Topic != "t" {
			t.Fatalf("sender %d: got #%d (id %d, %d bytes), want #%d", s, i, p.ID, len(p.Payload), next[s])
		}
		next[s]++
	}
}
