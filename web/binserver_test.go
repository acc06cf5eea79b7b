package web

import (
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// binServer runs the cim server binary on fixed free ports and a data dir
// of its own, so a restart comes back where the page expects it, with
// the same store and token key.
type binServer struct {
	t               *testing.T
	bin, dir        string
	http, mqtt, nat int
	cmd             *exec.Cmd
}

func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func newBinServer(t *testing.T, bin string) *binServer {
	abs, err := filepath.Abs(bin)
	if err != nil {
		t.Fatal(err)
	}
	b := &binServer{t: t, bin: abs, dir: t.TempDir(), http: freePort(t), mqtt: freePort(t), nat: freePort(t)}
	b.start()
	t.Cleanup(b.stop)
	return b
}

func (b *binServer) start() {
	addr := func(p int) string { return "127.0.0.1:" + strconv.Itoa(p) }
	b.cmd = exec.Command(b.bin, "server", "--data-dir", filepath.Join(b.dir, "data"), "--log-level", "warn",
		"--http-addr", addr(b.http), "--mqtt-addr", addr(b.mqtt), "--native-addr", addr(b.nat))
	log, err := os.OpenFile(filepath.Join(b.dir, "server.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		b.t.Fatal(err)
	}
	b.cmd.Stdout, b.cmd.Stderr = log, log
	if err := b.cmd.Start(); err != nil {
		b.t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		if r, err := http.Get(b.url() + "/healthz"); err == nil {
			r.Body.Close()
			if r.StatusCode == 200 {
				return
			}
		}
		if time.Now().After(deadline) {
			out, _ := os.ReadFile(filepath.Join(b.dir, "server.log"))
			b.t.Fatalf("cim server not healthy within 15 s:\n%s", out)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (b *binServer) stop() {
	if b.cmd == nil || b.cmd.Process == nil {
		return
	}
	b.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { b.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		b.cmd.Process.Kill()
		<-done
	}
	b.cmd = nil
}

func (b *binServer) restart() { b.stop(); b.start() }

func (b *binServer) url() string { return "http://127.0.0.1:" + strconv.Itoa(b.http) }

func (b *binServer) mqttAddr() string { return "127.0.0.1:" + strconv.Itoa(b.mqtt) }
