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
	"sync"
	"time"
)

// agentFleet is the coordinator's handle on its agents (--agents): agent
// a runs runners a*k .. a*k+k-1 of the run, k = max(--workers, 1).
type agentFleet struct {
	conns []*agentConn
	wg    sync.WaitGroup
}

type agentConn struct {
	addr         string
	conn         net.Conn
	w            *frameWriter
	br           *bufio.Reader
	first, count int
	rtt, offset  time.Duration
}

// startAgents connects to every agent, authenticates both ways and hands
// each its share; any failure closes them all: the run cannot be
// attempted.
func startAgents(ctx context.Context, o *Options, addrs []string, agg *aggregator) (*agentFleet, error) {
	f := &agentFleet{}
	k := max(o.Workers, 1)
	total := k * len(addrs)
	for i, addr := range addrs {
		ac, err := dialAgent(ctx, o, addr, agentSpec{First: i * k, Count: k, Total: total, Options: *o})
		if err != nil {
			for _, c := range f.conns {
				c.conn.Close()
			}
			return nil, err
		}
		f.conns = append(f.conns, ac)
	}
	for _, ac := range f.conns {
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			ac.read(agg)
		}()
	}
	return f, nil
}

func dialAgent(ctx context.Context, o *Options, addr string, spec agentSpec) (*agentConn, error) {
	fail := func(err error) error { return fmt.Errorf("%w: %s: %w", ErrAgent, addr, err) }
	d := net.Dialer{Timeout: o.ConnectTimeout}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fail(err)
	}
	ac := &agentConn{addr: addr, conn: conn, w: &frameWriter{conn: conn}, br: bufio.NewReaderSize(conn, 64<<10), first: spec.First, count: spec.Count}
	if err := ac.handshake(o, &spec); err != nil {
		conn.Close()
		return nil, fail(err)
	}
	return ac, nil
}

func (ac *agentConn) handshake(o *Options, spec *agentSpec) error {
	_ = ac.conn.SetDeadline(time.Now().Add(max(o.ConnectTimeout, 5*time.Second)))
	m, err := readFrame(ac.br)
	if err != nil {
		return fmt.Errorf("waiting for hello: %w", err)
	}
	if m.Type != "hello" || m.Proto != AgentProto || len(m.Nonce) < 32 {
		return fmt.Errorf("%w: want hello %s, got %q %q", ErrFrame, AgentProto, m.Type, m.Proto)
	}
	var nb [32]byte
	_, _ = rand.Read(nb[:])
	cnonce := hex.EncodeToString(nb[:])
	t0 := time.Now()
	if err := ac.w.send(&agentMsg{Type: "auth", Nonce: cnonce, MAC: agentMAC(o.AgentToken, "coordinator", m.Nonce, cnonce)}); err != nil {
		return err
	}
	ok, err := readFrame(ac.br)
	if err != nil {
		return fmt.Errorf("waiting for the token check: %w", err)
	}
	t1 := time.Now()
	if err := wantOK(ok); err != nil {
		return err
	}
	if !checkMAC(o.AgentToken, "agent", m.Nonce, cnonce, ok.MAC) {
		return fmt.Errorf("%w: the agent does not know the token", ErrAgentAuth)
	}
	ac.rtt = t1.Sub(t0)
	ac.offset = time.Duration(ok.Time - (t0.UnixNano()+t1.UnixNano())/2)
	if err := ac.w.send(&agentMsg{Type: "run", Spec: spec}); err != nil {
		return err
	}
	ok, err = readFrame(ac.br)
	if err != nil {
		return fmt.Errorf("waiting for the run to be accepted: %w", err)
	}
	if err := wantOK(ok); err != nil {
		return err
	}
	_ = ac.conn.SetDeadline(time.Time{})
	return nil
}

func wantOK(m *agentMsg) error {
	switch m.Type {
	case "ok":
		return nil
	case "error":
		return fmt.Errorf("agent refused: %s", m.Error)
	}
	return fmt.Errorf("%w: want ok, got %q", ErrFrame, m.Type)
}

// read passes an agent's events to the aggregator until the agent closes;
// runners that never reported are failed then. Bad frames (a broken or
// hostile agent) end the agent's part with an error, never a panic.
func (ac *agentConn) read(agg *aggregator) {
	var lost error
	for {
		m, err := readFrame(ac.br)
		if err != nil {
			if !errors.Is(err, io.EOF) {
				lost = err
			}
			break
		}
		switch m.Type {
		case "event":
			ev := m.Event
			if ev == nil || ev.Worker < ac.first || ev.Worker >= ac.first+ac.count {
				lost = fmt.Errorf("%w: event for a runner that is not the agent's", ErrFrame)
				break
			}
			agg.handle(ev)
			continue
		case "exited":
			if m.Worker >= ac.first && m.Worker < ac.first+ac.count {
				agg.exited(m.Worker, fmt.Errorf("%w: %s: %s", ErrAgent, ac.addr, m.Error))
				continue
			}
			lost = fmt.Errorf("%w: exit of a runner that is not the agent's", ErrFrame)
		case "error":
			lost = errors.New(m.Error)
		default:
			lost = fmt.Errorf("%w: unexpected %q", ErrFrame, m.Type)
		}
		break
	}
	ac.conn.Close()
	for w := ac.first; w < ac.first+ac.count; w++ {
		var err error
		if !agg.hasResult(w) {
			if lost == nil {
				lost = errors.New("closed before reporting")
			}
			err = fmt.Errorf("%w: %s: %w", ErrAgent, ac.addr, lost)
		}
		agg.exited(w, err)
	}
}

func (f *agentFleet) broadcast(m *agentMsg) {
	for _, ac := range f.conns {
		_ = ac.w.send(m)
	}
}

func (f *agentFleet) Start(at time.Time) { f.broadcast(&agentMsg{Type: "start", At: at.UnixNano()}) }
func (f *agentFleet) Stop()              { f.broadcast(&agentMsg{Type: "stop"}) }
func (f *agentFleet) Finish()            { f.broadcast(&agentMsg{Type: "finish"}) }
func (f *agentFleet) Wait()              { f.wg.Wait() }

func (f *agentFleet) maxRTT() time.Duration {
	var m time.Duration
	for _, ac := range f.conns {
		m = max(m, ac.rtt)
	}
	return m
}

func (f *agentFleet) infos() []AgentInfo {
	var out []AgentInfo
	for _, ac := range f.conns {
		out = append(out, AgentInfo{Addr: ac.addr, ClockOffsetUS: ac.offset.Microseconds(), RTTUS: ac.rtt.Microseconds()})
	}
	return out
}
