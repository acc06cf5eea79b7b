package main

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestHealth(t *testing.T) {
	healthy := true
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" || !healthy {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok"))
	}))
	defer srv.Close()
	run := func(args ...string) (int, string) {
		var out, errb bytes.Buffer
		code := runHealth(context.Background(), args, &out, &errb)
		return code, out.String() + errb.String()
	}
	if code, out := run("--url", srv.URL+"/healthz"); code != 0 || !strings.Contains(out, "healthy: 200") {
		t.Errorf("healthy: exit %d: %s", code, out)
	}
	healthy = false
	if code, out := run("--url", srv.URL+"/healthz"); code != 1 || !strings.Contains(out, "503") {
		t.Errorf("503: exit %d: %s", code, out)
	}
	// Nothing listening.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	if code, _ := run("-q", "--url", "http://"+addr+"/healthz"); code != 1 {
		t.Errorf("refused: exit %d", code)
	}
	if code, _ := run("--timeout", "0s"); code != 2 {
		t.Errorf("bad flag: exit %d", code)
	}
	if code, _ := run("--url", "::nonsense"); code != 2 {
		t.Errorf("bad URL: exit %d", code)
	}
}
