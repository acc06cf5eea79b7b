package client

import (
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cimgo/cim/broker/wire"
)

// conn is one logged-in TCP connection and its two goroutines: the reader
// (frames from the server) and the writer (batched writes, keepalive
// pings). A conn is used once; a reconnect makes a new one.
type conn struct {
	c         *Client
	nc        net.Conn
	addr      string
	fr        frameReader
	keepalive time.Duration // the server's: silence after which either side gives up
	pingEvery time.Duration
	maxFrame  int    // the server's limit for frames from us (0: not announced)
	user      uint64 // the user logged in, as the login ack says: a private deliver without u is for them

	wmu struct {
		sync.Mutex
		buf     []byte // frames waiting for the writer
		closing bool   // write what is buffered, then close
	}
	wake      chan struct{}
	lastWrite atomic.Int64 // unix ns of the last completed write

	cmu struct {
		sync.Mutex
		calls map[uint64]func(reply, error) // pending requests by request id
		dead  bool
	}

	done    chan struct{} // closed when the connection has ended
	endOnce sync.Once
	err     error        // why it ended; written before done is closed
	kicked  atomic.Value // wire.Code of a Kick, or of an Error that closes
	wg      sync.WaitGroup
}

// reply is what answers a request: a Response, or the codes of a SubAck or
// UnsubAck.
type reply struct {
	resp  wire.Response
	codes []wire.Code
}

func newConn(c *Client, nc net.Conn, addr string) *conn {
	cn := &conn{c: c, nc: nc, addr: addr, wake: make(chan struct{}, 1), done: make(chan struct{})}
	cn.fr = frameReader{r: nc, max: c.opts.MaxFrameSize}
	cn.cmu.calls = make(map[uint64]func(reply, error))
	return cn
}

// write queues an encoded frame; false if the connection has ended. Never
// blocks. Safe from any goroutine.
func (cn *conn) write(frame []byte) bool {
	cn.wmu.Lock()
	select {
	case <-cn.done:
		cn.wmu.Unlock()
		return false
	default:
	}
	cn.wmu.buf = append(cn.wmu.buf, frame...)
	cn.wmu.Unlock()
	select {
	case cn.wake <- struct{}{}:
	default:
	}
	return true
}

// register files fn to be called with the answer to request id (from the
// reader goroutine; it must not block), or with an error if the connection
// ends first. False if it has already ended.
func (cn *conn) register(id uint64, fn func(reply, error)) bool {
	cn.cmu.Lock()
	defer cn.cmu.Unlock()
	if cn.cmu.dead {
		return false
	}
	cn.cmu.calls[id] = fn
	return true
}

func (cn *conn) unregister(id uint64) {
	cn.cmu.Lock()
	delete(cn.cmu.calls, id)
	cn.cmu.Unlock()
}

func (cn *conn) answer(id uint64, r reply) {
	cn.cmu.Lock()
	fn := cn.cmu.calls[id]
	delete(cn.cmu.calls, id)
	cn.cmu.Unlock()
	if fn != nil {
		fn(r, nil)
	}
}

// end records why the connection ended (the first reason wins), closes
// the socket and fails the pending requests. Safe from any goroutine,
// idempotent.
func (cn *conn) end(err error) {
	cn.endOnce.Do(func() {
		if k, ok := cn.kicked.Load().(wire.Code); ok {
			err = fmt.Errorf("client: %s: %w", cn.addr, k)
		}
		cn.err = err
		cn.wmu.Lock()
		close(cn.done)
		cn.wmu.buf = nil
		cn.wmu.Unlock()
		cn.nc.Close()
		cn.cmu.Lock()
		calls := cn.cmu.calls
		cn.cmu.calls, cn.cmu.dead = nil, true
		cn.cmu.Unlock()
		for _, fn := range calls {
			fn(reply{}, ErrConnectionLost)
		}
	})
}

// shutdown writes what is queued, then closes (Close's way out).
func (cn *conn) shutdown() {
	cn.wmu.Lock()
	cn.wmu.closing = true
	cn.wmu.Unlock()
	select {
	case cn.wake <- struct{}{}:
	default:
	}
}

// start runs the reader and writer.
func (cn *conn) start() {
	cn.wg.Add(2)
	go cn.readLoop()
	go cn.writeLoop()
}

