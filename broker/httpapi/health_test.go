package httpapi

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/cimgo/cim/broker"
)

func TestHealthAndReady(t *testing.T) {
	srv, err := broker.New(broker.Options{MQTTAddr: "127.0.0.1:0", SysInterval: -1, Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	extra := error(nil)
	api, err := New(srv, Options{ReadyChecks: []func() error{func() error { return extra }}})
	if err != nil {
		t.Fatal(err)
	}
	web := httptest.NewServer(api.Handler())
	defer web.Close()
	get := func(path string) (int, string) {
		resp, err := http.Get(web.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, _ := get("/healthz"); code != 200 {
		t.Fatalf("/healthz before start: %d", code)
	}
	code, body := get("/readyz")
	if e := wantError(t, code, body, 503, "not_ready"); !strings.Contains(e.Message, "not listening") {
		t.Fatalf("readyz before start: %q", e.Message)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	if code, body := get("/readyz"); code != 200 || !strings.Contains(body, "ready") {
		t.Fatalf("/readyz after start: %d %s", code, body)
	}
	extra = context.DeadlineExceeded
	if code, body := get("/readyz"); code != 503 || !strings.Contains(body, "deadline") {
		t.Fatalf("/readyz with a failing check: %d %s", code, body)
	}
	extra = nil
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if code, _ := get("/readyz"); code != 503 {
		t.Fatalf("/readyz after shutdown: %d", code)
	}
	if code, _ := get("/healthz"); code != 200 {
		t.Fatalf("/healthz after shutdown: %d", code)
	}
}

func TestRoutingErrors(t *testing.T) {
	e := newEnv(t, Options{AdminToken: "tok", MaxBodyBytes: 100})
	code, _, body := e.do("GET", "/nope", "", "")
	wantError(t, code, body, 404, "not_found")
	code, hdr, body := e.do("POST", "/healthz", "", "x")
	wantError(t, code, body, 405, "method_not_allowed")
	if a := hdr.Get("Allow"); a != "GET, HEAD" {
		t.Fatalf("Allow %q", a)
	}
	code, hdr, body = e.do("GET", "/v1/admin/publish", "tok", "")
	wantError(t, code, body, 405, "method_not_allowed")
	if hdr.Get("Allow") != "POST" {
		t.Fatalf("Allow %q", hdr.Get("Allow"))
	}
	code, _, body = e.do("POST", "/v1/admin/publish", "tok", `{"topic":"a","payload":"`+strings.Repeat("x", 200)+`"}`)
	wantError(t, code, body, 413, "too_large")
	code, _, body = e.do("POST", "/v1/admin/publish", "tok", `{"topic":`)
	wantError(t, code, body, 400, "bad_request")
	code, _, body = e.do("POST", "/v1/admin/publish", "tok", `{"topic":"a","qos":1,"color":"red"}`)
	if er := wantError(t, code, body, 400, "bad_request"); !strings.Contains(er.Message, "color") {
		t.Fatalf("unknown field message %q", er.Message)
	}
	code, _, body = e.do("POST", "/v1/admin/publish", "tok", `{"topic":"a"} {"topic":"b"}`)
	wantError(t, code, body, 400, "bad_request")
	code, _, body = e.do("POST", "/v1/admin/publish", "tok", "")
	wantError(t, code, body, 400, "bad_request")
	// A body larger than the bound without a Content-Length is cut by the reader.
	req, _ := http.NewRequest("POST", e.web.URL+"/v1/admin/publish", &slowBody{n: 500})
	req.Header.Set("Authorization", "Bearer tok")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 413 {
		t.Fatalf("chunked oversize body: %d", resp.StatusCode)
	}
}

// slowBody is a body of unknown length: n bytes of a JSON string.
type slowBody struct{ n, i int }

func (b *slowBody) Read(p []byte) (int, error) {
	if b.i >= b.n {
		return 0, io.EOF
	}
	k := 0
	for ; k < len(p) && b.i < b.n; k++ {
		if b.i == 0 {
			p[k] = '"'
		} else {
			p[k] = 'x'
		}
		b.i++
	}
	return k, nil
}

func TestPprofFlag(t *testing.T) {
	off := newEnv(t, Options{AdminToken: "tok"})
	if code, _, _ := off.do("GET", "/debug/pprof/", "tok", ""); code != 404 {
		t.Fatalf("pprof off: %d", code)
	}
	on := newEnv(t, Options{AdminToken: "tok", Pprof: true})
	if code, _, _ := on.do("GET", "/debug/pprof/", "", ""); code != 401 {
		t.Fatalf("pprof without token: %d", code)
	}
	if code, _, body := on.do("GET", "/debug/pprof/goroutine?debug=1", "tok", ""); code != 200 || !strings.Contains(body, "goroutine") {
		t.Fatalf("pprof goroutine: %d", code)
	}
	open := newEnv(t, Options{Pprof: true})
	if code, _, _ := open.do("GET", "/debug/pprof/cmdline", "", ""); code != 200 {
		t.Fatalf("pprof without an admin token configured: %d", code)
	}
}
