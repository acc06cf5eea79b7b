package bench

import (
	"bufio"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// The agent protocol: one TCP connection from the coordinator to each
// agent, carrying frames both ways:
//
//	+-------------------+---------------------------+
//	| length uint32, BE | JSON object (agentMsg)    |
//	+-------------------+---------------------------+
//	  1..maxFrame bytes of JSON follow the length
//
//	agent                                coordinator
//	  hello {proto, nonce A, time}  ──►
//	                                ◄──  auth {nonce C, mac = H("coordinator", A, C)}
//	  ok {mac = H("agent", A, C), time} ──►   (or error {"bad token"}, close)
//	                                ◄──  run {spec: runners first..first+count-1 of total, options}
//	  ok                            ──►   (or error {why}, close)
//	                                ◄──  start {at} / stop / finish
//	  event {tick|phase|result}     ──►   many
//	  exited {worker, error}        ──►   a worker process that failed
//	  close after the last result
//
// H is HMAC-SHA256 keyed with the shared token over the role, A and C: each
// side proves it knows the token without sending it, and a recorded
// exchange is worth nothing against fresh nonces. Nothing else is
// encrypted: the options (the broker password among them) cross in clear,
// so run agents on a network you trust or through a tunnel.

// AgentProto names the protocol and its version in the hello.
const AgentProto = "cim-bench-agent/1"

// TokenEnv is the environment variable that holds the agent token when no
// --token-file is given.
const TokenEnv = "CIM_BENCH_TOKEN"

// minTokenLen is the shortest token accepted: a guessable one would let
// anyone who can reach the agent point its connections anywhere.
const minTokenLen = 16

// maxFrame bounds one frame: a result with per-client lines for 20,000
// clients and an hour of time series fits well inside.
const maxFrame = 64 << 20

var (
	// ErrFrame is a malformed agent frame.
	ErrFrame = errors.New("bench: bad agent frame")
	// ErrAgentAuth is a failed token check, on either side.
	ErrAgentAuth = errors.New("bench: agent authentication failed")
	// errIncomplete: the buffer holds only part of a frame.
	errIncomplete = errors.New("bench: incomplete agent frame")
)

type agentMsg struct {
	Type   string     `json:"type"`
	Proto  string     `json:"proto,omitempty"`
	Nonce  string     `json:"nonce,omitempty"`
	MAC    string     `json:"mac,omitempty"`
	Time   int64      `json:"time,omitempty"`
	Spec   *agentSpec `json:"spec,omitempty"`
	At     int64      `json:"at,omitempty"`
	Event  *event     `json:"event,omitempty"`
	Worker int        `json:"worker,omitempty"`
	Error  string     `json:"error,omitempty"`
}

// agentSpec is an agent's share of a run.
type agentSpec struct {
	First   int     `json:"first"`
	Count   int     `json:"count"`
	Total   int     `json:"total"`
	Options Options `json:"options"`
}

// decodeFrame decodes the frame at the front of buf: the message and the
// bytes it took, errIncomplete if buf holds only part of it, or an error
// wrapping ErrFrame.
func decodeFrame(buf []byte) (*agentMsg, int, error) {
	if len(buf) < 4 {
		return nil, 0, errIncomplete
	}
	n := binary.BigEndian.Uint32(buf)
	if n == 0 || n > maxFrame {
		return nil, 0, fmt.Errorf("%w: length %d (want 1..%d): not a cim bench agent peer?", ErrFrame, n, maxFrame)
	}
	if len(buf)-4 < int(n) {
		return nil, 0, errIncomplete
	}
	m, err := decodeBody(buf[4 : 4+n])
	if err != nil {
		return nil, 0, err
	}
	return m, 4 + int(n), nil
}

func decodeBody(b []byte) (*agentMsg, error) {
	var m agentMsg
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrFrame, err)
	}
	if m.Type == "" {
		return nil, fmt.Errorf("%w: no type", ErrFrame)
	}
	return &m, nil
}

func appendFrame(dst []byte, m *agentMsg) ([]byte, error) {
	b, err := json.Marshal(m)
	if err != nil {
		return dst, err
	}
	if len(b) > maxFrame {
		return dst, fmt.Errorf("%w: %d bytes, over %d", ErrFrame, len(b), maxFrame)
	}
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(b)))
	return append(dst, b...), nil
}

// readFrame reads one frame; a length past maxFrame is refused before
// anything is allocated for it.
func readFrame(br *bufio.Reader) (*agentMsg, error) {
	var h [4]byte
	if _, err := io.ReadFull(br, h[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(h[:])
	if n == 0 || n > maxFrame {
		return nil, fmt.Errorf("%w: length %d (want 1..%d): not a cim bench agent peer?", ErrFrame, n, maxFrame)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(br, body); err != nil {
		return nil, err
	}
	return decodeBody(body)
}

// frameWriter writes frames from several goroutines; a peer that stops
// reading for writeTimeout gets its connection closed.
type frameWriter struct {
	mu   sync.Mutex // serializes frames
	conn net.Conn
	buf  []byte
	err  error
}

const writeTimeout = 10 * time.Second

func (w *frameWriter) send(m *agentMsg) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err != nil {
		return w.err
	}
	b, err := appendFrame(w.buf[:0], m)
	if err != nil {
		return err
	}
	_ = w.conn.SetWriteDeadline(time.Now().Add(writeTimeout))
	if _, err := w.conn.Write(b); err != nil {
		w.err = err
		w.conn.Close()
		return err
	}
	if cap(b) <= 64<<10 {
		w.buf = b[:0]
	}
	return nil
}

func agentMAC(token, role, a, c string) string {
	m := hmac.New(sha256.New, []byte(token))
	m.Write([]byte(role + "\x00" + a + "\x00" + c))
	return hex.EncodeToString(m.Sum(nil))
}

func checkMAC(token, role, a, c, got string) bool {
	want := agentMAC(token, role, a, c)
	return hmac.Equal([]byte(want), []byte(got))
}
