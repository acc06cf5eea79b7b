package web

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"net"
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
	"github.com/gorilla/websocket"
)

// pageServer is what cim server puts on its HTTP port for the page: the
// IM API, the page, /ws (native, one frame per binary message without
// its length prefix) and /mqtt (MQTT over WebSocket), in front of an
// in-process broker that can be restarted on the same (in-memory) store.
//
// The two WebSocket endpoints here are test bridges to the broker's TCP
// listeners with the framing of cim server's own (broker/httpapi's
// FramingUvarint and FramingStream).
type pageServer struct {
	t       *testing.T
	fs      vfs.FS
	key     []byte
	hs      *httptest.Server
	handler atomic.Pointer[http.ServeMux]
	mu      sync.Mutex
	srv     *broker.Server
	db      *storage.DB
	conns   map[net.Conn]struct{} // bridged TCP connections, closed by a restart
}

func newPageServer(t *testing.T) *pageServer {
	p := &pageServer{t: t, fs: vfs.NewMem(), key: []byte("0123456789abcdef0123456789abcdef"), conns: map[net.Conn]struct{}{}}
	p.hs = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { p.handler.Load().ServeHTTP(w, r) }))
	p.start()
	t.Cleanup(func() {
		p.stop()
		p.hs.Close()
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
	mux := http.NewServeMux()
	httpapi.MountIM(mux, srv, p.hs.Listener.Addr().String())
	for _, path := range Paths() {
		mux.Handle("GET "+path, Handler())
	}
	native, mqtt := srv.ListenerAddr(broker.ProtocolNative).String(), srv.ListenerAddr(broker.ProtocolMQTT).String()
	mux.HandleFunc("GET /ws", p.bridge(native, "cim", true))
	mux.HandleFunc("GET /mqtt", p.bridge(mqtt, "mqtt", false))
	p.mu.Lock()
	p.srv, p.db = srv, db
	p.mu.Unlock()
	p.handler.Store(mux)
}

func (p *pageServer) stop() {
	p.mu.Lock()
	srv, db := p.srv, p.db
	p.srv = nil
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	if srv == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(ctx)
	_ = db.Close()
}

// restart stops the broker (connections drop) and starts it again on the
// same store, with new listener ports, as a restarted cim server.
func (p *pageServer) restart() {
	p.stop()
	p.start()
}

func (p *pageServer) mqttAddr() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.srv.ListenerAddr(broker.ProtocolMQTT).String()
}

var upgrader = websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }}

// bridge upgrades to a WebSocket with subprotocol proto and relays to the
// TCP listener at addr: framed (native) moves one length-prefixed frame
// per binary message, without the prefix; otherwise bytes as they come.
func (p *pageServer) bridge(addr, proto string, framed bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		up := upgrader
		up.Subprotocols = []string{proto}
		ws, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer ws.Close()
		tcp, err := net.Dial("tcp", addr)
		if err != nil {
			return
		}
		p.mu.Lock()
		p.conns[tcp] = struct{}{}
		p.mu.Unlock()
		defer func() {
			p.mu.Lock()
			delete(p.conns, tcp)
			p.mu.Unlock()
			tcp.Close()
		}()
		done := make(chan struct{})
		go func() { // broker -> browser
			defer close(done)
			defer ws.Close()
			if framed {
				relayFrames(tcp, ws)
				return
			}
			buf := make([]byte, 32<<10)
			for {
				n, err := tcp.Read(buf)
				if n > 0 && ws.WriteMessage(websocket.BinaryMessage, buf[:n]) != nil {
					return
				}
				if err != nil {
					return
				}
			}
		}()
		for { // browser -> broker
			_, msg, err := ws.ReadMessage()
			if err != nil {
				break
			}
			if framed {
				msg = append(binary.AppendUvarint(nil, uint64(len(msg))), msg...)
			}
			if _, err := tcp.Write(msg); err != nil {
				break
			}
		}
		tcp.Close()
		<-done
	}
}

// relayFrames reads uvarint-length-prefixed frames from r and writes each
// as one binary message without its prefix.
func relayFrames(r io.Reader, ws *websocket.Conn) {
	br := &byteReader{r: r}
	for {
		n, err := binary.ReadUvarint(br)
		if err != nil || n > 16<<20 {
			return
		}
		f := make([]byte, n)
		if _, err := io.ReadFull(r, f); err != nil {
			return
		}
		if ws.WriteMessage(websocket.BinaryMessage, f) != nil {
			return
		}
	}
}

type byteReader struct{ r io.Reader }

func (b *byteReader) ReadByte() (byte, error) {
	var x [1]byte
	if _, err := io.ReadFull(b.r, x[:]); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			err = io.EOF
		}
		return 0, err
	}
	return x[0], nil
}
