package bench

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// AgentOptions configure ServeAgent.
type AgentOptions struct {
	// Token is the secret shared with coordinators; required, at least 16
	// characters.
	Token string
	// WorkerCommand starts a worker process when a coordinator asks for
	// --workers; default this executable (`cim bench agent` sets
	// [executable, "bench"]).
	WorkerCommand []string
	// Log receives one line per coordinator and per refused connection.
	// Default os.Stderr.
	Log io.Writer
	// HandshakeTimeout bounds hello to run. Default 10s.
	HandshakeTimeout time.Duration
}

// EnsureDefaults fills zero fields with their documented defaults.
func (a *AgentOptions) EnsureDefaults() {
	if len(a.WorkerCommand) == 0 {
		if exe, err := os.Executable(); err == nil {
			a.WorkerCommand = []string{exe}
		}
	}
	if a.Log == nil {
		a.Log = os.Stderr
	}
	if a.HandshakeTimeout == 0 {
		a.HandshakeTimeout = 10 * time.Second
	}
}

// Validate reports a bad field as an error wrapping ErrUsage.
func (a *AgentOptions) Validate() error {
	if len(a.Token) < minTokenLen {
		return usageErr("agent: the token (--token-file or $%s) must be at least %d characters", TokenEnv, minTokenLen)
	}
	if a.HandshakeTimeout < 0 {
		return usageErr("agent: negative handshake timeout")
	}
	return nil
}

// ServeAgent runs `cim bench agent`: it accepts coordinators on l, one run
// at a time, and runs their share of the clients (in this process, or in
// --workers processes). It returns when ctx is done (after the run in
// progress has been stopped) or l fails.
func ServeAgent(ctx context.Context, l net.Listener, ao AgentOptions) error {
	ao.EnsureDefaults()
	if err := ao.Validate(); err != nil {
		return err
	}
	a := &agent{opts: ao, lw: &lockedWriter{w: ao.Log}}
	stop := context.AfterFunc(ctx, func() { l.Close() })
	defer stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		conn, err := l.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			a.serve(ctx, conn)
		}()
	}
}

type agent struct {
	opts AgentOptions
	lw   *lockedWriter
	busy atomic.Bool
}

func (a *agent) logf(format string, args ...any) {
	fmt.Fprintf(a.lw, "bench agent: "+format+"\n", args...)
}

func (a *agent) serve(ctx context.Context, conn net.Conn) {
	defer conn.Close()
	peer := conn.RemoteAddr().String()
	w := &frameWriter{conn: conn}
	br := bufio.NewReaderSize(conn, 64<<10)
	fail := func(format string, args ...any) {
		msg := fmt.Sprintf(format, args...)
		a.logf("%s: %s", peer, msg)
		_ = w.send(&agentMsg{Type: "error", Error: msg})
	}
	_ = conn.SetDeadline(time.Now().Add(a.opts.HandshakeTimeout))
	var nb [32]byte
	_, _ = rand.Read(nb[:])
	nonce := hex.EncodeToString(nb[:])
	if w.send(&agentMsg{Type: "hello", Proto: AgentProto, Nonce: nonce, Time: time.Now().UnixNano()}) != nil {
		return
	}
	m, err := readFrame(br)
	if err != nil {
		a.logf("%s: handshake: %v", peer, err)
		return
	}
	if m.Type != "auth" || len(m.Nonce) < 32 || !checkMAC(a.opts.Token, "coordinator", nonce, m.Nonce, m.MAC) {
		fail("%v: bad token", ErrAgentAuth)
		return
	}
	cnonce := m.Nonce
	if !a.busy.CompareAndSwap(false, true) {
		fail("busy: another coordinator's run is in progress")
		return
	}
	defer a.busy.Store(false)
	if w.send(&agentMsg{Type: "ok", MAC: agentMAC(a.opts.Token, "agent", nonce, cnonce), Time: time.Now().UnixNano()}) != nil {
		return
	}
	m, err = readFrame(br)
	if err != nil {
		a.logf("%s: waiting for the run: %v", peer, err)
		return
	}
	if m.Type != "run" || m.Spec == nil {
		fail("%v: want a run, got %q", ErrFrame, m.Type)
		return
	}
	o, err := a.checkSpec(m.Spec)
	if err != nil {
		fail("%v", err)
		return
	}
	_ = conn.SetDeadline(time.Time{})
	a.logf("%s: running %s, runners %d..%d of %d", peer, o.Scenario, m.Spec.First, m.Spec.First+m.Spec.Count-1, m.Spec.Total)
	a.run(ctx, w, br, m.Spec, o)
	a.logf("%s: run finished", peer)
}

