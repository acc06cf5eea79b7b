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
// the broker, part by part, and what its connect allocated (CIM_MEASURE=1;
// it prints, it does not judge): n clean v3.1.1 clients connect and stay;
// every allocation is attributed to the first frame of the broker or gnet
// that made it (the test's own clients are left out).
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
	var total, allocs, allocBytes int64
	type part struct {
		site string
		use  siteUse
	}
	var parts []part
	for site, u := range after {
		b := base[site]
		d := siteUse{u.inUse - b.inUse, u.allocs - b.allocs, u.allocBytes - b.allocBytes}
		if d.allocs > 0 && (strings.Contains(site, "gnet") || strings.Contains(site, "cimgo/cim/broker")) {
			parts = append(parts, part{site, d})
			total += max(d.inUse, 0)
			allocs += d.allocs
			allocBytes += d.allocBytes
		}
	}
	slices.SortFunc(parts, func(a, b part) int { return int(b.use.inUse - a.use.inUse) })
	for _, p := range parts {
		if p.use.inUse*10 < n && p.use.allocs*10 < n { // under 0.1 B and 0.1 allocation a connection
			continue
		}
		t.Logf("IDLECOST %7.1f B/conn live  %5.2f allocs %7.1f B/connect  %s", float64(p.use.inUse)/n, float64(p.use.allocs)/n, float64(p.use.allocBytes)/n, p.site)
	}
	t.Logf("IDLECOST %7.1f B/conn  total live heap of broker and gnet per idle connection", float64(total)/n)
	t.Logf("IDLECOST %7.2f allocs, %7.1f B allocated by broker and gnet per connect", float64(allocs)/n, float64(allocBytes)/n)
	for _, c := range conns {
		c.Close()
	}
}

// siteUse is what one allocation site holds and has allocated.
type siteUse struct{ inUse, allocs, allocBytes int64 }

// liveBySite sums the heap by the innermost frame of the broker or of gnet
// on each allocation's stack (or its innermost frame); the test's own
// allocations (its clients, its profile) go under "test".
func liveBySite() map[string]siteUse {
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
	out := map[string]siteUse{}
	for _, r := range recs {
		site := ""
		frames := runtime.CallersFrames(r.Stack())
		for {
			f, more := frames.Next()
			if site == "" {
				site = f.Function
			}
			if strings.Contains(f.Function, "TestIdleConnCost") || strings.Contains(f.Function, "liveBySite") {
				site = "test"
				break
			}
			if strings.Contains(f.Function, "cimgo/cim/broker") || strings.Contains(f.Function, "panjf2000/gnet") {
				site = f.Function
				break
			}
			if !more {
				break
			}
		}
		u := out[site]
		u.inUse += r.InUseBytes()
		u.allocs += r.AllocObjects
		u.allocBytes += r.AllocBytes
		out[site] = u
	}
	return out
}
