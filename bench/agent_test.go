package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

const testToken = "0123456789abcdef-test-token"

// startAgent serves an agent on ip:0 for the test; it returns the address
// and its log.
func startAgent(t *testing.T, ip string) (string, *agentLog) {
	t.Helper()
	l, err := net.Listen("tcp", ip+":0")
	if err != nil {
		t.Skipf("cannot bind %s: %v", ip, err)
	}
	log := &agentLog{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- ServeAgent(ctx, l, AgentOptions{
			Token: testToken, Log: log,
			WorkerCommand: []string{os.Args[0], "-test.run=^$"},
		})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("ServeAgent: %v", err)
		}
	})
	return l.Addr().String(), log
}

// agentLog is an agent's log, safe to read while it writes.
type agentLog struct {
	mu sync.Mutex // guards b
	b  bytes.Buffer
}

func (l *agentLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *agentLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestAgents: two agents on 127.0.0.2 and 127.0.0.3 run all the clients;
// the coordinator merges their counts, histograms and time series into
// one exact report.
func TestAgents(t *testing.T) {
	a1, _ := startAgent(t, "127.0.0.2")
	a2, _ := startAgent(t, "127.0.0.3")
	addr := startCim(t, nil).addr
	rep, out := run(t, Options{Scenario: ScenarioFanIn, Addr: addr, QoS: 1, Pubs: 3, Subs: 2, Count: 100,
		Agents: a1 + "," + a2, AgentToken: testToken})
	if rep.Sent != 300 || rep.Received != 600 || rep.Lost != 0 || rep.Duplicates != 0 || rep.ExitCode != ExitOK {
		t.Fatalf("sent %d received %d lost %d dups %d exit %d errors %v\n%s", rep.Sent, rep.Received, rep.Lost, rep.Duplicates, rep.ExitCode, rep.Errors, out)
	}
	if rep.Latency.Count != 600 || len(rep.Agents) != 2 || rep.PerSubscriber == nil || rep.PerSubscriber.Clients != 2 || len(rep.Series) == 0 {
		t.Fatalf("latency n %d agents %v per sub %+v series %d", rep.Latency.Count, rep.Agents, rep.PerSubscriber, len(rep.Series))
	}
	// A second run on the same agents, each with a worker process.
	rep, out = run(t, Options{Scenario: ScenarioPairs, Addr: addr, QoS: 1, Pairs: 4, Count: 50, Workers: 1,
		Agents: a1 + "," + a2, AgentToken: testToken})
	if rep.Received != 200 || rep.Lost != 0 || rep.ExitCode != ExitOK {
		t.Fatalf("agents with workers: received %d lost %d exit %d errors %v\n%s", rep.Received, rep.Lost, rep.ExitCode, rep.Errors, out)
	}
}

func TestAgentBadToken(t *testing.T) {
	a, log := startAgent(t, "127.0.0.1")
	o := Options{Scenario: ScenarioFanIn, Addr: deadAddr(t), Agents: a, AgentToken: "not-the-right-token", Progress: "none"}
	_, err := Run(context.Background(), o, io.Discard, io.Discard)
	if !errors.Is(err, ErrAgent) || !strings.Contains(err.Error(), "bad token") {
		t.Fatalf("wrong token: err %v, want ErrAgent ... bad token", err)
	}
	waitFor(t, "the agent's log line", func() bool { return strings.Contains(log.String(), "bad token") })
}

// TestAgentBadInput: garbage, a huge length, a wrong handshake: each gets
// a clear error or a close, never a panic, and the agent serves the next
// coordinator.
func TestAgentBadInput(t *testing.T) {
	a, _ := startAgent(t, "127.0.0.1")
	for name, input := range map[string][]byte{
		"http":        []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
		"huge length": {0x7F, 0xFF, 0xFF, 0xFF, '{'},
		"not json":    frameOf([]byte("{{{{")),
		"no type":     frameOf([]byte(`{"nonce":"x"}`)),
		"run first":   frameOf([]byte(`{"type":"run","spec":{"first":0}}`)),
		"short nonce": frameOf([]byte(`{"type":"auth","nonce":"ab","mac":"00"}`)),
	} {
		c, err := net.Dial("tcp", a)
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		br := bufio.NewReader(c)
		hello, err := readFrame(br)
		if err != nil || hello.Type != "hello" || hello.Proto != AgentProto {
			t.Fatalf("%s: hello %+v %v", name, hello, err)
		}
		if _, err := c.Write(input); err != nil {
			t.Fatal(err)
		}
		// Either an error frame, or the agent closes: never silence.
		m, err := readFrame(br)
		if err == nil && m.Type != "error" {
			t.Fatalf("%s: agent answered %+v", name, m)
		}
		c.Close()
	}
	// A coordinator pointed at something that is not an agent gets a clear
	// error, not a hang.
	addr := startCim(t, nil).addr
	o := Options{Scenario: ScenarioFanIn, Addr: addr, Agents: addr, AgentToken: testToken, Progress: "none", ConnectTimeout: time.Second}
	_, err := Run(context.Background(), o, io.Discard, io.Discard)
	if !errors.Is(err, ErrAgent) {
		t.Fatalf("agent address is a broker: err %v", err)
	}
	// And the agent still works.
	rep, _ := run(t, Options{Scenario: ScenarioPairs, Addr: addr, Pairs: 1, QoS: 1, Count: 10, Agents: a, AgentToken: testToken})
	if rep.Received != 10 {
		t.Fatalf("after bad input: received %d", rep.Received)
	}
}

// TestAgentRefusesBadSpec: an authenticated coordinator with a spec that
// does not add up is refused with a reason.
func TestAgentRefusesBadSpec(t *testing.T) {
	a, _ := startAgent(t, "127.0.0.1")
	o := Options{Scenario: ScenarioFanIn, Addr: "127.0.0.1:1", Agents: a, AgentToken: testToken}
	o.EnsureDefaults()
	o.RunStart = time.Now().UnixNano()
	for name, spec := range map[string]agentSpec{
		"bad options": {First: 0, Count: 1, Total: 1, Options: Options{Scenario: "nope"}},
		"range":       {First: 3, Count: 1, Total: 2, Options: o},
		"count":       {First: 0, Count: 5, Total: 5, Options: o},
	} {
		_, err := dialAgent(context.Background(), &o, a, spec)
		if !errors.Is(err, ErrAgent) || !strings.Contains(err.Error(), "refused") {
			t.Errorf("%s: err %v, want a refusal", name, err)
		}
	}
}

func frameOf(body []byte) []byte {
	return append(binary.BigEndian.AppendUint32(nil, uint32(len(body))), body...)
}

// FuzzAgentFrame feeds arbitrary bytes, in chunks, to the agent frame
// decoder: it must return a message, "incomplete" or an error — never
// panic, never claim more bytes than it was given.
func FuzzAgentFrame(f *testing.F) {
	good, _ := appendFrame(nil, &agentMsg{Type: "hello", Proto: AgentProto, Nonce: strings.Repeat("ab", 32), Time: 1})
	ev, _ := appendFrame(nil, &agentMsg{Type: "event", Event: &event{Type: "tick", Worker: 1, Tick: &Counters{Sent: 5}}})
	f.Add(good, 3)
	f.Add(append(good, ev...), 7)
	f.Add([]byte{0, 0, 0, 0}, 1)
	f.Add([]byte{0xFF, 0xFF, 0xFF, 0xFF, '{'}, 2)
	f.Add(frameOf([]byte(`{"type":"run","spec":{"options":{"payload":"!!"}}}`)), 5)
	f.Fuzz(func(t *testing.T, data []byte, chunk int) {
		chunk = max(chunk%64, 1)
		var buf []byte
		for off := 0; off < len(data); off += chunk {
			buf = append(buf, data[off:min(off+chunk, len(data))]...)
			for {
				m, n, err := decodeFrame(buf)
				if errors.Is(err, errIncomplete) {
					break
				}
				if err != nil {
					if !errors.Is(err, ErrFrame) {
						t.Fatalf("error %v does not wrap ErrFrame", err)
					}
					return
				}
				if n <= 4 || n > len(buf) || m == nil || m.Type == "" {
					t.Fatalf("decoded %d of %d bytes: %+v", n, len(buf), m)
				}
				buf = buf[n:]
			}
		}
	})
}

// FuzzDecodeHist: histogram bytes from an agent never panic the coordinator.
func FuzzDecodeHist(f *testing.F) {
	h := newHist()
	_ = h.RecordValue(42)
	f.Add(encodeHist(h))
	f.Add([]byte("HISTFAAAA"))
	f.Add([]byte{0x1c, 0x84, 0x93, 0x14, 0, 0, 0, 8, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = decodeHist(b)
	})
}
