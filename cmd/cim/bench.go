package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"runtime/pprof"
	"strings"
	"time"

	"github.com/cimgo/cim/bench"
)

const benchUsage = `usage: cim bench <scenario> [flags]

Load-tests a broker and reports throughput, loss and latency.

       cim bench agent --listen host:port [--token-file FILE]

Scenarios:
  conn     open --count N connections at --conn-rate/s and hold them for --duration
  pub      --pubs P publishers, each on --topic (default bench/%i)
  sub      --subs S subscribers on --topic (default bench/#), counting what arrives
  fanin    --pubs P (10) publishers -> --subs S (1) subscribers on one topic
  fanout   1 publisher -> --subs S (100) subscribers on one topic
  pairs    --pairs N (100) publisher/subscriber pairs, one topic each (bench/pair/%i)
  churn    --clients N (10) clients loop connect, subscribe, publish to themselves,
           receive, disconnect; --conn-rate bounds cycles/s, --clean=false resumes sessions
  shared   --pubs P (1) publishers -> --subs S (10) members of $share/<--group>/<topic>
           (--groups G splits them into G groups); loss and duplicates counted per group

Protocols: --proto mqtt (default; --mqtt-version 4 or 5) or --proto native
(cim's native protocol: topics cim/u/<id|name> are private sends, cim/g/<group>
group sends, cim/all everyone, others topic sends; accounts are registered
through --api first; QoS 0 or 1).

Topic variables: %i client index in its role, %c client id, %u user name,
%rand a random number below --rand-max (per message for publishers).

Agents: 'cim bench agent --listen host:port' on other machines runs clients for
a coordinator: 'cim bench ... --agents a:p,b:p' drives them and reports one run.
Both sides read the shared token from --token-file or $CIM_BENCH_TOKEN.

Examples:
  cim bench fanin --addr 127.0.0.1:1883 --pubs 10 --subs 1 --qos 0 --size 64 --duration 10s
  cim bench pairs --pairs 100 --qos 1 --rate 1000 --json --csv series.csv
  cim bench conn --count 19000 --workers 2 --broker-pid $(pidof mosquitto)
  cim bench fanout --addr n1:1883,n2:1883 --pub-addr n1:1883 --subs 1000
  cim bench shared --subs 8 --mqtt-version 5 --user-property src=bench
  cim bench fanin --proto native --addr 127.0.0.1:9000 --api http://127.0.0.1:8083 --qos 1

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
		// come on stdin, not from args.
		return bench.ServeWorker(ctx, os.Stdin, os.Stdout)
	}
	if len(args) > 0 && args[0] == "agent" {
		return runBenchAgent(ctx, args[1:], os.Stderr)
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
		_, _ = io.WriteString(stderr, benchUsage)
		fs.PrintDefaults()
	}
	var (
		qos, version, count    int
		clean                  bool
		rate                   float64
		proto                  = fs.String("proto", "mqtt", "protocol: "+strings.Join(bench.Protos(), ", "))
		brokerPID, workers     int
		sessionExpiry, timeout time.Duration
		passwordFile           string
		payloadFile            string
		tokenFile              string
		userProps              propList
	)
	fs.StringVar(&o.Addr, "addr", "", "broker `host:port`, or a comma-separated list (clients spread round robin); default 127.0.0.1:1883, native 127.0.0.1:9000")
	fs.StringVar(&o.API, "api", "", "native: the IM HTTP API's base `URL`, where the run registers its accounts (default http://<first --addr host>:8083)")
	fs.StringVar(&o.PubAddr, "pub-addr", "", "publishers connect here (`host:port,...`) instead of --addr")
	fs.StringVar(&o.SubAddr, "sub-addr", "", "subscribers connect here (`host:port,...`) instead of --addr")
	fs.IntVar(&version, "mqtt-version", 4, "MQTT protocol version: 4 (3.1.1) or 5")
	fs.IntVar(&qos, "qos", 0, "QoS of publishes and subscriptions: 0, 1 or 2")
	fs.IntVar(&o.Size, "size", 64, "payload size in `bytes` (at least 16: send time, publisher id, sequence)")
	fs.Float64Var(&rate, "rate", 0, "messages per second per publisher; 0 = as fast as possible (QoS>0: bounded by --inflight)")
	fs.DurationVar(&o.Duration, "duration", 10*time.Second, "measured run time; conn: how long to hold the connections")
	fs.IntVar(&count, "count", 0, "messages per publisher (sub: per subscriber) instead of --duration; conn: number of connections (default 1000)")
	fs.DurationVar(&o.Warmup, "warmup", 0, "publish this long before the window that rates, latency and broker CPU are measured over")
	fs.StringVar(&o.Topic, "topic", "", "topic `pattern` with %i %c %u %rand (default depends on scenario)")
	fs.IntVar(&o.RandMax, "rand-max", 1000, "%rand in topics is a number in [0, `N`)")
	fs.BoolVar(&o.Retain, "retain", false, "publish with the retain flag (retained messages stay on the broker)")
	fs.StringVar(&payloadFile, "payload-file", "", "message body after the 16-byte header, from `file` (sets --size)")
	fs.Var(&userProps, "user-property", "MQTT 5 user property `key=value` on every publish (repeatable)")
	fs.IntVar(&o.Clients, "clients", 0, "churn: clients churning at once (default 10)")
	fs.StringVar(&o.Group, "group", "bench", "shared: group `name` in $share/<name>/<topic>")
	fs.IntVar(&o.Groups, "groups", 1, "shared: number of groups the subscribers are split into")
	fs.IntVar(&o.Pubs, "pubs", 0, "publishers (pub default 1, fanin default 10)")
	fs.IntVar(&o.Subs, "subs", 0, "subscribers (sub and fanin default 1, fanout default 100)")
	fs.IntVar(&o.Pairs, "pairs", 0, "publisher/subscriber pairs (default 100)")
	fs.Float64Var(&o.ConnRate, "conn-rate", 0, "connections opened per second; 0 = as fast as --conn-parallel allows")
	fs.IntVar(&o.ConnParallel, "conn-parallel", 64, "handshakes in flight at once, over all workers")
	fs.BoolVar(&clean, "clean", true, "clean sessions; --clean=false asks for persistent sessions")
	fs.DurationVar(&sessionExpiry, "session-expiry", 5*time.Minute, "MQTT 5 session expiry of persistent sessions")
	fs.StringVar(&o.Username, "username", "", "user name for CONNECT")
	fs.StringVar(&o.Password, "password", "", "password for CONNECT (visible to other users in ps: prefer --password-file or $CIM_BENCH_PASSWORD)")
	fs.StringVar(&passwordFile, "password-file", "", "read the CONNECT password from the first line of `file`")
	fs.StringVar(&o.ClientIDPrefix, "client-id-prefix", "", "client ids are <prefix>-<p|s|c><index> (default random per run)")
	fs.DurationVar(&o.KeepAlive, "keepalive", 60*time.Second, "keepalive interval sent to the broker")
	fs.DurationVar(&timeout, "connect-timeout", 10*time.Second, "limit for dial plus CONNECT/CONNACK")
	fs.IntVar(&o.Inflight, "inflight", 100, "unacknowledged QoS>0 publishes per publisher")
	fs.DurationVar(&o.Drain, "drain", 5*time.Second, "longest wait for in-flight deliveries after publishing stops")
	fs.IntVar(&workers, "workers", 0, "run clients in `K` worker processes (per agent with --agents), bound to 127.0.0.2.. on loopback")
	fs.StringVar(&o.Agents, "agents", "", "run the clients on these `host:port,...` agents (cim bench agent) and report one run")
	fs.StringVar(&tokenFile, "token-file", "", "agent token from `file` (default $CIM_BENCH_TOKEN)")
	fs.IntVar(&brokerPID, "broker-pid", 0, "broker process `pid` to sample for CPU per message and RSS per connection")
	fs.BoolVar(&o.JSON, "json", false, "print the report as one JSON object")
	fs.StringVar(&o.Chart, "chart", "", "write an HTML latency/rate chart to `file`")
	fs.StringVar(&o.CSV, "csv", "", "write the per-second time series to `file` as CSV")
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
	o.UserProperties = userProps
	switch {
	case o.Password != "" && passwordFile != "":
		return bad("--password and --password-file: give one")
	case passwordFile != "":
		p, err := bench.ReadSecretFile(passwordFile)
		if err != nil {
			return bad("--password-file: %v", err)
		}
		o.Password = p
	case o.Password == "":
		o.Password = os.Getenv(bench.PasswordEnv)
	}
	if payloadFile != "" {
		b, err := bench.ReadPayloadFile(payloadFile)
		if err != nil {
			return bad("--payload-file: %v", err)
		}
		sizeSet := false
		fs.Visit(func(f *flag.Flag) { sizeSet = sizeSet || f.Name == "size" })
		if sizeSet {
			return bad("--size and --payload-file: give one (the size is 16 + the file's)")
		}
		o.Payload = b
		o.Size = 0
	}
	if o.Agents != "" {
		t, err := bench.AgentToken(tokenFile)
		if err != nil {
			return bad("%v", err)
		}
		o.AgentToken = t
	}
	if exe, err := os.Executable(); err == nil {
		o.WorkerCommand = []string{exe, "bench"}
	}
	return o, cpuProfile, -1
}

// propList is a repeatable --user-property key=value.
type propList []bench.UserProperty

func (p *propList) String() string { return fmt.Sprint(*p) }

func (p *propList) Set(s string) error {
	up, err := bench.ParseUserProperty(s)
	if err != nil {
		return err
	}
	*p = append(*p, up)
	return nil
}

// runBenchAgent is `cim bench agent`.
func runBenchAgent(ctx context.Context, args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("cim bench agent", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "", "accept coordinators on `host:port`")
	tokenFile := fs.String("token-file", "", "shared token from `file` (default $"+bench.TokenEnv+")")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: cim bench agent --listen host:port [--token-file FILE]\n\n"+
			"Runs clients for a coordinator ('cim bench ... --agents host:port,...'), one run at a time.\n"+
			"The coordinator and the agent prove to each other that they share the token;\n"+
			"the rest of the connection, the broker password included, is not encrypted.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return bench.ExitOK
		}
		return bench.ExitUsage
	}
	if *listen == "" || fs.NArg() > 0 {
		fmt.Fprintln(stderr, "cim bench agent: want --listen host:port and no other arguments")
		return bench.ExitUsage
	}
	token, err := bench.AgentToken(*tokenFile)
	if err != nil {
		fmt.Fprintf(stderr, "cim bench agent: %v\n", err)
		return bench.ExitUsage
	}
	ao := bench.AgentOptions{Token: token, Log: stderr}
	if err := ao.Validate(); err != nil {
		fmt.Fprintf(stderr, "cim bench agent: %s\n", strings.TrimPrefix(err.Error(), bench.ErrUsage.Error()+": "))
		return bench.ExitUsage
	}
	l, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintf(stderr, "cim bench agent: %v\n", err)
		return bench.ExitErrors
	}
	fmt.Fprintf(stderr, "cim bench agent: listening on %s\n", l.Addr())
	if exe, err := os.Executable(); err == nil {
		ao.WorkerCommand = []string{exe, "bench"}
	}
	if err := bench.ServeAgent(ctx, l, ao); err != nil {
		fmt.Fprintf(stderr, "cim bench agent: %v\n", err)
		if errors.Is(err, bench.ErrUsage) {
			return bench.ExitUsage
		}
		return bench.ExitErrors
	}
	return bench.ExitOK
}
