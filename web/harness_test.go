package web

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cimgo/cim/broker"
	"github.com/cimgo/cim/broker/httpapi"
	"github.com/cimgo/cim/storage"
	"github.com/cockroachdb/pebble/vfs"
)

// pageServer is what cim server puts on its HTTP port, in process: the
// HTTP API (the IM routes, /ws, /mqtt) with the page mounted as cim server
// mounts it, in front of a broker that can be restarted on the same
// (in-memory) store and token key.
type pageServer struct {
	t       *testing.T
	fs      vfs.FS
	key     []byte
	hs      *httptest.Server
	handler atomic.Pointer[http.Handler]
	mu      sync.Mutex
	srv     *broker.Server
	db      *storage.DB
}

func newPageServer(t *testing.T) *pageServer {
	p := &pageServer{t: t, fs: vfs.NewMem(), key: []byte("0123456789abcdef0123456789abcdef")}
	p.hs = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { (*p.handler.Load()).ServeHTTP(w, r) }))
	p.start()
	t.Cleanup(func() {
		p.hs.Close()
		p.stop()
	})
	return p
}

func (p *pageServer) start() {
	t := p.t
	log := slog.New(slog.DiscardHandler)
	db, err := storage.Open("data", storage.Options{FS: p.fs, SweepInterval: -1, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := broker.New(broker.Options{MQTTAddr: "127.0.0.1:0", NativeAddr: "127.0.0.1:0", TokenKey: p.key, Store: db, SysInterval: -1, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	api, err := httpapi.New(srv, httpapi.Options{Addr: p.hs.Listener.Addr().String(), Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	Mount(api.Handle)
	h := api.Handler()
	p.mu.Lock()
	p.srv, p.db = srv, db
	p.mu.Unlock()
	p.handler.Store(&h)
}

func (p *pageServer) stop() {
	p.mu.Lock()
	srv, db := p.srv, p.db
	p.srv = nil
	p.mu.Unlock()
	if srv == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(ctx)
	_ = db.Close()
}

// restart stops the broker (its connections, WebSockets included, drop)
// and starts it again on the same store, as a restarted cim server.
func (p *pageServer) restart() {
	p.stop()
	p.start()
}

func (p *pageServer) url() string { return p.hs.URL }

func (p *pageServer) mqttAddr() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.srv.ListenerAddr(broker.ProtocolMQTT).String()
}
