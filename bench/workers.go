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

// workerEnv carries a worker's spec (JSON) to the re-executed process; its
// presence is how the process knows it is a worker.
const workerEnv = "CIM_BENCH_WORKER"

type workerSpec struct {
	Index   int     `json:"index"`
	Workers int     `json:"workers"`
	Options Options `json:"options"`
}

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

// ServeWorker runs this process's share of a run, reading commands from
// stdin and writing events to stdout. It returns the process exit code.
func ServeWorker(ctx context.Context, stdin io.Reader, stdout io.Writer) int {
	var spec workerSpec
	if err := json.Unmarshal([]byte(os.Getenv(workerEnv)), &spec); err != nil {
		fmt.Fprintf(os.Stderr, "bench worker: bad %s: %v\n", workerEnv, err)
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
	r, err := newRunner(&spec.Options, spec.Index, spec.Workers, emit)
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench worker %d: %v\n", spec.Index, err)
		return ExitUsage
	}
	cmds := make(chan command)
	go func() {
		defer close(cmds)
		sc := bufio.NewScanner(stdin)
		for sc.Scan() {
			op, arg, _ := strings.Cut(strings.TrimSpace(sc.Text()), " ")
			c := command{op: op}
			if op == "start" {
				ns, err := strconv.ParseInt(arg, 10, 64)
				if err != nil {
					continue
				}
				c.at = time.Unix(0, ns)
			}
			cmds <- c
		}
	}()
	runLoop(ctx, r, cmds)
	return ExitOK
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

// fleet is the parent's handle on the runners: in-process or workers.
type fleet interface {
	Start(at time.Time)
	Stop()
	// Finish tells the runners to close their connections and report.
	Finish()
	// Wait returns once every runner has ended.
	Wait()
}

// localFleet runs the single runner of a --workers 0 run in this process.
type localFleet struct {
	cmds chan command
	once sync.Once
	done chan struct{}
}

func startLocal(ctx context.Context, o *Options, agg *aggregator) (*localFleet, error) {
	r, err := newRunner(o, 0, 1, agg.handle)
	if err != nil {
		return nil, err
	}
	f := &localFleet{cmds: make(chan command, 4), done: make(chan struct{})}
	go func() {
		defer close(f.done)
		runLoop(ctx, r, f.cmds)
		agg.exited(0, nil)
	}()
	return f, nil
}

func (f *localFleet) send(c command) {
	select {
	case f.cmds <- c:
	case <-f.done:
	}
}

func (f *localFleet) Start(at time.Time) { f.send(command{op: "start", at: at}) }
func (f *localFleet) Stop()              { f.send(command{op: "stop"}) }
func (f *localFleet) Finish() {
	f.send(command{op: "finish"})
	f.once.Do(func() { close(f.cmds) })
}
func (f *localFleet) Wait() { <-f.done }

// procFleet runs K worker processes of this executable.
type procFleet struct {
	mu     sync.Mutex // guards stdins
	stdins []io.WriteCloser
	cmds   []*exec.Cmd
	wg     sync.WaitGroup
}

func startProcs(o *Options, agg *aggregator, stderr io.Writer) (*procFleet, error) {
	f := &procFleet{}
	if _, ok := stderr.(*os.File); !ok {
		// Several processes copy into it concurrently.
		stderr = &lockedWriter{w: stderr}
	}
	for i := 0; i < o.Workers; i++ {
		spec, err := json.Marshal(workerSpec{Index: i, Workers: o.Workers, Options: *o})
		if err != nil {
			return nil, err
		}
		cmd := exec.Command(o.WorkerCommand[0], o.WorkerCommand[1:]...)
		cmd.Env = append(os.Environ(), workerEnv+"="+string(spec))
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
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			dec := json.NewDecoder(out)
			for {
				var ev event
				if err := dec.Decode(&ev); err != nil {
					break
				}
				ev.Worker = i
				agg.handle(&ev)
			}
			err := cmd.Wait()
			if err == nil && !agg.hasResult(i) {
				err = fmt.Errorf("exited without a result")
			}
			if err != nil {
				err = fmt.Errorf("%w: worker %d: %w", ErrWorker, i, err)
			}
			agg.exited(i, err)
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
	a.raise(w, rankExited)
	a.mu.Unlock()
}

func (a *aggregator) hasResult(w int) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.results[w] != nil
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
