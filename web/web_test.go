package web

import (
	"bytes"
	"compress/gzip"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"testing"

	"github.com/cimgo/cim/broker/wire"
)

func get(t *testing.T, h http.Handler, method, path string, hdr map[string]string) *http.Response {
	t.Helper()
	req := httptest.NewRequest(method, path, nil)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Result()
}

func TestHandlerServesThePage(t *testing.T) {
	h := Handler()
	for path, ctype := range map[string]string{
		"/": "text/html", "/index.html": "text/html", "/app.js": "text/javascript", "/wire.js": "text/javascript",
		"/mqtt.js": "text/javascript", "/style.css": "text/css", "/emoji.json": "application/json",
	} {
		r := get(t, h, "GET", path, nil)
		body, _ := io.ReadAll(r.Body)
		if r.StatusCode != 200 || !strings.HasPrefix(r.Header.Get("Content-Type"), ctype) || len(body) == 0 || r.Header.Get("Content-Encoding") != "" {
			t.Errorf("GET %s: %d %q %d bytes", path, r.StatusCode, r.Header.Get("Content-Type"), len(body))
		}
	}
	r := get(t, h, "GET", "/", nil)
	index, _ := io.ReadAll(r.Body)
	if !bytes.Contains(index, []byte(`<script type="module" src="app.js">`)) || bytes.Contains(index, []byte("http")) && bytes.Contains(index, []byte("//cdn")) {
		t.Errorf("index: %s", index)
	}
	if r.Header.Get("Content-Security-Policy") == "" || r.Header.Get("ETag") == "" {
		t.Errorf("headers %v", r.Header)
	}
	// gzip when accepted, not when refused
	r = get(t, h, "GET", "/app.js", map[string]string{"Accept-Encoding": "br, gzip;q=0.8"})
	if r.Header.Get("Content-Encoding") != "gzip" {
		t.Fatalf("no gzip: %v", r.Header)
	}
	zr, err := gzip.NewReader(r.Body)
	if err != nil {
		t.Fatal(err)
	}
	js, _ := io.ReadAll(zr)
	if !bytes.Contains(js, []byte("NativeClient")) {
		t.Fatal("gzipped app.js")
	}
	if r := get(t, h, "GET", "/app.js", map[string]string{"Accept-Encoding": "gzip;q=0"}); r.Header.Get("Content-Encoding") != "" {
		t.Fatal("gzip;q=0 got gzip")
	}
	// a reload revalidates
	etag := get(t, h, "GET", "/app.js", nil).Header.Get("ETag")
	if r := get(t, h, "GET", "/app.js", map[string]string{"If-None-Match": etag}); r.StatusCode != http.StatusNotModified {
		t.Fatalf("If-None-Match: %d", r.StatusCode)
	}
	if r := get(t, h, "GET", "/nope.js", nil); r.StatusCode != 404 {
		t.Fatalf("unknown file: %d", r.StatusCode)
	}
	if r := get(t, h, "POST", "/", nil); r.StatusCode != 405 {
		t.Fatalf("POST: %d", r.StatusCode)
	}
	if r := get(t, h, "HEAD", "/style.css", nil); r.StatusCode != 200 {
		t.Fatalf("HEAD: %d", r.StatusCode)
	}
	var em map[string]string
	if err := json.NewDecoder(get(t, h, "GET", "/emoji.json", nil).Body).Decode(&em); err != nil || em[":smile:"] != "😄" {
		t.Fatalf("emoji.json: %v %q", err, em[":smile:"])
	}
}

func TestPathsOnAMux(t *testing.T) {
	mux := http.NewServeMux()
	for _, p := range Paths() {
		mux.Handle("GET "+p, Handler())
	}
	mux.HandleFunc("POST /registerAccount", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("api")) })
	if r := get(t, mux, "GET", "/", nil); r.StatusCode != 200 {
		t.Fatalf("/: %d", r.StatusCode)
	}
	if r := get(t, mux, "GET", "/other", nil); r.StatusCode != 404 {
		t.Fatalf("/other: %d (the page must not take every path)", r.StatusCode)
	}
	if r := get(t, mux, "POST", "/registerAccount", nil); r.StatusCode != 200 {
		t.Fatalf("API: %d", r.StatusCode)
	}
}

// TestPageSize reports the page's size (what a first visit downloads,
// gzip) and keeps it small.
func TestPageSize(t *testing.T) {
	raw, gz := 0, 0
	for p, f := range files() {
		if p == "/" || p == "/emoji.json" {
			continue
		}
		raw += len(f.body)
		gz += len(f.gz)
	}
	em := files()["/emoji.json"]
	t.Logf("page: %.1f KB, %.1f KB gzip; emoji.json (loaded after): %.1f KB, %.1f KB gzip",
		float64(raw)/1024, float64(gz)/1024, float64(len(em.body))/1024, float64(len(em.gz))/1024)
	if gz > 40<<10 {
		t.Errorf("the page is %d bytes gzip: over 40 KB", gz)
	}
}

