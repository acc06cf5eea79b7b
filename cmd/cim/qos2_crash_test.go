package main

import (
	"bufio"
	"io"
	"net"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/cimgo/cim/broker/mqtt"
	"github.com/mochi-mqtt/server/v2/packets"
)

// QoS 2 across a SIGKILL of the broker at each step of the handshake, in
// both directions: the message is neither lost nor delivered twice, and a
// resumed exchange continues where it stopped — a PUBREL already sent is
// sent again, not the PUBLISH [MQTT-4.4.0-1]; an inbound id the broker
// acknowledged is still known after the restart [MQTT-4.3.3-10].

type rawMQTT struct {
	t *testing.T
	c net.Conn
	r *bufio.Reader
}

func dialMQTT(t *testing.T, addr, id string, clean bool) (*rawMQTT, bool) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	rc := &rawMQTT{t: t, c: c, r: bufio.NewReader(c)}
	t.Cleanup(func() { c.Close() })
	rc.send(&packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connect}, ProtocolVersion: 4,
		Connect: packets.ConnectParams{ProtocolName: []byte("MQTT"), ClientIdentifier: id, Clean: clean, Keepalive: 60}})
	ack := rc.expect(packets.Connack)
	if ack.ReasonCode != 0 {
		t.Fatalf("CONNACK %#x", ack.ReasonCode)
	}
	return rc, ack.SessionPresent
}

func (rc *rawMQTT) send(pk *packets.Packet) {
	rc.t.Helper()
	if pk.ProtocolVersion == 0 {
		pk.ProtocolVersion = 4
	}
	b, err := mqtt.Append(nil, pk)
	if err != nil {
		rc.t.Fatal(err)
	}
	if _, err := rc.c.Write(b); err != nil {
		rc.t.Fatal(err)
	}
}

func (rc *rawMQTT) read(d time.Duration) (*packets.Packet, error) {
	_ = rc.c.SetReadDeadline(time.Now().Add(d))
	for n := 2; ; n++ {
		b, err := rc.r.Peek(n)
		if err != nil {
			return nil, err
		}
		if _, hl, rem, err := mqtt.Header(b); err == nil {
			buf := make([]byte, hl+rem)
			if _, err := io.ReadFull(rc.r, buf); err != nil {
				return nil, err
			}
			pk := new(packets.Packet)
			_, err := mqtt.Decode(buf, pk, 4, 0)
			return pk, err
		}
	}
}

func (rc *rawMQTT) expect(typ byte) *packets.Packet {
	rc.t.Helper()
	pk, err := rc.read(10 * time.Second)
	if err != nil {
		rc.t.Fatalf("want %s: %v", packets.PacketNames[typ], err)
	}
	if pk.FixedHeader.Type != typ {
		rc.t.Fatalf("want %s, got %s", packets.PacketNames[typ], packets.PacketNames[pk.FixedHeader.Type])
	}
	return pk
}

func (rc *rawMQTT) none() {
	rc.t.Helper()
	if pk, err := rc.read(300 * time.Millisecond); err == nil {
		rc.t.Fatalf("unexpected %s %q", packets.PacketNames[pk.FixedHeader.Type], pk.Payload)
	}
}

func (rc *rawMQTT) ack(typ byte, pid uint16) {
	fh := packets.FixedHeader{Type: typ}
	if typ == packets.Pubrel {
		fh.Qos = 1
	}
	rc.send(&packets.Packet{FixedHeader: fh, PacketID: pid})
}

func (rc *rawMQTT) publish(topic, payload string, pid uint16, dup bool) {
	rc.send(&packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 2, Dup: dup}, PacketID: pid,
		TopicName: topic, Payload: []byte(payload)})
}

// crash SIGKILLs the broker and starts it again on the same data dir.
func crash(t *testing.T, srv **childServer) {
	t.Helper()
	if err := (*srv).cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = (*srv).cmd.Wait()
	*srv = &childServer{startChild(t, (*srv).addr, (*srv).dir), (*srv).addr, (*srv).dir}
}

