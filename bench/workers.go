package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"
)

// workerEnv marks a re-executed process as a worker; its spec (options,
// password included) comes as the first line on its stdin, never on its
// command line or in its environment, where other users can read it.
const workerEnv = "CIM_BENCH_WORKER"

type workerSpec struct {
	Index   int     `json:"index"`   // runner index over the whole run
	Workers int     `json:"workers"` // runners over the whole run
	Local   int     `json:"local"`   // index among this machine's workers
	Options Options `json:"options"`
}

// maxSpecLine bounds the spec line a worker reads (options carry the
// payload file, at most maxPayloadFile).
const maxSpecLine = 2*maxPayloadFile + 1<<20

// event is what a runner tells the parent; one JSON line each from a worker.
type event struct {
	Type   string    `json:"type"` // tick, phase, result
	Worker int       `json:"worker"`
	Phase  string    `json:"phase,omitempty"`
	Tick   *Counters `json:"tick,omitempty"`
	Result *Result   `json:"result,omitempty"`
}

// command is what the parent tells a runner (a line on a worker's stdin).
type command struct {
	op string // start, stop, finish
	at time.Time
}

// IsWorker reports whether this process was started as a bench worker; if
// so the command should call ServeWorker instead of parsing its flags.
func IsWorker() bool { return os.Getenv(workerEnv) != "" }

// ServeWorker runs this process's share of a run: the spec, then commands
// from stdin; events to stdout. It returns the process exit code.
func ServeWorker(ctx context.Context, stdin io.Reader, stdout io.Writer) int {
	br := bufio.NewReaderSize(stdin, 64<<10)
	line, err := readLine(br, maxSpecLine)
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench worker: reading the spec on stdin: %v\n", err)
		return ExitUsage
	}
	var spec workerSpec
	if err := json.Unmarshal(line, &spec); err != nil {
		fmt.Fprintf(os.Stderr, "bench worker: bad spec: %v\n", err)
		return ExitUsage
	}
	if spec.Workers < 1 || spec.Index < 0 || spec.Index >= spec.Workers || spec.Local < 0 {
		fmt.Fprintf(os.Stderr, "bench worker: bad spec: index %d of %d\n", spec.Index, spec.Workers)
		return ExitUsage
	}
	var mu sync.Mutex // serializes event lines
	enc := json.NewEncoder(stdout)
	emit := func(ev *event) {
		ev.Worker = spec.Index
		mu.Lock()
		_ = enc.Encode(ev)
		mu.Unlock()
	}
	r, err := newRunner(&spec.Options, spec.Index, spec.Workers, spec.Local, emit)
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench worker %d: %v\n", spec.Index, err)
		return ExitUsage
	}
	cmds := make(chan command)
	go func() {
		defer close(cmds)
		for {
			line, err := readLine(br, 1<<10)
			if err != nil {
				return
			}
			if c, ok := parseCommand(string(line)); ok {
				cmds <- c
			}
		}
	}()
	runLoop(ctx, r, cmds)
	return ExitOK
}

// readLine reads one line of at most limit bytes, without the newline.
func readLine(br *bufio.Reader, limit int) ([]byte, error) {
	var out []byte
	for {
		frag, err := br.ReadSlice('\n')
		out = append(out, frag...)
		if len(out) > limit {
			return nil, fmt.Errorf("line longer than %d bytes", limit)
		}
		if err == nil {
			return out[:len(out)-1], nil
		}
		if err != bufio.ErrBufferFull {
			return nil, err
		}
	}
}

func parseCommand(line string) (command, bool) {
	op, arg, _ := strings.Cut(strings.TrimSpace(line), " ")
	c := command{op: op}
	switch op {
	case "start":
		ns, err := strconv.ParseInt(arg, 10, 64)
		if err != nil {
			return c, false
		}
		c.at = time.Unix(0, ns)
	case "stop", "finish":
	default:
		return c, false
	}
	return c, true
}

// runLoop drives one runner through a run, by commands from the parent:
// setup, then start (or stop), run, finish, close, result. A closed cmds
// means the parent is gone: stop and wind down.
func runLoop(ctx context.Context, r *runner, cmds <-chan command) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	startCh := make(chan time.Time, 1)
	finish := make(chan struct{})
	var finishOnce sync.Once
	dispatched := make(chan struct{})
	go func() {
		defer close(dispatched)
		for c := range cmds {
			switch c.op {
			case "start":
				select {
				case startCh <- c.at:
				default:
				}
			case "stop":
				r.Stop()
			case "finish":
				finishOnce.Do(func() { close(finish) })
			}
		}
		r.Stop()
		cancel()
		finishOnce.Do(func() { close(finish) })
	}()
	r.Setup(ctx)
	select {
	case at := <-startCh:
		r.Run(ctx, at)
	case <-r.stop:
		r.phase(phaseDrained)
	case <-ctx.Done():
		r.phase(phaseDrained)
	}
	<-finish
	r.Close()
	r.emit(&event{Type: "result", Result: r.Result()})
	<-dispatched
}

