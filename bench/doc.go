// Package bench is the load generator behind `cim bench`: protocol clients
// built for load, the scenarios, HDR latency, per-client and per-second
// figures, and the reports.
//
// # Model
//
// A run has clients in roles: publishers, subscribers, idle connections
// (conn) or churning clients (churn). Scenarios differ only in how many of
// each and which topics they use:
//
//	conn    N idle connections, opened at --conn-rate and held for --duration
//	pub     P publishers, topic pattern per publisher
//	sub     S subscribers, counting whatever arrives
//	fanin   P publishers -> S subscribers, all on one topic
//	fanout  1 publisher  -> S subscribers, all on one topic
//	pairs   N publishers -> N subscribers, topic i for pair i
//	churn   N clients, each looping connect, subscribe, publish one message
//	        to itself, receive it, disconnect (--conn-rate cycles/s overall)
//	shared  P publishers -> S members of $share/<group>/<topic> (G groups)
//
// Topic patterns take %i (index in the role), %c (client id), %u (user
// name) and %rand (a number below --rand-max, per message). Clients are
// spread over the --addr list round robin by index; --pub-addr and
// --sub-addr give each role its own list (cluster nodes).
//
// A run goes through phases: setup (connect, subscribe), start at an agreed
// wall-clock instant, publish for --warmup + --duration (or --count messages),
// drain (wait for deliveries still in flight, bounded by --drain), then close.
// A publisher still blocked a second after the end (a broker that stopped
// reading) is dropped with a TCP reset, so nothing it queued reaches the
// broker later.
//
// # Payload
//
// Every published payload starts with a 16-byte header, so the receiver can
// compute latency and detect loss, duplicates and reordering per publisher:
//
//	0               8               12              16         --size
//	+---------------+---------------+---------------+-- ... --+
//	| send time     | publisher id  | sequence      | padding or |
//	| unix ns, BE   | uint32, BE    | uint32, BE    | --payload-file |
//	+---------------+---------------+---------------+-- ... --+
//
// The send time is written by the protocol client when the batch holding the
// message is written to the socket, so time spent in the tool's own buffer is
// not latency. Wall-clock time is used (not monotonic) because publisher and
// subscriber can be different processes or machines. The receiver reads the
// clock once per socket read: every message of one read arrived together.
//
// # Two latencies under --rate (coordinated omission)
//
// With --rate R, message n of publisher i is due at
//
//	start + (n + i/P) / R        (publishers staggered by 1/P of a step)
//
// and a publisher that fell behind (a full in-flight window, a socket the
// broker stopped reading) catches up at once rather than sliding its
// schedule. The receiver knows the schedule, so it reports two latencies:
// from the socket write (what the broker did with a message once it had
// it) and from the intended send time (what a client with a clock would
// have seen, including the time the publisher could not send because the
// broker was stalled). The second is the honest figure under load; the
// first is what most tools print. A message written up to paceSlack early
// counts from its write.
//
// # What is counted
//
// Sent, received, lost (expected - received), duplicates and out-of-order
// cover the whole run, warmup included, so the books balance. Rates, latency
// and CPU per message cover the window after the warmup, by receive time: an
// overloaded broker is still delivering warmup messages well into the run,
// and those deliveries are its throughput.
//
// Members of one shared-subscription group are counted together: each
// member's sequences have gaps (the other members' share), so duplicates
// and gaps are tracked over the group (one tracker behind a lock, with a
// 64K-message window since members' readers race), order per member. To
// make that possible every member of a group runs in the same process.
//
// Per client: each subscriber keeps a small log-bucket histogram (3%
// resolution) of its latency, each publisher of its ack latency; the report
// gives min / median / max / stddev of the per-client rate and p99 and
// names the slowest client, because the slowest subscriber decides a
// fan-out.
//
// Per second: each runner samples its counters at every whole second after
// the start and records each delivery's latency into a histogram of its
// receive second; the parent sums them second by second into the report's
// series (--json, --csv, the chart).
//
// # Workers and agents
//
// One process may hold about 20,000 open files here. With --workers K the
// command re-executes itself K times; worker i binds its sockets to
// 127.0.0.(2+i) when every broker address is on loopback (so each worker has
// its own ephemeral port range) and takes its share of every role (client
// i of a role goes to runner i mod K; a shared group to the runner its name
// hashes to). Parent and worker talk over the worker's stdin and stdout;
// the options, password included, travel as the first stdin line, never
// on a command line or in the environment:
//
//	parent -> worker (lines)          worker -> parent (JSON lines)
//	{spec: index, count, options}     {"type":"tick", counters}   ~4/s
//	start <unix ns>                   {"type":"phase","phase":...}
//	stop                              {"type":"result", totals, HDR histograms,
//	finish                                     per-client lines, series}
//	EOF = the parent is gone: abort
//
// With --agents a,b the same runners run on other machines: each
// `cim bench agent` runs its share (in process, or in --workers processes
// of its own) and passes the events on over one authenticated TCP
// connection (agentproto.go draws the frames and the handshake). The
// coordinator merges every result (histograms with hdrhistogram.Merge) into
// one Report, exactly as for local workers.
//
// # Protocols
//
// A protocol is a Proto registered by name: mqtt.go registers "mqtt",
// native.go "native" (cim's native protocol, on broker/wire's codec).
// Publisher options a protocol may not have (retain, user properties)
// reach it in ClientConfig; SessionPresenter is optional. A protocol whose
// clients need server-side state first implements Preparer: each runner
// calls Prepare in its setup, before any dial, and dials with the Proto it
// returns; Finisher undoes it after the run. The native protocol uses them
// to register its accounts and join its groups through the IM HTTP API
// (--api) and to leave the groups again:
//
//	runner               Preparer (native)                 IM HTTP API
//	Setup ─ Prepare ───► POST /v1/accounts {name} ×N  ───►  id per name (idempotent)
//	                     POST /v1/groups, .../members  ───►  cim/g/<name> topics
//	dial ─ Dial ───────► login {name} on --addr, subscribe, send ...
//	Close ─ Finish ────► DELETE .../members/<id>      ───►  (clean runs only)
//
// Native clients map the run onto the protocol so: the client id is the
// account's user name; a publish to cim/u/<id or name>, cim/g/<group> or
// cim/all is a send to that user, group or everyone, any other topic a
// send to the topic (seen by MQTT subscribers too); QoS 0 sends carry no
// client message id, QoS 1 sends one (unique per account over runs, since
// the server deduplicates by it) and their send-ack is the publish ack (code
// 7000, stored for an offline receiver, counts as success); a QoS 1 deliver
// is answered with a deliver-ack; a subscription is a subscribe frame, the
// inbox and cim/all being subscribed at login already. A native session
// lasts as long as its account, so a clean client unsubscribes what it
// subscribed before it closes.
package bench