type childServer struct {
	cmd       *exec.Cmd
	addr, dir string
}

func TestQoS2SurvivesKillAtEachStep(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns broker processes")
	}
	start := func(t *testing.T) *childServer {
		addr, dir := freeAddr(t), t.TempDir()
		return &childServer{startChild(t, addr, dir), addr, dir}
	}
	subscribe := func(t *testing.T, addr, id, filter string) {
		sub, _ := dialMQTT(t, addr, id, false)
		sub.send(&packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Subscribe, Qos: 1}, PacketID: 1,
			Filters: packets.Subscriptions{{Filter: filter, Qos: 2}}})
		sub.expect(packets.Suback)
		sub.send(&packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Disconnect}})
		sub.c.Close()
	}
	deliver := func(t *testing.T, addr, topic, payload string) {
		pub, _ := dialMQTT(t, addr, "one-shot-pub", true)
		pub.publish(topic, payload, 9, false)
		rec := pub.expect(packets.Pubrec)
		pub.ack(packets.Pubrel, rec.PacketID)
		pub.expect(packets.Pubcomp)
		pub.c.Close()
	}

	t.Run("outbound killed before PUBREC", func(t *testing.T) {
		srv := start(t)
		subscribe(t, srv.addr, "out-a", "q2/a")
		deliver(t, srv.addr, "q2/a", "once")
		sub, _ := dialMQTT(t, srv.addr, "out-a", false)
		first := sub.expect(packets.Publish) // received, never acknowledged
		crash(t, &srv)
		sub, present := dialMQTT(t, srv.addr, "out-a", false)
		if !present {
			t.Fatal("session not present after the restart")
		}
		again := sub.expect(packets.Publish)
		if again.PacketID != first.PacketID || string(again.Payload) != "once" {
			t.Fatalf("resent as id %d %q, first sent as id %d", again.PacketID, again.Payload, first.PacketID)
		}
		sub.ack(packets.Pubrec, again.PacketID)
		sub.expect(packets.Pubrel)
		sub.ack(packets.Pubcomp, again.PacketID)
		sub.none()
	})

	t.Run("outbound killed after PUBREL", func(t *testing.T) {
		srv := start(t)
		subscribe(t, srv.addr, "out-b", "q2/b")
		deliver(t, srv.addr, "q2/b", "once")
		sub, _ := dialMQTT(t, srv.addr, "out-b", false)
		p := sub.expect(packets.Publish)
		sub.ack(packets.Pubrec, p.PacketID)
		sub.expect(packets.Pubrel) // PUBCOMP never sent
		crash(t, &srv)
		sub, _ = dialMQTT(t, srv.addr, "out-b", false)
		rel := sub.expect(packets.Pubrel) // the release again, not the message
		if rel.PacketID != p.PacketID {
			t.Fatalf("PUBREL for %d, want %d", rel.PacketID, p.PacketID)
		}
		sub.ack(packets.Pubcomp, rel.PacketID)
		sub.none()
	})

	t.Run("inbound killed before PUBREL", func(t *testing.T) {
		srv := start(t)
		subscribe(t, srv.addr, "in-watch", "q2/c")
		pub, _ := dialMQTT(t, srv.addr, "in-pub", false)
		pub.publish("q2/c", "once", 7, false)
		pub.expect(packets.Pubrec) // the broker has it; PUBREL never sent
		crash(t, &srv)
		pub, _ = dialMQTT(t, srv.addr, "in-pub", false)
		pub.publish("q2/c", "once", 7, true) // the client resends, as it must
		pub.expect(packets.Pubrec)
		pub.ack(packets.Pubrel, 7)
		pub.expect(packets.Pubcomp)
		sub, _ := dialMQTT(t, srv.addr, "in-watch", false)
		p := sub.expect(packets.Publish)
		if string(p.Payload) != "once" {
			t.Fatalf("got %q", p.Payload)
		}
		sub.ack(packets.Pubrec, p.PacketID)
		sub.expect(packets.Pubrel)
		sub.ack(packets.Pubcomp, p.PacketID)
		sub.none() // exactly once
	})

	t.Run("inbound killed after PUBCOMP", func(t *testing.T) {
		srv := start(t)
		subscribe(t, srv.addr, "in-watch2", "q2/d")
		pub, _ := dialMQTT(t, srv.addr, "in-pub2", false)
		pub.publish("q2/d", "first", 7, false)
		pub.expect(packets.Pubrec)
		pub.ack(packets.Pubrel, 7)
		pub.expect(packets.Pubcomp) // the id is free again
		crash(t, &srv)
		pub, _ = dialMQTT(t, srv.addr, "in-pub2", false)
		pub.publish("q2/d", "second", 7, false) // a new message under the reused id
		pub.expect(packets.Pubrec)
		pub.ack(packets.Pubrel, 7)
		pub.expect(packets.Pubcomp)
		sub, _ := dialMQTT(t, srv.addr, "in-watch2", false)
		var got []string
		for rels := 0; len(got) < 2 || rels < 2; {
			pk, err := sub.read(10 * time.Second)
			if err != nil {
				t.Fatalf("after %v: %v", got, err)
			}
			switch pk.FixedHeader.Type {
			case packets.Publish:
				got = append(got, string(pk.Payload))
				sub.ack(packets.Pubrec, pk.PacketID)
			case packets.Pubrel:
				rels++
				sub.ack(packets.Pubcomp, pk.PacketID)
			}
		}
		if got[0] != "first" || got[1] != "second" {
			t.Fatalf("got %v, want [first second]", got)
		}
		sub.none()
	})
}

