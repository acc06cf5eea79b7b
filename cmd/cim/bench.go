package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime/pprof"
	"strings"
	"time"

	"github.com/cimgo/cim/bench"
)

const benchUsage = `usage: cim bench <scenario> [flags]

Load-tests a broker and reports throughput, loss and latency.

Scenarios:
  conn     open --count N connections at --conn-rate/s and hold them for --duration
  pub      --pubs P publishers, each on --topic (default bench/%i)
  sub      --subs S subscribers on --topic (default bench/#), counting what arrives
  fanin    --pubs P (10) publishers -> --subs S (1) subscribers on one topic
  fanout   1 publisher -> --subs S (100) subscribers on one topic
  pairs    --pairs N (100) publisher/subscriber pairs, one topic each (bench/pair/%i)

Examples:
  cim bench fanin --addr 127.0.0.1:1883 --pubs 10 --subs 1 --qos 0 --size 64 --duration 10s
  cim bench pairs --pairs 100 --qos 1 --rate 1000 --json
  cim bench conn --count 19000 --workers 2 --broker-pid $(pidof mosquitto)

Exit codes:
  0  run completed without errors (message loss at QoS 0 is reported, not an error)
  1  errors during the run (failed connections, broker went away, refusals)
  2  bad flags
  3  no connection could be established (unreachable, timed out, refused)
  4  no connection could be established: not authorized

Flags:
`