// fleet is the parent's handle on the runners: in-process, workers or agents.
type fleet interface {
	Start(at time.Time)
	Stop()
	// Finish tells the runners to close their connections and report.
	Finish()
	// Wait returns once every runner has ended.
	Wait()
}

// sink takes the events of runners: the parent's aggregator, or an agent
// passing them on to its coordinator.
type sink interface {
	handle(ev *event)
	exited(w int, err error)
	hasResult(w int) bool
}

// localFleet runs the single runner of a --workers 0 run in this process.
// Its methods may be called in any order and more than once.
type localFleet struct {
	mu     sync.Mutex // guards closed and sends on cmds
	closed bool
	cmds   chan command
	done   chan struct{}
}

// startLocal runs runner w of n in this process.
func startLocal(ctx context.Context, o *Options, w, n int, s sink) (*localFleet, error) {
	r, err := newRunner(o, w, n, 0, func(ev *event) {
		ev.Worker = w
		s.handle(ev)
	})
	if err != nil {
		return nil, err
	}
	f := &localFleet{cmds: make(chan command, 4), done: make(chan struct{})}
	go func() {
		defer close(f.done)
		runLoop(ctx, r, f.cmds)
		s.exited(w, nil)
	}()
	return f, nil
}

func (f *localFleet) send(c command) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return
	}
	select {
	case f.cmds <- c:
	case <-f.done:
	}
	if c.op == "finish" {
		f.closed = true
		close(f.cmds)
	}
}

func (f *localFleet) Start(at time.Time) { f.send(command{op: "start", at: at}) }
func (f *localFleet) Stop()              { f.send(command{op: "stop"}) }
func (f *localFleet) Finish()            { f.send(command{op: "finish"}) }
func (f *localFleet) Wait()              { <-f.done }

// procFleet runs worker processes of this executable.
type procFleet struct {
	mu     sync.Mutex // guards stdins
	stdins []io.WriteCloser
	cmds   []*exec.Cmd
	wg     sync.WaitGroup
}

// startProcs starts o.Workers processes, runners first, first+1, ... of n.
func startProcs(o *Options, first, n int, s sink, stderr io.Writer) (*procFleet, error) {
	f := &procFleet{}
	if _, ok := stderr.(*os.File); !ok {
		// Several processes copy into it concurrently.
		stderr = &lockedWriter{w: stderr}
	}
	for i := 0; i < o.Workers; i++ {
		w := first + i
		spec, err := json.Marshal(workerSpec{Index: w, Workers: n, Local: i, Options: *o})
		if err != nil {
			f.kill()
			return nil, err
		}
		cmd := exec.Command(o.WorkerCommand[0], o.WorkerCommand[1:]...)
		cmd.Env = append(os.Environ(), workerEnv+"=1")
		cmd.Stderr = stderr
		in, err := cmd.StdinPipe()
		if err != nil {
			f.kill()
			return nil, err
		}
		out, err := cmd.StdoutPipe()
		if err != nil {
			f.kill()
			return nil, err
		}
		if err := cmd.Start(); err != nil {
			f.kill()
			return nil, fmt.Errorf("%w: start worker %d: %w", ErrWorker, i, err)
		}
		f.stdins = append(f.stdins, in)
		f.cmds = append(f.cmds, cmd)
		// The spec goes first; a pipe write of a few KB does not block
		// for long, and the worker reads it before anything else.
		if _, err := in.Write(append(spec, '\n')); err != nil {
			f.kill()
			return nil, fmt.Errorf("%w: worker %d spec: %w", ErrWorker, i, err)
		}
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			dec := json.NewDecoder(out)
			for {
				var ev event
				if err := dec.Decode(&ev); err != nil {
					break
				}
				ev.Worker = w
				s.handle(&ev)
			}
			err := cmd.Wait()
			if err == nil && !s.hasResult(w) {
				err = fmt.Errorf("exited without a result")
			}
			if err != nil {
				err = fmt.Errorf("%w: worker %d: %w", ErrWorker, w, err)
			}
			s.exited(w, err)
		}()
	}
	return f, nil
}
func (f *procFleet) broadcast(line string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, in := range f.stdins {
		if in != nil {
			_, _ = io.WriteString(in, line)
		}
	}
}

