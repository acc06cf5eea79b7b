package bench

import (
	"context"
	"errors"
	"net"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cimgo/cim/broker/wire"
)

// TestNativeIdleConnCost measures the live heap of an in-process broker
// per native account and per idle native connection, part by part, as
// broker/conncost_test.go does for MQTT (CIM_MEASURE=1; it prints, it does
// not judge): n accounts are registered (each has a session, its inbox and
// cim/all subscribed, from registration on), then n clients log in and
// stay. Every allocation still live is attributed to the innermost frame
// of the broker, its packages or gnet that made it.
func TestNativeIdleConnCost(t *testing.T) {
	if os.Getenv("CIM_MEASURE") == "" {
		t.Skip("set CIM_MEASURE=1 to measure")
	}
	old := runtime.MemProfileRate
	runtime.MemProfileRate = 1
	defer func() { runtime.MemProfileRate = old }()
	b := startIM(t)
	const n = 4000
	names := make([]string, n)
	for i := range names {
		names[i] = "idle-" + strconv.Itoa(i)
	}
	runtime.GC()
	base := liveBySite()
	for _, name := range names {
		if _, _, err := b.srv.Register(context.Background(), name, ""); err != nil {
			t.Fatal(err)
		}
	}
	runtime.GC()
	runtime.GC()
	registered := liveBySite()
	report(t, "per registered account (offline)", base, registered, n)
	conns := make([]net.Conn, 0, n)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	var f wire.Frame
	for _, name := range names {
		c, err := net.Dial("tcp", b.native)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		login, _ := wire.Append(nil, &wire.Login{Name: name, Keepalive: 300})
		if _, err := c.Write(login); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		var buf []byte
		for {
			chunk := make([]byte, 512)
			k, err := c.Read(chunk)
			if err != nil {
				t.Fatalf("login %s: %v", name, err)
			}
			buf = append(buf, chunk[:k]...)
			if _, err := wire.Decode(buf, &f, 0); err == nil {
				break
			} else if !errors.Is(err, wire.ErrIncomplete) {
				t.Fatal(err)
			}
		}
		if f.Type != wire.TypeLoginAck || f.LoginAck.Code != wire.CodeOK {
			t.Fatalf("login %s: %v %+v", name, f.Type, f.LoginAck)
		}
	}
	runtime.GC()
	runtime.GC()
	after := liveBySite()
	report(t, "per idle connection", registered, after, n)
	report(t, "per logged-in user (account + connection)", base, after, n)
}

// report logs the live heap grown from before to after, per one of n, by
// site.
func report(t *testing.T, what string, before, after map[string]int64, n int) {
	t.Helper()
	type part struct {
		site  string
		bytes int64
	}
	var parts []part
	var total int64
	for site, b := range after {
		if d := b - before[site]; d > 0 && (strings.Contains(site, "gnet") || strings.Contains(site, "cimgo/cim/broker") || strings.Contains(site, "cimgo/cim/storage")) {
			parts = append(parts, part{site, d})
			total += d
		}
	}
	slices.SortFunc(parts, func(a, b part) int { return int(b.bytes - a.bytes) })
	t.Logf("IDLECOST %s:", what)
	for _, p := range parts {
		if p.bytes*10 < int64(n) { // under 0.1 B each
			continue
		}
		t.Logf("IDLECOST %7.1f B  %s", float64(p.bytes)/float64(n), p.site)
	}
	t.Logf("IDLECOST %7.1f B  total live heap of broker, storage and gnet %s", float64(total)/float64(n), what)
}

// liveBySite sums the live heap by the innermost frame of the broker (or
// storage, or gnet) on each allocation's stack, else its innermost frame.
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
			if strings.Contains(f.Function, "cimgo/cim/broker") || strings.Contains(f.Function, "cimgo/cim/storage") || strings.Contains(f.Function, "panjf2000/gnet") {
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
