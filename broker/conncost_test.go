package broker

import (
	"fmt"
	"net"
	"os"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/cimgo/cim/broker/mqtt"
	"github.com/mochi-mqtt/server/v2/packets"
)

// TestIdleConnCost measures the live heap each idle MQTT connection costs
// the broker, part by part (CIM_MEASURE=1; it prints, it does not judge):
// n clean v3.1.1 clients connect and stay; every allocation still live is
// attributed to the first frame of the broker or gnet that made it.
func TestIdleConnCost(t *testing.T) {
	if os.Getenv("CIM_MEASURE") == "" {
		t.Skip("set CIM_MEASURE=1 to measure")
	}
	old := runtime.MemProfileRate
	runtime.MemProfileRate = 1
	defer func() { runtime.MemProfileRate = old }()
	s := startServer(t, Options{})
	const n = 4000
	connect, err := mqtt.Append(nil, &packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connect}, ProtocolVersion: 4,
		Connect: packets.ConnectParams{ProtocolName: []byte("MQTT"), ClientIdentifier: "placeholder-000000", Clean: true, Keepalive: 60}})
	if err != nil {
		t.Fatal(err)
	}
	runtime.GC()
	base := liveBySite()
	conns := make([]net.Conn, 0, n)
	for i := range n {
		c, err := net.Dial("tcp", s.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		b := slices.Clone(connect)
		copy(b[len(b)-6:], fmt.Sprintf("%06d", i)) // a distinct client id
		if _, err := c.Write(b); err != nil {
			t.Fatal(err)
		}
		ack := make([]byte, 4)
		if _, err := c.Read(ack); err != nil || ack[0] != 0x20 || ack[3] != 0 {
			t.Fatalf("connect %d: %x %v", i, ack, err)
		}
		conns = append(conns, c)
	}
	runtime.GC()
	runtime.GC()
	after := liveBySite()
	var total int64
	type part struct {
		site  string
		bytes int64
	}
	var parts []part
	for site, b := range after {
		if d := b - base[site]; d > 0 && (strings.Contains(site, "gnet") || strings.Contains(site, "cimgo/cim/broker")) {
			parts = append(parts, part{site, d})
			total += d
		}
	}
	slices.SortFunc(parts, func(a, b part) int { return int(b.bytes - a.bytes) })
	for _, p := range parts {
		if p.bytes*10 < n { // under 0.1 B a connection
			continue
		}
		t.Logf("IDLECOST %7.1f B/conn  %s", float64(p.bytes)/n, p.site)
	}
	t.Logf("IDLECOST %7.1f B/conn  total live heap of broker and gnet per idle connection", float64(total)/n)
	for _, c := range conns {
		c.Close()
	}
}

// liveBySite sums the live heap by the innermost frame of the broker or of
// gnet on each allocation's stack (or its innermost frame).
func liveBySite() map[string]int64 {
	var recs []runtime.MemProfileRecord
	n, _ := runtime.MemProfile(nil, true)
	for {
		recs = make([]runtime.MemProfileRecord, n+100)
		var ok bool
		if n, ok = runtime.MemProfile(recs, true); ok {
			recs = recs[:n]
			break
		}
	}
	out := map[string]int64{}
	for _, r := range recs {
		site := ""
		frames := runtime.CallersFrames(r.Stack())
		for {
			f, more := frames.Next()
			if site == "" {
				site = f.Function
			}
			if strings.Contains(f.Function, "cimgo/cim/broker") || strings.Contains(f.Function, "panjf2000/gnet") {
				site = f.Function
				break
			}
			if !more {
				break
			}
		}
		out[site] += r.InUseBytes()
	}
	return out
}