func (cn *conn) writeLoop() {
	defer cn.wg.Done()
	tick := time.NewTicker(cn.pingEvery / 4)
	defer tick.Stop()
	var spare []byte
	for {
		select {
		case <-cn.wake:
		case now := <-tick.C:
			if now.UnixNano()-cn.lastWrite.Load() >= int64(cn.pingEvery) {
				cn.write(ping)
			}
			continue
		case <-cn.done:
			return
		}
		cn.wmu.Lock()
		buf, closing := cn.wmu.buf, cn.wmu.closing
		cn.wmu.buf = spare[:0]
		cn.wmu.Unlock()
		if len(buf) > 0 {
			cn.nc.SetWriteDeadline(time.Now().Add(cn.keepalive))
			if _, err := cn.nc.Write(buf); err != nil {
				cn.end(fmt.Errorf("client: writing to %s: %w", cn.addr, err))
				return
			}
			cn.lastWrite.Store(time.Now().UnixNano())
		}
		if cap(buf) <= 64<<10 { // a burst's big buffer goes back to the GC
			spare = buf
		}
		if closing {
			cn.end(ErrClosed)
			return
		}
	}
}

// ping is the encoded Ping frame (02 03 80).
var ping, _ = wire.Append(nil, &wire.Ping{})

func (cn *conn) readLoop() {
	defer cn.wg.Done()
	var f wire.Frame
	for {
		err := cn.fr.next(&f, cn.keepalive)
		if err != nil {
			if wire.CodeOf(err) == wire.CodeUnknownFrame { // a newer server's frame
				cn.c.log.Debug("skipping a frame of unknown type", "addr", cn.addr, "err", err)
				continue
			}
			cn.end(readError(cn.addr, err))
			return
		}
		if err := cn.c.handle(cn, &f); err != nil {
			cn.end(err)
			return
		}
	}
}

// readError says what a failed read means.
func readError(addr string, err error) error {
	var ne net.Error
	switch {
	case errors.Is(err, io.EOF):
		return fmt.Errorf("client: %s closed the connection: %w", addr, ErrConnectionLost)
	case errors.As(err, &ne) && ne.Timeout():
		return fmt.Errorf("client: nothing from %s within the keepalive: %w", addr, ErrConnectionLost)
	case wire.CodeOf(err) == wire.CodeMalformed || wire.CodeOf(err) == wire.CodeFrameTooLarge:
		return fmt.Errorf("client: bad frame from %s: %w: %w", addr, ErrProtocol, err)
	case strings.Contains(err.Error(), "use of closed network connection"):
		return fmt.Errorf("client: %s: %w", addr, ErrConnectionLost)
	}
	return fmt.Errorf("client: reading from %s: %w: %w", addr, ErrConnectionLost, err)
}

// frameReader reads frames from a socket into one growing buffer. Frames
// it returns alias that buffer until the next call.
type frameReader struct {
	r          net.Conn
	buf        []byte
	start, end int
	max        int
}

// next decodes the next frame into f, reading as needed; each read waits
// at most timeout (0: no limit).
func (fr *frameReader) next(f *wire.Frame, timeout time.Duration) error {
	for {
		need := 0
		if fr.end > fr.start {
			n, err := wire.Decode(fr.buf[fr.start:fr.end], f, fr.max)
			if err == nil || wire.CodeOf(err) == wire.CodeUnknownFrame {
				fr.start += n
				return err
			}
			if !errors.Is(err, wire.ErrIncomplete) {
				return err
			}
			if l, hl, err := wire.ReadLength(fr.buf[fr.start:fr.end]); err == nil {
				need = hl + l
			}
		}
		if fr.start == fr.end {
			fr.start, fr.end = 0, 0
			if cap(fr.buf) > 64<<10 { // done with a big frame: shrink
				fr.buf = nil
			}
		}
		if need < 4096 {
			need = 4096
		}
		if len(fr.buf)-fr.start < need {
			nb := fr.buf
			if cap(fr.buf) < need {
				nb = make([]byte, need)
			}
			copy(nb, fr.buf[fr.start:fr.end])
			fr.buf, fr.end, fr.start = nb[:cap(nb)], fr.end-fr.start, 0
		}
		if timeout > 0 {
			fr.r.SetReadDeadline(time.Now().Add(timeout))
		}
		n, err := fr.r.Read(fr.buf[fr.end:])
		fr.end += n
		if err != nil && n == 0 {
			return err
		}
	}
}
