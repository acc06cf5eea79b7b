package httpapi

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cimgo/cim/broker"
	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
)

// TestMeasureIdleConnections measures, next to plain TCP, what an idle
// MQTT client costs the broker process over TLS, WebSocket and WebSocket
// over TLS (heap + stacks, and RSS, per connection), and the connect rate
// a client process reaches. Run with
//
//	CIM_MEASURE=1 [CIM_MEASURE_N=5000] go test -run TestMeasureIdleConnections -v ./broker/httpapi
//
// The clients run in a child process (this test binary), so their memory
// is not counted.
func TestMeasureIdleConnections(t *testing.T) {
	if os.Getenv("CIM_MEASURE") == "" {
		t.Skip("set CIM_MEASURE=1 to measure (about a minute)")
	}
	n := 2000
	if v, err := strconv.Atoi(os.Getenv("CIM_MEASURE_N")); err == nil && v > 0 {
		n = v
	}
	debug.SetGCPercent(50) // as cim server runs
	srv, err := broker.New(broker.Options{MQTTAddr: "127.0.0.1:0", SysInterval: -1, Logger: testLogger(), MaxKeepalive: -1})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	}()
	p := newPKI(t)
	cert, key := p.files("srv", p.issue("srv", true))
	m, err := ReadTLS(TLSFiles{CertFile: cert, KeyFile: key})
	if err != nil {
		t.Fatal(err)
	}
	certs := NewCerts(m)
	api, err := New(srv, Options{Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	listen := func() net.Listener {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		return ln
	}
	wsLn, wssLn, tlsLn := listen(), listen(), listen()
	hs := &http.Server{Handler: api.Handler()}
	go hs.Serve(wsLn)
	defer hs.Close()
	hss := &http.Server{Handler: api.Handler()}
	go hss.Serve(tls.NewListener(wssLn, certs.Config("http/1.1")))
	defer hss.Close()
	go srv.ServeListener(tls.NewListener(tlsLn, certs.Config()), broker.ProtocolMQTT, "tls", false)
	defer tlsLn.Close()

	kinds := []struct{ name, addr string }{
		{"tcp", srv.Addr().String()}, {"tls", tlsLn.Addr().String()},
		{"ws", wsLn.Addr().String()}, {"wss", wssLn.Addr().String()},
	}
	type result struct {
		heap, rss, rate float64
	}
	results := map[string]result{}
	for _, k := range kinds {
		heap0, rss0 := memNow()
		child := exec.Command(os.Args[0], "-test.run=^TestMeasureClient$")
		child.Env = append(os.Environ(), "CIM_MEASURE_CLIENT="+strings.Join([]string{k.name, k.addr, strconv.Itoa(n), p.caFile}, ","))
		stdout, _ := child.StdoutPipe()
		child.Stderr = os.Stderr
		stdin, _ := child.StdinPipe()
		if err := child.Start(); err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(stdout)
		var rate float64
		for sc.Scan() {
			if v, ok := strings.CutPrefix(sc.Text(), "RATE "); ok {
				rate, _ = strconv.ParseFloat(v, 64)
				break
			}
		}
		deadline := time.Now().Add(2 * time.Minute)
		for srv.Stats().ClientsConnected < int64(n) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: %d of %d connected", k.name, srv.Stats().ClientsConnected, n)
			}
			time.Sleep(50 * time.Millisecond)
		}
		time.Sleep(time.Second) // let the pumps' first buffers go back to their pools
		heap1, rss1 := memNow()
		if dir := os.Getenv("CIM_MEASURE_PROFILE"); dir != "" {
			f, _ := os.Create(dir + "/heap-" + k.name + ".pprof")
			pprof.Lookup("heap").WriteTo(f, 0)
			f.Close()
			f, _ = os.Create(dir + "/goroutine-" + k.name + ".txt")
			pprof.Lookup("goroutine").WriteTo(f, 1)
			f.Close()
		}
		results[k.name] = result{float64(heap1-heap0) / float64(n), float64(rss1-rss0) / float64(n), rate}
		stdin.Close() // the child exits and its connections close
		child.Wait()
		for srv.Stats().ClientsConnected > 0 {
			if time.Now().After(deadline) {
				t.Fatalf("%s: connections did not close", k.name)
			}
			time.Sleep(50 * time.Millisecond)
		}
		time.Sleep(3 * time.Second) // lingering closes and the pumps' last goroutines
	}
	base := results["tcp"]
	var b strings.Builder
	fmt.Fprintf(&b, "\nidle MQTT connections: %d per kind, GOGC=50, %d cores (shared machine)\n", n, runtime.NumCPU())
	fmt.Fprintf(&b, "| transport | heap+stacks per conn | RSS per conn | connect rate (16 dialers) | heap vs tcp | rate vs tcp |\n|---|---|---|---|---|---|\n")
	for _, k := range kinds {
		r := results[k.name]
		fmt.Fprintf(&b, "| %s | %.1f KB | %.1f KB | %.0f conns/s | %.1f× | %.2f× |\n", k.name, r.heap/1024, r.rss/1024, r.rate, r.heap/base.heap, r.rate/base.rate)
	}
	t.Log(b.String())
}

