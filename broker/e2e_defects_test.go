package broker

// Regression tests for defects found under hostile testing: each one failed
// before its fix.

import (
	"fmt"
	"testing"

	mqtt3 "github.com/eclipse/paho.mqtt.golang"
)

func v3Will(topic, payload string, qos byte) v3Opt {
	return func(o *mqtt3.ClientOptions) { o.SetWill(topic, payload, qos, false) }
}

// A persistent session whose will matches its own subscription used to
// deadlock its event loop: the will was routed while the session's lock was
// held, and routing it back to that session took the lock again. With one
// loop, the freeze shows as a broker that serves nobody afterwards.
func TestWillToOwnSessionDoesNotFreeze(t *testing.T) {
	for _, tc := range []struct {
		name   string
		filter string
	}{
		{"plain subscription", "x/#"},
		{"shared subscription", "$share/g/x/#"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := startServer(t, Options{Loops: 1})
			c := connectV3(t, s, "self", false, v3Will("x/will", "bye", 1))
			c.subscribe(tc.filter, 1) // (paho v3 reports no code for $share filters)
			c.drop()
			waitOffline(t, s, "self")
			roundTrip(t, s, "after-will")
			// The will went to the offline session's queue.
			back := connectV3(t, s, "self", false)
			back.expect("x/will", "bye")
		})
	}
}

// Two persistent sessions whose wills match each other's subscriptions, both
// dropped: each will is queued for the other; nothing freezes.
func TestCrossedWillsDoNotFreeze(t *testing.T) {
	s := startServer(t, Options{Loops: 1})
	a := connectV3(t, s, "a", false, v3Will("x/a", "a-gone", 1))
	b := connectV3(t, s, "b", false, v3Will("x/b", "b-gone", 1))
	a.subscribe("x/b", 1)
	b.subscribe("x/a", 1)
	a.drop()
	b.drop()
	waitOffline(t, s, "a")
	waitOffline(t, s, "b")
	roundTrip(t, s, "crossed")
	connectV3(t, s, "a", false).expect("x/b", "b-gone")
	connectV3(t, s, "b", false).expect("x/a", "a-gone")
}

// A v5 session with will delay 0 and a session expiry, the same freeze.
func TestV5WillToOwnSessionDoesNotFreeze(t *testing.T) {
	s := startServer(t, Options{Loops: 1})
	c := connectV5(t, s, "self5", persistent(300), will("x/will", "bye", 1, false, 0))
	c.subscribe("x/#", 1)
	c.drop()
	waitOffline(t, s, "self5")
	roundTrip(t, s, "after-will5")
	connectV5(t, s, "self5", persistent(300)).expect("x/will", "bye")
}

// A closed connection used to stay in its keepalive-wheel slot until the
// slot came round (up to 1.5 × keepalive), so churn held memory with no
// client connected.
func TestClosedConnLeavesWheel(t *testing.T) {
	s := startServer(t, Options{Loops: 1})
	for i := range 50 {
		c := connectV5(t, s, fmt.Sprintf("churn-%d", i), keepAlive(600))
		c.disconnect()
	}
	rc := dialRaw(t, s) // never sends CONNECT: in the wheel until its timeout
	_ = rc
	waitE2E(t, "closed conns gone from the wheel", func() bool { return wheelConns(t, s) == 1 })
	rc.c.Close()
	waitE2E(t, "the last conn gone from the wheel", func() bool { return wheelConns(t, s) == 0 })
}

// wheelConns counts the conns in every loop's keepalive wheel, on the loops.
func wheelConns(t testing.TB, s *Server) int {
	n := 0
	onLoops(t, s, func(l *loop) {
		for _, slot := range l.wheel.slots {
			n += len(slot)
		}
	})
	return n
}

// onLoops runs fn on each event loop in turn and waits for it.
func onLoops(t testing.TB, s *Server, fn func(*loop)) {
	t.Helper()
	s.loopsMu.Lock()
	loops := make([]*loop, 0, len(s.loops))
	for _, l := range s.loops {
		loops = append(loops, l)
	}
	s.loopsMu.Unlock()
	for _, l := range loops {
		done := make(chan struct{})
		if err := l.el.Execute(nilCtx, runFunc(func() { fn(l); close(done) })); err != nil {
			t.Fatal(err)
		}
		<-done
	}
}
