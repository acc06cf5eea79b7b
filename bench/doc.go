// Package bench is the load generator behind `cim bench`: protocol clients
// built for load, the scenarios, HDR latency, and the reports.
//
// # Model
//
// A run has clients in roles: publishers, subscribers, or idle connections
// (the conn scenario). Scenarios differ only in how many of each and which
// topics they use:
//
//	conn    N idle connections, opened at --conn-rate and held for --duration
//	pub     P publishers, topic pattern per publisher (%i = publisher index)
//	sub     S subscribers, counting whatever arrives
//	fanin   P publishers -> S subscribers, all on one topic
//	fanout  1 publisher  -> S subscribers, all on one topic
//	pairs   N publishers -> N subscribers, topic i for pair i
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
//	| send time     | publisher id  | sequence      | padding |
//	| unix ns, BE   | uint32, BE    | uint32, BE    | zeros   |
//	+---------------+---------------+---------------+-- ... --+
//
// The send time is written by the protocol client when the batch holding the
// message is written to the socket, so time spent in the tool's own buffer or
// waiting for an in-flight window is not latency. Wall-clock time is used (not
// monotonic) because publisher and subscriber can be different worker
// processes. The receiver reads the clock once per socket read: every message
// of one read arrived together, and the clock is not free on every machine.
//
// # What is counted
//
// Sent, received, lost (expected - received), duplicates and out-of-order
// cover the whole run, warmup included, so the books balance. Rates, latency
// and broker CPU per message cover the window after the warmup, by receive
// time: an overloaded broker is still delivering warmup messages well into
// the run, and those deliveries are its throughput.
//
// # Workers
//
// One process may hold about 20,000 open files here. With --workers K the
// command re-executes itself K times; worker i binds its sockets to
// 127.0.0.(2+i) when the broker is on loopback (so each worker has its own
// ephemeral port range) and takes clients i, i+K, i+2K, ... of every role.
// Parent and worker talk over the worker's stdin and stdout:
//
//	parent -> worker (lines)          worker -> parent (JSON lines)
//	start <unix ns>                   {"type":"tick", counters}   ~4/s
//	stop                              {"type":"phase","phase":...}
//	finish                            {"type":"result", totals + HDR histograms}
//	EOF = the parent is gone: abort
//
// The parent merges the results (histograms with hdrhistogram.Merge) into one
// Report. A single-process run uses the same runner and the same events.
//
// # Protocols
//
// A protocol is a Proto registered by name (mqtt.go registers "mqtt"); the
// native protocol plugs in by adding one file that calls Register.
package bench