// memNow is heap in use plus goroutine stacks, and RSS, after a collection.
func memNow() (int64, int64) {
	runtime.GC()
	runtime.GC()
	debug.FreeOSMemory()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	rss := int64(0)
	if b, err := os.ReadFile("/proc/self/statm"); err == nil {
		f := strings.Fields(string(b))
		if len(f) > 1 {
			pages, _ := strconv.ParseInt(f[1], 10, 64)
			rss = pages * int64(os.Getpagesize())
		}
	}
	return int64(ms.HeapInuse + ms.StackInuse), rss
}

// TestMeasureClient is the child of TestMeasureIdleConnections: it opens
// n MQTT connections of one kind, each CONNECTed, prints the connect rate
// and holds them until its stdin closes.
func TestMeasureClient(t *testing.T) {
	spec := os.Getenv("CIM_MEASURE_CLIENT")
	if spec == "" {
		t.Skip("child of TestMeasureIdleConnections")
	}
	f := strings.Split(spec, ",")
	kind, addr, caFile := f[0], f[1], f[3]
	n, _ := strconv.Atoi(f[2])
	pem, _ := os.ReadFile(caFile)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	tcfg := &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", ClientSessionCache: nil}
	connect := []byte{0x10, 0x0c, 0, 4, 'M', 'Q', 'T', 'T', 4, 2, 0, 0, 0, 0} // keepalive 0: idle forever
	var conns []net.Conn
	var mu sync.Mutex
	var next atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(n) {
				c, err := dialKind(kind, addr, tcfg, connect)
				if err != nil {
					fmt.Fprintln(os.Stderr, "measure client:", err)
					os.Exit(1)
				}
				mu.Lock()
				conns = append(conns, c)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	fmt.Printf("RATE %.0f\n", float64(n)/time.Since(start).Seconds())
	buf := make([]byte, 1)
	os.Stdin.Read(buf) // until the parent closes it
	for _, c := range conns {
		c.Close()
	}
}

func dialKind(kind, addr string, tcfg *tls.Config, connect []byte) (net.Conn, error) {
	ack := make([]byte, 4)
	switch kind {
	case "tcp", "tls":
		var c net.Conn
		var err error
		if kind == "tcp" {
			c, err = net.Dial("tcp", addr)
		} else {
			c, err = tls.Dial("tcp", addr, tcfg)
		}
		if err != nil {
			return nil, err
		}
		if _, err := c.Write(connect); err != nil {
			return nil, err
		}
		if _, err := ioReadFull(c, ack); err != nil || ack[0] != 0x20 {
			return nil, fmt.Errorf("connack % x: %v", ack, err)
		}
		return c, nil
	}
	scheme := "ws"
	d := ws.Dialer{Protocols: []string{"mqtt"}}
	if kind == "wss" {
		scheme, d.TLSConfig = "wss", tcfg
	}
	c, _, _, err := d.Dial(context.Background(), scheme+"://"+addr+"/mqtt")
	if err != nil {
		return nil, err
	}
	if err := wsutil.WriteClientBinary(c, connect); err != nil {
		return nil, err
	}
	b, err := wsutil.ReadServerBinary(c)
	if err != nil || len(b) < 4 || b[0] != 0x20 {
		return nil, fmt.Errorf("ws connack % x: %v", b, err)
	}
	return c, nil
}

func ioReadFull(c net.Conn, b []byte) (int, error) {
	n := 0
	for n < len(b) {
		m, err := c.Read(b[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}
