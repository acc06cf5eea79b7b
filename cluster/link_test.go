package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"reflect"
	"sync"
	"testing"
	"time"
)

func TestForwardDeliversAndAcks(t *testing.T) {
	a, b, _ := linkPair(t, nil)
	want := &Publish{Topic: "s/1", Payload: []byte("payload"), QoS: 1, Retain: true, Props: []byte{0x03, 0x00, 0x01, 'x'},
		Sender: "dev-1", ID: 1, Created: 1700000000, Expiry: 1700000100}
	if err := a.Forward("b", want); err != nil {
		t.Fatal(err)
	}
	for i := uint64(2); i <= 200; i++ {
		if err := a.Forward("b", &Publish{Topic: "s/n", Payload: []byte{byte(i)}, QoS: byte(i % 3), ID: i}); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 5*time.Second, "200 publishes", func() bool { return b.rec.count(func(r *recorder) int { return len(r.pubs["a"]) }) == 200 })
	got := b.rec.pubs["a"][0]
	w := *want
	w.Origin = "a" // an empty origin is the forwarding node
	if !reflect.DeepEqual(*got, w) {
		t.Fatalf("got %+v\nwant %+v", *got, w)
	}
	for i, p := range b.rec.pubs["a"] {
		if p.ID != uint64(i+1) {
			t.Fatalf("out of order: #%d has id %d", i, p.ID)
		}
	}
	// Only QoS 1/2 are acknowledged, each once.
	waitFor(t, 5*time.Second, "acks", func() bool {
		return a.rec.count(func(r *recorder) int { return len(r.acks) }) == 1+133
	})
	a.rec.mu.Lock()
	defer a.rec.mu.Unlock()
	for id, n := range a.rec.acks {
		if n != 1 || a.rec.ackErrs[id] != nil || id%3 == 0 && id != 1 {
			t.Fatalf("ack of %d: %d times, err %v", id, n, a.rec.ackErrs[id])
		}
	}
	if err := a.Forward("a", want); !errors.Is(err, ErrSelf) {
		t.Fatalf("forward to self: %v", err)
	}
	if err := a.Forward("nobody", want); !errors.Is(err, ErrUnknownPeer) {
		t.Fatalf("forward to unknown: %v", err)
	}
	if err := a.Forward("b", &Publish{QoS: 3}); !errors.Is(err, ErrMalformed) {
		t.Fatalf("qos 3: %v", err)
	}
}