// The page's codec against the Go one: frames from broker/wire decode in
// wire.js with the same fields, and frames wire.js makes decode in Go.
func TestWireJSAgainstGo(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("no node")
	}
	var args []string
	for _, b := range []wire.Body{
		&wire.Deliver{MsgID: 1<<62 + 5, From: 1, FromName: "alice", Target: wire.ToGroup("ops"), Body: []byte("ship it 😄"), Time: 1700000000000, QoS: 1, Offline: true},
		// As the server sends a private message: no ts (the id's time), no u (the receiver).
		&wire.Deliver{MsgID: (1750000000000-wire.MsgIDEpoch)<<wire.MsgIDTimeShift | 1, From: 2, FromName: "carol",
			Target: wire.Target{Kind: wire.KindUser}, Body: []byte("hi"), Time: 1750000000000},
		&wire.LoginAck{Code: wire.CodeOK, User: 9, Name: "bob", Token: "v4.x", Keepalive: 30, Node: "n1", MaxFrame: 1 << 20, Time: 1700000000000},
		&wire.SendAck{ID: 1700000000000000001, MsgID: 17, Code: wire.CodeOffline, Time: 1700000000000},
		&wire.Response{ID: 3, Code: wire.CodeOK, Result: mustRaw(t, wire.OnlineResult{Users: []wire.User{{ID: 1, Name: "Zhāng"}}, More: true})},
		&wire.Kick{Code: wire.CodeTakenOver, Text: "elsewhere"},
	} {
		f, err := wire.Append(nil, b)
		if err != nil {
			t.Fatal(err)
		}
		_, n := uvarint(f)
		args = append(args, hex.EncodeToString(f[n:])) // as over /ws: no length prefix
	}
	out, err := exec.Command(node, append([]string{"testdata/wire_check.mjs"}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("node: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	want := []string{
		`decoded {"type":7,"body":{"i":"4611686018427387909","f":1,"n":"alice","k":2,"t":"ops","b":"bin:ship it 😄","ts":1700000000000,"q":1,"o":true}}`,
		`message {"id":"4611686018427387909","from":1,"fromName":"alice","kind":2,"user":0,"name":"ops","body":"ship it 😄","time":1700000000000,"offline":true}`,
		`decoded {"type":7,"body":{"i":"120044335923200001","f":2,"n":"carol","k":1,"b":"bin:hi"}}`,
		`message {"id":"120044335923200001","from":2,"fromName":"carol","kind":1,"user":9,"name":"","body":"hi","time":1750000000000,"offline":false}`,
		`"c":9000`, `"t":"v4.x"`, `"x":1048576`,
		`decoded {"type":6,"body":{"i":"1700000000000000001","s":17,"c":7000,"ts":1700000000000}}`,
		`"r":{"u":[{"i":1,"n":"Zhāng"}],"m":true}`,
		`decoded {"type":15,"body":{"c":5003,"m":"elsewhere"}}`,
	}
	all := strings.Join(lines, "\n")
	for _, w := range want {
		if !strings.Contains(all, w) {
			t.Errorf("node output lacks %s:\n%s", w, all)
		}
	}
	var enc [][]byte
	for _, l := range lines {
		if h, ok := strings.CutPrefix(l, "encoded "); ok {
			b, err := hex.DecodeString(h)
			if err != nil {
				t.Fatal(err)
			}
			enc = append(enc, b)
		}
	}
	if len(enc) != 4 {
		t.Fatalf("%d encoded frames:\n%s", len(enc), all)
	}
	decode := func(b []byte) *wire.Frame {
		t.Helper()
		var f wire.Frame
		full := append(appendUvarint(nil, uint64(len(b))), b...)
		if n, err := wire.Decode(full, &f, 1<<20); err != nil || n != len(full) {
			t.Fatalf("Go decode of %x: %v (%d of %d)", b, err, n, len(full))
		}
		return &f
	}
	s := decode(enc[0]).Send
	if s.ID != 1700000000000000001 || s.Kind != wire.KindUser || s.User != 2 || s.QoS != 1 || s.Delay != 1500 || string(s.Body) != "hi 😄" {
		t.Errorf("send: %+v", s)
	}
	if a := decode(enc[1]).DeliverAck; a.MsgID != 1<<64-1 {
		t.Errorf("deliver-ack: %+v", a)
	}
	r := decode(enc[2]).Request
	var args2 wire.HistoryArgs
	if err := r.Args.Unmarshal(&args2); err != nil || r.ID != 7 || r.Method != "history" || args2.Target.Kind != wire.KindGroup || args2.Name != "ops" || args2.Keyword != "Ünïcode" || args2.Limit != 50 {
		t.Errorf("request: %+v %+v %v", r, args2, err)
	}
	if l := decode(enc[3]).Login; l.Name != "alice" || l.Password != "secret" || l.Keepalive != 30 || l.Version != "cim-web/1" {
		t.Errorf("login: %+v", l)
	}
}

func mustRaw(t *testing.T, v any) wire.Raw {
	r, err := wire.MarshalRaw(v)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func uvarint(b []byte) (uint64, int) {
	var x uint64
	for i, c := range b {
		x |= uint64(c&0x7f) << (7 * i)
		if c < 0x80 {
			return x, i + 1
		}
	}
	return 0, 0
}

func appendUvarint(b []byte, x uint64) []byte {
	for x >= 0x80 {
		b = append(b, byte(x)|0x80)
		x >>= 7
	}
	return append(b, byte(x))
}
