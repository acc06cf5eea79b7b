package chat_test

import (
	"context"
	"io"
	"log/slog"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cimgo/cim/broker"
	"github.com/cimgo/cim/broker/httpapi"
	"github.com/cimgo/cim/chat"
	"github.com/cimgo/cim/client"
	"github.com/cimgo/cim/storage"
	"github.com/cockroachdb/pebble/vfs"
)

// imServer runs a broker (native on an ephemeral port, a store in memory)
// and its HTTP API (the IM routes among them), as cim server does.
func imServer(t *testing.T) (*broker.Server, *httptest.Server) {
	t.Helper()
	log := slog.New(slog.DiscardHandler)
	db, err := storage.Open("data", storage.Options{FS: vfs.NewMem(), SweepInterval: -1, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := broker.New(broker.Options{MQTTAddr: "127.0.0.1:0", NativeAddr: "127.0.0.1:0", Store: db, SysInterval: -1, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewUnstartedServer(nil)
	api, err := httpapi.New(srv, httpapi.Options{Addr: hs.Listener.Addr().String(), Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	hs.Config.Handler = api.Handler()
	hs.Start()
	t.Cleanup(func() {
		hs.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		_ = db.Close()
	})
	return srv, hs
}

// lines collects what a session prints, for polling.
type lines struct {
	mu  sync.Mutex
	buf strings.Builder
	all []string
}

func (l *lines) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf.Write(p)
	for {
		s := l.buf.String()
		i := strings.IndexByte(s, '\n')
		if i < 0 {
			break
		}
		l.all = append(l.all, s[:i])
		l.buf.Reset()
		l.buf.WriteString(s[i+1:])
	}
	return len(p), nil
}

func (l *lines) snapshot() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.all...)
}

// chatter is one cim chat session in line mode, driven through a pipe.
type chatter struct {
	t    *testing.T
	name string
	in   *io.PipeWriter
	out  *lines
	done chan error
}

func startChat(t *testing.T, opts chat.Options) *chatter {
	t.Helper()
	pr, pw := io.Pipe()
	c := &chatter{t: t, name: opts.User, in: pw, out: &lines{}, done: make(chan error, 1)}
	if opts.Client == nil {
		opts.Client = func(o *client.Options) {
			o.Backoff = client.ExponentialBackoff{Initial: 20 * time.Millisecond, Max: 200 * time.Millisecond}
		}
	}
	go func() {
		c.done <- chat.RunLines(context.Background(), opts, pr, c.out)
		pr.Close()
	}()
	t.Cleanup(func() { c.quit() })
	return c
}

// login starts a session and waits for its login line.
func login(t *testing.T, hs *httptest.Server, name string, mod ...func(*chat.Options)) *chatter {
	t.Helper()
	o := chat.Options{User: name, APIURL: hs.URL, LogDir: t.TempDir()}
	for _, m := range mod {
		m(&o)
	}
	c := startChat(t, o)
	c.waitFor("* logged in as " + name)
	return c
}

func (c *chatter) send(line string) {
	c.t.Helper()
	if _, err := io.WriteString(c.in, line+"\n"); err != nil {
		c.t.Fatalf("%s: writing %q: %v", c.name, line, err)
	}
}

// waitFor polls until a printed line contains want, and returns it.
func (c *chatter) waitFor(want string) string {
	c.t.Helper()
	return c.waitForFunc(want, func(l string) bool { return strings.Contains(l, want) })
}

func (c *chatter) waitForFunc(what string, ok func(string) bool) string {
	c.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		for _, l := range c.out.snapshot() {
			if ok(l) {
				return l
			}
		}
		select {
		case err := <-c.done:
			c.done <- err
			c.t.Fatalf("%s ended (%v) before printing %q; output:\n%s", c.name, err, what, strings.Join(c.out.snapshot(), "\n"))
		default:
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("%s: no line with %q within 10 s; output:\n%s", c.name, what, strings.Join(c.out.snapshot(), "\n"))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// count is how many printed lines contain s.
func (c *chatter) count(s string) int {
	n := 0
	for _, l := range c.out.snapshot() {
		if strings.Contains(l, s) {
			n++
		}
	}
	return n
}

// quit ends the input (cim chat's :q!) and waits for the session.
func (c *chatter) quit() error {
	c.in.Close()
	select {
	case err := <-c.done:
		c.done <- err
		return err
	case <-time.After(10 * time.Second):
		c.t.Errorf("%s did not end within 10 s of the end of its input", c.name)
		return nil
	}
}
