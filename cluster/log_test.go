package cluster

import (
	"bytes"
	"log"
	"log/slog"
	"strings"
	"testing"
)

func TestMemberlistLogLevelsAndSuspicion(t *testing.T) {
	var out bytes.Buffer
	var suspected []string
	w := &mlLog{log: slog.New(slog.NewTextHandler(&out, &slog.HandlerOptions{Level: slog.LevelDebug})),
		suspect: func(n string) { suspected = append(suspected, n) }}
	l := log.New(w, "", 0)
	l.Printf("[INFO] memberlist: Suspect n3 has failed, no acks received")
	l.Printf("[WARN] memberlist: Refuting a suspect message (from: n2)")
	l.Printf("[ERR] memberlist: boom")
	l.Printf("[ERR] memberlist: Failed to send gossip to 127.0.0.23:7946: write udp 127.0.0.22:1->127.0.0.23:7946: use of closed network connection")
	if len(suspected) != 1 || suspected[0] != "n3" {
		t.Fatalf("suspected %v", suspected)
	}
	s := out.String()
	for _, want := range []string{"level=DEBUG msg=\"Suspect n3", "level=WARN msg=\"Refuting", "level=ERROR msg=boom",
		"level=DEBUG msg=\"Failed to send gossip"} {
		if !strings.Contains(s, want) {
			t.Errorf("missing %q in %s", want, s)
		}
	}
}

func TestMemberSuspectFlag(t *testing.T) {
	tb := newMemberTable("a")
	tb.update("b", "x:1", Meta{Version: 1}, StateAlive, testClock().now())
	tb.setSuspect("b", true, testClock().now())
	if m, _ := tb.get("b"); m.State != StateSuspect || !m.Live() {
		t.Fatalf("%+v", m)
	}
	tb.setSuspect("b", false, testClock().now())
	if m, _ := tb.get("b"); m.State != StateAlive {
		t.Fatalf("%+v", m)
	}
	tb.update("b", "", Meta{}, StateDead, testClock().now())
	tb.setSuspect("b", true, testClock().now())
	if m, _ := tb.get("b"); m.State != StateDead {
		t.Fatalf("a dead member became suspect: %+v", m)
	}
}