// runBench is `cim bench`.
func runBench(ctx context.Context, args []string) int {
	if bench.IsWorker() {
		// Re-executed by a parent `cim bench --workers K`: the run's options
		// come from the environment, not from args.
		return bench.ServeWorker(ctx, os.Stdin, os.Stdout)
	}
	o, cpuProfile, code := parseBenchFlags(args, os.Stderr)
	if code >= 0 {
		return code
	}
	if cpuProfile != "" {
		// Shows whether the load generator itself is the bottleneck (this
		// process only, not the workers).
		f, err := os.Create(cpuProfile)
		if err != nil {
			fmt.Fprintf(os.Stderr, "cim bench: --cpuprofile: %v\n", err)
			return bench.ExitUsage
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err == nil {
			defer pprof.StopCPUProfile()
		}
	}
	rep, err := bench.Run(ctx, *o, os.Stdout, os.Stderr)
	switch {
	case errors.Is(err, bench.ErrUsage):
		fmt.Fprintf(os.Stderr, "cim bench: %s\nrun 'cim bench -h' for usage\n", strings.TrimPrefix(err.Error(), bench.ErrUsage.Error()+": "))
		return bench.ExitUsage
	case err != nil:
		fmt.Fprintf(os.Stderr, "cim bench: %v\n", err)
		return bench.ExitErrors
	}
	return rep.ExitCode
}

// parseBenchFlags turns the arguments into options. The scenario may come
// before or after the flags. code is -1 to go on, else the exit code.
func parseBenchFlags(args []string, stderr io.Writer) (o *bench.Options, cpuProfile string, code int) {
	o = &bench.Options{}
	fs := flag.NewFlagSet("cim bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, benchUsage)
		fs.PrintDefaults()
	}
	var (
		qos, version, count    int
		clean                  bool
		rate                   float64
		proto                  = fs.String("proto", "mqtt", "protocol: "+strings.Join(bench.Protos(), ", "))
		brokerPID, workers     int
		sessionExpiry, timeout time.Duration
	)
	fs.StringVar(&o.Addr, "addr", "127.0.0.1:1883", "broker `host:port`")
	fs.IntVar(&version, "mqtt-version", 4, "MQTT protocol version: 4 (3.1.1) or 5")
	fs.IntVar(&qos, "qos", 0, "QoS of publishes and subscriptions: 0, 1 or 2")
	fs.IntVar(&o.Size, "size", 64, "payload size in `bytes` (at least 16: send time, publisher id, sequence)")
	fs.Float64Var(&rate, "rate", 0, "messages per second per publisher; 0 = as fast as possible (QoS>0: bounded by --inflight)")
	fs.DurationVar(&o.Duration, "duration", 10*time.Second, "measured run time; conn: how long to hold the connections")
	fs.IntVar(&count, "count", 0, "messages per publisher (sub: per subscriber) instead of --duration; conn: number of connections (default 1000)")
	fs.DurationVar(&o.Warmup, "warmup", 0, "publish this long before the window that rates, latency and broker CPU are measured over")
	fs.StringVar(&o.Topic, "topic", "", "topic `pattern`, %i = client index in its role (default depends on scenario)")
	fs.IntVar(&o.Pubs, "pubs", 0, "publishers (pub default 1, fanin default 10)")
	fs.IntVar(&o.Subs, "subs", 0, "subscribers (sub and fanin default 1, fanout default 100)")
	fs.IntVar(&o.Pairs, "pairs", 0, "publisher/subscriber pairs (default 100)")
	fs.Float64Var(&o.ConnRate, "conn-rate", 0, "connections opened per second; 0 = as fast as --conn-parallel allows")
	fs.IntVar(&o.ConnParallel, "conn-parallel", 64, "handshakes in flight at once, over all workers")
	fs.BoolVar(&clean, "clean", true, "clean sessions; --clean=false asks for persistent sessions")
	fs.DurationVar(&sessionExpiry, "session-expiry", 5*time.Minute, "MQTT 5 session expiry of persistent sessions")
	fs.StringVar(&o.Username, "username", "", "user name for CONNECT")
	fs.StringVar(&o.Password, "password", "", "password for CONNECT")
	fs.StringVar(&o.ClientIDPrefix, "client-id-prefix", "", "client ids are <prefix>-<p|s|c><index> (default random per run)")
	fs.DurationVar(&o.KeepAlive, "keepalive", 60*time.Second, "keepalive interval sent to the broker")
	fs.DurationVar(&timeout, "connect-timeout", 10*time.Second, "limit for dial plus CONNECT/CONNACK")
	fs.IntVar(&o.Inflight, "inflight", 100, "unacknowledged QoS>0 publishes per publisher")
	fs.DurationVar(&o.Drain, "drain", 5*time.Second, "longest wait for in-flight deliveries after publishing stops")
	fs.IntVar(&workers, "workers", 0, "run clients in `K` worker processes, bound to 127.0.0.2.. on loopback (beyond one process's open-file limit)")
	fs.IntVar(&brokerPID, "broker-pid", 0, "broker process `pid` to sample for CPU per message and RSS per connection")
	fs.BoolVar(&o.JSON, "json", false, "print the report as one JSON object")
	fs.StringVar(&o.Chart, "chart", "", "write an HTML latency/rate chart to `file`")
	fs.StringVar(&o.Progress, "progress", "auto", "progress on stderr: auto, bar, plain or none")
	fs.StringVar(&cpuProfile, "cpuprofile", "", "write a CPU profile of the load generator to `file`")

	scenario := ""
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		scenario, args = args[0], args[1:]
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, "", bench.ExitOK
		}
		return nil, "", bench.ExitUsage
	}
	rest := fs.Args()
	if scenario == "" && len(rest) > 0 {
		scenario, rest = rest[0], rest[1:]
		if err := fs.Parse(rest); err != nil {
			return nil, "", bench.ExitUsage
		}
		rest = fs.Args()
	}
	bad := func(format string, a ...any) (*bench.Options, string, int) {
		fmt.Fprintf(stderr, "cim bench: "+format+"\n", a...)
		fmt.Fprintln(stderr, "run 'cim bench -h' for usage")
		return nil, "", bench.ExitUsage
	}
	if len(rest) > 0 {
		return bad("unexpected argument %q", rest[0])
	}
	if scenario == "" {
		return bad("missing scenario (one of %s)", strings.Join(bench.Scenarios, ", "))
	}
	if qos < 0 || qos > 2 {
		return bad("--qos %d: want 0, 1 or 2", qos)
	}
	if version != 4 && version != 5 {
		return bad("--mqtt-version %d: want 4 or 5", version)
	}
	o.Scenario, o.Proto, o.Rate = scenario, *proto, rate
	o.QoS, o.MQTTVersion = byte(qos), byte(version)
	o.Persistent = !clean
	o.SessionExpiry, o.ConnectTimeout = sessionExpiry, timeout
	o.Workers, o.BrokerPID = workers, brokerPID
	if scenario == bench.ScenarioConn {
		o.Conns = count
	} else {
		o.Count = count
	}
	if o.Duration <= 0 && o.Count == 0 {
		return bad("--duration %v: want > 0 (or use --count)", o.Duration)
	}
	return o, cpuProfile, -1
}
