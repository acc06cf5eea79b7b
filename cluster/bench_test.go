package cluster

import (
	"bytes"
	"errors"
	"sync/atomic"
	"testing"
	"time"
)

func publish64() *Publish {
	return &Publish{Topic: "bench/topic/1", Payload: bytes.Repeat([]byte("p"), 64), QoS: 1, Sender: "client-1", ID: 1, Created: 1700000000}
}

func BenchmarkFrameEncodePublish64(b *testing.B) {
	enc := newFrameEncoder("n1")
	f := &frame{typ: framePublish, seq: 1, pub: publish64()}
	var buf []byte
	b.ReportAllocs()
	for b.Loop() {
		buf = enc.append(buf[:0], f)
	}
	b.SetBytes(int64(len(buf)))
}

func BenchmarkFrameDecodePublish64(b *testing.B) {
	buf := newFrameEncoder("n1").append(nil, &frame{typ: framePublish, seq: 1, pub: publish64()})
	dec := newFrameDecoder(1 << 20)
	dec.reuse = true // as the link's reader decodes
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := dec.Decode(buf); err != nil {
			b.Fatal(err)
		}
	}
}

// countingDelegate counts publishes and acks without keeping them.
type countingDelegate struct {
	recorder
	pubs, acks atomic.Int64
}

func (d *countingDelegate) HandlePublish(string, *Publish)        { d.pubs.Add(1) }
func (d *countingDelegate) NotifyForwarded(string, uint64, error) { d.acks.Add(1) }

// benchForward measures one link's throughput of forwarded 64-byte
// publishes, end to end: Forward on a, HandlePublish on b (and for QoS 1
// the ack back on a). Allocations are those of both nodes.
func benchForward(b *testing.B, qos byte) {
	da, db := &countingDelegate{recorder: *newRecorder()}, &countingDelegate{recorder: *newRecorder()}
	nb := startNode(b, "b", func(o *Options) { o.Publish, o.Forwarded = db, db })
	na := startNode(b, "a", func(o *Options) { o.Join = []string{nb.GossipAddr()}; o.Publish, o.Forwarded = da, da })
	waitFor(b, 10*time.Second, "link", func() bool { return linkUp(na, "b") && linkUp(nb, "a") })
	p := publish64()
	p.QoS = qos
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; {
		if err := na.Forward("b", p); err != nil {
			if errors.Is(err, ErrQueueFull) {
				time.Sleep(50 * time.Microsecond)
				continue
			}
			b.Fatal(err)
		}
		i++
	}
	for db.pubs.Load() < int64(b.N) || (qos > 0 && da.acks.Load() < int64(b.N)) {
		time.Sleep(100 * time.Microsecond)
	}
	el := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/el.Seconds(), "msgs/s")
	s := linkStats(na, "b")
	if s.Writes > 0 {
		b.ReportMetric(float64(s.SentFrames)/float64(s.Writes), "frames/write")
	}
}

func BenchmarkLinkForward64QoS0(b *testing.B) { benchForward(b, 0) }
func BenchmarkLinkForward64QoS1(b *testing.B) { benchForward(b, 1) }

func BenchmarkClaim(b *testing.B) {
	n := startNode(b, "n1", nil)
	keys := make([]string, 4096)
	for i := range keys {
		keys[i] = "m/client-" + string(rune('a'+i%26)) + string(rune('a'+i/26%26)) + string(rune('a'+i/676))
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		n.Claim(keys[i%len(keys)])
		i++
	}
}
