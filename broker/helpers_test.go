package broker

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"testing"
	"time"

	"github.com/cimgo/cim/broker/mqtt"
	"github.com/cimgo/cim/storage"
	"github.com/cockroachdb/pebble/vfs"
	"github.com/mochi-mqtt/server/v2/packets"
)

// startServer runs a broker on an ephemeral loopback port for one test.
func startServer(t testing.TB, opts Options) *Server {
	t.Helper()
	opts.MQTTAddr = "127.0.0.1:0"
	if opts.Logger == nil {
		opts.Logger = startServerLogger()
	}
	if opts.SysInterval == 0 {
		opts.SysInterval = -1
	}
	s, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	return s
}

// startServerLogger logs errors only, or everything with CIM_TEST_DEBUG set.
func startServerLogger() *slog.Logger {
	level := slog.LevelError
	if os.Getenv("CIM_TEST_DEBUG") != "" {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
}

// rawClient speaks MQTT byte by byte, for tests of what real clients never send.
type rawClient struct {
	t       testing.TB
	c       net.Conn
	r       *bufio.Reader
	version byte
}

func dialRaw(t testing.TB, s *Server) *rawClient {
	t.Helper()
	c, err := net.DialTimeout("tcp", s.Addr().String(), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &rawClient{t: t, c: c, r: bufio.NewReader(c)}
}

func (rc *rawClient) write(b []byte) {
	rc.t.Helper()
	if _, err := rc.c.Write(b); err != nil {
		rc.t.Fatal(err)
	}
}

func (rc *rawClient) send(pk *packets.Packet) {
	rc.t.Helper()
	if pk.ProtocolVersion == 0 {
		pk.ProtocolVersion = rc.version
	}
	b, err := mqtt.Append(nil, pk)
	if err != nil {
		rc.t.Fatal(err)
	}
	rc.write(b)
}

// read returns the next packet, failing the test after 5 s.
func (rc *rawClient) read() *packets.Packet {
	rc.t.Helper()
	pk, err := rc.tryRead(5 * time.Second)
	if err != nil {
		rc.t.Fatalf("read: %v", err)
	}
	return pk
}

func (rc *rawClient) tryRead(d time.Duration) (*packets.Packet, error) {
	_ = rc.c.SetReadDeadline(time.Now().Add(d))
	hdr, err := rc.r.Peek(2)
	if err != nil {
		return nil, err
	}
	_ = hdr
	var buf []byte
	for n := 2; ; n++ {
		b, err := rc.r.Peek(n)
		if err != nil {
			return nil, err
		}
		if _, hl, rem, err := mqtt.Header(b); err == nil {
			buf = make([]byte, hl+rem)
			if _, err := io.ReadFull(rc.r, buf); err != nil {
				return nil, err
			}
			break
		}
	}
	pk := new(packets.Packet)
	if _, err := mqtt.Decode(buf, pk, max(rc.version, 3), 0); err != nil {
		return nil, err
	}
	return pk, nil
}

// expectClosed waits for the server to close the socket.
func (rc *rawClient) expectClosed() {
	rc.t.Helper()
	_ = rc.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		if _, err := rc.r.ReadByte(); err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				rc.t.Fatal("connection not closed")
			}
			return
		}
	}
}

// connect sends a CONNECT and checks the CONNACK code.
func (rc *rawClient) connect(version byte, id string, clean bool, want byte) *packets.Packet {
	rc.t.Helper()
	rc.version = version
	name := []byte("MQTT")
	if version == 3 {
		name = []byte("MQIsdp")
	}
	rc.send(&packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connect}, ProtocolVersion: version,
		Connect: packets.ConnectParams{ProtocolName: name, ClientIdentifier: id, Clean: clean, Keepalive: 30}})
	ack := rc.read()
	if ack.FixedHeader.Type != packets.Connack || ack.ReasonCode != want {
		rc.t.Fatalf("want CONNACK %#x, got %s %#x", want, packets.PacketNames[ack.FixedHeader.Type], ack.ReasonCode)
	}
	return ack
}

// waitFor polls cond until it holds or 5 s pass.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// openTestStore opens a store in memory, closed when the test ends (after
// the server registered later has shut down).
func openTestStore(t testing.TB) *storage.DB {
	t.Helper()
	db, err := storage.Open("data", storage.Options{FS: vfs.NewMem(), SweepInterval: -1, Logger: startServerLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := db.Close(); err != nil {
			t.Error(err)
		}
	})
	return db
}