func (f *procFleet) Start(at time.Time) { f.broadcast(fmt.Sprintf("start %d\n", at.UnixNano())) }
func (f *procFleet) Stop()              { f.broadcast("stop\n") }
func (f *procFleet) Finish() {
	f.broadcast("finish\n")
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, in := range f.stdins {
		if in != nil {
			in.Close()
			f.stdins[i] = nil
		}
	}
}
func (f *procFleet) Wait() { f.wg.Wait() }

// kill ends every worker started so far (failed start, or a hung run).
func (f *procFleet) kill() {
	for _, c := range f.cmds {
		if c.Process != nil {
			_ = c.Process.Kill()
		}
	}
}

// aggregator collects the events of all runners.
type aggregator struct {
	mu      sync.Mutex // guards the fields below
	ticks   []Counters
	recent  [][]Counters // per runner, its ticks of the last rateWindow and one more
	rank    []int
	results []*Result
	errs    errCounter
	notify  chan struct{} // a rank changed; capacity 1, one waiter
}

// Ranks of phases; a runner that has exited counts as past all of them.
const (
	rankReady = 1 + iota
	rankConnected
	rankPublished
	rankDrained
	rankResult
	rankExited
)

func newAggregator(n int) *aggregator {
	return &aggregator{
		ticks: make([]Counters, n), rank: make([]int, n), results: make([]*Result, n),
		recent: make([][]Counters, n),
		notify: make(chan struct{}, 1),
	}
}

func (a *aggregator) handle(ev *event) {
	a.mu.Lock()
	defer a.mu.Unlock()
	w := ev.Worker
	if w < 0 || w >= len(a.rank) {
		return
	}
	if ev.Tick != nil {
		a.ticks[w] = *ev.Tick
		rc := append(a.recent[w], *ev.Tick)
		for len(rc) > 2 && ev.Tick.At-rc[1].At >= int64(rateWindow) {
			rc = rc[1:]
		}
		a.recent[w] = rc
	}
	switch ev.Type {
	case "phase":
		switch ev.Phase {
		case phaseReady:
			a.raise(w, rankReady)
		case phaseConnected:
			a.raise(w, rankConnected)
		case phasePublished:
			a.raise(w, rankPublished)
		case phaseDrained:
			a.raise(w, rankDrained)
		}
	case "result":
		a.results[w] = ev.Result
		a.raise(w, rankResult)
	}
}

// raise moves worker w to rank k. REQUIRES: mu held.
func (a *aggregator) raise(w, k int) {
	if k > a.rank[w] {
		a.rank[w] = k
		select {
		case a.notify <- struct{}{}:
		default:
		}
	}
}

func (a *aggregator) exited(w int, err error) {
	if err != nil {
		a.errs.note(err)
		fmt.Fprintln(os.Stderr, err)
	}
	a.mu.Lock()
	if w >= 0 && w < len(a.rank) {
		a.raise(w, rankExited)
	}
	a.mu.Unlock()
}

func (a *aggregator) hasResult(w int) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return w >= 0 && w < len(a.results) && a.results[w] != nil
}

func (a *aggregator) reached(k int) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, r := range a.rank {
		if r < k {
			return false
		}
	}
	return true
}

// wait blocks until every runner has reached rank k, or until deadline (if
// not zero); it reports whether they did.
func (a *aggregator) wait(k int, deadline time.Time) bool {
	var expire <-chan time.Time
	if !deadline.IsZero() {
		t := time.NewTimer(time.Until(deadline))
		defer t.Stop()
		expire = t.C
	}
	for !a.reached(k) {
		select {
		case <-a.notify:
		case <-expire:
			return a.reached(k)
		}
	}
	return true
}

// rates are the send and receive rates of the last second or more, each
// runner's over its own tick times, summed. A runner with a single tick so
// far counts from since, when the run started (with counters zero then).
func (a *aggregator) rates(since int64) (send, recv float64, ok bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, rc := range a.recent {
		if len(rc) == 0 {
			continue
		}
		last := rc[len(rc)-1]
		first := rc[0]
		if first.At < since || len(rc) == 1 {
			if since <= 0 || last.At <= since {
				continue
			}
			first = Counters{At: since}
			for _, c := range rc {
				if c.At <= since {
					first = c
					first.At = since
				}
			}
		}
		if dt := float64(last.At-first.At) / 1e9; dt > 0.1 {
			send += float64(last.Sent-first.Sent) / dt
			recv += float64(last.Received-first.Received) / dt
			ok = true
		}
	}
	return send, recv, ok
}

func (a *aggregator) total() Counters {
	a.mu.Lock()
	defer a.mu.Unlock()
	var c Counters
	for _, t := range a.ticks {
		c.add(t)
	}
	c.Errors += a.errs.total()
	return c
}

type lockedWriter struct {
	mu sync.Mutex // serializes Write
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