// checkSpec validates a coordinator's spec and fixes what only this
// machine may decide.
func (a *agent) checkSpec(s *agentSpec) (*Options, error) {
	o := s.Options
	o.WorkerCommand = a.opts.WorkerCommand
	o.Agents, o.AgentToken, o.BrokerPID = "", "", 0
	o.JSON, o.Chart, o.CSV, o.Progress = false, "", "", "none"
	if err := o.Validate(); err != nil {
		return nil, err
	}
	want := max(o.Workers, 1)
	if s.Count != want || s.First < 0 || s.Total < 1 || s.Total > 100_000 || s.First+s.Count > s.Total {
		return nil, fmt.Errorf("%w: runners %d+%d of %d (want %d per agent)", ErrFrame, s.First, s.Count, s.Total, want)
	}
	if o.RunStart == 0 || o.ClientIDPrefix == "" {
		return nil, fmt.Errorf("%w: options without run start or client id prefix", ErrFrame)
	}
	return &o, nil
}

// agentSink passes a runner's events on to the coordinator.
type agentSink struct {
	w       *frameWriter
	mu      sync.Mutex // guards results
	results map[int]bool
}

func (s *agentSink) handle(ev *event) {
	if ev.Type == "result" {
		s.mu.Lock()
		s.results[ev.Worker] = true
		s.mu.Unlock()
	}
	_ = s.w.send(&agentMsg{Type: "event", Event: ev})
}

func (s *agentSink) exited(w int, err error) {
	if err != nil {
		_ = s.w.send(&agentMsg{Type: "exited", Worker: w, Error: err.Error()})
	}
}

func (s *agentSink) hasResult(w int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.results[w]
}

func (a *agent) run(ctx context.Context, w *frameWriter, br *bufio.Reader, spec *agentSpec, o *Options) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s := &agentSink{w: w, results: make(map[int]bool)}
	var fl fleet
	var err error
	if o.Workers > 0 {
		fl, err = startProcs(o, spec.First, spec.Total, s, a.lw)
	} else {
		fl, err = startLocal(ctx, o, spec.First, spec.Total, s)
	}
	if err != nil {
		_ = w.send(&agentMsg{Type: "error", Error: err.Error()})
		return
	}
	_ = w.send(&agentMsg{Type: "ok"})
	readerDone := make(chan struct{})
	go func() {
		// The coordinator's commands; when it goes away (EOF, garbage),
		// the run stops and winds down as for a closed worker stdin.
		defer close(readerDone)
		defer func() {
			fl.Stop()
			fl.Finish()
		}()
		for {
			m, err := readFrame(br)
			if err != nil {
				if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
					a.logf("coordinator: %v", err)
				}
				return
			}
			switch m.Type {
			case "start":
				fl.Start(time.Unix(0, m.At))
			case "stop":
				fl.Stop()
			case "finish":
				fl.Finish()
			default:
				a.logf("coordinator: %v: unexpected %q", ErrFrame, m.Type)
				return
			}
		}
	}()
	stop := context.AfterFunc(ctx, fl.Stop)
	defer stop()
	fl.Wait()
	// The results are out; closing tells the coordinator (and ends the
	// command reader above).
	w.conn.Close()
	<-readerDone
}