func TestRequestResponse(t *testing.T) {
	a, b, _ := linkPair(t, nil)
	resp, err := a.Call(context.Background(), "b", []byte("ping"))
	if err != nil || string(resp) != "echo:ping" {
		t.Fatalf("call: %q %v", resp, err)
	}
	// b answers a's requests later, from another goroutine, or fails them.
	b.rec.mu.Lock()
	b.rec.handler = func(from string, body []byte, r Reply) {
		switch string(body) {
		case "fail":
			r.Fail(errors.New("no such session"))
		case "slow":
			go func() { time.Sleep(50 * time.Millisecond); r.Respond([]byte("late")) }()
		case "big":
			if err := r.Respond(make([]byte, 16<<20)); !errors.Is(err, ErrTooLarge) {
				t.Errorf("oversize response: %v", err)
			}
		case "never":
		}
	}
	b.rec.mu.Unlock()
	if _, err := a.Call(context.Background(), "b", []byte("fail")); err == nil || err.Error() != "cluster: remote error: no such session" {
		t.Fatalf("remote failure: %v", err)
	}
	var re *RemoteError
	if _, err := a.Call(context.Background(), "b", []byte("fail")); !errors.As(err, &re) {
		t.Fatalf("not a RemoteError: %T", err)
	}
	if _, err := a.Call(context.Background(), "b", []byte("big")); !errors.As(err, &re) {
		t.Fatalf("oversize response: %v", err)
	}
	if resp, err := a.Call(context.Background(), "b", []byte("slow")); err != nil || string(resp) != "late" {
		t.Fatalf("slow: %q %v", resp, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err := a.Call(ctx, "b", []byte("never")); !errors.Is(err, ErrTimeout) && !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("never answered: %v", err)
	}
	done := make(chan error, 1)
	if err := a.Request("b", []byte("never"), 50*time.Millisecond, func(_ []byte, err error) { done <- err }); err != nil {
		t.Fatal(err)
	}
	if err := <-done; !errors.Is(err, ErrTimeout) {
		t.Fatalf("request timeout: %v", err)
	}
	if s := linkStats(a, "b"); s.Timeouts < 1 || s.Requests < 5 {
		t.Fatalf("stats %+v", s)
	}
	// A request in flight when the peer leaves fails with ErrPeerGone.
	if err := a.Request("b", []byte("never"), time.Minute, func(_ []byte, err error) { done <- err }); err != nil {
		t.Fatal(err)
	}
	b.Close(time.Second)
	select {
	case err := <-done:
		if !errors.Is(err, ErrPeerGone) && !errors.Is(err, ErrLinkDown) {
			t.Fatalf("request to a departed node: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("request to a departed node never failed")
	}
}

// TestLinkCutLosesNoAckedForward forwards QoS 1 publishes in phases; in
// each round the proxy first drops the acks, then cuts the connection and
// refuses reconnects for a while, as publishes keep coming. Every publish
// reaches b exactly once and in order, and a hears exactly one successful
// ack for each.
func TestLinkCutLosesNoAckedForward(t *testing.T) {
	a, b, p := linkPair(t, nil)
	const phase, rounds = 500, 2
	total := uint64(phase * (3*rounds + 1))
	next := uint64(1)
	send := func(n int) {
		for i := 0; i < n; {
			err := a.Forward("b", &Publish{Topic: "t", Payload: []byte(fmt.Sprint(next)), QoS: 1, ID: next})
			if errors.Is(err, ErrQueueFull) {
				time.Sleep(time.Millisecond)
				continue
			}
			if err != nil {
				t.Fatalf("forward %d: %v", next, err)
			}
			next++
			i++
		}
	}
	received := func() int { return b.rec.count(func(r *recorder) int { return len(r.pubIDs["a"]) }) }
	for range rounds {
		waitFor(t, 10*time.Second, "a live link", func() bool { return linkUp(a, "b") && linkUp(b, "a") })
		send(phase)
		p.drop.Store(true) // acks lost from here on
		send(phase)
		want := int(next - 1)
		waitFor(t, 10*time.Second, "frames reach b", func() bool { return received() == want })
		p.refuse.Store(true)
		p.cut()
		p.drop.Store(false)
		send(phase) // queued while the link is down
		time.Sleep(100 * time.Millisecond)
		p.refuse.Store(false)
	}
	send(phase)
	waitFor(t, 20*time.Second, "all delivered and acked", func() bool {
		return received() == int(total) && a.rec.count(func(r *recorder) int { return len(r.acks) }) == int(total)
	})
	b.rec.mu.Lock()
	for id, n := range b.rec.pubIDs["a"] {
		if n != 1 {
			t.Errorf("publish %d delivered %d times", id, n)
		}
	}
	for i, pub := range b.rec.pubs["a"] {
		if pub.ID != uint64(i+1) {
			t.Fatalf("delivery #%d is id %d: out of order", i, pub.ID)
		}
	}
	b.rec.mu.Unlock()
	a.rec.mu.Lock()
	for id, n := range a.rec.acks {
		if n != 1 || a.rec.ackErrs[id] != nil {
			t.Errorf("ack of %d: %d times, err %v", id, n, a.rec.ackErrs[id])
		}
	}
	a.rec.mu.Unlock()
	if sa := linkStats(a, "b"); sa.Disconnects < rounds || sa.Connects < rounds+1 {
		t.Fatalf("the cuts did not reconnect the link: %+v", sa)
	}
}

// TestReceiverDropsResentDuplicates replays frames the receiver already
// handed over (as after a reconnect whose hello could not tell): they are
// acknowledged again but not delivered twice.
func TestReceiverDropsResentDuplicates(t *testing.T) {
	rec := newRecorder()
	c := &Cluster{opts: Options{Publish: rec}, self: "b"}
	l := newLink(c, "a", "", 0, 0)
	for _, seq := range []uint64{1, 2, 3, 2, 3, 4, 1, 5} {
		if err := l.handle(&frame{typ: framePublish, seq: seq, pub: &Publish{QoS: 1, ID: seq}}); err != nil {
			t.Fatal(err)
		}
	}
	if got := len(rec.pubs["a"]); got != 5 || l.st.duplicates.Load() != 3 || l.delivered != 5 || !l.ackDue {
		t.Fatalf("delivered %d, duplicates %d, last %d", got, l.st.duplicates.Load(), l.delivered)
	}
}

// TestBackPressureWhenPeerStopsReading stalls the proxy toward b: the
// bounded queue fills, Forward refuses with ErrQueueFull (counted), and
// once b reads again everything accepted is delivered.
func TestBackPressureWhenPeerStopsReading(t *testing.T) {
	a, b, p := linkPair(t, func(o *Options) { o.Link.QueueBytes = 256 << 10 })
	p.pause.Store(true)
	payload := bytes.Repeat([]byte("x"), 1024)
	accepted, refused := 0, 0
	for id := uint64(1); refused < 10 && id < 100000; id++ {
		err := a.Forward("b", &Publish{Topic: "t", Payload: payload, QoS: 1, ID: id})
		switch {
		case err == nil:
			accepted++
		case errors.Is(err, ErrQueueFull):
			refused++
		default:
			t.Fatal(err)
		}
	}
	if refused == 0 || accepted == 0 || accepted > 256 {
		t.Fatalf("accepted %d refused %d", accepted, refused)
	}
	s := linkStats(a, "b")
	if s.Refused != uint64(refused) || s.QueuedBytes > 256<<10 {
		t.Fatalf("stats %+v", s)
	}
	p.pause.Store(false)
	waitFor(t, 10*time.Second, "queued publishes delivered", func() bool {
		return b.rec.count(func(r *recorder) int { return len(r.pubIDs["a"]) }) == accepted &&
			a.rec.count(func(r *recorder) int { return len(r.acks) }) == accepted
	})
	if s := linkStats(a, "b"); s.QueuedBytes != 0 || s.Unacked != 0 || s.Queued != 0 {
		t.Fatalf("link not drained: %+v", s)
	}
}

func TestPeerGoneFailsPendingForwards(t *testing.T) {
	a, b, p := linkPair(t, nil)
	p.pause.Store(true)
	for id := uint64(1); id <= 50; id++ {
		if err := a.Forward("b", &Publish{Topic: "t", QoS: 1, ID: id}); err != nil {
			t.Fatal(err)
		}
	}
	a.Forward("b", &Publish{Topic: "t", QoS: 0, ID: 99})
	b.shutdown(time.Second, false)
	waitFor(t, 15*time.Second, "pending forwards failed", func() bool {
		return a.rec.count(func(r *recorder) int { return len(r.acks) }) == 50
	})
	a.rec.mu.Lock()
	defer a.rec.mu.Unlock()
	// Each is reported once, as failed (the proxy held them); QoS 0 never.
	for id, n := range a.rec.acks {
		if err := a.rec.ackErrs[id]; n != 1 || (err != nil && !errors.Is(err, ErrPeerGone)) || id == 99 {
			t.Fatalf("forward %d: %v x%d", id, err, n)
		}
	}
	if len(a.rec.ackErrs) != 50 {
		t.Fatalf("%d failures, want 50", len(a.rec.ackErrs))
	}
}

// TestAcceptorRefusesWrongDirection: the lower name dials; a hello from a
// higher name is refused, so a pair never has two connections.
func TestAcceptorRefusesWrongDirection(t *testing.T) {
	nodes := startCluster(t, 2, nil)
	conn, err := net.Dial("tcp", nodes[0].PeerAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.Write(newFrameEncoder("n2").append(nil, &frame{typ: frameHello, version: linkVersion, cluster: "test", node: "n2", incarnation: 1, nonce: newNonce()}))
	conn.SetReadDeadline(time.Now().Add(3 * time.Second))
	if n, err := conn.Read(make([]byte, 64)); err == nil {
		t.Fatalf("n1 answered a hello from the higher name with %d bytes", n)
	}
	var wg sync.WaitGroup
	for _, n := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			waitFor(t, 5*time.Second, "one link each", func() bool { l := n.Links(); return len(l) == 1 && l[0].Connected && l[0].Connects == 1 })
		}()
	}
	wg.Wait()
}