// A QoS 1 message sent to a persistent session and not acknowledged when
// the broker is killed comes again under the same packet id
// [MQTT-4.4.0-1] (without DUP: the store does not record that it was
// sent). It came under a new id before.
func TestQoS1KeepsItsPacketIDAcrossKill(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns broker processes")
	}
	addr, dir := freeAddr(t), t.TempDir()
	srv := &childServer{startChild(t, addr, dir), addr, dir}
	sub, _ := dialMQTT(t, addr, "q1-sub", false)
	sub.send(&packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Subscribe, Qos: 1}, PacketID: 1,
		Filters: packets.Subscriptions{{Filter: "q1/#", Qos: 1}}})
	sub.expect(packets.Suback)
	pub, _ := dialMQTT(t, addr, "q1-pub", true)
	// Five acknowledged first, so the ids in flight are not the ones a
	// fresh session would hand out.
	for range 5 {
		pub.send(&packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1}, PacketID: 3,
			TopicName: "q1/x", Payload: []byte("done")})
		pub.expect(packets.Puback)
		sub.ack(packets.Puback, sub.expect(packets.Publish).PacketID)
	}
	for _, payload := range []string{"a", "b", "c"} {
		pub.send(&packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1}, PacketID: 3,
			TopicName: "q1/x", Payload: []byte(payload)})
		pub.expect(packets.Puback)
	}
	first := map[string]uint16{}
	for range 3 {
		p := sub.expect(packets.Publish) // never acknowledged
		first[string(p.Payload)] = p.PacketID
	}
	crash(t, &srv)
	sub, present := dialMQTT(t, srv.addr, "q1-sub", false)
	if !present {
		t.Fatal("session not present after the restart")
	}
	for range 3 {
		p := sub.expect(packets.Publish)
		if id, ok := first[string(p.Payload)]; !ok || p.PacketID != id {
			t.Errorf("%q again under id %d, first under %d", p.Payload, p.PacketID, id)
		}
		sub.ack(packets.Puback, p.PacketID)
	}
	sub.none()
}
